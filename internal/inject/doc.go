// Package inject adds Causeway's data plane to pods: the causeway-proxy
// sidecar, the traffic-capture init container (causeway-proxy init), a
// projected service-account token for SVID issuance, the trust bundle
// ConfigMap volume, rewritten application health probes and an annotation
// that records the injection. The injected args are complete: SVID
// issuer, token file, trust domain and bundle, capture mode, inbound ports
// from the app's declared containerPorts; the locality is not injected
// (the control plane derives it from the pod's node, xds.PodLocator). It
// owns three entry points over one pure function:
//
//   - Pod decides whether a pod is injected (namespace label or pod
//     annotation causeway.dev/inject, opt-out, hostNetwork, already injected)
//     and returns the injected copy. It never modifies its input and is
//     deterministic: the same pod and Config give the same bytes, and
//     injecting an injected pod changes nothing.
//   - Handler is the mutating admission webhook (admission/v1): it answers
//     with a JSON patch computed by diffing the pod before and after Pod. It
//     never denies a pod: a request or pod spec it cannot handle is admitted
//     unchanged with a warning, logged and counted.
//   - Manifests injects the workloads of a multi-document YAML stream offline
//     (`causeway inject -f`), copying every other document byte for byte.
//
// Server is the Handler as the control plane runs it (`causeway
// control-plane --injector-listen`): HTTPS with a serving certificate signed
// by the control plane's root CA and renewed after two thirds of its life,
// the caBundle of the MutatingWebhookConfiguration kept equal to the roots
// that signed it (server-side apply of that one field, at start, after each
// renewal and every Resync), the trust bundle ConfigMap (the same roots)
// published into every namespace (bundle.go), and a Warning Event for each
// pod admitted without injection because of an error.
//
// The shape of the injected pod, the annotations and the probe rewrite are
// documented in docs/injection.md; update it with the code.
//
// Concurrency: Pod and Manifests hold no state. A Handler is immutable after
// NewHandler apart from its metrics, and serves concurrent requests. A
// Server's certificate is an atomic pointer swapped by its renewal
// goroutine; Run starts the HTTP server, the renewal, the caBundle and the
// trust bundle goroutines (the last with a Namespace informer whose
// callbacks only enqueue, and one worker) and returns after all have
// stopped.
package inject

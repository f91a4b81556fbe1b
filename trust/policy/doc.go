// +groupName=security.causeway.dev
// +versionName=v1alpha1

// Package policy is Causeway's authorization API: the AuthorizationPolicy
// resource (security.causeway.dev/v1alpha1, CRD in
// manifests/crds/causeway), its validation with errors that name the field
// and the fix, and its conversion into the model
// (model.AuthorizationPolicy), which internal/xds turns into the proxies'
// RBAC filters.
//
// The shape follows what Istio and Linkerd users know: a policy in a
// namespace applies to the Services named by spec.targetRefs (Gateway API
// policy attachment, kind Service) or, without targetRefs, to every Service
// of the namespace; action Allow or Deny; rules of from (SPIFFE ID, trust
// domain, or namespace) and to (ports, methods, paths). Deny policies win;
// once an Allow policy applies to a Service, only what an Allow policy
// matches gets through; an Allow policy without rules allows nothing.
//
// Concurrency: the functions are pure; values are not shared.
package policy

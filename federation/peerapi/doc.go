// +groupName=federation.causeway.dev
// +versionName=v1alpha1

// Package peerapi is Causeway's federation link API: the Peer resource
// (federation.causeway.dev/v1alpha1, cluster-scoped, CRD in
// manifests/crds/causeway), one per peer cluster this cluster federates
// with. The same YAML is a Kubernetes object (kubernetes mode) and a
// document in the control plane's folder (folder mode); `causeway link`
// prints one for the local cluster, to be applied in its peers.
//
// A Peer names the peer's cluster, trust domain and network, its
// federation endpoint (where this cluster imports from), its SPIFFE bundle
// endpoint and the bootstrap bundle that authenticates it, the direction of
// the link (Both, Import: only import from the peer, Export: only let the
// peer import from here) and an export filter (what the peer may import;
// empty: every exported service). Its status, written by the control
// plane, has the conditions Accepted, Connected, Stale and BundleHealthy,
// the last sync, the bundle sequence, the exported and imported counts and
// the last error.
//
// Validate is the single check of a Peer's spec, with errors that name the
// field (spec.trustDomain, ...) and the fix; the CRD's schema and CEL rules
// refuse the same mistakes at the apiserver. Nothing deeper re-checks.
//
// Concurrency: the functions are pure; values are not shared.
package peerapi

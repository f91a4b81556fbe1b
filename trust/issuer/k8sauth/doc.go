// Package k8sauth authenticates SVID requests in Kubernetes: the caller's
// bearer token is a projected service-account token, checked with the
// TokenReview API (authentication.k8s.io/v1) against the cluster's
// apiserver with an audience (DefaultAudience, "causeway"). The reviewed
// user system:serviceaccount:<ns>:<sa> proves
// spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
//
// It lives apart from package issuer so that the data plane, which imports
// issuer's Client and Rotator, never links client-go.
//
// What it owns: the mapping from a Kubernetes service-account user to a
// SPIFFE ID, and the audience check. Every call is one TokenReview; nothing
// is cached, since a workload asks for an SVID once per half-life.
//
// Workloads mount the token with a projected volume:
//
//	volumes:
//	- name: causeway-token
//	  projected:
//	    sources:
//	    - serviceAccountToken: {audience: causeway, expirationSeconds: 3600, path: token}
//
// and the sidecar reads it on every request with issuer.FileToken, so the
// kubelet's refreshes are picked up.
//
// RBAC: the issuer's own service account needs "create" on
// tokenreviews.authentication.k8s.io (ClusterRole system:auth-delegator).
//
// Concurrency: an *Authenticator is immutable and safe for concurrent use.
package k8sauth

// Package authz decides whether the proxy lets a request or connection in,
// by the RBAC filters the control plane sends (Envoy's
// envoy.filters.http.rbac and envoy.filters.network.rbac, the subset in
// docs/xds.md).
//
// Semantics, as Envoy: filters run in order and the first that refuses
// decides. An ALLOW filter refuses unless one of its policies matches (so
// an ALLOW filter with no policies is default deny); a DENY filter refuses
// if one of its policies matches. A policy matches when one of its
// permissions (what is asked: destination port, method, path, headers) and
// one of its principals (who asks: the peer's verified SPIFFE ID) match.
//
// The request path: Compile runs when configuration is applied; Check runs
// per request or connection and does not allocate when it allows. A
// refusal returns the filter, the policy and a reason for the access log.
//
// Concurrency: an *Engine is immutable after Compile and safe for
// concurrent use.
package authz

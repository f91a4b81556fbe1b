// Package issuer issues X.509-SVIDs to workloads over gRPC (the SVID service
// of trust/trustpb) and keeps them fresh on the workload side.
//
// # What it owns
//
//   - Server: the SVID service. A Sign call carries gRPC metadata
//     "authorization: Bearer <token>". The server asks its Authenticator
//     which SPIFFE ID the token proves, checks the request once (the CSR
//     parses, its signature verifies, its key is ECDSA P-256/P-384, RSA >=
//     2048 or Ed25519; spiffe_id, if set, equals the proven ID; ttl_seconds
//     is 0 or within [MinTTL, MaxTTL], longer asks are capped), and has its
//     Signer (a *trust.CA, or anything with SignSVID and Bundle) sign. The
//     response holds the chain, the bundle, the expiry and the renewal time
//     (trust.RenewAt, half of the lifetime).
//   - Refusals: codes.Unauthenticated (no or malformed metadata, token not
//     valid), codes.InvalidArgument (the message names the field: csr,
//     spiffe_id, ttl_seconds), codes.PermissionDenied (spiffe_id is another
//     identity than the token proves; the message names both),
//     codes.Unavailable (the authenticator could not decide),
//     codes.Internal (the signer failed). Each call is logged once (slog;
//     Info when issued, Warn when refused, Error when failed) and counted in
//     causeway_svid_sign_requests_total{result,reason}; issued SVIDs in
//     causeway_svid_issued_total; latency in
//     causeway_svid_sign_duration_seconds{result}. Tokens are never logged
//     nor put in status messages.
//   - TokenFileAuthenticator: local mode, per-workload bootstrap tokens in
//     a file (format on the type). The Kubernetes authenticator (TokenReview)
//     is in the subpackage k8sauth, so that this package never links
//     client-go: the data plane imports Client and Rotator from here.
//   - Client: generates an ECDSA P-256 key per fetch (the key never leaves
//     the process), sends a CSR over TLS 1.3 (the issuer must present an
//     SVID with ClientConfig.ServerID that chains to ClientConfig.Bundle;
//     plaintext only to a loopback IP), and verifies the answer: the leaf
//     carries our key and the expected ID and chains to the returned bundle.
//   - Rotator: fetches an SVID, renews it at RenewAt, retries failures with
//     jittered exponential backoff, keeps the current SVID until a new one is
//     in hand, and publishes each new one to OnUpdate and to subscriber
//     channels (conflated: newest wins). It is also a go-spiffe
//     x509svid.Source and x509bundle.Source, so tlsconfig can use it.
//
// # Concurrency
//
// Server, Client and TokenFileAuthenticator are safe for concurrent use;
// the Server holds no lock on the Sign path (its collaborators must be safe
// for concurrent use, as *trust.CA is). TokenFileAuthenticator.Reload swaps
// an immutable table atomically. A Rotator does all fetching and publishing
// on the one goroutine that calls Run, in order; Current, Subscribe and the
// source methods may be called from any goroutine (Current is an atomic
// load). Time comes from injected clocks (ServerOptions.Now,
// ClientConfig.Now, RotatorOptions.Clock) and jitter from
// RotatorOptions.Jitter.
package issuer

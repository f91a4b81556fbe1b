// Package spire connects Causeway to a SPIRE server through the SPIRE server
// API (github.com/spiffe/spire-api-sdk): SPIRE as Causeway's upstream
// certificate authority, and bundle sync with SPIRE's Bundle API.
//
// What it owns:
//   - UpstreamCA, a Signer whose signing CA is an intermediate that SPIRE
//     signs with SVID.NewDownstreamX509CA for a fresh local ECDSA P-256 key.
//     SPIRE's answer is validated once, where it enters: the first certificate
//     of ca_cert_chain must be a CA (basicConstraints CA:TRUE, keyCertSign)
//     for exactly the trust domain ID spiffe://<td>, certify Causeway's key,
//     be valid now for at least trust.MinSVIDTTL, and chain through the rest
//     of ca_cert_chain to x509_authorities (the roots). Leaves are signed
//     by (*trust.CA).SignSVID and chain leaf → ca_cert_chain;
//     they verify against SPIRE's own bundle. Run renews at half-life
//     (trust.RenewAt), with a fresh key each time, and retries failures every
//     RetryInterval.
//   - BundleClient: GetBundle (SPIRE's own bundle), ListFederatedBundles (all
//     pages) and SetFederatedBundles (Bundle.BatchSetFederatedBundle, the
//     documented upsert; BatchCreate fails AlreadyExists for known trust
//     domains, BatchUpdate NotFound for new ones). Per-bundle refusals are
//     *BundleError values (trust domain, SPIRE status code and message)
//     collected in a *PushError; one bad bundle never blocks the others.
//   - BundleFromProto / BundleToProto: types.Bundle ⇄ spiffebundle.Bundle
//     (X.509, JWT and WIT authorities, refresh hint in seconds, sequence
//     number). SPIRE's tainted flags and key expiries are dropped.
//   - Dial: an mTLS gRPC connection presenting Causeway's X509-SVID and
//     accepting only spiffe://<td>/spire/server (ServerID).
//
// Authorization, as SPIRE documents it: NewDownstreamX509CA needs a
// downstream X509-SVID (`spire-server entry create -downstream`);
// ListFederatedBundles and the batch RPCs need an admin X509-SVID (or a local
// caller); GetBundle needs nothing. Errors wrap ErrPermissionDenied,
// ErrUnavailable, ErrMalformedCA, ErrMalformedBundle or ErrMalformedResponse,
// keep SPIRE's gRPC status in the chain (status.Code works) and say how to
// fix the cause.
//
// Last good CA: the current downstream CA is an immutable snapshot behind an
// atomic pointer. A failed renewal (SPIRE unavailable, permission denied, a
// malformed answer) changes nothing but Status().LastError; signing goes on
// with the last good CA until it expires (then trust.ErrCAExpired).
// NewUpstreamCA fails if the first request fails, as there is no CA to fall
// back on.
//
// The downstream CA is a *trust.CA (trust.NewCAFromChain): leaves are signed
// by the same code and rules as the built-in CA's.
//
// Tests: the SPIRE server is not run. Tests use internal/fakespire, an
// in-process gRPC server on 127.0.0.1 with mTLS that implements the
// documented behaviour of these RPCs (see its package comment); it is a
// model of SPIRE, not SPIRE.
//
// Concurrency: UpstreamCA and BundleClient are safe for concurrent use.
// SignSVID, Roots, Bundle, Certificate and Chain never block (one atomic
// load). Renew calls are serialised; Run must be called at most once at a
// time; OnRotate runs on the renewing goroutine. The clock (Now, NewTimer) and
// randomness (Rand) are injected. Private keys are never logged, printed or
// put in errors.
package spire

// Package trust owns SPIFFE identity for Causeway: the built-in certificate
// authority and X.509-SVID signing. Its subpackages hold the rest:
// trust/bundles (root rotation with overlap, bundle sets, the SPIFFE bundle
// endpoint and the peer fetcher), trust/issuer and trust/trustpb (the SVID
// issuance API and the client-side rotator), trust/spire (SPIRE as the
// upstream CA and bundle store) and trust/policy (the AuthorizationPolicy
// API). docs/trust.md is the user's guide.
//
// What it owns:
//   - CA: one signing authority for one trust domain, either a self-signed
//     ECDSA P-256 root (NewSelfSignedCA) or an intermediate under a root the
//     operator supplies (NewIntermediateCA, with LoadCAFiles for PEM files).
//   - SVID issuance: (*CA).SignSVID turns a PKCS#10 CSR into a leaf with exactly
//     one URI SAN, the workload's SPIFFE ID, and returns leaf + intermediates.
//   - Identity naming: WorkloadID builds spiffe://<td>/ns/<ns>/sa/<sa>.
//   - Bundles: (*CA).Bundle and PEM encoding of the trust anchors.
//   - The rotation rule: RenewAt, a pure function returning the half-life
//     point of a certificate and the reason.
//
// Secrets: private keys are never logged, formatted or put in errors. CA's
// String and GoString print only the trust domain and SHA-256 fingerprints.
// Key files are written 0600 and key files readable by group or others are
// refused on load.
//
// Concurrency: a *CA is immutable after construction and safe for concurrent
// use by any number of goroutines. The clock (CAOptions.Now) and randomness
// source (CAOptions.Rand) are injected; both must be safe for concurrent use.
package trust

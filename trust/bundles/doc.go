// Package bundles owns SPIFFE trust bundles for Causeway: the local trust
// domain's roots through rotation, the set of bundles a control plane trusts,
// the SPIFFE bundle endpoint it serves, and the fetcher that keeps peers'
// bundles fresh (SPIFFE Federation, profiles https_spiffe and https_web).
//
// What it owns:
//
//   - Authority: the CAs of the local trust domain through their lifecycle.
//     Prepare publishes a new CA in the bundle without letting it sign;
//     Activate makes it the signing CA once it has been published for
//     PublishLead (ForceActivate skips the wait) and retires the old one;
//     Sign delegates to the active CA and records, per CA, the latest NotAfter
//     it signed; Prune removes a retired CA once that NotAfter has passed. The
//     published bundle is the union of the roots of every held CA; its
//     spiffe_sequence increases on every change of those roots (never on
//     Activate, which changes no root) and its spiffe_refresh_hint is
//     AuthorityOptions.RefreshHint, which must be below PublishLead so that
//     peers fetch a prepared root before it signs.
//   - Set: the local bundle plus federated bundles by trust domain. It is an
//     x509bundle.Source and a spiffebundle.Source for go-spiffe's TLS
//     authorizers, and Subscribe wakes SDS when anything changes.
//   - The bundle endpoint: NewEndpointHandler serves the Authority's document
//     (marshalled once per change), ServeEndpoint runs it with TLS per
//     EndpointConfig. With https_spiffe the endpoint presents an SVID for
//     ControlPlaneID(td) = spiffe://<td>/causeway/control-plane, the ID peers
//     configure as the endpoint's SPIFFE ID.
//   - Fetcher: one goroutine per peer, refreshing at the peer's refresh hint
//     clamped to [MinRefresh, MaxRefresh], retrying with jittered exponential
//     backoff. A document is refused (RefusedError, counted in
//     causeway_trust_bundle_refused_total{trust_domain,reason}) when the
//     endpoint does not authenticate, it does not parse, it holds no root, a
//     root is not a CA certificate, a root names another trust domain, every
//     root expired, or spiffe_sequence goes backwards or is reused for other
//     roots. The last good bundle of the peer stays in the Set.
//
// Concurrency contract:
//
//   - Authority: Prepare, Activate, ForceActivate and Prune are serialised by
//     a mutex held for writing; Sign holds it for reading, so signers run in
//     parallel and a CA can never be retired or pruned between signing an SVID
//     and recording its NotAfter. Every reader (Bundle, Document, Snapshot,
//     the Source methods, the endpoint handler) loads an immutable state with
//     one atomic pointer load and takes no lock. All SVIDs must be signed
//     through Sign, or a retired root may leave the bundle while SVIDs it
//     signed are still valid.
//   - Set: writers (SetFederated, RemoveFederated, and the Authority's change
//     hook) are serialised by a mutex; the Source methods take no lock and do
//     not allocate. Bundles returned by the Source methods and by Snapshot
//     are shared and must not be modified; Federated, Authority.Bundle and
//     Authority.X509Bundle return copies. Subscription channels have a buffer
//     of one and coalesce wake-ups: a writer never blocks on a subscriber,
//     and a woken subscriber reads Snapshot. Lock order: Authority before Set.
//   - Fetcher: each peer has its own goroutine, HTTP client and status
//     (an atomically replaced value); fetches of one peer are serialised, of
//     different peers independent. A fetch never holds a lock across network
//     I/O except its own peer's fetch mutex. Run returns after every peer
//     goroutine has stopped.
//
// Time: Authority takes AuthorityOptions.Now, Fetcher a Clock (Now and
// timers), and Prune the time to prune at; nothing here reads the wall clock
// behind their back, except TLS handshakes of https_web fetches.
package bundles

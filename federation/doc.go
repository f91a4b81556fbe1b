// Package federation owns the sync protocol between Causeway control planes
// (federation/federationpb, causeway.federation.v1): the exporter (Server)
// that streams this cluster's exported services to peers, and the importer
// (Importer) that keeps the services imported from peers. Links as CRDs, the
// east-west gateway and the control-plane wiring are not here (yet).
//
// Exporter. Update takes model snapshots; only Services with Exported set
// leave the cluster, with their endpoints of this cluster only (imports are
// never re-exported). Each change of what is exported is a new revision; a
// bounded change log (ChangeLogLength revisions) records which services
// changed in each. A stream is authorized by the client's SVID, which must
// be bundles.ControlPlaneID(td) for a td of ServerConfig.Peers, and by the
// cluster it subscribes as; the peer's Filter selects what it receives. The
// stream sends a Hello, then either the services changed since the
// importer's revision (same epoch, still in the log) or a full resync, then
// one Delta per change (computed from the log, coalesced when the peer is
// slow) and a Heartbeat when idle for HeartbeatInterval. Same network:
// endpoints; other network: per-locality summaries behind Gateway (healthy
// and total endpoints, healthy weight, gateway address, SNI, identities),
// never one endpoint per cluster. Deltas are split into chunks below the
// smaller of the two sides' MaxMessageBytes; a service that cannot fit is
// not sent (deleted at the peer) and counted as oversized.
//
// Importer. One goroutine per peer dials (a fresh gRPC connection per
// attempt, mutual TLS, the server must be the peer's control plane),
// subscribes with its epoch, revision and last sequence, validates every
// message whole before applying it, and reconnects with jittered
// exponential backoff. Refusals (RefusedError, errors.Is with the Err*
// sentinels, counted in causeway_federation_import_refused_total{peer,
// reason}) end only that peer's stream: sequence backwards or replayed,
// revision backwards, malformed message (field named), oversized message,
// wrong trust domain or unknown peer in TLS or Hello. On disconnect the
// peer's last-known-good imports are kept and marked stale (status and
// causeway_federation_peer_stale) for StalenessWindow, then withdrawn; a
// resumed or resynced stream makes them fresh again. Withdrawal forgets the
// revision, so the next stream is a full resync: no duplicates, no orphans.
//
// Output. After every complete change the merged imports of all peers are
// rebuilt (Imports: model services, endpoints with Cluster = the peer, and
// LocalitySummaries) and passed to OnImports.
//
// Concurrency contract:
//
//   - Server: Update is serialised by a mutex and publishes an immutable
//     state with one atomic store; streams read states without locks and
//     wait on the state's next channel. Each stream runs on its own gRPC
//     handler goroutine, so a slow or refused peer never delays another.
//     Wire messages of a service are built once per change and shared by
//     every stream (read-only). SetPeers (peers.go) swaps the peers with one
//     atomic store from any goroutine and ends the streams of peers removed
//     or changed; a peer added or changed gets a full resync on its next
//     stream, never a resumption of what was sent under another filter.
//   - MergeImports merges the Imports of several Importers (one per peer,
//     as internal/controlplane runs them) as one Importer would. It is
//     incremental: each Importer's Imports remember (atomically) the last
//     merge they went into, and a service whose parts are the same slices
//     as then is taken from that merge, not merged again. The exporter's
//     Update likewise builds wire messages only for the services whose
//     slices or content changed, and copies the previous state's map
//     once per change.
//   - Importer: each peer's state is owned by its goroutine; it publishes an
//     immutable view and its status with atomic stores. The merge and every
//     OnImports call run on the goroutine that called Run, serially; views
//     published while a merge runs are coalesced (newest wins). Status and
//     Imports may be called from any goroutine.
//   - Time: every timer (heartbeats, heartbeat timeout, connect timeout,
//     backoff, staleness) comes from the injected Clock, jitter from Rand.
package federation

// Package merge combines what one control plane knows into the one model
// snapshot it serves: the local discovery snapshot, the services imported
// from federation peers, and the route tables of the Gateway API
// controller. Merge is a pure function; the control plane
// (internal/controlplane.Merger) calls it whenever an input changes.
//
// The rules:
//
//   - Local wins. Every field of the local snapshot (cluster, network, trust
//     domain, namespaces, policies, and any added later) is carried over
//     unchanged; merge only adds to Services and Routes.
//   - A service imported under the namespace/name of a local service is that
//     service: its imported endpoints (Cluster = the peer) are added to the
//     local ones and Imported is set: the service answers as
//     <svc>.<ns>.svc.clusterset.local (MCS: a ServiceImport exists). The
//     clusterset load assignment holds the peers' endpoints, plus this
//     cluster's only when it is Exported here (a ServiceExport of its own);
//     the cluster.local one keeps this cluster's endpoints only. Exported is
//     never changed: it means "exported from this cluster", which is what
//     the exporter and the east-west gateway go by.
//   - A service only imported becomes a model Service with Imported set and
//     only peers' endpoints: internal/xds builds its clusterset cluster and
//     virtual host. Its cluster.local cluster has no endpoints (a caller of
//     <svc>.<ns>.svc.cluster.local gets 503 "no healthy upstream").
//   - Ports: this cluster's definition of a service wins. An imported port
//     is added only when its name is new and adding it keeps the service
//     valid (names unique and non-empty when there are several; one port
//     per number); otherwise it is left out and reported as a Conflict.
//     Imported endpoints keep their own target ports (by port name).
//   - Imported endpoints that claim this cluster are left out (a peer cannot
//     speak for this cluster) and reported.
//   - Routes: the local snapshot's tables plus the controller's; where both
//     have a table for the same parent, the controller's wins (reported).
//
// Output: canonical (every slice in model order), valid (Validate passes
// when the inputs are valid: a local snapshot from discovery and imports
// from federation.Importer, which validates every peer message), and
// stable: the same inputs give an Equal snapshot, so a re-merge pushes
// nothing. Slices of the inputs that merge does not change are shared with
// the output (the model is immutable once published); merge never modifies
// its inputs.
//
// Incremental: Update(prev, in) is Merge(in) (the same snapshot and the
// same conflicts, in the same order) that takes over from prev, the
// Result of the last merge, every merged service whose local and
// imported inputs are the same (Same: the same slices and fields, as a
// source that rebuilds only what changed leaves them; else Equal), with
// its conflicts. A change of one service then costs one service's merge,
// and the unchanged merged services keep their slices from one snapshot
// to the next, so later stages (the Merger's comparison and validation,
// the xDS translator's memo) can tell them unchanged by identity.
//
// Concurrency: Merge and Update hold no state and may run on any
// goroutine; a Result is immutable and may be shared.
package merge

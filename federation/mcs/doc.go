// Package mcs writes the Multi-Cluster Services API (sigs.k8s.io/mcs-api
// v0.5.2, KEP-1645) objects of one cluster in Kubernetes mode: what
// Causeway serves, made visible to kubectl and to other controllers.
//
// It owns two things, and nothing else:
//
//   - ServiceImports. One multicluster.x-k8s.io/v1alpha1 ServiceImport per
//     service visible in the clusterset here: exported by this cluster (a
//     ServiceExport with its Service) or imported from a federation peer.
//     spec.type is ClusterSetIP, spec.ips the VIP Causeway's model assigns
//     (model.WithClustersetIPs: the address sidecars answer
//     <svc>.<ns>.svc.clusterset.local with), spec.ports the served ports
//     (this cluster's definition plus the peers' ports internal/merge
//     adds), status.clusters the exporting clusters. Every ServiceImport
//     it creates carries ManagedByLabel=ManagedByValue; it updates and
//     deletes only those, and deletes one as soon as its service is
//     exported nowhere. A ServiceImport without the label is never touched
//     (it is reported by Problems). The ServiceImport of a namespace that
//     does not exist here is not created (namespace sameness); the resync
//     creates it once the namespace exists.
//   - ServiceExport conditions (status subresource): Valid (Valid, or
//     NoService when the local model has no such Service), Ready
//     (Exported, or Failed) and Conflict (True with PortConflict when a
//     peer exports a port of the same name with another number, protocol
//     or appProtocol, or a port that cannot be added; False with
//     NoConflicts otherwise, which is how a conflict is cleared). The
//     message names the service, the field, the clusters and their
//     values, and says that this cluster's definition wins here
//     (internal/merge: local wins). Other condition types are kept.
//
// Compute is the pure part: from the local discovery snapshot and the
// merged federation imports it derives, with internal/merge's Merge and
// model.WithClustersetIPs exactly as controlplane.Merger does, the
// ServiceImports and export statuses. Peers are named from the clusters
// of their imported endpoints and localities; a peer exporting a service
// with no endpoints is not named (federation.Imports does not carry it).
//
// Inputs and loops: the Writer's inputs are the discovery snapshots
// (Source wraps the discovery source; discovery reads ServiceExports, never
// ServiceImports) and the imports (SetImports, beside
// controlplane.Merger.SetImports). Its own ServiceImports never feed back
// into them: the Gateway API controller reads ServiceImports only to
// resolve HTTPRoute backendRefs, which become routes, and routes are not an
// input of Compute.
//
// Writes: Run watches ServiceImports and ServiceExports (informers whose
// callbacks only wake the loop) and, on every input change, watch event
// and resync (Options.Resync), compares what Compute wants with the
// informer caches and writes only the difference: create, update (spec),
// update status, delete with a UID precondition. A write that meets a
// newer object (409) reads it again and compares again
// (retry.RetryOnConflict), so a stale cache never causes a second write
// of the same content. Nothing is written or deleted before the first
// local snapshot. A restarted Writer adopts the labelled ServiceImports
// it finds and deletes those no longer wanted (after Options.StartGrace,
// which gives the federation links time to catch up): no orphans, and
// names are unique, so no duplicates. A federation link that flaps does not
// withdraw anything within the staleness window (the importer keeps the
// peer's last-known-good imports); after it the peer leaves
// status.clusters, and a service only that peer exported loses its
// ServiceImport until the peer is back.
//
// Concurrency: SetLocal, SetImports, Source's emit and Problems are safe
// from any goroutine and never block (atomics and a one-slot wake
// channel); Run reconciles on its own goroutine only, so a burst of
// inputs costs one pass.
package mcs

// Package xdsclient is the data plane's only entry for configuration. It
// owns three things:
//
//   - the translation of Envoy xDS v3 resources (Listener,
//     RouteConfiguration, Cluster, ClusterLoadAssignment, Secret) into the
//     types of package config. The resources are decoded into the lean
//     messages of package leanxds (Envoy's wire format, not
//     go-control-plane's Go types, which would link every Envoy message
//     into the sidecar). They are validated once, here: first by their own
//     generated ValidateAll (Envoy's rules, for the fields the sidecar
//     reads), then against the subset Causeway implements (docs/xds.md). Every problem of a resource is reported
//     together as *FieldError values (joined), each naming the resource,
//     the proto field path and the fix. Nothing downstream re-checks.
//   - an ADS client (state of the world, one gRPC stream over package
//     h2grpc) that subscribes, ACKs and NACKs, and publishes complete
//     *config.Snapshot values.
//   - LoadBootstrap, which reads a static Envoy v3 bootstrap file (YAML or
//     JSON; leanxds.UnmarshalJSON keeps Envoy's unknown-field errors).
//
// Concurrency contract: the translators are pure functions, safe for
// concurrent use. Client.Run owns all client state in its own goroutine;
// per stream one goroutine receives and one sends, and both talk to Run
// only through channels. OnUpdate is called from Run's goroutine, in
// order, one snapshot at a time; snapshots are never mutated after they
// are handed over, and unchanged resources keep their pointers from one
// snapshot to the next. Status may be called from any goroutine (it reads
// an atomically swapped immutable value).
//
// Bad config: a response with any resource that fails translation is
// NACKed as a whole (error_detail carries every problem, version_info the
// last accepted version) and the last accepted resources of that type are
// kept unchanged, so a published snapshot is never half-applied.
// Snapshots wait for the resources they reference (warming) for at most
// Options.WarmingTimeout.
package xdsclient

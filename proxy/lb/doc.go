// Package lb is the sidecar's per-cluster upstream state: load balancing
// with locality priorities and gradual failover, outlier detection, and
// circuit breakers. It does no network I/O.
//
// # What it owns
//
// A Cluster holds the hosts of one config.Cluster and its LoadAssignment.
// Pick chooses a host in three steps, following Envoy:
//
//  1. A priority level, by the priority load (see computeLoads): each
//     level's health is min(100, OF*usable/total), traffic fills P0 up to
//     its health and spills to P1 and on, normalised when the total health
//     is below 100. A host is usable when its control-plane health is
//     Usable() (UNKNOWN, HEALTHY, DEGRADED: degraded hosts count as healthy)
//     and outlier detection has not ejected it.
//  2. Unless the level is in panic, a locality, by locality weight ×
//     min(1, OF*usable/total) (Envoy's locality-weighted LB), drawn at
//     random in proportion.
//  3. A host, by the cluster's policy: ROUND_ROBIN is a precomputed
//     earliest-deadline-first schedule of the hosts' weights walked by an
//     atomic counter; LEAST_REQUEST draws two candidates by weight and takes
//     the one with fewer ActiveRequests (ties: the first); RING_HASH and
//     MAGLEV pick the level with the request hash and look the host up in a
//     ring (Envoy sizing, RingSize entries by default 1024) or a 65537-slot
//     Maglev table built over all usable hosts of the level (all hosts in
//     panic), not per locality.
//
// Capacity: usable/total (health, locality availability, the panic share)
// counts host weights, not hosts. With unit weights, as every pod has,
// that is Envoy's host count; a peer's east-west gateway endpoint stands
// for a whole locality behind it and carries that locality's healthy
// weight, so a caller's failover sees the real capacity there, never one
// opaque host per cluster. An address may appear in several localities
// (one gateway, several localities behind it): each occurrence is a host
// of its own, ejected alone.
//
// Panic (Envoy's semantics, in capacity): when the normalised total health is
// below 100, a level whose usable share (usable/total, without OF) is below
// PanicThreshold is in panic and balances over all its hosts, ejected and
// unhealthy ones included, ignoring localities. If every level is in panic,
// load is split between levels by host count. PanicThreshold 0 disables
// panic; then a cluster with no usable host returns ErrNoHealthyUpstream.
//
// Retries: PickRequest.Tried hosts are avoided when any alternative exists;
// a host in a locality (region/zone/subzone plus Kubernetes cluster) no try
// used is preferred, searching the chosen level first and then the other
// levels in priority order (so a retry may cross to a lower priority to
// change locality); then any untried host; then any.
//
// Outlier detection, circuit breakers: see Host.End, Cluster.Sweep,
// ejectLocked and the TryAcquire methods.
//
// # Concurrency
//
// Pick, Host.Begin, Host.End and the TryAcquire/Release methods take no lock
// on the normal path: Pick reads an immutable picker snapshot from an
// atomic.Pointer (only its round-robin counters are atomically advanced),
// and End and the breakers use atomics. The snapshot is rebuilt under
// Cluster.mu only when the host set, health or an ejection changes: Update,
// an End that crosses an ejection threshold, Sweep, or a Pick that notices
// (with the injected clock) that an ejection has expired. That Pick only
// tries the lock and uses the old snapshot if it is taken.
//
// Observer callbacks are delivered in order, one at a time, after the lock
// is released. When the cluster has outlier detection and
// Options.ManualSweep is false, one goroutine runs Sweep every Interval
// until Close.
package lb

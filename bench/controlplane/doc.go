// Command controlplane benchmarks the control plane's convergence: with S
// services of E endpoints each and C simulated xDS clients (real gRPC ADS
// streams on 127.0.0.1, in a second process), it changes one service's
// endpoints at a time and measures, per change, the time from the new model
// being offered to the control plane (controlplane.Offer) to every affected
// client having ACKed an EDS response that contains the change.
//
// By default (-source offer) the Kubernetes apiserver → informer → model
// latency is not measured: the informer source is not used and the clock
// starts at Offer. With -source kubernetes (kube.go) it is: the bench
// starts a real etcd and kube-apiserver (internal/testcluster), creates the
// model as Nodes (one per zone, topology labels), Namespaces, Services and
// one EndpointSlice per Service with client-go, and runs the source
// `causeway control-plane --source kubernetes` runs (discovery.Kubernetes
// behind a controlplane.Merger; no MCS writer). The clients connect once
// the control plane serves the complete model; each change is one
// EndpointSlice Update, and the clock starts just before the Update call.
// kube-apiserver's and etcd's CPU and peak RSS are reported apart (they
// are the bench's child processes, read from /proc); the cluster is
// stopped when the run ends, on error or interrupt too.
//
// The clients behave like a sidecar: LDS and CDS wildcard, then RDS for
// the route names the listeners name and EDS for the clusters' service
// names, ACKing every response. A change replaces one endpoint address of
// one service with a fresh marker address; a client has converged on the
// change when an EDS response carries the marker (found in the raw
// resource bytes, length-prefixed so a longer address does not match).
//
// With -delta the clients speak incremental xDS (DeltaAggregatedResources:
// LDS and CDS wildcard, RDS and EDS subscribed and unsubscribed by name as
// the listeners and clusters name them, every response ACKed by nonce) and
// keep, per resource, only the names it refers to. -gap (default: the
// debounce) pauses between changes so each arrives after a quiet period.
// -cpuprofile and -memprofile write profiles of the change phase
// (-memprofile also writes F.base at the start of the changes, so
// `go tool pprof -sample_index=alloc_objects -base F.base bench F` shows
// what the changes alone allocated). The report gives, per change, the
// control plane's read and write system calls (/proc/self/io), context
// switches and Go allocations (counters.go).
//
// The clients run in a second process (the bench re-executes itself with
// -client-runner and commands it over stdin/stdout, fleet.go), so the
// reported CPU, RSS and heap are the control plane's alone; the clients'
// process CPU and RSS are reported apart. Convergence is timed on the wall
// clock, which both processes read from the same kernel: the bench takes
// it just before Offer, each client right after sending its ACK.
// -in-process puts the clients back in the bench's process (the tests do).
//
// The whole run is bounded by -max-duration (default 170s): changes not
// started by then are skipped and reported.
//
// Concurrency: one goroutine per client reads and writes its stream; the
// tracker (track.go) is shared and locked; the current change is published
// through an atomic pointer.
package main

// Package discovery owns one cluster's truth: it reads Services,
// EndpointSlices, Nodes (locality), Pods (service accounts, readiness),
// Namespaces and MCS ServiceExports, and turns them into *model.Snapshot
// values for the rest of the control plane.
//
// # Sources
//
// A Source runs until its context ends and calls its emit function with a
// complete, canonical, validated snapshot each time the truth changes (a
// no-op change, by model.Snapshot.Equal, emits nothing). The first snapshot
// is emitted once the source has read everything, even when it is empty.
//
//   - Folder (local mode, this package): a directory of Kubernetes YAML,
//     polled every Interval (default 500ms) on an injected ticker. See
//     folder.go for the error contract.
//   - Kubernetes (informer.go): client-go shared informers on a
//     kube-apiserver. It fills the same Objects, applies the same checks
//     and calls the same Build, so both sources produce the same model
//     (BuildWith with a BuildMemo: only the services whose objects changed
//     are built again; the same result as Build).
//     PodLocality (podlocality.go) answers, from its caches, the locality
//     of a pod as Build would give its endpoints: the control plane's
//     xds.PodLocator for sidecars that send none.
//
// Build (build.go) is the pure function from typed Kubernetes objects to
// the model; it is where locality, identity and readiness are decided.
//
// # Concurrency
//
// A Folder's or a Kubernetes source's Run owns its state: emit and
// OnProblems are called on Run's goroutine, in order, never concurrently.
// Kubernetes informer callbacks run on client-go's goroutines and only
// enqueue. Problems and PodLocality may be called from any goroutine.
package discovery

import (
	"context"

	"github.com/causewaymesh/causeway/internal/model"
)

// Source produces one cluster's model.
type Source interface {
	// Run calls emit with each new snapshot (never the same truth twice in
	// a row) until ctx ends; it returns ctx's error or a fatal one.
	Run(ctx context.Context, emit func(*model.Snapshot)) error
}

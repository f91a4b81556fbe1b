// Package controlplane wires one cluster's control plane: a discovery
// Source emits model snapshots; after a debounce (default 100ms, the timer
// injected) the newest snapshot is translated per connected node
// (internal/xds.Translate, memoized per node class: nodes with the same
// namespace, cluster, network, locality, outbound IP and kind get the same
// resources) and published on the ADS server (internal/xds.Server).
//
// Nodes are learnt from the first request of each stream. A node whose
// metadata is missing or wrong (xds.NodeFromProto) is refused: the stream
// ends with codes.InvalidArgument and the reason, and the refusal is logged
// and counted. A NACK is logged with the node id, type and error, and
// counted by type and node. When a node's last stream closes its resources
// are forgotten.
//
// Concurrency: Run owns the debounce loop; go-control-plane calls the
// stream callbacks from its own goroutines. c.mu serialises the node table,
// the current model and publishing, so a node that connects during a push
// is translated against the same model as everyone else.
package controlplane

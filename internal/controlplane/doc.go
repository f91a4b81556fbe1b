// Package controlplane wires one cluster's control plane: a discovery
// Source emits model snapshots; the newest is pushed at once when the last
// push started at least the debounce (default 100ms, timer and clock
// injected) ago, else at the end of that window, and is translated once per node class
// (internal/xds.Translator, which rebuilds only the services that changed
// since the class's last translation; a class is nodes with the same
// namespace, cluster, network, locality, outbound IP and kind) and published on the
// ADS server (internal/xds.Server) under the class's key, where every node
// of the class is served from that one snapshot.
//
// Republish translates the served model again for every node, for inputs
// outside the model: with mesh mTLS (xds.TranslateOptions.MTLS) the trust
// plane calls it when the bundle set changes.
//
// Nodes are learnt from the first request of each stream. A node whose
// metadata is missing or wrong (xds.NodeFromProtoLocating) is refused: the stream
// ends with codes.InvalidArgument and the reason, and the refusal is logged
// and counted. A node that sends no locality gets its pod's node's from
// Options.Locate when set (Kubernetes mode: discovery.Kubernetes), else is
// refused. A NACK is logged with the node id, type and error, and
// counted by type and node. When the last node of a class goes, the
// class's snapshot is forgotten.
//
// Merger (merger.go) is the discovery.Source to hand Run when the cluster
// federates or runs the Gateway API controller: it wraps the discovery
// source and emits internal/merge's merge of the local snapshot, the
// federation imports (SetImports) and the route tables (SetRoutes) each
// time an input changes and the merge differs; it merges
// incrementally (merge.Update), and compares and validates only the
// services that are not the last emitted model's by identity
// (Snapshot.Equal, Snapshot.ValidateChanged), so a change of one service
// costs about one service.
// Federation (federation.go)
// is one control plane's federation side on the trust plane: the exporter
// fed with local snapshots (MergerOptions.OnLocal = Federation.Update),
// one importer per peer (their imports merged, then OnImports =
// Merger.SetImports) and one fetcher per peer trust domain. SetPeers
// changes the links at runtime, restarting only those that changed;
// peers.go turns Peer objects (federation/peerapi) into peers
// (PeerFromObject, CombinePeers) and link state into Peer status
// (PeerLinks, PeerObjectStatus). `causeway control-plane` wires them from
// --peer, the Peer objects, --federation-listen, --staleness and
// --gateway-controller (docs/control-plane.md, "Federation";
// docs/federation.md, "Links").
//
// GatewayFolder (gatewayfolder.go) is local mode's Gateway API: fed by
// discovery.Folder's scans (FolderOptions.OnFiles), it reads the folder's
// Gateway API objects, runs gateway.Translate on each change
// and feeds the route tables to Merger.SetRoutes; undecodable files and
// routes or Gateways that are not Accepted are its Problems.
//
// Status (status.go) is the report behind the admin endpoint /status and
// `causeway status`: model size, federation links, trust bundles,
// exported and imported services, and proxies with the config version they
// last ACKed (state-of-the-world streams).
//
// Concurrency: Run owns the debounce loop; go-control-plane calls the
// stream callbacks from its own goroutines. c.mu serialises the node table,
// the current model and publishing, so a node that connects during a push
// is translated against the same model as everyone else.
package controlplane

// Package up is the harness behind `causeway up`: a whole multi-cluster
// federation on one machine, with no Kubernetes, as real processes.
//
// # What it owns
//
// Start reads a Topology (clusters with a region and zones, services with
// replicas per cluster/zone, where the client runs) and, for each cluster:
// writes a root CA (trust domain <cluster>.local), bootstrap tokens (one
// per service account) and a folder of Kubernetes YAML (Nodes, Services,
// Pods, EndpointSlices, ServiceExports); starts `causeway control-plane
// --source folder --mtls` federated with every other cluster (a Peer
// object per peer in the folder's peers.yaml, peers.go: federation, bundle
// endpoint and the peer's roots as the bootstrap bundle, the same YAML a
// Kubernetes user applies; and --eastwest-address naming its gateway); its east-west gateway
// (`causeway-proxy east-west`, gateway.go); then for each pod a demo app
// (internal/up/demoapp) and a `causeway-proxy sidecar` that gets its SVID
// from its cluster's issuer. Start returns once every
// control plane and sidecar is ready, every import holds its peer's
// exported endpoints and the client reaches every exported service by its
// clusterset name.
//
// Addresses are on 127.0.0.0/8 with fixed ports, one loopback IP per
// component, so nothing collides with other processes. With the default
// Options.Block (10; tests running federations side by side pick another,
// which shifts every second octet below by block-10): control plane i on
// 127.10.<i+1>.1 (xDS 15010, admin 15011, SVID issuer 15012, bundle
// endpoint 15013, federation 15014); pod n of cluster i on 127.20.<i+1>.<n>
// (sidecar inbound 8080, sidecar admin 15000, app 18080), its sidecar's
// outbound listeners on 127.30.<i+1>.<n> (node metadata outbound_ip, via a
// one-line bootstrap file); cluster i's east-west gateway on 127.40.<i+1>.1
// (SNI passthrough 15443, admin 15000). Each cluster is a network of its
// own (named after it): peers import per-locality summaries behind its
// gateway, never pod IPs, and reach its pods through the gateway with mTLS
// end to end.
//
// Once the control planes are started, Start writes State (pid, work dir,
// each cluster's admin URL) to <work dir>/status.json and to the pointer
// file StatePath (Options.StateFile), where `causeway status` finds it;
// Close removes both, the pointer only if it is still this process's.
//
// Every child runs in a process group of its own with Pdeathsig SIGKILL;
// Close stops them all (SIGTERM, then SIGKILL after 3s), and Start stops
// what it started when it fails. Errors name the cluster and component,
// the log file and its last lines.
//
// Kill SIGKILLs pods (app and sidecar) and marks their endpoints not ready
// in the folder, as Kubernetes would; KillProcesses leaves the endpoints
// advertised, so only the data plane can fail over; Restore restarts them
// (pods killed by KillProcesses are first marked not ready until the
// client's sidecar dropped them, as Kubernetes does while it restarts
// containers). KillGateway SIGKILLs a cluster's gateway (still advertised)
// and RestoreGateway restarts it. Drive, StartTraffic and Walk send
// bounded traffic through the client's sidecar and count every request.
//
// # Concurrency
//
// A Federation's methods are safe for concurrent use: the pods' and
// gateways' processes, the ready flags and the folder writes are under one
// mutex. A Traffic's sender goroutine and one goroutine per request end
// by Stop (or its context). Each child
// process has one goroutine waiting for it, which ends when it exits.
package up

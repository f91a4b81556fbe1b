// Package proxy is Causeway's data plane: the engine behind causeway-proxy's
// sidecar, ingress and east-west modes. It owns listeners (HTTP/1.1, h2c,
// HTTP/2 over TLS, raw TCP), the request path (routing, fault injection,
// mirroring, retries, timeouts, circuit breaking), upstream connection pools
// and the glue to load balancing (package lb), routing (package router) and
// telemetry (package telemetry).
//
// # Configuration
//
// A Proxy is configured only through Apply, with complete, already-validated
// *config.Snapshot values (package xdsclient produces them from ADS or a
// static bootstrap). Apply must be called from one goroutine (the xDS
// client's update callback); it builds a new immutable state (compiled route
// tables, per-cluster balancers and transports) and publishes it with one
// atomic store. Requests load the state once when they start and use it to
// the end, so a request never sees half of an update. Balancers of clusters
// that survive an update are updated in place and keep their outlier-detection
// state and connection pools; listeners whose address is unchanged keep their
// socket, so no connection is dropped by a config change.
//
// # Listeners
//
// Each listener owns one socket and one accept loop. Every accepted connection
// is dispatched by the listener's current config: TLS is terminated if the
// config says so (certificates are read from SDS secrets at handshake time, so
// rotation needs no restart), then the connection goes to the TCP proxy or is
// served as HTTP by the package's own servers. HTTP/1.1: one goroutine per
// connection that reads each request and runs the handler itself
// (h1server.go; simple heads are parsed by the fast paths of h1wire.go,
// others by net/http; a request's contexts are ctxNodes, reqctx.go). HTTP/2 (h2c with prior knowledge, or h2 by ALPN): one
// goroutine reads frames; when a stream opens, a spare goroutine takes over
// the reading and the reader runs the stream's handler, writing its frames
// itself under the connection's write lock (h2server.go). The HTTP/1.1 loop
// does no background read, so a client that goes away in the middle of a
// request is noticed when a write to it fails; the request upstream stays
// bounded by the route timeout. A client that stops reading (or, on HTTP/2,
// stops opening window) is bounded by the listener's stream_idle_timeout
// (stall.go).
//
// A TLS passthrough listener (config.Listener.SNI) reads each connection's
// ClientHello on a goroutine of its own without answering it, picks the
// destination by server name and forwards every byte to it: the proxy never
// terminates that TLS (east-west gateways, TLSRoutes).
//
// A listener in mTLS PERMISSIVE mode (config.DownstreamTLS.Permissive) reads
// each connection's first byte on a goroutine of its own, off the accept
// loop: a TLS handshake record gets TLS, anything else plaintext.
//
// # Capture mode
//
// After StartCapture (capturemode.go) the proxy binds no listener of its
// configuration: the capture sockets accept the connections the nat rules
// of package capture redirect, read each one's original destination
// (SO_ORIGINAL_DST) and hand it to the listener whose address is that
// destination, through an immutable table swapped by every Apply; the
// listener serves it as if it had accepted it. Unclaimed connections are
// passed through or closed. A small DNS responder answers
// clusterset.local names from the route configuration (capturedns.go).
// See docs/capture.md and docs/xds.md.
//
// # Upstream connections
//
// Each cluster has one transport, rebuilt only when its protocol, TLS or
// connect timeout changes. Plaintext HTTP/1.1 goes through the package's
// own pool (h1client.go); HTTP/2 (h2c, or h2 over TLS: between sidecars
// always) goes through the package's own client (h2client.go), which keeps
// h2Conns multiplexed connections per endpoint, used in turn (h2.go), and
// lets the streams waiting on a connection take turns reading it, so that
// a request at low concurrency reads its own response. A try that fails because its connection was lost (reset or
// closed under it) is retried like a connect failure: at once, in another
// locality, without a retry-budget slot.
//
// # Authorization
//
// RBAC filters (package authz) are compiled with the state. HTTP listeners
// check each request before routing and answer a refusal with 403 (gRPC:
// PERMISSION_DENIED); TCP listeners check each connection after the TLS
// handshake and close a refused one. Both log the reason and count it.
//
// # Lifecycle
//
// Drain stops accepting, marks the proxy not ready, lets in-flight requests
// finish (HTTP/2 clients get GOAWAY; idle HTTP/1.1 keep-alive connections
// are closed at once, busy ones after their current response, which carries
// "Connection: close") and answers requests that arrive on
// draining connections with 503 and "x-causeway-draining: true". Close ends
// everything and waits for every goroutine the proxy started.
package proxy

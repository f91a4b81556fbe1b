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
// rotation needs no restart), then the connection goes to the TCP proxy or to
// an http.Server that speaks HTTP/1.1 and HTTP/2 (h2c, or h2 by ALPN).
//
// # Lifecycle
//
// Drain stops accepting, marks the proxy not ready, lets in-flight requests
// finish (HTTP/2 clients get GOAWAY, HTTP/1.1 keep-alive connections are
// closed after their current response) and answers requests that arrive on
// draining connections with 503 and "x-causeway-draining: true". Close ends
// everything and waits for every goroutine the proxy started.
package proxy

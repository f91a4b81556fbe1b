// Package admin owns the proxy's admin HTTP server: Prometheus metrics
// (/stats/prometheus), readiness (/ready), the configuration dump
// (/config_dump), cluster and endpoint state (/clusters), graceful drain
// (POST /drain), the application's own health probes run by the sidecar
// (/app-health/..., from AppProbesEnv), how the proxy would handle a request
// now (/explain) and an index (/).
//
// The server reads everything through the function-valued Sources it is
// given and holds no proxy state of its own; every Source may be nil, and
// its route then answers 501 naming the missing field. Sources are called
// from the server's request goroutines, concurrently, and must be safe for
// that.
//
// The admin API is unauthenticated: bind it to loopback (New listens on
// exactly the address it is given). /config_dump and /clusters are
// redacted defensively: whatever a source returns, any JSON field named
// private_key, privateKey or key (any case, "_" and "-" ignored) and any
// string holding a PEM private key is replaced by "[redacted]" before it is
// written.
//
// Lifecycle: New listens at once (so Addr is known before Serve); Serve
// blocks until Shutdown, after which it returns nil; Shutdown stops
// accepting, waits for in-flight requests until ctx ends, and closes the
// listener even if Serve was never called.
package admin

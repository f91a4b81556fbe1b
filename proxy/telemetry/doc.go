// Package telemetry owns what the sidecar proxy reports about the traffic
// it carries: Prometheus metrics (Metrics), the JSON access log (AccessLog)
// and the request-id and trace-context headers (PrepareRequestHeaders).
// docs/metrics.md is the user-facing reference; update it with the code.
//
// # Metrics
//
// Metrics is a struct registered on an injected prometheus.Registerer;
// the package keeps no global or package-level mutable state. Every metric
// is named causeway_proxy_<name>. Request metrics carry the source and the
// destination workload, namespace, cluster and locality: for an outbound
// request the source is the proxy's own workload (given to NewMetrics) and
// the destination is the peer; for an inbound request the source is the
// peer and the destination is the proxy itself. destination_service is
// always the cluster the request was routed to.
//
// ObserveRequest is on the per-request path. It resolves the metric
// children of a label tuple once and caches them (see seriesCache); in the
// steady state it takes no lock and allocates nothing. Series are never
// deleted from that cache: label values must come from configuration and
// verified identities, not from free-form request data, or cardinality is
// unbounded. Label values that are not valid UTF-8 are repaired (U+FFFD)
// rather than panicking inside client_golang.
//
// # Access log
//
// AccessLog writes one JSON object per line. Lines are encoded by hand into
// pooled buffers with encoding/json's string escaping, and each line
// reaches the writer in exactly one Write, under a mutex, so the writer
// need not be safe for concurrent use.
//
// # Trace headers
//
// PrepareRequestHeaders implements W3C Trace Context propagation for a
// proxy hop, with B3 headers accepted as a source of a trace id. Randomness
// is injected so tests are deterministic.
//
// # Concurrency
//
// Every exported method of Metrics and AccessLog is safe for concurrent
// use. PrepareRequestHeaders mutates only the header map it is given; the
// rnd function must be safe for concurrent use if the caller shares it.
package telemetry

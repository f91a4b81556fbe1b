package telemetry

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric name: causeway_proxy_<name>.
const Namespace = "causeway_proxy"

// Direction label values.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
)

// Protocol label values.
const (
	ProtocolHTTP1 = "http1"
	ProtocolHTTP2 = "http2"
	ProtocolGRPC  = "grpc"
	ProtocolTCP   = "tcp"
)

// Fault kinds for Fault.
const (
	FaultDelay = "delay"
	FaultAbort = "abort"
)

// Circuit-breaker limits for CircuitOpen.
const (
	LimitConnections = "connections"
	LimitPending     = "pending"
	LimitRequests    = "requests"
	LimitRetries     = "retries"
)

// DurationBuckets are the request_duration_seconds buckets: 100µs to 30s,
// roughly 1-2.5-5 per decade.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5,
	10, 30,
}

// DurationBuckets returns a copy of the request_duration_seconds bucket
// upper bounds, in seconds.
func DurationBuckets() []float64 { return append([]float64(nil), durationBuckets...) }

// Workload names one side of a request for metric labels. Locality is the
// printable region/zone/subzone (config.Locality.String()).
type Workload struct {
	Name, Namespace, Cluster, Locality string
}

// RequestInfo is one finished request (or TCP connection) as seen by the
// proxy. The source and destination labels are derived from Direction:
// outbound: source = the proxy's own workload, destination = Peer;
// inbound: source = Peer, destination = the proxy's own workload.
type RequestInfo struct {
	Direction  string   // DirectionInbound or DirectionOutbound
	Peer       Workload // the other side
	Service    string   // destination_service: the cluster name
	Code       int      // HTTP status; 0 for TCP
	GRPCStatus string   // grpc-status for gRPC, "" otherwise
	Protocol   string   // ProtocolHTTP1, ProtocolHTTP2, ProtocolGRPC, ProtocolTCP
	Duration   time.Duration
	ReqBytes   int64
	RespBytes  int64
}

// Endpoint names one upstream endpoint for outlier-ejection metrics.
type Endpoint struct {
	Service  string // destination_service: the cluster name
	Address  string // host:port
	Cluster  string // destination_cluster: the Kubernetes cluster
	Locality string // destination_locality
}

// requestLabels are the labels of every request metric, in order.
var requestLabels = []string{
	"direction",
	"source_workload", "source_namespace", "source_cluster", "source_locality",
	"destination_service",
	"destination_workload", "destination_namespace", "destination_cluster", "destination_locality",
	"response_code", "protocol",
}

// reqKey is the raw (unsanitised) label tuple of a request; it keys the
// cache of resolved children.
type reqKey struct {
	dir, service, grpc, proto string
	peer                      Workload
	code                      int
}

// reqChildren are the resolved series of one label tuple.
type reqChildren struct {
	requests  prometheus.Counter
	duration  prometheus.Observer
	reqBytes  prometheus.Counter
	respBytes prometheus.Counter
}

type connKey struct{ listener, direction string }

type ejectKey struct {
	ep     Endpoint
	reason string
}

// Metrics holds every metric of one proxy. It is registered on the
// registerer given to NewMetrics and never touches a global registry. All
// methods are safe for concurrent use.
type Metrics struct {
	self Workload

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqBytes  *prometheus.CounterVec
	respBytes *prometheus.CounterVec

	connsActive     *prometheus.GaugeVec
	connectFailures *prometheus.CounterVec
	ejections       *prometheus.CounterVec
	ejectionsActive *prometheus.GaugeVec
	failoverChanges *prometheus.CounterVec
	failoverLevel   *prometheus.GaugeVec
	retries         *prometheus.CounterVec
	circuitOpen     *prometheus.CounterVec
	configVersion   *prometheus.GaugeVec
	configUpdates   *prometheus.CounterVec
	configRejects   *prometheus.CounterVec
	mirrors         *prometheus.CounterVec
	faults          *prometheus.CounterVec
	authzDenied     *prometheus.CounterVec

	// Resolved children per label tuple; the steady state is a lock-free,
	// allocation-free map read.
	seed      maphash.Seed
	reqCache  seriesCache[reqKey, *reqChildren]
	connCache seriesCache[connKey, prometheus.Gauge]

	mu           sync.Mutex        // guards the maps below (cold paths)
	activeEjects map[ejectKey]int  // outstanding ejections per series
	failoverSeen map[string]uint32 // last level per service
	lastVersion  map[string]string // last version per type URL
}

// NewMetrics creates the proxy's metrics and registers them on reg. self is
// the proxy's own workload: the source of outbound requests and the
// destination of inbound ones. It fails if any metric is already
// registered on reg (one Metrics per registry).
func NewMetrics(reg prometheus.Registerer, self Workload) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("telemetry.NewMetrics: registerer is nil; pass a *prometheus.Registry")
	}
	grpcLabels := append(append([]string(nil), requestLabels...), "grpc_status")
	m := &Metrics{
		self: self,
		seed: maphash.MakeSeed(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "requests_total",
			Help: "Requests (and TCP connections) completed by the proxy.",
		}, grpcLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "request_duration_seconds",
			Help:    "Time from the first request byte to the last response byte.",
			Buckets: durationBuckets,
		}, requestLabels),
		reqBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "request_bytes_total",
			Help: "Request body bytes received from the downstream (TCP: bytes sent upstream).",
		}, requestLabels),
		respBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "response_bytes_total",
			Help: "Response body bytes sent to the downstream (TCP: bytes received from upstream).",
		}, requestLabels),
		connsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "connections_active",
			Help: "Downstream connections currently open, by listener.",
		}, []string{"listener", "direction"}),
		connectFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "upstream_connect_failures_total",
			Help: "Failed attempts to connect to an upstream endpoint.",
		}, []string{"destination_service", "destination_cluster", "destination_locality"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "outlier_ejections_total",
			Help: "Endpoints ejected by outlier detection.",
		}, []string{"destination_service", "endpoint", "destination_cluster", "destination_locality", "reason"}),
		ejectionsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "outlier_ejections_active",
			Help: "Endpoints currently ejected by outlier detection.",
		}, []string{"destination_service", "endpoint", "destination_cluster", "destination_locality", "reason"}),
		failoverChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "failover_level_changes_total",
			Help: "Changes of the lowest priority level receiving traffic.",
		}, []string{"destination_service"}),
		failoverLevel: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "failover_level",
			Help: "Lowest (least preferred) priority level currently receiving traffic; 0 means no failover.",
		}, []string{"destination_service"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "retries_total",
			Help: "Upstream retries, by what triggered them.",
		}, []string{"destination_service", "reason"}),
		circuitOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "circuit_breaker_open_total",
			Help: "Requests or connections refused because a circuit-breaker limit was reached.",
		}, []string{"destination_service", "limit"}),
		configVersion: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "config_version",
			Help: "Always 1; the version label is the last accepted version of the resource type.",
		}, []string{"type_url", "version"}),
		configUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "config_updates_total",
			Help: "xDS updates accepted (ACKed), by resource type.",
		}, []string{"type_url"}),
		configRejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "config_rejections_total",
			Help: "xDS updates rejected (NACKed), by resource type.",
		}, []string{"type_url"}),
		mirrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "mirror_requests_total",
			Help: "Requests copied to a mirror cluster.",
		}, []string{"destination_service"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "fault_injected_total",
			Help: "Faults injected by route fault policies.",
		}, []string{"kind"}),
		authzDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "authz_denied_total",
			Help: "Requests and TCP connections refused by an RBAC authorization filter, by listener and policy (\"(no allow match)\" when no ALLOW policy matched).",
		}, []string{"listener", "policy"}),
		activeEjects: map[ejectKey]int{},
		failoverSeen: map[string]uint32{},
		lastVersion:  map[string]string{},
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.duration, m.reqBytes, m.respBytes,
		m.connsActive, m.connectFailures, m.ejections, m.ejectionsActive,
		m.failoverChanges, m.failoverLevel, m.retries, m.circuitOpen,
		m.configVersion, m.configUpdates, m.configRejects, m.mirrors, m.faults, m.authzDenied,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry.NewMetrics: registering %s metrics: %w (create one Metrics per registry)", Namespace, err)
		}
	}
	return m, nil
}

// Self returns the workload the metrics were created for.
func (m *Metrics) Self() Workload { return m.self }

// ObserveRequest records one finished request: requests_total,
// request_duration_seconds, request_bytes_total and response_bytes_total.
// After the first request of a label tuple it does not allocate.
func (m *Metrics) ObserveRequest(ri *RequestInfo) {
	k := reqKey{dir: ri.Direction, service: ri.Service, grpc: ri.GRPCStatus, proto: ri.Protocol, peer: ri.Peer, code: ri.Code}
	c := m.reqCache.get(k.hash(m.seed), k, m, resolveRequest)
	c.requests.Inc()
	c.duration.Observe(ri.Duration.Seconds())
	if ri.ReqBytes > 0 {
		c.reqBytes.Add(float64(ri.ReqBytes))
	}
	if ri.RespBytes > 0 {
		c.respBytes.Add(float64(ri.RespBytes))
	}
}

// resolveRequest builds the children of k. Label values are made valid
// UTF-8, as Prometheus requires.
func resolveRequest(m *Metrics, k reqKey) *reqChildren {
	src, dst := m.self, k.peer
	if k.dir == DirectionInbound {
		src, dst = k.peer, m.self
	}
	code := ""
	if k.code != 0 {
		code = strconv.Itoa(k.code)
	}
	lv := []string{
		k.dir,
		src.Name, src.Namespace, src.Cluster, src.Locality,
		k.service,
		dst.Name, dst.Namespace, dst.Cluster, dst.Locality,
		code, k.proto,
	}
	sanitize(lv)
	return &reqChildren{
		requests:  m.requests.WithLabelValues(append(lv, validUTF8(k.grpc))...),
		duration:  m.duration.WithLabelValues(lv...),
		reqBytes:  m.reqBytes.WithLabelValues(lv...),
		respBytes: m.respBytes.WithLabelValues(lv...),
	}
}

// ConnOpened counts a downstream connection accepted on listener.
func (m *Metrics) ConnOpened(listener, direction string) { m.connGauge(listener, direction).Inc() }

// ConnClosed counts a downstream connection on listener as closed.
func (m *Metrics) ConnClosed(listener, direction string) { m.connGauge(listener, direction).Dec() }

func (m *Metrics) connGauge(listener, direction string) prometheus.Gauge {
	k := connKey{listener, direction}
	return m.connCache.get(k.hash(m.seed), k, m, resolveConn)
}

func resolveConn(m *Metrics, k connKey) prometheus.Gauge {
	return m.connsActive.WithLabelValues(validUTF8(k.listener), validUTF8(k.direction))
}

// ConnectFailure counts a failed connection attempt to an endpoint of
// service in the given Kubernetes cluster and locality.
func (m *Metrics) ConnectFailure(service, cluster, locality string) {
	m.connectFailures.WithLabelValues(validUTF8(service), validUTF8(cluster), validUTF8(locality)).Inc()
}

// Ejected counts an outlier ejection of ep for reason (e.g.
// "consecutive_5xx", "consecutive_gateway_failure", "success_rate") and
// raises outlier_ejections_active.
func (m *Metrics) Ejected(ep Endpoint, reason string) {
	lv := ejectLabels(ep, reason)
	m.ejections.WithLabelValues(lv...).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	k := ejectKey{ep, reason}
	m.activeEjects[k]++
	m.ejectionsActive.WithLabelValues(lv...).Set(float64(m.activeEjects[k]))
}

// Unejected records that ep, ejected earlier for reason, is back. The
// active series is removed when no ejection of it is outstanding; an
// Unejected without a matching Ejected is ignored.
func (m *Metrics) Unejected(ep Endpoint, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := ejectKey{ep, reason}
	n, ok := m.activeEjects[k]
	if !ok {
		return
	}
	lv := ejectLabels(ep, reason)
	if n <= 1 {
		delete(m.activeEjects, k)
		m.ejectionsActive.DeleteLabelValues(lv...)
		return
	}
	m.activeEjects[k] = n - 1
	m.ejectionsActive.WithLabelValues(lv...).Set(float64(n - 1))
}

func ejectLabels(ep Endpoint, reason string) []string {
	lv := []string{ep.Service, ep.Address, ep.Cluster, ep.Locality, reason}
	sanitize(lv)
	return lv
}

// PriorityChanged sets failover_level for service to level, the lowest
// (numerically highest) priority now receiving traffic, and counts a
// change in failover_level_changes_total when level differs from the last
// value reported for service (a service starts at level 0, so a first
// report of 0 is not a change).
func (m *Metrics) PriorityChanged(service string, level uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.failoverSeen[service]
	m.failoverSeen[service] = level
	s := validUTF8(service)
	m.failoverLevel.WithLabelValues(s).Set(float64(level))
	if prev != level {
		m.failoverChanges.WithLabelValues(s).Inc()
	}
}

// Retry counts a retry towards service; reason is the condition that
// triggered it (e.g. "5xx", "connect-failure", "reset").
func (m *Metrics) Retry(service, reason string) {
	m.retries.WithLabelValues(validUTF8(service), validUTF8(reason)).Inc()
}

// CircuitOpen counts a refusal by the circuit breaker of service; limit is
// one of LimitConnections, LimitPending, LimitRequests, LimitRetries.
func (m *Metrics) CircuitOpen(service, limit string) {
	m.circuitOpen.WithLabelValues(validUTF8(service), validUTF8(limit)).Inc()
}

// ConfigAccepted counts an accepted update of typeURL and makes version the
// only config_version series of that type.
func (m *Metrics) ConfigAccepted(typeURL, version string) {
	t, v := validUTF8(typeURL), validUTF8(version)
	m.configUpdates.WithLabelValues(t).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.lastVersion[t]; ok && old != v {
		m.configVersion.DeleteLabelValues(t, old)
	}
	m.lastVersion[t] = v
	m.configVersion.WithLabelValues(t, v).Set(1)
}

// ConfigRejected counts a rejected update of typeURL.
func (m *Metrics) ConfigRejected(typeURL string) {
	m.configRejects.WithLabelValues(validUTF8(typeURL)).Inc()
}

// Mirror counts a request copied to the mirror cluster service.
func (m *Metrics) Mirror(service string) {
	m.mirrors.WithLabelValues(validUTF8(service)).Inc()
}

// Fault counts an injected fault; kind is FaultDelay or FaultAbort.
func (m *Metrics) Fault(kind string) {
	m.faults.WithLabelValues(validUTF8(kind)).Inc()
}

// AuthzDenied counts a request or connection refused on listener by an
// RBAC filter; policy is the matching DENY policy or "(no allow match)".
func (m *Metrics) AuthzDenied(listener, policy string) {
	m.authzDenied.WithLabelValues(validUTF8(listener), validUTF8(policy)).Inc()
}

// sanitize makes every label value valid UTF-8 in place.
func sanitize(lv []string) {
	for i, v := range lv {
		lv[i] = validUTF8(v)
	}
}

// validUTF8 returns s with invalid bytes replaced by U+FFFD: Prometheus
// refuses (panics in WithLabelValues) label values that are not UTF-8.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

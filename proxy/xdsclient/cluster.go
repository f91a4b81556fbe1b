package xdsclient

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/causewaymesh/causeway/proxy/config"
	clusterv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/cluster/v3"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
	tlsv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/upstreams/http/v3"
)

// httpProtocolOptionsKey is the typed_extension_protocol_options key that
// selects the upstream HTTP version.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// TranslateCluster validates c and translates it. All problems are
// reported together, each naming the cluster and field.
//
// m is Envoy's Cluster: the sidecar's lean copy (package leanxds) or
// any other Go type of it, such as go-control-plane's.
func TranslateCluster(m proto.Message) (*config.Cluster, error) {
	return translateAs(m, "cluster", translateCluster)
}

func translateCluster(cl *clusterv3.Cluster) (*config.Cluster, error) {
	c := newCollector("cluster", cl.GetName())
	if cl == nil {
		c.addf("", "send a Cluster", "nil resource")
		return nil, c.err()
	}
	if !c.validate("", cl) {
		return nil, c.err()
	}
	out := c.cluster(cl)
	if c.failed() {
		return nil, c.err()
	}
	return out, nil
}

func (c *collector) cluster(cl *clusterv3.Cluster) *config.Cluster {
	c.only("", cl, "name", "type", "eds_cluster_config", "load_assignment", "lb_policy", "connect_timeout",
		"typed_extension_protocol_options", "http2_protocol_options", "transport_socket", "common_lb_config",
		"ring_hash_lb_config", "outlier_detection", "circuit_breakers",
		// Harmless to ignore (docs/xds.md):
		"alt_stat_name", "dns_lookup_family", "dns_refresh_rate", "respect_dns_ttl", "per_connection_buffer_limit_bytes",
		"metadata", "upstream_connection_options", "ignore_health_on_host_removal", "track_cluster_stats")
	out := &config.Cluster{
		Name:           cl.GetName(),
		ConnectTimeout: 5 * time.Second,
		PanicThreshold: 50,
		RingSize:       1024,
	}
	if cl.GetName() == "" {
		c.addf("name", "name the cluster", "empty name")
	}
	typ := clusterv3.Cluster_STATIC // Envoy's default
	switch t := cl.GetClusterDiscoveryType().(type) {
	case *clusterv3.Cluster_Type:
		typ = t.Type
	case *clusterv3.Cluster_ClusterType:
		c.unsupported("cluster_type", t.ClusterType.GetName(), "use type EDS, STATIC or STRICT_DNS")
	}
	switch typ {
	case clusterv3.Cluster_EDS:
		ec := cl.GetEdsClusterConfig()
		c.only("eds_cluster_config", ec, "service_name", "eds_config")
		out.EDSServiceName = ec.GetServiceName()
		if cl.GetLoadAssignment() != nil {
			c.addf("load_assignment", "remove load_assignment; endpoints of an EDS cluster arrive by EDS", "load_assignment on an EDS cluster")
		}
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS:
		if cl.GetClusterType() != nil {
			break
		}
		if cl.GetEdsClusterConfig() != nil {
			c.addf("eds_cluster_config", "remove it or use type EDS", "eds_cluster_config on a %s cluster", typ)
		}
		la := cl.GetLoadAssignment()
		if la == nil {
			c.addf("load_assignment", "list the endpoints in load_assignment", "%s cluster without load_assignment", typ)
			break
		}
		// STRICT_DNS: host names are kept as host:port and resolved by the
		// dialer on each connection; there is no DNS refresh loop.
		out.Static = c.loadAssignment("load_assignment", la, typ == clusterv3.Cluster_STATIC)
		if out.Static.Cluster == "" {
			out.Static.Cluster = cl.GetName()
		}
	default:
		c.unsupported("type", typ.String(), "use EDS, STATIC or STRICT_DNS")
	}
	switch cl.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.LB = config.RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		out.LB = config.LeastRequest
	case clusterv3.Cluster_RING_HASH:
		out.LB = config.RingHash
	case clusterv3.Cluster_MAGLEV:
		out.LB = config.Maglev
	default:
		c.unsupported("lb_policy", cl.GetLbPolicy().String(), "use ROUND_ROBIN, LEAST_REQUEST, RING_HASH or MAGLEV")
	}
	if ct := cl.GetConnectTimeout(); ct != nil {
		out.ConnectTimeout = ct.AsDuration()
	}
	//lint:ignore SA1019 the deprecated field is still what older control planes send
	if cl.GetHttp2ProtocolOptions() != nil {
		out.Protocol = config.HTTP2
	}
	for key, a := range cl.GetTypedExtensionProtocolOptions() {
		p := fmt.Sprintf("typed_extension_protocol_options[%q]", key)
		if key != httpProtocolOptionsKey {
			c.unsupported(p, "", "use "+httpProtocolOptionsKey)
			continue
		}
		var h httpv3.HttpProtocolOptions
		if !c.unpack(p, a, &h) {
			continue
		}
		c.only(p, &h, "explicit_http_config", "common_http_protocol_options")
		ex := h.GetExplicitHttpConfig()
		if ex == nil {
			c.unsupported(p+".upstream_protocol_options", "", "use explicit_http_config")
			continue
		}
		c.only(join(p, "explicit_http_config"), ex, "http_protocol_options", "http2_protocol_options")
		switch ex.GetProtocolConfig().(type) {
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions:
			out.Protocol = config.HTTP2
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions:
			out.Protocol = config.HTTP1
		}
	}
	if ts := cl.GetTransportSocket(); ts != nil {
		var u tlsv3.UpstreamTlsContext
		if c.transportSocket("transport_socket", ts, &u) {
			out.TLS = c.upstreamTLS("transport_socket.typed_config", &u)
		}
	}
	if lc := cl.GetCommonLbConfig(); lc != nil {
		c.only("common_lb_config", lc, "healthy_panic_threshold", "locality_weighted_lb_config")
		if t := lc.GetHealthyPanicThreshold(); t != nil {
			out.PanicThreshold = t.GetValue()
		}
	}
	if rh := cl.GetRingHashLbConfig(); rh != nil {
		c.only("ring_hash_lb_config", rh, "maximum_ring_size", "minimum_ring_size", "hash_function")
		if m := rh.GetMaximumRingSize(); m != nil {
			out.RingSize = int(min(m.GetValue(), 1<<23))
		}
		if out.LB != config.RingHash {
			c.addf("ring_hash_lb_config", "set lb_policy RING_HASH or remove it", "ring_hash_lb_config with lb_policy %s", cl.GetLbPolicy())
		}
	}
	if od := cl.GetOutlierDetection(); od != nil {
		out.Outlier = c.outlier("outlier_detection", od)
	}
	if cb := cl.GetCircuitBreakers(); cb != nil {
		out.Circuit = c.circuitBreakers("circuit_breakers", cb)
	}
	return out
}

func u32(w *wrapperspb.UInt32Value, def uint32) int {
	if w == nil {
		return int(def)
	}
	return int(w.GetValue())
}

func dur(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

// outlier translates outlier detection with Envoy's defaults. A detector
// whose enforcing_* percentage is 0 is disabled, as in Envoy (which then
// only counts); consecutive gateway failures are enforced only when
// enforcing_consecutive_gateway_failure is set, as Envoy's default is 0.
func (c *collector) outlier(path string, od *clusterv3.OutlierDetection) *config.OutlierDetection {
	c.only(path, od, "consecutive_5xx", "consecutive_gateway_failure", "interval", "base_ejection_time",
		"max_ejection_time", "max_ejection_percent", "success_rate_minimum_hosts", "success_rate_request_volume",
		"success_rate_stdev_factor", "enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure",
		"enforcing_success_rate", "max_ejection_time_jitter")
	out := &config.OutlierDetection{
		Consecutive5xx:            u32(od.GetConsecutive_5Xx(), 5),
		ConsecutiveGatewayFailure: u32(od.GetConsecutiveGatewayFailure(), 5),
		Interval:                  dur(od.GetInterval(), 10*time.Second),
		BaseEjectionTime:          dur(od.GetBaseEjectionTime(), 30*time.Second),
		MaxEjectionTime:           dur(od.GetMaxEjectionTime(), 300*time.Second),
		MaxEjectionPercent:        float64(u32(od.GetMaxEjectionPercent(), 10)),
		SuccessRateMinimumHosts:   u32(od.GetSuccessRateMinimumHosts(), 5),
		SuccessRateRequestVolume:  u32(od.GetSuccessRateRequestVolume(), 100),
		SuccessRateStdevFactor:    float64(u32(od.GetSuccessRateStdevFactor(), 1900)),
	}
	if u32(od.GetEnforcingConsecutive_5Xx(), 100) == 0 {
		out.Consecutive5xx = 0
	}
	if u32(od.GetEnforcingConsecutiveGatewayFailure(), 0) == 0 {
		out.ConsecutiveGatewayFailure = 0
	}
	if u32(od.GetEnforcingSuccessRate(), 100) == 0 {
		out.SuccessRateMinimumHosts = 0
	}
	if out.MaxEjectionPercent > 100 {
		c.addf(join(path, "max_ejection_percent"), "use 0..100", "%v%% out of range", out.MaxEjectionPercent)
	}
	if out.MaxEjectionTime < out.BaseEjectionTime {
		c.addf(join(path, "max_ejection_time"), "make max_ejection_time at least base_ejection_time", "max_ejection_time %v below base_ejection_time %v", out.MaxEjectionTime, out.BaseEjectionTime)
	}
	return out
}

// circuitBreakers translates the DEFAULT priority thresholds; HIGH
// priority thresholds are ignored (Causeway has one priority).
func (c *collector) circuitBreakers(path string, cb *clusterv3.CircuitBreakers) config.CircuitBreakers {
	c.only(path, cb, "thresholds")
	var out config.CircuitBreakers
	seen := false
	for i, t := range cb.GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		p := idx(join(path, "thresholds"), i)
		if seen {
			c.addf(p, "send one DEFAULT threshold", "second DEFAULT priority threshold")
		}
		seen = true
		c.only(p, t, "priority", "max_connections", "max_pending_requests", "max_requests", "max_retries", "retry_budget", "track_remaining")
		out.MaxConnections = u32(t.GetMaxConnections(), 1024)
		out.MaxPendingRequests = u32(t.GetMaxPendingRequests(), 1024)
		out.MaxRequests = u32(t.GetMaxRequests(), 1024)
		out.MaxRetries = u32(t.GetMaxRetries(), 3)
		if rb := t.GetRetryBudget(); rb != nil {
			c.only(join(p, "retry_budget"), rb, "budget_percent", "min_retry_concurrency")
			out.RetryBudgetPercent = 20
			if bp := rb.GetBudgetPercent(); bp != nil {
				out.RetryBudgetPercent = bp.GetValue()
			}
			out.MinRetryConcurrency = u32(rb.GetMinRetryConcurrency(), 3)
		}
	}
	return out
}

package xdsclient

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/leanxds"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
	listenerv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/listener/v3"
	faultv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/filters/http/fault/v3"
	rbachttpv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/transport_sockets/tls/v3"
)

// ignoredListenerFilter reports listener filters that only sniff and are
// harmless to ignore: Causeway listeners have one filter chain and inspect
// TLS themselves.
func ignoredListenerFilter(typeURL string) bool {
	switch typeURL {
	case "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
		"type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector":
		return true
	}
	return false
}

// TranslateListener validates l and translates it. All problems are
// reported together, each naming the listener and field.
//
// m is Envoy's Listener: the sidecar's lean copy (package leanxds) or
// any other Go type of it, such as go-control-plane's.
func TranslateListener(m proto.Message) (*config.Listener, error) {
	return translateAs(m, "listener", translateListener)
}

func translateListener(l *listenerv3.Listener) (*config.Listener, error) {
	c := newCollector("listener", l.GetName())
	if l == nil {
		c.addf("", "send a Listener", "nil resource")
		return nil, c.err()
	}
	if !c.validate("", l) {
		return nil, c.err()
	}
	out := c.listener(l)
	if c.failed() {
		return nil, c.err()
	}
	return out, nil
}

func (c *collector) listener(l *listenerv3.Listener) *config.Listener {
	c.only("", l, "name", "address", "filter_chains", "traffic_direction", "listener_filters",
		"stat_prefix", "per_connection_buffer_limit_bytes", "metadata", "drain_type", "listener_filters_timeout",
		"continue_on_listener_filters_timeout", "enable_reuse_port", "bind_to_port", "ignore_global_conn_limit", "tcp_backlog_size")
	out := &config.Listener{Name: l.GetName()}
	if l.GetName() == "" {
		c.addf("name", "name the listener", "empty name")
	}
	out.Address = c.socketAddress("address", l.GetAddress(), true)
	switch l.GetTrafficDirection() {
	case corev3.TrafficDirection_INBOUND:
		out.Direction = config.Inbound
	case corev3.TrafficDirection_OUTBOUND, corev3.TrafficDirection_UNSPECIFIED:
		out.Direction = config.Outbound
	}
	if b := l.GetBindToPort(); b != nil && !b.GetValue() {
		c.unsupported("bind_to_port", "false", "Causeway listeners always bind their address")
	}
	for i, lf := range l.GetListenerFilters() {
		p := named("listener_filters", i, lf.GetName())
		if !ignoredListenerFilter(lf.GetTypedConfig().GetTypeUrl()) {
			c.unsupported(p, lf.GetTypedConfig().GetTypeUrl(), "remove it (only tls_inspector and http_inspector are accepted, and ignored)")
		}
	}
	fcs := l.GetFilterChains()
	switch {
	case len(fcs) == 0:
		c.addf("filter_chains", "send one filter chain (two for mTLS PERMISSIVE, one per server name for TLS passthrough)", "no filter chains")
	case anyServerNames(fcs):
		c.sniChains(fcs, out)
	case len(fcs) == 1:
		c.filterChain("filter_chains[0]", fcs[0], out, false)
	case len(fcs) == 2:
		c.permissiveChains(fcs, out)
	default:
		c.addf("filter_chains", "send one filter chain, two matched on transport_protocol \"tls\" and \"raw_buffer\" for mTLS PERMISSIVE, or chains matched on server_names for TLS passthrough", "%d filter chains", len(fcs))
	}
	return out
}

func anyServerNames(fcs []*listenerv3.FilterChain) bool {
	for _, fc := range fcs {
		if len(fc.GetFilterChainMatch().GetServerNames()) > 0 {
			return true
		}
	}
	return false
}

// sniChains accepts TLS passthrough: chains matched on
// filter_chain_match.server_names (one chain may have none: the default),
// each with a tcp_proxy and no transport socket.
func (c *collector) sniChains(fcs []*listenerv3.FilterChain, out *config.Listener) {
	const fix = "for TLS passthrough give each chain filter_chain_match.server_names (exact or \"*.suffix\"; at most one chain without names), no transport_socket, and a tcp_proxy"
	seen := map[string]int{}
	defaults := 0
	for i, fc := range fcs {
		p := idx("filter_chains", i)
		m := fc.GetFilterChainMatch()
		c.only(join(p, "filter_chain_match"), m, "server_names", "transport_protocol")
		if tp := m.GetTransportProtocol(); tp != "" && tp != "tls" {
			c.addf(join(p, "filter_chain_match.transport_protocol"), fix, "transport_protocol %q", tp)
		}
		if fc.GetTransportSocket() != nil {
			c.unsupported(join(p, "transport_socket"), "on a passthrough chain", fix)
		}
		names := m.GetServerNames()
		if len(names) == 0 {
			defaults++
			if defaults > 1 {
				c.addf(join(p, "filter_chain_match"), fix, "a second chain without server_names")
			}
		}
		for j, n := range names {
			if prev, dup := seen[n]; dup {
				c.addf(idx(join(p, "filter_chain_match.server_names"), j), fix, "server name %q is also in filter_chains[%d]", n, prev)
			}
			seen[n] = i
			if n == "" || strings.Contains(strings.TrimPrefix(n, "*."), "*") {
				c.addf(idx(join(p, "filter_chain_match.server_names"), j), fix, "server name %q: want an exact name or *.suffix", n)
			}
		}
		var one config.Listener
		c.filterChain(p, &listenerv3.FilterChain{Filters: fc.GetFilters()}, &one, false)
		if one.TCP == nil {
			if one.HTTP != nil {
				c.unsupported(join(p, "filters"), "http_connection_manager on a passthrough chain", fix)
			}
			continue
		}
		if len(one.TCP.RBAC) > 0 {
			c.unsupported(join(p, "filters"), "envoy.filters.network.rbac on a passthrough chain", "authorize at the destination, which sees the peer's certificate")
		}
		out.SNI = append(out.SNI, &config.SNIChain{ServerNames: names, TCP: one.TCP})
	}
}

// permissiveChains accepts the mTLS PERMISSIVE shape: two chains with the
// same filters, one matched on transport_protocol "tls" with a TLS
// transport socket, one on "raw_buffer" without.
func (c *collector) permissiveChains(fcs []*listenerv3.FilterChain, out *config.Listener) {
	const fix = "for mTLS PERMISSIVE send two chains with identical filters, one with filter_chain_match.transport_protocol \"tls\" and a TLS transport_socket, one with \"raw_buffer\" and none"
	tlsAt := -1
	for i, fc := range fcs {
		p := idx("filter_chains", i)
		m := fc.GetFilterChainMatch()
		c.only(join(p, "filter_chain_match"), m, "transport_protocol")
		switch m.GetTransportProtocol() {
		case "tls":
			if fc.GetTransportSocket() == nil {
				c.addf(join(p, "transport_socket"), fix, "the \"tls\" chain has no transport socket")
			}
			tlsAt = i
		case "raw_buffer":
			if fc.GetTransportSocket() != nil {
				c.addf(join(p, "transport_socket"), fix, "the \"raw_buffer\" chain has a transport socket")
			}
		default:
			c.addf(join(p, "filter_chain_match.transport_protocol"), fix, "transport_protocol %q", m.GetTransportProtocol())
		}
	}
	if tlsAt < 0 || c.failed() {
		if tlsAt < 0 {
			c.addf("filter_chains", fix, "no chain matches transport_protocol \"tls\"")
		}
		return
	}
	raw := fcs[1-tlsAt]
	if len(raw.GetFilters()) != len(fcs[tlsAt].GetFilters()) {
		c.addf(idx("filter_chains", 1-tlsAt), fix, "the two chains have different filters")
		return
	}
	for i, f := range raw.GetFilters() {
		if !proto.Equal(f, fcs[tlsAt].GetFilters()[i]) {
			c.addf(idx(join(idx("filter_chains", 1-tlsAt), "filters"), i), fix, "the two chains have different filters")
			return
		}
	}
	c.filterChain(idx("filter_chains", tlsAt), fcs[tlsAt], out, true)
	if out.TLS != nil {
		out.TLS.Permissive = true
	}
}

func (c *collector) filterChain(p string, fc *listenerv3.FilterChain, out *config.Listener, matched bool) {
	allowed := []string{"filters", "transport_socket", "name", "metadata", "transport_socket_connect_timeout"}
	if matched {
		allowed = append(allowed, "filter_chain_match")
	}
	c.only(p, fc, allowed...)
	if ts := fc.GetTransportSocket(); ts != nil {
		var d tlsv3.DownstreamTlsContext
		if c.transportSocket(join(p, "transport_socket"), ts, &d) {
			out.TLS = c.downstreamTLS(join(p, "transport_socket.typed_config"), &d)
		}
	}
	filters := fc.GetFilters()
	if len(filters) == 0 {
		c.addf(join(p, "filters"), "add an http_connection_manager or tcp_proxy filter", "no network filters")
	}
	var rbac []*config.RBAC
	for i, f := range filters {
		fp := idx(join(p, "filters"), i)
		c.only(fp, f, "name", "typed_config")
		tc := f.GetTypedConfig()
		if tc == nil {
			c.addf(join(fp, "typed_config"), "set typed_config to an HttpConnectionManager or TcpProxy", "missing typed_config for filter %q", f.GetName())
			continue
		}
		if out.HTTP != nil || out.TCP != nil {
			c.addf(fp, "make http_connection_manager or tcp_proxy the last filter", "filter after the terminal filter")
		}
		switch {
		case leanxds.Is(tc, (*rbacnetv3.RBAC)(nil)):
			var rb rbacnetv3.RBAC
			if c.unpack(join(fp, "typed_config"), tc, &rb) {
				c.only(join(fp, "typed_config"), &rb, "rules", "stat_prefix")
				if r := c.rbacRules(join(fp, "typed_config.rules"), f.GetName(), rb.GetRules(), false); r != nil {
					rbac = append(rbac, r)
				}
			}
		case leanxds.Is(tc, (*hcmv3.HttpConnectionManager)(nil)):
			var h hcmv3.HttpConnectionManager
			if c.unpack(join(fp, "typed_config"), tc, &h) {
				out.HTTP = c.hcm(join(fp, "typed_config"), &h)
			}
		case leanxds.Is(tc, (*tcpproxyv3.TcpProxy)(nil)):
			var t tcpproxyv3.TcpProxy
			if c.unpack(join(fp, "typed_config"), tc, &t) {
				out.TCP = c.tcpProxy(join(fp, "typed_config"), &t)
				out.TCP.RBAC = rbac
			}
		default:
			c.addf(join(fp, "typed_config"), "use envoy.filters.network.rbac, then http_connection_manager or tcp_proxy", "unsupported filter %q (%s)", f.GetName(), tc.GetTypeUrl())
		}
	}
	if out.HTTP != nil && len(rbac) > 0 {
		c.unsupported(join(p, "filters"), "envoy.filters.network.rbac before an http_connection_manager", "put the rules in an envoy.filters.http.rbac HTTP filter instead")
	}
}

// unpack decodes a into m and runs m's proto validation.
func (c *collector) unpack(path string, a *anypb.Any, m interface {
	proto.Message
	ValidateAll() error
}) bool {
	if err := leanxds.UnmarshalAny(a, m); err != nil {
		c.wrap(path, "send a well-formed "+string(leanxds.EnvoyName(m)), err, "cannot decode")
		return false
	}
	return c.validate(path, m)
}

// transportSocket checks that ts is the TLS socket and decodes its config
// into m.
func (c *collector) transportSocket(path string, ts *corev3.TransportSocket, m interface {
	proto.Message
	ValidateAll() error
}) bool {
	c.only(path, ts, "name", "typed_config")
	tc := ts.GetTypedConfig()
	if tc == nil || !leanxds.Is(tc, m) {
		c.unsupported(path, ts.GetName()+" "+tc.GetTypeUrl(), "use "+tlsSocketName+" with a "+string(leanxds.EnvoyName(m)))
		return false
	}
	return c.unpack(join(path, "typed_config"), tc, m)
}

func (c *collector) hcm(path string, h *hcmv3.HttpConnectionManager) *config.HTTPListener {
	c.only(path, h, "stat_prefix", "rds", "route_config", "http_filters", "max_request_headers_kb",
		"request_headers_timeout", "stream_idle_timeout", "common_http_protocol_options", "generate_request_id",
		// Harmless to ignore (docs/xds.md):
		"codec_type", "use_remote_address", "xff_num_trusted_hops", "access_log", "tracing", "server_name",
		"server_header_transformation", "normalize_path", "merge_slashes", "forward_client_cert_details",
		"set_current_client_cert_details", "http_protocol_options", "http2_protocol_options",
		"internal_address_config")
	out := &config.HTTPListener{StatPrefix: h.GetStatPrefix(), GenerateRequestID: true}
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		c.only(join(path, "rds"), rs.Rds, "route_config_name", "config_source")
		out.RouteConfigName = rs.Rds.GetRouteConfigName()
		if out.RouteConfigName == "" {
			c.addf(join(path, "rds.route_config_name"), "name the RouteConfiguration", "empty route_config_name")
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
		out.Routes = c.routeConfig(join(path, "route_config"), rs.RouteConfig)
	case nil:
		c.addf(path, "set rds.route_config_name or route_config", "no routes")
	}
	if kb := h.GetMaxRequestHeadersKb(); kb != nil {
		out.MaxRequestHeadersBytes = int(kb.GetValue()) * 1024
	}
	out.RequestHeadersTimeout = duration(h.GetRequestHeadersTimeout())
	if d := h.GetStreamIdleTimeout(); d != nil {
		switch v := duration(d); {
		case v < 0:
			c.addf(join(path, "stream_idle_timeout"), "give a positive duration, or 0s to disable it", "negative duration %s", v)
		case v == 0:
			out.StreamIdleTimeout = -1 // 0s disables it, as in Envoy
		default:
			out.StreamIdleTimeout = v
		}
	}
	if o := h.GetCommonHttpProtocolOptions(); o != nil {
		c.only(join(path, "common_http_protocol_options"), o, "idle_timeout")
		out.IdleTimeout = duration(o.GetIdleTimeout())
	}
	if g := h.GetGenerateRequestId(); g != nil {
		out.GenerateRequestID = g.GetValue()
	}
	filters := h.GetHttpFilters()
	routerAt := -1
	for i, f := range filters {
		fp := named(join(path, "http_filters"), i, f.GetName())
		c.only(fp, f, "name", "typed_config", "is_optional")
		tc := f.GetTypedConfig()
		switch {
		case leanxds.Is(tc, (*routerv3.Router)(nil)) || (tc == nil && f.GetName() == "envoy.filters.http.router"):
			routerAt = i
			if tc != nil {
				var r routerv3.Router
				if c.unpack(join(fp, "typed_config"), tc, &r) {
					c.only(join(fp, "typed_config"), &r, "dynamic_stats", "suppress_envoy_headers", "start_child_span")
				}
			}
		case leanxds.Is(tc, (*rbachttpv3.RBAC)(nil)):
			var rb rbachttpv3.RBAC
			if c.unpack(join(fp, "typed_config"), tc, &rb) {
				c.only(join(fp, "typed_config"), &rb, "rules", "rules_stat_prefix")
				if r := c.rbacRules(join(fp, "typed_config.rules"), f.GetName(), rb.GetRules(), true); r != nil {
					out.RBAC = append(out.RBAC, r)
				}
			}
		case leanxds.Is(tc, (*faultv3.HTTPFault)(nil)) || (tc == nil && f.GetName() == faultFilterName):
			if tc != nil {
				var fl faultv3.HTTPFault
				if c.unpack(join(fp, "typed_config"), tc, &fl) && proto.Size(&fl) > 0 {
					c.unsupported(join(fp, "typed_config"), "filter-level fault config", "leave it empty and put the fault in each route's typed_per_filter_config[\""+faultFilterName+"\"]")
				}
			}
		default:
			name := f.GetName()
			if tc != nil {
				name += " (" + tc.GetTypeUrl() + ")"
			}
			c.addf(fp, "use only envoy.filters.http.rbac, "+faultFilterName+" and envoy.filters.http.router", "unsupported HTTP filter %s", strings.TrimSpace(name))
		}
	}
	if routerAt != len(filters)-1 || routerAt < 0 {
		c.addf(join(path, "http_filters"), "end the list with envoy.filters.http.router", "the router filter must be last")
	}
	return out
}

func (c *collector) tcpProxy(path string, t *tcpproxyv3.TcpProxy) *config.TCPListener {
	c.only(path, t, "stat_prefix", "cluster", "idle_timeout", "access_log")
	out := &config.TCPListener{StatPrefix: t.GetStatPrefix(), Cluster: t.GetCluster(), IdleTimeout: duration(t.GetIdleTimeout())}
	if out.Cluster == "" {
		c.addf(join(path, "cluster"), "name the upstream cluster (weighted_clusters is not supported)", "missing cluster")
	}
	return out
}

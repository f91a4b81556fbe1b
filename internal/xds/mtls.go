package xds

import (
	"cmp"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust"
)

// MTLS turns on mesh mutual TLS for Causeway proxies (proxyless gRPC nodes
// are not affected):
//   - every node gets the SDS secret trust.BundleSecretName, a SPIFFE
//     bundle set (envoy.tls.cert_validator.spiffe) of Bundles;
//   - an outbound cluster whose endpoints carry identities originates TLS
//     with the proxy's own SVID (trust.SVIDSecretName, which the proxy
//     makes itself) and accepts only those identities;
//   - a node that declares its inbound ports (metadata inbound_ip and
//     inbound_ports) gets one inbound listener per port that terminates
//     mTLS (STRICT, or PERMISSIVE by metadata mtls_mode), enforces the
//     AuthorizationPolicies of the Service behind the port, and forwards
//     to the application's local address.
type MTLS struct {
	// Bundles returns the trusted roots by trust domain name (the local
	// domain and every federated one). It is called on every translation.
	Bundles func() map[string][]*x509.Certificate
}

// InboundPort is one declared inbound port of a node: connections to
// InboundIP:Port go to the application at App.
type InboundPort struct {
	Port uint32
	App  netip.AddrPort
}

// ParseInboundPorts reads metadata inbound_ports: "8080=127.0.0.1:18080,9090=127.0.0.1:19090".
func ParseInboundPorts(s string) ([]InboundPort, error) {
	var out []InboundPort
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		port, app, ok := strings.Cut(item, "=")
		p, err := strconv.ParseUint(port, 10, 16)
		if !ok || err != nil || p == 0 {
			return nil, fmt.Errorf(`inbound_ports entry %q: want <port>=<app ip>:<app port>, e.g. "8080=127.0.0.1:18080"`, item)
		}
		ap, err := netip.ParseAddrPort(app)
		if err != nil {
			return nil, fmt.Errorf("inbound_ports entry %q: application address: %w", item, err)
		}
		out = append(out, InboundPort{Port: uint32(p), App: ap})
	}
	slices.SortFunc(out, func(a, b InboundPort) int { return cmp.Compare(a.Port, b.Port) })
	for i := 1; i < len(out); i++ {
		if out[i].Port == out[i-1].Port {
			return nil, fmt.Errorf("inbound_ports: port %d is listed twice", out[i].Port)
		}
	}
	return out, nil
}

// sds names an SDS secret delivered over ADS.
func sds(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: ads()}
}

// bundleSecret is trust.BundleSecretName for bundles.
func bundleSecret(bundles map[string][]*x509.Certificate) (*tlsv3.Secret, error) {
	v := &tlsv3.SPIFFECertValidatorConfig{}
	for _, td := range slices.Sorted(mapsKeys(bundles)) {
		var b []byte
		for _, c := range bundles[td] {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		if len(b) == 0 {
			continue
		}
		v.TrustDomains = append(v.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{Name: td,
			TrustBundle: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}})
	}
	if len(v.TrustDomains) == 0 {
		return nil, fmt.Errorf("mesh mTLS: no trust bundle to send (MTLS.Bundles returned no roots)")
	}
	return &tlsv3.Secret{Name: trust.BundleSecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: "envoy.tls.cert_validator.spiffe", TypedConfig: mustAny(v)},
	}}}, nil
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// identities are the sorted, distinct SPIFFE IDs of sv's endpoints.
func identities(sv *model.Service) []string {
	var ids []string
	for i := range sv.Endpoints {
		if id := sv.Endpoints[i].Identity; id != "" {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// withUpstreamMTLS makes c originate mTLS to endpoints that present one of
// ids; c is a fresh message and is modified in place.
func withUpstreamMTLS(c *clusterv3.Cluster, ids []string, http2 bool) {
	var sans []*tlsv3.SubjectAltNameMatcher
	for _, id := range ids {
		sans = append(sans, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}}})
	}
	alpn := []string{"http/1.1"}
	if http2 {
		alpn = []string{"h2"}
	}
	up := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(trust.SVIDSecretName)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
			ValidationContextSdsSecretConfig: sds(trust.BundleSecretName),
		}},
		AlpnProtocols: alpn,
	}}
	c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(up)}}
}

// InboundName is the name of the inbound listener and cluster of port.
func InboundName(port uint32) string { return "inbound_" + strconv.FormatUint(uint64(port), 10) }

// inboundListeners builds n's inbound listeners and their local clusters.
func inboundListeners(s *model.Snapshot, n Node) (listeners, clusters []types.Resource, errs []error) {
	ports, err := ParseInboundPorts(n.InboundPorts)
	if err != nil {
		return nil, nil, []error{fmt.Errorf("node %q: %w", n.ID, err)}
	}
	for _, ip := range ports {
		name := InboundName(ip.Port)
		svc, sp := inboundService(s, n, ip.Port)
		http := false
		if sp != nil {
			http = portClass(*sp) != protoOther
		}
		var terminal *listenerv3.Filter
		var pre []*listenerv3.Filter
		if http {
			var filters []*hcmv3.HttpFilter
			if svc != nil {
				fs, err := HTTPAuthzFilters(s, svc.Namespace, svc.Name, sp.Port)
				if err != nil {
					errs = append(errs, err)
				}
				filters = fs
			}
			filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}})
			hcm := &hcmv3.HttpConnectionManager{
				StatPrefix: name,
				RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: name,
					VirtualHosts: []*routev3.VirtualHost{{Name: name, Domains: []string{"*"}, Routes: []*routev3.Route{{Name: "app",
						Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
						Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}}}}}}}},
				HttpFilters: filters,
			}
			terminal = &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}}
		} else {
			if svc != nil {
				fs, err := TCPAuthzFilters(s, svc.Namespace, svc.Name, sp.Port)
				if err != nil {
					errs = append(errs, err)
				}
				pre = fs
			}
			tp := &tcpproxyv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: name}}
			terminal = &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
		}
		filters := append(pre, terminal)
		alpn := []string{"h2", "http/1.1"}
		if !http {
			alpn = nil
		}
		down := &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(trust.SVIDSecretName)},
				ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds(trust.BundleSecretName)},
				AlpnProtocols:                  alpn,
			},
		}
		tlsChain := &listenerv3.FilterChain{Filters: filters,
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(down)}}}
		chains := []*listenerv3.FilterChain{tlsChain}
		if mtlsMode(s, n) == MTLSPermissive {
			tlsChain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
			chains = append(chains, &listenerv3.FilterChain{Filters: filters, FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}})
		}
		l := &listenerv3.Listener{
			Name:             name,
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: n.InboundIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: ip.Port}}}},
			FilterChains: chains,
		}
		c := &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: ip.App.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ip.App.Port())}}}},
				}}}},
			}}},
		}
		if http && sp != nil && portClass(*sp) != protoHTTP1 {
			opts := DefaultClusterOptions
			opts.HTTP2 = true
			c.TypedExtensionProtocolOptions = EDSCluster(name, opts).TypedExtensionProtocolOptions
		}
		errs = append(errs, validate(l), validate(c))
		listeners = append(listeners, l)
		clusters = append(clusters, c)
	}
	return listeners, clusters, errs
}

// inboundService finds the Service of n's namespace that has an endpoint at
// n's inbound IP with port number port, and that Service port.
func inboundService(s *model.Snapshot, n Node, port uint32) (*model.Service, *model.ServicePort) {
	for i := range s.Services {
		sv := &s.Services[i]
		if sv.Namespace != n.Namespace {
			continue
		}
		for _, e := range sv.Endpoints {
			if e.Address != n.InboundIP {
				continue
			}
			for _, ep := range e.Ports {
				if ep.Port != port {
					continue
				}
				for j := range sv.Ports {
					if sv.Ports[j].Name == ep.Name {
						return sv, &sv.Ports[j]
					}
				}
			}
		}
	}
	return nil, nil
}

// mtlsMode is the node's inbound mTLS mode: its own (metadata mtls_mode),
// else its namespace's (model.Snapshot.PermissiveNamespaces), else STRICT.
func mtlsMode(s *model.Snapshot, n Node) string {
	if n.MTLSMode != "" {
		return n.MTLSMode
	}
	if _, ok := slices.BinarySearch(s.PermissiveNamespaces, n.Namespace); ok {
		return MTLSPermissive
	}
	return MTLSStrict
}

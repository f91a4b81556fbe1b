package xdsclient

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/causewaymesh/causeway/proxy/config"
)

func exactSM(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

func prefixSM(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v}}
}

// withRBAC puts an RBAC HTTP filter in front of the router of an HTTP
// listener.
func withRBAC(t *testing.T, rules *rbacv3.RBAC) *listenerv3.Listener {
	l := httpListener(t, "in", 15006, "rc")
	var h hcmv3.HttpConnectionManager
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	h.HttpFilters = []*hcmv3.HttpFilter{
		{Name: "envoy.filters.http.rbac", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &rbachttpv3.RBAC{Rules: rules})}},
		{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}},
	}
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &h)}
	return l
}

func TestTranslateRBAC(t *testing.T) {
	principal := func(m *matcherv3.StringMatcher) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
	}
	method := &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: ":method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exactSM("GET")}}}}
	good := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"b-read": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
				method,
				{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: 8080}},
				{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: prefixSM("/api/")}}}},
			}}}}},
			Principals: []*rbacv3.Principal{principal(prefixSM("spiffe://c1/ns/b/"))},
		},
		"a-all": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_NotId{NotId: principal(nil)}},
				{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{principal(exactSM("spiffe://c1/ns/a/sa/x"))}}}}},
		},
	}}
	got, err := TranslateListener(withRBAC(t, good))
	if err != nil {
		t.Fatal(err)
	}
	want := []*config.RBAC{{Name: "envoy.filters.http.rbac", Action: config.RBACAllow, Policies: []config.RBACPolicy{
		{Name: "a-all", Permissions: []config.Permission{{Any: true}}, Principals: []config.Principal{
			{Not: &config.Principal{Authenticated: &config.PrincipalName{}}},
			{Or: []config.Principal{{Authenticated: &config.PrincipalName{Name: &config.StringMatch{Value: "spiffe://c1/ns/a/sa/x"}}}}},
		}},
		{Name: "b-read", Permissions: []config.Permission{{And: []config.Permission{
			{Header: &config.HeaderMatch{Name: ":method", Value: config.StringMatch{Value: "GET"}}},
			{DestinationPort: 8080},
			{URLPath: &config.StringMatch{Kind: config.StringPrefix, Value: "/api/"}},
		}}}, Principals: []config.Principal{{Authenticated: &config.PrincipalName{Name: &config.StringMatch{Kind: config.StringPrefix, Value: "spiffe://c1/ns/b/"}}}}},
	}}}
	if diff := cmp.Diff(want, got.HTTP.RBAC, cmpOpts); diff != "" {
		t.Errorf("RBAC (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name  string
		rules *rbacv3.RBAC
		want  []string
	}{
		{"log action", &rbacv3.RBAC{Action: rbacv3.RBAC_LOG}, []string{"rules.action", "LOG", "use ALLOW or DENY"}},
		{"source ip principal", &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: &corev3.CidrRange{AddressPrefix: "10.0.0.0", PrefixLen: nil}}}},
		}}}, []string{"policies[p].principals[0].direct_remote_ip", "authenticated.principal_name"}},
		{"server name permission", &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"q": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: exactSM("x")}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}}}, []string{"policies[q].permissions[0].requested_server_name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TranslateListener(withRBAC(t, tc.rules))
			checkErr(t, err, tc.want)
		})
	}
}

func TestTranslateNetworkRBACAndPermissive(t *testing.T) {
	rbacFilter := func() *listenerv3.Filter {
		return &listenerv3.Filter{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &rbacnetv3.RBAC{
			StatPrefix: "db", Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{"p": {
				Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: 5432}}},
				Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
			}}},
		})}}
	}
	l := tcpListener(t, "db", 15010, "db")
	l.FilterChains[0].Filters = append([]*listenerv3.Filter{rbacFilter()}, l.FilterChains[0].Filters...)
	got, err := TranslateListener(l)
	if err != nil {
		t.Fatal(err)
	}
	if r := got.TCP.RBAC; len(r) != 1 || r[0].Action != config.RBACDeny || r[0].Policies[0].Permissions[0].DestinationPort != 5432 {
		t.Errorf("TCP RBAC = %+v, want one DENY filter on port 5432", r)
	}

	h := httpListener(t, "in", 15006, "rc")
	h.FilterChains[0].Filters = append([]*listenerv3.Filter{rbacFilter()}, h.FilterChains[0].Filters...)
	_, err = TranslateListener(h)
	checkErr(t, err, []string{"envoy.filters.network.rbac before an http_connection_manager", "envoy.filters.http.rbac"})

	permissive := func(mod func(tlsChain, raw *listenerv3.FilterChain)) *listenerv3.Listener {
		l := httpListener(t, "in", 15006, "rc")
		tlsChain := l.FilterChains[0]
		tlsChain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
		tlsChain.TransportSocket = tlsSocket(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig("cert")}}})
		raw := proto.Clone(tlsChain).(*listenerv3.FilterChain)
		raw.FilterChainMatch.TransportProtocol = "raw_buffer"
		raw.TransportSocket = nil
		mod(tlsChain, raw)
		l.FilterChains = []*listenerv3.FilterChain{raw, tlsChain}
		return l
	}
	got, err = TranslateListener(permissive(func(_, _ *listenerv3.FilterChain) {}))
	if err != nil {
		t.Fatal(err)
	}
	if got.TLS == nil || !got.TLS.Permissive || got.TLS.CertSecret != "cert" || got.HTTP == nil {
		t.Errorf("permissive listener = %+v, want TLS with Permissive and the HTTP filter", got)
	}
	_, err = TranslateListener(permissive(func(_, raw *listenerv3.FilterChain) { raw.Filters = nil }))
	checkErr(t, err, []string{"filter_chains[0]: the two chains have different filters"})
	_, err = TranslateListener(permissive(func(_, raw *listenerv3.FilterChain) { raw.FilterChainMatch.TransportProtocol = "quic" }))
	checkErr(t, err, []string{`filter_chains[0].filter_chain_match.transport_protocol: transport_protocol "quic"`})
}

func TestTranslateSNIPassthrough(t *testing.T) {
	chain := func(cluster string, names ...string) *listenerv3.FilterChain {
		fc := tcpListener(t, "x", 1, cluster).FilterChains[0]
		if len(names) > 0 {
			fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: names, TransportProtocol: "tls"}
		}
		return fc
	}
	l := tcpListener(t, "ew", 15443, "unused")
	l.FilterChains = []*listenerv3.FilterChain{chain("a", "a.shop.svc.clusterset.local"), chain("b", "*.billing.svc.clusterset.local"), chain("d")}
	got, err := TranslateListener(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.SNI) != 3 || got.SNI[0].TCP.Cluster != "a" || got.SNI[1].ServerNames[0] != "*.billing.svc.clusterset.local" || len(got.SNI[2].ServerNames) != 0 || got.TCP != nil {
		t.Fatalf("SNI chains: %+v", got.SNI)
	}
	for name, mod := range map[string]func(*listenerv3.Listener){
		`server name "a.shop.svc.clusterset.local" is also in filter_chains[0]`: func(l *listenerv3.Listener) {
			l.FilterChains = append(l.FilterChains, chain("e", "a.shop.svc.clusterset.local"))
		},
		"a second chain without server_names": func(l *listenerv3.Listener) { l.FilterChains = append(l.FilterChains, chain("e")) },
		`server name "a*.x": want an exact name or *.suffix`: func(l *listenerv3.Listener) {
			l.FilterChains = append(l.FilterChains, chain("e", "a*.x"))
		},
		"unsupported: filter_chains[0].transport_socket (on a passthrough chain)": func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = tlsSocket(t, &tlsv3.DownstreamTlsContext{})
		},
	} {
		l := tcpListener(t, "ew", 15443, "unused")
		l.FilterChains = []*listenerv3.FilterChain{chain("a", "a.shop.svc.clusterset.local"), chain("d")}
		mod(l)
		_, err := TranslateListener(l)
		checkErr(t, err, []string{name})
	}
}

package xdsclient

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/causewaymesh/causeway/proxy/config"
)

// checkErr asserts err contains every substring in want (or is nil when
// want is empty) and that each part is a *FieldError.
func checkErr(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want error containing %q, got nil", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\ndoes not contain %q", err, w)
		}
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("error %v is not a *FieldError", err)
	}
}

func exactSAN(s string) *tlsv3.SubjectAltNameMatcher {
	return &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}}
}

func TestTranslateListener(t *testing.T) {
	withHCM := func(mod func(*hcmv3.HttpConnectionManager)) *listenerv3.Listener {
		l := httpListener(t, "http", 15001, "rc")
		var h hcmv3.HttpConnectionManager
		if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&h); err != nil {
			t.Fatal(err)
		}
		mod(&h)
		l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &h)}
		return l
	}
	mod := func(l *listenerv3.Listener, f func(*listenerv3.Listener)) *listenerv3.Listener { f(l); return l }
	downTLS := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig("cert")},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{exactSAN("spiffe://a/ns/x/sa/y")}},
				ValidationContextSdsSecretConfig: sdsConfig("roots"),
			}},
			AlpnProtocols: []string{"h2"},
		},
	}
	faultAny := mustAny(t, &faultv3.HTTPFault{})
	tests := []struct {
		name    string
		in      *listenerv3.Listener
		want    *config.Listener
		wantErr []string
	}{
		{name: "http rds", in: httpListener(t, "http", 15001, "rc"), want: &config.Listener{
			Name: "http", Address: "127.0.0.1:15001",
			HTTP: &config.HTTPListener{StatPrefix: "http", RouteConfigName: "rc", GenerateRequestID: true}}},
		{name: "tcp", in: mod(tcpListener(t, "tcp", 15002, "db"), func(l *listenerv3.Listener) { l.TrafficDirection = corev3.TrafficDirection_INBOUND }),
			want: &config.Listener{Name: "tcp", Address: "127.0.0.1:15002", Direction: config.Inbound,
				TCP: &config.TCPListener{StatPrefix: "tcp", Cluster: "db", IdleTimeout: time.Minute}}},
		{name: "hcm options and inline routes", in: withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: simpleRoute("inline", "web")}
			h.MaxRequestHeadersKb = wrapperspb.UInt32(8)
			h.RequestHeadersTimeout = durationpb.New(3 * time.Second)
			h.StreamIdleTimeout = durationpb.New(2 * time.Second)
			h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(time.Minute)}
			h.GenerateRequestId = wrapperspb.Bool(false)
			h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: faultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: faultAny}}}, h.HttpFilters...)
		}), want: &config.Listener{Name: "http", Address: "127.0.0.1:15001", HTTP: &config.HTTPListener{
			StatPrefix: "http", Routes: &config.RouteConfig{Name: "inline", VirtualHosts: []*config.VirtualHost{{
				Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{{Name: "all", Match: config.RouteMatch{Path: "/", CaseSensitive: true},
					Forward: &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: "web", Weight: 1}}}}}}}},
			MaxRequestHeadersBytes: 8192, RequestHeadersTimeout: 3 * time.Second, IdleTimeout: time.Minute, StreamIdleTimeout: 2 * time.Second}}},
		{name: "stream_idle_timeout 0s disables", in: withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.StreamIdleTimeout = durationpb.New(0)
		}), want: &config.Listener{Name: "http", Address: "127.0.0.1:15001",
			HTTP: &config.HTTPListener{StatPrefix: "http", RouteConfigName: "rc", GenerateRequestID: true, StreamIdleTimeout: -1}}},
		{name: "negative stream_idle_timeout", in: withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.StreamIdleTimeout = durationpb.New(-time.Second)
		}), wantErr: []string{`stream_idle_timeout`, `negative duration -1s`, `give a positive duration, or 0s to disable it`}},
		{name: "downstream tls", in: mod(httpListener(t, "tls", 15443, "rc"), func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = tlsSocket(t, downTLS)
		}), want: &config.Listener{Name: "tls", Address: "127.0.0.1:15443",
			HTTP: &config.HTTPListener{StatPrefix: "tls", RouteConfigName: "rc", GenerateRequestID: true},
			TLS: &config.DownstreamTLS{CertSecret: "cert", ValidationSecret: "roots", RequireClientCert: true,
				MatchSANs: []config.StringMatch{{Kind: config.StringExact, Value: "spiffe://a/ns/x/sa/y"}}, ALPN: []string{"h2"}}}},
		{name: "proto validation", in: &listenerv3.Listener{Name: "v", Address: &corev3.Address{}},
			wantErr: []string{`listener "v": invalid`}},
		{name: "unsupported filter", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.FilterChains[0].Filters = append(l.FilterChains[0].Filters, &listenerv3.Filter{Name: "envoy.filters.network.rbac",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &structpb.Struct{})}})
		}), wantErr: []string{`listener "l": filter_chains[0].filters[1].typed_config: unsupported filter "envoy.filters.network.rbac"`, "use envoy.filters.network.rbac, then http_connection_manager or tcp_proxy"}},
		{name: "filter chain match", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"a"}}
		}), wantErr: []string{`listener "l": unsupported: filter_chains[0].filters (http_connection_manager on a passthrough chain)`}},
		{name: "two chains", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.FilterChains = append(l.FilterChains, l.FilterChains[0])
		}), wantErr: []string{`filter_chains: no chain matches transport_protocol "tls"`}},
		{name: "hostname address", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.Address = sockAddr("localhost", 1)
		}), wantErr: []string{`address.socket_address.address: "localhost" is not an IP address`}},
		{name: "unknown listener filter", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "x", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &structpb.Struct{})}}}
		}), wantErr: []string{`unsupported: listener_filters["x"]`}},
		{name: "unsupported listener field", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.UseOriginalDst = wrapperspb.Bool(true)
		}), wantErr: []string{`listener "l": unsupported: use_original_dst`}},
		{name: "http filter not allowed and router not last", in: withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.cors", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &structpb.Struct{})}})
		}), wantErr: []string{`http_filters["envoy.filters.http.cors"]: unsupported HTTP filter envoy.filters.http.cors`, `the router filter must be last`}},
		{name: "filter-level fault", in: withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: faultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t,
				&faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}}})}}}, h.HttpFilters...)
		}), wantErr: []string{`unsupported: filter_chains[0].filters[0].typed_config.http_filters["envoy.filters.http.fault"].typed_config`}},
		{name: "inline route error carries listener path", in: withHCM(func(h *hcmv3.HttpConnectionManager) {
			rc := simpleRoute("inline", "web")
			rc.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}
			h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
		}), wantErr: []string{`listener "http": filter_chains[0].filters[0].typed_config.route_config.virtual_hosts["vh"].routes["all"].match.safe_regex.regex: invalid regex "("`}},
		{name: "tls without cert and client certs without roots", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = tlsSocket(t, &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: &tlsv3.CommonTlsContext{}})
		}), wantErr: []string{"a server needs a certificate", "client certificates required but no validation context"}},
		{name: "wrong transport socket", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{})
		}), wantErr: []string{"unsupported: filter_chains[0].transport_socket"}},
		{name: "inline certificates", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = tlsSocket(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificates: []*tlsv3.TlsCertificate{{}}, TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig("c")}}})
		}), wantErr: []string{"unsupported: filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates"}},
		{name: "no filters", in: mod(httpListener(t, "l", 1, "rc"), func(l *listenerv3.Listener) {
			l.FilterChains[0].Filters = nil
		}), wantErr: []string{"no network filters"}},
		{name: "tcp without cluster", in: tcpListener(t, "t", 1, ""), wantErr: []string{"typed_config.cluster: missing cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TranslateListener(tt.in)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("listener (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := TranslateListener(nil); err == nil {
		t.Error("nil listener accepted")
	}
}

func prefixMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func TestTranslateRouteConfig(t *testing.T) {
	withRoute := func(r *routev3.Route) *routev3.RouteConfiguration {
		rc := simpleRoute("rc", "web")
		if r.Name == "" {
			r.Name = "r"
		}
		rc.VirtualHosts[0].Routes = []*routev3.Route{r}
		return rc
	}
	fwd := func(a *routev3.RouteAction) *routev3.Route_Route {
		if a.ClusterSpecifier == nil {
			a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "web"}
		}
		return &routev3.Route_Route{Route: a}
	}
	wantRoute := func(r *config.Route) *config.RouteConfig {
		return &config.RouteConfig{Name: "rc", VirtualHosts: []*config.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{r}}}}
	}
	webFwd := func(f *config.ForwardAction) *config.ForwardAction {
		if f.Clusters == nil {
			f.Clusters = []config.WeightedCluster{{Name: "web", Weight: 1}}
		}
		return f
	}
	headerOpt := func(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action}
	}
	tests := []struct {
		name    string
		in      *routev3.RouteConfiguration
		want    *config.RouteConfig
		wantErr []string
	}{
		{name: "simple", in: simpleRoute("rc", "web"), want: wantRoute(&config.Route{Name: "all",
			Match: config.RouteMatch{Path: "/", CaseSensitive: true}, Forward: webFwd(&config.ForwardAction{})})},
		{name: "matches", in: withRoute(&routev3.Route{
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/API"},
				CaseSensitive: wrapperspb.Bool(false),
				Headers: []*routev3.HeaderMatcher{
					{Name: "X-Env", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "Prod"}, IgnoreCase: true}}},
					{Name: "x-debug", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true},
					{Name: "x-re", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a+"}}}}},
				},
				QueryParameters: []*routev3.QueryParameterMatcher{
					{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "2"}}}},
					{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}},
				},
			},
			Action: fwd(&routev3.RouteAction{}),
		}), want: wantRoute(&config.Route{Name: "r", Match: config.RouteMatch{
			PathKind: config.PathSegmentPrefix, Path: "/api",
			Headers: []config.HeaderMatch{
				{Name: "x-env", Value: config.StringMatch{Kind: config.StringPrefix, Value: "prod", IgnoreCase: true}},
				{Name: "x-debug", Present: true, Invert: true},
				{Name: "x-re", Value: config.StringMatch{Kind: config.StringRegex, Value: "a+", Regex: regexp.MustCompile("^(?:a+)$")}},
			},
			Query: []config.QueryMatch{{Name: "v", Value: config.StringMatch{Value: "2"}}, {Name: "q", Present: true}},
		}, Forward: webFwd(&config.ForwardAction{})})},
		{name: "regex path and exact path", in: withRoute(&routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+/.*"}}},
			Action: fwd(&routev3.RouteAction{}),
		}), want: wantRoute(&config.Route{Name: "r", Match: config.RouteMatch{PathKind: config.PathRegex, CaseSensitive: true,
			PathRegex: regexp.MustCompile("^(?:/v[0-9]+/.*)$")}, Forward: webFwd(&config.ForwardAction{})})},
		{name: "full route action", in: withRoute(&routev3.Route{
			Match: prefixMatch("/"),
			Action: fwd(&routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
					{Name: "v1", Weight: wrapperspb.UInt32(90), RequestHeadersToAdd: []*corev3.HeaderValueOption{headerOpt("x-v", "1", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}},
					{Name: "v2", Weight: wrapperspb.UInt32(10)},
				}}},
				Timeout: durationpb.New(0),
				RetryPolicy: &routev3.RetryPolicy{RetryOn: "5xx,gateway-error,connect-failure,reset,refused-stream,retriable-status-codes",
					NumRetries: wrapperspb.UInt32(3), PerTryTimeout: durationpb.New(time.Second), RetriableStatusCodes: []uint32{409},
					RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(10 * time.Millisecond), MaxInterval: durationpb.New(time.Second)}},
				RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{
					{Cluster: "shadow", RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 2500, Denominator: typev3.FractionalPercent_TEN_THOUSAND}}},
					{Cluster: "all"},
				},
				RegexRewrite:         &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/old/"}, Substitution: "/new/"},
				HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "example.com"},
				HashPolicy: []*routev3.RouteAction_HashPolicy{
					{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "X-User"}}},
					{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "sid"}}},
					{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}},
				},
			}),
			RequestHeadersToAdd:     []*corev3.HeaderValueOption{headerOpt("X-A", "1", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)},
			ResponseHeadersToRemove: []string{"Server"},
			TypedPerFilterConfig: map[string]*anypb.Any{faultFilterName: mustAny(t, &faultv3.HTTPFault{
				Delay: &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Second)},
					Percentage: &typev3.FractionalPercent{Numerator: 50}},
				Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503},
					Percentage: &typev3.FractionalPercent{Numerator: 10000, Denominator: typev3.FractionalPercent_MILLION}},
			})},
		}), want: wantRoute(&config.Route{Name: "r", Match: config.RouteMatch{Path: "/", CaseSensitive: true},
			Forward: &config.ForwardAction{
				Clusters: []config.WeightedCluster{{Name: "v1", Weight: 90, RequestHeaders: config.HeaderMutation{Set: []config.HeaderValue{{Name: "x-v", Value: "1"}}}}, {Name: "v2", Weight: 10}},
				Timeout:  -1,
				Retry: &config.RetryPolicy{On: config.Retry5xx | config.RetryGatewayError | config.RetryConnectFailure | config.RetryReset | config.RetryRefusedStream | config.RetryRetriableStatusCodes,
					NumRetries: 3, PerTryTimeout: time.Second, RetriableStatusCodes: []int{409}, BackoffBase: 10 * time.Millisecond, BackoffMax: time.Second},
				Mirrors:           []config.Mirror{{Cluster: "shadow", Percent: 25}, {Cluster: "all", Percent: 100}},
				RegexRewrite:      regexp.MustCompile("^/old/"),
				RegexSubstitution: "/new/",
				HostRewrite:       "example.com",
				HashPolicy:        []config.HashPolicy{{Header: "x-user"}, {Cookie: "sid"}, {SourceIP: true}},
			},
			RequestHeaders:  config.HeaderMutation{Add: []config.HeaderValue{{Name: "x-a", Value: "1"}}},
			ResponseHeaders: config.HeaderMutation{Remove: []string{"server"}},
			Fault:           &config.FaultPolicy{DelayPercent: 50, Delay: time.Second, AbortPercent: 1, AbortStatus: 503},
		})},
		{name: "redirect and direct response", in: &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{
			Name: "vh", Domains: []string{"a.example.com", "*.b.example.com"},
			RetryPolicy: &routev3.RetryPolicy{RetryOn: "5xx"},
			Routes: []*routev3.Route{
				{Name: "redir", Match: prefixMatch("/old"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
					SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}, HostRedirect: "new.example.com", PortRedirect: 8443,
					PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new"}, ResponseCode: routev3.RedirectAction_PERMANENT_REDIRECT, StripQuery: true}}},
				{Name: "direct", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/healthz"}}, Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
					Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "ok"}}}}},
			},
		}}}, want: &config.RouteConfig{Name: "rc", VirtualHosts: []*config.VirtualHost{{Name: "vh", Domains: []string{"a.example.com", "*.b.example.com"},
			Retry: &config.RetryPolicy{On: config.Retry5xx, NumRetries: 1},
			Routes: []*config.Route{
				{Name: "redir", Match: config.RouteMatch{Path: "/old", CaseSensitive: true}, Redirect: &config.RedirectAction{Scheme: "https", Host: "new.example.com", Port: 8443, PrefixRewrite: "/new", StatusCode: 308, StripQuery: true}},
				{Name: "direct", Match: config.RouteMatch{PathKind: config.PathExact, Path: "/healthz", CaseSensitive: true}, Direct: &config.DirectResponse{Status: 200, Body: "ok"}},
			}}}}},
		{name: "invalid regex names route and field", in: withRoute(&routev3.Route{Name: "bad",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}}},
			Action: fwd(&routev3.RouteAction{})}),
			wantErr: []string{`route_config "rc": virtual_hosts["vh"].routes["bad"].match.safe_regex.regex: invalid regex "(unclosed"`, "use RE2 syntax"}},
		{name: "errors are aggregated", in: withRoute(&routev3.Route{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}},
			Action: fwd(&routev3.RouteAction{
				RetryPolicy:  &routev3.RetryPolicy{RetryOn: "5xx,retriable-4xx", RetriableStatusCodes: []uint32{409}},
				RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "["}},
			}),
			TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.cors": mustAny(t, &structpb.Struct{})},
		}), wantErr: []string{
			`unsupported: virtual_hosts["vh"].routes["r"].match.grpc`,
			`unsupported: virtual_hosts["vh"].routes["r"].route.retry_policy.retry_on["retriable-4xx"]`,
			`retry_policy.retriable_status_codes: status codes given but never retried`,
			`route.regex_rewrite.pattern.regex: invalid regex "["`,
			`unsupported: virtual_hosts["vh"].routes["r"].typed_per_filter_config["envoy.filters.http.cors"]`,
		}},
		{name: "zero weights", in: withRoute(&routev3.Route{Match: prefixMatch("/"), Action: fwd(&routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "a", Weight: wrapperspb.UInt32(0)}}}}})}),
			wantErr: []string{"weights sum to zero"}},
		{name: "cluster header", in: withRoute(&routev3.Route{Match: prefixMatch("/"), Action: fwd(&routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}})}),
			wantErr: []string{"unsupported: virtual_hosts[\"vh\"].routes[\"r\"].route.cluster_specifier"}},
		{name: "prefix and regex rewrite", in: withRoute(&routev3.Route{Match: prefixMatch("/"), Action: fwd(&routev3.RouteAction{
			PrefixRewrite: "/x", RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "a"}}})}),
			wantErr: []string{"both prefix_rewrite and regex_rewrite set"}},
		{name: "duplicate domain and bad wildcard", in: &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{
			{Name: "a", Domains: []string{"x.com"}}, {Name: "b", Domains: []string{"x.com", "a*b"}}}},
			wantErr: []string{`virtual_hosts["b"].domains[0]: domain "x.com" is already used`, `virtual_hosts["b"].domains[1]: invalid wildcard domain "a*b"`}},
		{name: "header append action", in: withRoute(&routev3.Route{Match: prefixMatch("/"), Action: fwd(&routev3.RouteAction{}),
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{headerOpt("a", "b", corev3.HeaderValueOption_ADD_IF_ABSENT)}}),
			wantErr: []string{`unsupported: virtual_hosts["vh"].routes["r"].response_headers_to_add[0].append_action`}},
		{name: "bad fault config", in: withRoute(&routev3.Route{Match: prefixMatch("/"), Action: fwd(&routev3.RouteAction{}),
			TypedPerFilterConfig: map[string]*anypb.Any{faultFilterName: mustAny(t, &faultv3.HTTPFault{MaxActiveFaults: wrapperspb.UInt32(1)})}}),
			wantErr: []string{`unsupported: virtual_hosts["vh"].routes["r"].typed_per_filter_config["envoy.filters.http.fault"].max_active_faults`}},
		{name: "fault config of the wrong type", in: withRoute(&routev3.Route{Match: prefixMatch("/"), Action: fwd(&routev3.RouteAction{}),
			TypedPerFilterConfig: map[string]*anypb.Any{faultFilterName: mustAny(t, &structpb.Struct{})}}),
			wantErr: []string{`typed_per_filter_config["envoy.filters.http.fault"]: cannot decode`}},
		{name: "proto validation", in: &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{Name: ""}}},
			wantErr: []string{`route_config "rc": invalid`}},
		{name: "custom string matcher", in: withRoute(&routev3.Route{Action: fwd(&routev3.RouteAction{}), Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Headers:       []*routev3.HeaderMatcher{{Name: "h", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "x"}}}}, {Name: "r", HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 1, End: 2}}}}}}),
			wantErr: []string{`unsupported: virtual_hosts["vh"].routes["r"].match.headers["r"].range_match`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TranslateRouteConfig(tt.in)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("route config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTranslateCluster(t *testing.T) {
	mod := func(c *clusterv3.Cluster, f func(*clusterv3.Cluster)) *clusterv3.Cluster { f(c); return c }
	base := func() *config.Cluster {
		return &config.Cluster{Name: "web", EDSServiceName: "web.svc", ConnectTimeout: time.Second, PanicThreshold: 50, RingSize: 1024}
	}
	modWant := func(f func(*config.Cluster)) *config.Cluster { c := base(); f(c); return c }
	h2 := mustAny(t, &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})
	tests := []struct {
		name    string
		in      *clusterv3.Cluster
		want    *config.Cluster
		wantErr []string
	}{
		{name: "eds defaults", in: edsCluster("web", "web.svc"), want: base()},
		{name: "everything", in: mod(edsCluster("web", "web.svc"), func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MaximumRingSize: wrapperspb.UInt64(4096)}}
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: h2}
			c.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{Sni: "web.example", CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig("cert")},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{exactSAN("spiffe://td/ns/a/sa/web")}},
					ValidationContextSdsSecretConfig: sdsConfig("roots")}},
				AlpnProtocols: []string{"h2"}}})
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}}
			c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100)}
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
				{Priority: corev3.RoutingPriority_HIGH, MaxConnections: wrapperspb.UInt32(1)},
				{MaxConnections: wrapperspb.UInt32(100), MaxRequests: wrapperspb.UInt32(200), RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}},
			}}
		}), want: modWant(func(c *config.Cluster) {
			c.LB, c.RingSize, c.Protocol, c.PanicThreshold = config.RingHash, 4096, config.HTTP2, 0
			c.TLS = &config.UpstreamTLS{CertSecret: "cert", ValidationSecret: "roots", SNI: "web.example", ALPN: []string{"h2"},
				MatchSANs: []config.StringMatch{{Value: "spiffe://td/ns/a/sa/web"}}}
			c.Outlier = &config.OutlierDetection{Consecutive5xx: 3, ConsecutiveGatewayFailure: 5, Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second,
				MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 10, SuccessRateMinimumHosts: 5, SuccessRateRequestVolume: 100, SuccessRateStdevFactor: 1900}
			c.Circuit = config.CircuitBreakers{MaxConnections: 100, MaxPendingRequests: 1024, MaxRequests: 200, MaxRetries: 3, RetryBudgetPercent: 20, MinRetryConcurrency: 3}
		})},
		{name: "deprecated http2 and least request", in: mod(edsCluster("web", "web.svc"), func(c *clusterv3.Cluster) {
			//lint:ignore SA1019 the translator must still accept the deprecated field
			c.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		}), want: modWant(func(c *config.Cluster) { c.Protocol, c.LB = config.HTTP2, config.LeastRequest })},
		{name: "strict dns", in: &clusterv3.Cluster{Name: "ext", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			LbPolicy: clusterv3.Cluster_MAGLEV, LoadAssignment: loadAssignment("ext", "db.example.com")},
			want: &config.Cluster{Name: "ext", LB: config.Maglev, ConnectTimeout: 5 * time.Second, PanicThreshold: 50, RingSize: 1024,
				Static: &config.LoadAssignment{Cluster: "ext", OverprovisioningFactor: 140, Localities: []*config.LocalityEndpoints{{
					Locality: config.Locality{Region: "r1", Zone: "z1"}, Endpoints: []config.Endpoint{{Address: "db.example.com:8080", Health: config.Healthy}}}}}}},
		{name: "static needs IPs", in: &clusterv3.Cluster{Name: "s", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: loadAssignment("s", "db.example.com")},
			wantErr: []string{`cluster "s": load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "db.example.com" is not an IP address`}},
		{name: "static without endpoints", in: &clusterv3.Cluster{Name: "s", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}},
			wantErr: []string{"STATIC cluster without load_assignment"}},
		{name: "unsupported type and lb", in: mod(edsCluster("web", "web.svc"), func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
			c.LbPolicy = clusterv3.Cluster_RANDOM
			//lint:ignore SA1019 an unsupported field, deprecated or not, must be refused
			c.MaxRequestsPerConnection = wrapperspb.UInt32(1)
		}), wantErr: []string{`cluster "web": unsupported: type (ORIGINAL_DST)`, `unsupported: lb_policy (RANDOM)`, `unsupported: max_requests_per_connection`}},
		{name: "upstream tls without roots", in: mod(edsCluster("web", "web.svc"), func(c *clusterv3.Cluster) {
			c.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{})
		}), wantErr: []string{"upstream TLS without a validation context"}},
		{name: "unknown protocol options", in: mod(edsCluster("web", "web.svc"), func(c *clusterv3.Cluster) {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"x": h2}
		}), wantErr: []string{`unsupported: typed_extension_protocol_options["x"]`}},
		{name: "outlier bounds", in: mod(edsCluster("web", "web.svc"), func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{BaseEjectionTime: durationpb.New(time.Hour), EnforcingConsecutive_5Xx: wrapperspb.UInt32(0)}
		}), wantErr: []string{"outlier_detection.max_ejection_time: max_ejection_time 5m0s below base_ejection_time 1h0m0s"}},
		{name: "proto validation", in: &clusterv3.Cluster{Name: ""}, wantErr: []string{`cluster "": invalid`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TranslateCluster(tt.in)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("cluster (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTranslateLoadAssignment(t *testing.T) {
	md := func(kv ...string) *corev3.Metadata {
		f := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			f[kv[i]] = kv[i+1]
		}
		s, err := structpb.NewStruct(f)
		if err != nil {
			t.Fatal(err)
		}
		return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{metadataNamespace: s}}
	}
	full := loadAssignment("web.svc", "10.0.0.1", "10.0.0.2")
	full.Endpoints[0].Priority = 1
	full.Endpoints[0].LoadBalancingWeight = wrapperspb.UInt32(3)
	full.Endpoints[0].Locality.SubZone = "s1"
	full.Endpoints[0].Metadata = md("cluster", "east", "network", "n1")
	full.Endpoints[0].LbEndpoints[1].HealthStatus = corev3.HealthStatus_DRAINING
	full.Endpoints[0].LbEndpoints[1].LoadBalancingWeight = wrapperspb.UInt32(7)
	full.Endpoints[0].LbEndpoints[1].Metadata = md("identity", "spiffe://td/ns/a/sa/web")
	full.Endpoints[0].LbEndpoints[1].GetEndpoint().Hostname = "web-1"
	full.Policy = &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(200)}

	badMD := loadAssignment("x", "10.0.0.1")
	badMD.Endpoints[0].Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{metadataNamespace: {Fields: map[string]*structpb.Value{"cluster": structpb.NewNumberValue(1)}}}}
	named := loadAssignment("y", "10.0.0.1")
	named.Endpoints[0].LbEndpoints[0].HostIdentifier = &endpointv3.LbEndpoint_EndpointName{EndpointName: "e"}
	tests := []struct {
		name    string
		in      *endpointv3.ClusterLoadAssignment
		want    *config.LoadAssignment
		wantErr []string
	}{
		{name: "full", in: full, want: &config.LoadAssignment{Cluster: "web.svc", OverprovisioningFactor: 200, Localities: []*config.LocalityEndpoints{{
			Locality: config.Locality{Region: "r1", Zone: "z1", SubZone: "s1"}, Priority: 1, Weight: 3, Cluster: "east", Network: "n1",
			Endpoints: []config.Endpoint{{Address: "10.0.0.1:8080", Health: config.Healthy},
				{Address: "10.0.0.2:8080", Health: config.Draining, Weight: 7, Identity: "spiffe://td/ns/a/sa/web", Hostname: "web-1"}}}}}},
		{name: "hostname", in: loadAssignment("x", "web.local"), wantErr: []string{`cluster_load_assignment "x": endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "web.local" is not an IP address`}},
		{name: "metadata not a string", in: badMD, wantErr: []string{`endpoints[0].metadata.filter_metadata["causeway"].cluster: not a string`}},
		{name: "endpoint name", in: named, wantErr: []string{`unsupported: endpoints[0].lb_endpoints[0].endpoint_name`, "missing endpoint"}},
		{name: "proto validation", in: &endpointv3.ClusterLoadAssignment{}, wantErr: []string{`cluster_load_assignment "": invalid`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TranslateLoadAssignment(tt.in)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("load assignment (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTranslateSecret(t *testing.T) {
	cert, key := selfSigned(t)
	otherCert, _ := selfSigned(t)
	fileKey := certSecret("f", cert, key)
	fileKey.GetTlsCertificate().PrivateKey = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/k.pem"}}
	tests := []struct {
		name     string
		in       *tlsv3.Secret
		wantCert bool
		wantRoot bool
		wantErr  []string
	}{
		{name: "key pair", in: certSecret("cert", cert, key), wantCert: true},
		{name: "roots", in: rootsSecret("roots", cert), wantRoot: true},
		{name: "mismatched key", in: certSecret("bad", otherCert, key), wantErr: []string{`secret "bad": tls_certificate: bad key pair`}},
		{name: "not PEM roots", in: rootsSecret("r", []byte("junk")), wantErr: []string{`validation_context.trusted_ca: no certificates found`}},
		{name: "file data source", in: fileKey, wantErr: []string{`unsupported: tls_certificate.private_key`}},
		{name: "empty", in: &tlsv3.Secret{Name: "e"}, wantErr: []string{"empty secret"}},
		{name: "spiffe bundle set", in: spiffeSecret(t, "bundles", map[string][]byte{"east.test": cert, "west.test": otherCert}), wantRoot: true},
		{name: "spiffe bundle set, bad bundle", in: spiffeSecret(t, "b", map[string][]byte{"east.test": []byte("junk")}),
			wantErr: []string{`custom_validator_config.typed_config.trust_domains["east.test"].trust_bundle: no certificates found`}},
		{name: "session ticket keys", in: &tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_SessionTicketKeys{SessionTicketKeys: &tlsv3.TlsSessionTicketKeys{
			Keys: []*corev3.DataSource{{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: make([]byte, 80)}}}}}},
			wantErr: []string{"unsupported: session_ticket_keys"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TranslateSecret(tt.in)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				if strings.Contains(err.Error(), string(key)) || strings.Contains(err.Error(), "PRIVATE KEY-----\n") {
					t.Fatalf("error leaks key material: %v", err)
				}
				return
			}
			if (got.Cert != nil) != tt.wantCert || got.HasRoots() != tt.wantRoot {
				t.Fatalf("cert %v roots %v, want %v %v", got.Cert != nil, got.HasRoots(), tt.wantCert, tt.wantRoot)
			}
			if got.TrustDomains != nil {
				if len(got.TrustDomains) != 2 || string(got.TrustDomainsPEM["east.test"]) != string(cert) || got.Roots != nil {
					t.Errorf("bundle set %v, want east.test and west.test with their own PEM and no flat Roots", got.TrustDomainsPEM)
				}
				return
			}
			if tt.wantCert && got.Cert.Leaf == nil {
				t.Error("certificate leaf not parsed")
			}
			if tt.wantRoot && string(got.RootsPEM) != string(cert) {
				t.Error("RootsPEM not kept")
			}
		})
	}
}

// TestTranslatorsArePure checks translation does not modify its input.
func TestTranslatorsArePure(t *testing.T) {
	l := httpListener(t, "l", 1, "rc")
	before := proto.Clone(l)
	if _, err := TranslateListener(l); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, l) {
		t.Fatal("TranslateListener modified its input")
	}
}

func spiffeSecret(t *testing.T, name string, bundles map[string][]byte) *tlsv3.Secret {
	v := &tlsv3.SPIFFECertValidatorConfig{}
	for _, td := range slices.Sorted(maps.Keys(bundles)) {
		v.TrustDomains = append(v.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{Name: td,
			TrustBundle: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: bundles[td]}}})
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: "envoy.tls.cert_validator.spiffe", TypedConfig: mustAny(t, v)}}}}
}

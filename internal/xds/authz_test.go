package xds

import (
	"net/http/httptest"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/proxy/authz"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
)

func authzSnapshot() *model.Snapshot {
	s := &model.Snapshot{Cluster: "east", TrustDomain: "east.example", Policies: []model.AuthorizationPolicy{
		{Namespace: "shop", Name: "no-admin", Services: []string{"orders"}, Action: model.AuthzDeny, Rules: []model.AuthzRule{{To: []model.AuthzOperation{{Paths: []string{"/admin/*"}}}}}},
		{Namespace: "shop", Name: "cart-readers", Services: []string{"cart"}, Action: model.AuthzAllow, Rules: []model.AuthzRule{
			{From: []model.AuthzSource{{Namespace: "web"}}, To: []model.AuthzOperation{{Ports: []uint32{8080}, Methods: []string{"GET", "HEAD"}}}},
			{From: []model.AuthzSource{{TrustDomain: "partner.example"}, {SPIFFEID: "spiffe://east.example/ns/ops/sa/admin"}}},
			{From: []model.AuthzSource{{Namespace: "batch", TrustDomainOfNamespace: "west.example"}}, To: []model.AuthzOperation{{Ports: []uint32{5432}}}},
		}},
		{Namespace: "other", Name: "allow-nothing", Action: model.AuthzAllow},
	}}
	s.Canonicalize()
	return s
}

// engineFor runs the generated filters through the proxy's own xDS
// translation and compiles them as the proxy would.
func engineFor(t *testing.T, s *model.Snapshot, ns, svc string, port uint32, http bool) *authz.Engine {
	t.Helper()
	l := &listenerv3.Listener{Name: "inbound", Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15006}}}}}
	if http {
		fs, err := HTTPAuthzFilters(s, ns, svc, port)
		if err != nil {
			t.Fatal(err)
		}
		router, _ := anypb.New(&routerv3.Router{})
		hcm := &hcmv3.HttpConnectionManager{StatPrefix: "inbound", RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "rc"}},
			HttpFilters: append(fs, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}})}
		a, _ := anypb.New(hcm)
		l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}}}}
	} else {
		fs, err := TCPAuthzFilters(s, ns, svc, port)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: "db", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "local"}})
		l.FilterChains = []*listenerv3.FilterChain{{Filters: append(fs, &listenerv3.Filter{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}})}}
	}
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("generated listener fails Envoy's validation: %v", err)
	}
	cl, err := xdsclient.TranslateListener(l)
	if err != nil {
		t.Fatalf("the proxy refuses the generated filters: %v", err)
	}
	var filters []*config.RBAC
	if cl.HTTP != nil {
		filters = cl.HTTP.RBAC
	} else {
		filters = cl.TCP.RBAC
	}
	return authz.Compile(filters)
}

func TestAuthzTranslation(t *testing.T) {
	s := authzSnapshot()
	type req struct {
		peer         string
		method, path string
		allow        bool
	}
	for _, tc := range []struct {
		name     string
		ns, svc  string
		port     uint32
		http     bool
		requests []req
	}{
		{"cart http 8080", "shop", "cart", 8080, true, []req{
			{"spiffe://east.example/ns/web/sa/frontend", "GET", "/items", true},
			{"spiffe://east.example/ns/web/sa/frontend", "POST", "/items", false},
			{"spiffe://east.example/ns/webx/sa/frontend", "GET", "/items", false},
			{"spiffe://west.example/ns/web/sa/frontend", "GET", "/items", false}, // namespace means the local trust domain
			{"spiffe://partner.example/ns/any/sa/any", "DELETE", "/items/1", true},
			{"spiffe://east.example/ns/ops/sa/admin", "PUT", "/items", true},
			{"spiffe://east.example/ns/ops/sa/admin", "GET", "/admin/users", true}, // the deny targets orders only
			{"", "GET", "/items", false},
		}},
		{"cart http 9090: the port-8080 rule does not apply", "shop", "cart", 9090, true, []req{
			{"spiffe://east.example/ns/web/sa/frontend", "GET", "/items", false},
			{"spiffe://partner.example/ns/any/sa/any", "GET", "/items", true},
		}},
		{"cart tcp 5432", "shop", "cart", 5432, false, []req{
			{"spiffe://west.example/ns/batch/sa/job", "", "", true},
			{"spiffe://east.example/ns/batch/sa/job", "", "", false},
			{"spiffe://east.example/ns/web/sa/frontend", "", "", false},
		}},
		{"orders: only the deny applies", "shop", "orders", 8080, true, []req{
			{"", "GET", "/items", true},
			{"", "GET", "/admin/x", false},
		}},
		{"orders over TCP: a deny that needs a path covers the whole port", "shop", "orders", 6379, false, []req{
			{"spiffe://east.example/ns/web/sa/frontend", "", "", false},
		}},
		{"allow-nothing namespace", "other", "x", 80, true, []req{
			{"spiffe://east.example/ns/other/sa/x", "GET", "/", false},
		}},
		{"namespace without policies", "free", "x", 80, true, []req{
			{"", "GET", "/", true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := engineFor(t, s, tc.ns, tc.svc, tc.port, tc.http)
			for _, r := range tc.requests {
				in := &authz.Input{PeerID: r.peer, Authenticated: r.peer != "", Port: 15006}
				if tc.http {
					in.Request = httptest.NewRequest(r.method, "http://svc"+r.path, nil)
				}
				if d := e.Check(in); d.Allowed != r.allow {
					t.Errorf("%s %s %s: allowed %v (%s), want %v", r.peer, r.method, r.path, d.Allowed, d.Reason(), r.allow)
				}
			}
		})
	}
}

package xds

import (
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/causewaymesh/causeway/gateway"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/router"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
)

// gatewayTable translates a gateway golden case and returns the table of
// the named listener.
func gatewayTable(t testing.TB, gcase, listener string) *model.RouteTable {
	t.Helper()
	data, err := os.ReadFile("../../gateway/testdata/" + gcase + "/in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := gateway.DecodeYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := gateway.Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range out.Routes {
		if out.Routes[i].Parent.Kind == model.ParentGateway && out.Routes[i].Parent.Listener == listener {
			return &out.Routes[i]
		}
	}
	t.Fatalf("%s: no table for listener %s", gcase, listener)
	return nil
}

// dataPlane feeds virtual hosts through the proxy's xDS client translation
// and compiles the router table, as the sidecar does.
func dataPlane(t testing.TB, vhs []*routev3.VirtualHost) *router.Table {
	t.Helper()
	rc, err := xdsclient.TranslateRouteConfig(&routev3.RouteConfiguration{Name: "test", VirtualHosts: vhs})
	if err != nil {
		t.Fatalf("the data plane rejects the routes: %v", err)
	}
	return router.Compile(rc)
}

type want struct {
	route    string // route name prefix; "" = no match
	cluster  string // first weighted cluster; "" = not forwarded
	path     string // upstream path after rewrite (forward) or redirect location
	status   int    // direct response or redirect status
	host     string
	timeout  time.Duration
	retries  int
	mirrors  int
	clusters int
}

func check(t *testing.T, tbl *router.Table, method, url string, hdr map[string]string, w want) {
	t.Helper()
	req := httptest.NewRequest(method, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	_, rt := tbl.Match(req)
	if rt == nil {
		if w.route != "" {
			t.Errorf("%s %s: no route, want %s", method, url, w.route)
		}
		return
	}
	if w.route == "" {
		t.Errorf("%s %s: matched %s, want none", method, url, rt.Name)
		return
	}
	if rt.Name != w.route {
		t.Errorf("%s %s: route %s, want %s", method, url, rt.Name, w.route)
	}
	switch {
	case rt.Forward != nil:
		f := rt.Forward
		if f.Clusters[0].Name != w.cluster {
			t.Errorf("%s %s: cluster %s, want %s", method, url, f.Clusters[0].Name, w.cluster)
		}
		if w.clusters != 0 && len(f.Clusters) != w.clusters {
			t.Errorf("%s %s: %d clusters, want %d", method, url, len(f.Clusters), w.clusters)
		}
		if w.path != "" {
			if got := router.RewritePath(rt, req.URL.RequestURI()); got != w.path {
				t.Errorf("%s %s: upstream path %q, want %q", method, url, got, w.path)
			}
		}
		if f.HostRewrite != w.host {
			t.Errorf("%s %s: host rewrite %q, want %q", method, url, f.HostRewrite, w.host)
		}
		if f.Timeout != w.timeout {
			t.Errorf("%s %s: timeout %v, want %v", method, url, f.Timeout, w.timeout)
		}
		if w.retries != 0 && (f.Retry == nil || f.Retry.NumRetries != w.retries) {
			t.Errorf("%s %s: retry %+v, want %d retries", method, url, f.Retry, w.retries)
		}
		if len(f.Mirrors) != w.mirrors {
			t.Errorf("%s %s: %d mirrors, want %d", method, url, len(f.Mirrors), w.mirrors)
		}
	case rt.Redirect != nil:
		loc, st := router.Redirect(req, rt)
		if loc != w.path || st != w.status {
			t.Errorf("%s %s: redirect %d %s, want %d %s", method, url, st, loc, w.status, w.path)
		}
	case rt.Direct != nil:
		if rt.Direct.Status != w.status {
			t.Errorf("%s %s: direct %d, want %d", method, url, rt.Direct.Status, w.status)
		}
	}
}

func TestGatewayRoutesThroughDataPlane(t *testing.T) {
	web, api := ClusterName("shop", "web", 8080), ClusterName("shop", "api", 9090)
	t.Run("precedence", func(t *testing.T) {
		tbl := dataPlane(t, mustVHs(t, gatewayTable(t, "precedence", "http")))
		const h = "http://shop.example.com"
		for _, tt := range []struct {
			method, url string
			hdr         map[string]string
			w           want
		}{
			{"GET", h + "/api/v1/login", nil, want{route: "httproute/shop/older/rule/1/match/1", cluster: api}},
			{"GET", h + "/items/42", nil, want{route: "httproute/shop/newer/rule/0/match/4", cluster: web}},
			{"GET", h + "/items/x", nil, want{route: "httproute/shop/older/rule/0/match/0", cluster: web}},
			{"POST", h + "/api/x", nil, want{route: "httproute/shop/newer/rule/0/match/0", cluster: web}},
			{"GET", h + "/api/x", map[string]string{"a": "1", "b": "2", "x-version": "2"}, want{route: "httproute/shop/newer/rule/0/match/1", cluster: web}},
			{"GET", h + "/api/x", map[string]string{"X-Version": "2"}, want{route: "httproute/shop/older/rule/2/match/0", cluster: api}},
			{"GET", h + "/api?debug=1", nil, want{route: "httproute/shop/newer/rule/0/match/2", cluster: web}},
			{"GET", h + "/api", nil, want{route: "httproute/shop/older/rule/1/match/0", cluster: api}},
			{"GET", h + "/apix", nil, want{route: "httproute/shop/older/rule/0/match/0", cluster: web}},
			{"GET", "http://other.example.com/", nil, want{}},
		} {
			check(t, tbl, tt.method, tt.url, tt.hdr, tt.w)
		}
	})
	t.Run("matches", func(t *testing.T) {
		tbl := dataPlane(t, mustVHs(t, gatewayTable(t, "matches", "http")))
		ok := map[string]string{"X-Env": "prod", "X-User": "u42"}
		check(t, tbl, "GET", "http://a/exact?page=1&sort=asc", ok, want{route: "httproute/shop/m/rule/0/match/0", cluster: web})
		check(t, tbl, "POST", "http://a/exact?page=1&sort=asc", ok, want{})
		check(t, tbl, "GET", "http://a/exact?page=1&sort=up", ok, want{})
		check(t, tbl, "GET", "http://a/exact?page=1&sort=asc", map[string]string{"X-Env": "prod", "X-User": "bob"}, want{})
		check(t, tbl, "GET", "http://a/v2/anything", nil, want{route: "httproute/shop/m/rule/0/match/1", cluster: web})
		check(t, tbl, "GET", "http://a/v3/anything", nil, want{})
	})
	t.Run("filters", func(t *testing.T) {
		tbl := dataPlane(t, mustVHs(t, gatewayTable(t, "filters", "http")))
		check(t, tbl, "GET", "http://a.example.com/old/page?q=1", nil, want{route: "httproute/shop/f/rule/1/match/0", path: "https://new.example.com:8443/new/page?q=1", status: 301})
		check(t, tbl, "GET", "http://a.example.com/moved", nil, want{route: "httproute/shop/f/rule/2/match/0", path: "http://a.example.com/here", status: 302})
		check(t, tbl, "GET", "http://a.example.com/api/v1/x?y=2", nil, want{route: "httproute/shop/f/rule/3/match/0", cluster: api, path: "/v1/x?y=2", host: "api.internal"})
		check(t, tbl, "GET", "http://a.example.com/api", nil, want{route: "httproute/shop/f/rule/3/match/0", cluster: api, path: "/", host: "api.internal"})
		check(t, tbl, "GET", "http://a.example.com/m", nil, want{route: "httproute/shop/f/rule/4/match/0", cluster: web, mirrors: 3})
		check(t, tbl, "GET", "http://a.example.com/h/x", nil, want{route: "httproute/shop/f/rule/0/match/0", cluster: web, clusters: 1})
		_, rt := tbl.Match(httptest.NewRequest("GET", "http://a.example.com/h/x", nil))
		if got := rt.RequestHeaders; len(got.Set) != 1 || got.Set[0] != (config.HeaderValue{Name: "x-set", Value: "a"}) || len(got.Add) != 1 || got.Remove[0] != "x-remove" {
			t.Errorf("request headers %+v", got)
		}
		if got := rt.Forward.Clusters[0].RequestHeaders.Add; len(got) != 1 || got[0].Name != "x-backend" {
			t.Errorf("backend request headers %+v", got)
		}
		_, rt = tbl.Match(httptest.NewRequest("GET", "http://a.example.com/m", nil))
		if p := rt.Forward.Mirrors; p[0].Percent != 100 || p[1].Percent != 25 || p[2].Percent != 12.5 {
			t.Errorf("mirror percents %+v", p)
		}
	})
	t.Run("timeouts-retry", func(t *testing.T) {
		tbl := dataPlane(t, mustVHs(t, gatewayTable(t, "timeouts-retry", "http")))
		check(t, tbl, "GET", "http://a/slow", nil, want{route: "httproute/shop/t/rule/0/match/0", cluster: web, timeout: 10 * time.Second, retries: 3})
		_, rt := tbl.Match(httptest.NewRequest("GET", "http://a/slow", nil))
		if r := rt.Forward.Retry; r.PerTryTimeout != 2*time.Second || r.BackoffBase != 100*time.Millisecond || len(r.RetriableStatusCodes) != 2 ||
			r.On&config.RetryRetriableStatusCodes == 0 || r.On&config.RetryConnectFailure == 0 {
			t.Errorf("retry %+v", r)
		}
		check(t, tbl, "GET", "http://a/never", nil, want{route: "httproute/shop/t/rule/1/match/0", cluster: web, timeout: -1})
		check(t, tbl, "GET", "http://a/bad", nil, want{}) // rule dropped
	})
	t.Run("weighted-and-unresolved", func(t *testing.T) {
		tbl := dataPlane(t, mustVHs(t, gatewayTable(t, "weighted-serviceimport", "http")))
		check(t, tbl, "GET", "http://a/", nil, want{route: "httproute/shop/split/rule/0/match/0", cluster: web, clusters: 3})
		_, rt := tbl.Match(httptest.NewRequest("GET", "http://a/", nil))
		if c := rt.Forward.Clusters; c[1].Name != ClustersetName("shop", "web", 8080) || c[0].Weight != 90 || c[1].Weight != 10 || c[2].Weight != 0 {
			t.Errorf("clusters %+v", c)
		}
		tbl = dataPlane(t, mustVHs(t, gatewayTable(t, "bad-refs", "http")))
		check(t, tbl, "GET", "http://a/missing", nil, want{route: "httproute/shop/bad/rule/0/match/0", status: 500})
	})
	t.Run("grpc", func(t *testing.T) {
		tbl := dataPlane(t, mustVHs(t, gatewayTable(t, "grpcroute", "http")))
		echo := ClusterName("shop", "echo", 50051)
		const h = "http://grpc.example.com"
		check(t, tbl, "POST", h+"/echo.v1.Echo/Ping", nil, want{route: "grpcroute/shop/echo/rule/0/match/0", cluster: echo})
		check(t, tbl, "POST", h+"/echo.v2.Echo/StreamAll", nil, want{route: "grpcroute/shop/echo/rule/0/match/3", cluster: echo})
		check(t, tbl, "POST", h+"/any.Svc/Health", nil, want{route: "grpcroute/shop/echo/rule/0/match/2", cluster: echo})
		check(t, tbl, "POST", h+"/echo.v1.Admin/Reset", nil, want{route: "grpcroute/shop/echo/rule/0/match/1", cluster: echo})
		check(t, tbl, "POST", h+"/echo.v1.AdminX/Reset", nil, want{route: "grpcroute/shop/echo/rule/1/match/0", cluster: echo})
		check(t, tbl, "POST", h+"/x.Y/Z", map[string]string{"X-Tenant": "a", "X-Trace": "abc123"}, want{route: "grpcroute/shop/echo/rule/0/match/4", cluster: echo})
	})
}

func TestMeshVirtualHost(t *testing.T) {
	data, err := os.ReadFile("../../gateway/testdata/mesh-service/in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := gateway.DecodeYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := gateway.Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	tab := &out.Routes[0]
	if tab.Parent.Name != "reviews" || tab.Parent.ConsumerNamespace != "" {
		t.Fatalf("first table %s", tab.Parent)
	}
	domains := []string{"reviews.shop.svc.cluster.local", "reviews.shop"}
	vh, err := MeshVirtualHost("reviews", domains, tab, HTTPRouteOptions{Retry: &DefaultRetry})
	if err != nil {
		t.Fatal(err)
	}
	tbl := dataPlane(t, []*routev3.VirtualHost{vh})
	v2 := ClusterName("shop", "reviews-v2", 9080)
	check(t, tbl, "GET", "http://reviews.shop.svc.cluster.local:9080/x", map[string]string{"x-canary": "true"}, want{route: "httproute/shop/reviews/rule/0/match/0", cluster: v2, retries: 2})
	check(t, tbl, "GET", "http://reviews.shop/x", nil, want{route: "httproute/shop/reviews/rule/1/match/0", cluster: ClusterName("shop", "reviews", 9080), clusters: 2, retries: 2})
	check(t, tbl, "GET", "http://ignored.example.com/x", nil, want{})
}

func TestHTTPRoutesEdgeCases(t *testing.T) {
	web := model.Backend{Namespace: "shop", Name: "web", Port: 80, Weight: 1}
	tests := []struct {
		name string
		r    model.HTTPRoute
		url  string
		w    want
	}{
		{"full path rewrite with backslash", model.HTTPRoute{Name: "a", Path: "/", PathRewrite: &model.PathRewrite{Kind: model.ReplaceFullPath, Value: `/a\b`}, Backends: []model.Backend{web}},
			"http://h/x/y?q", want{route: "httproute//a/rule/0/match/0", cluster: ClusterName("shop", "web", 80), path: `/a\b?q`}},
		{"prefix rewrite of catch-all", model.HTTPRoute{Name: "a", Path: "/", PathRewrite: &model.PathRewrite{Kind: model.ReplacePrefixMatch, Value: "/v2"}, Backends: []model.Backend{web}},
			"http://h/x/y", want{route: "httproute//a/rule/0/match/0", cluster: ClusterName("shop", "web", 80), path: "/v2/x/y"}},
		{"zero weights", model.HTTPRoute{Name: "a", Path: "/", Backends: []model.Backend{{Namespace: "shop", Name: "web", Port: 80}}},
			"http://h/", want{route: "httproute//a/rule/0/match/0", status: 500}},
		{"no backends", model.HTTPRoute{Name: "a", Path: "/"}, "http://h/", want{route: "httproute//a/rule/0/match/0", status: 500}},
		{"backend timeout bounds request", model.HTTPRoute{Name: "a", Path: "/", Backends: []model.Backend{web}, Timeout: 5 * time.Second, BackendTimeout: time.Second},
			"http://h/", want{route: "httproute//a/rule/0/match/0", cluster: ClusterName("shop", "web", 80), timeout: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := HTTPRoutes([]model.HTTPRoute{tt.r}, HTTPRouteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			tbl := dataPlane(t, []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: rs}})
			check(t, tbl, "GET", tt.url, nil, tt.w)
		})
	}
}

func TestHTTPRoutesRejectsInvalid(t *testing.T) {
	_, err := HTTPRoutes([]model.HTTPRoute{{Name: "a", PathKind: model.PathRegex, Path: ""}}, HTTPRouteOptions{})
	if err == nil || !strings.Contains(err.Error(), `route "httproute//a/rule/0/match/0"`) {
		t.Fatalf("err = %v, want a validation error naming the route", err)
	}
}

func mustVHs(t testing.TB, tab *model.RouteTable) []*routev3.VirtualHost {
	t.Helper()
	vhs, err := GatewayVirtualHosts(tab, HTTPRouteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return vhs
}

func BenchmarkHTTPRoutes(b *testing.B) {
	tab := gatewayTable(b, "precedence", "http")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := GatewayVirtualHosts(tab, HTTPRouteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

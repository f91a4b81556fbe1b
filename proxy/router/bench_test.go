package router

import (
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/causewaymesh/causeway/proxy/config"
)

// benchConfig has 10 virtual hosts of 5 routes each (50 routes), with
// Istio-like domains: the FQDN, short names, and the same with a port.
func benchConfig() *config.RouteConfig {
	rc := &config.RouteConfig{Name: "bench"}
	for i := range 10 {
		svc := fmt.Sprintf("svc%d", i)
		rc.VirtualHosts = append(rc.VirtualHosts, &config.VirtualHost{
			Name: svc,
			Domains: []string{svc + ".ns.svc.cluster.local", svc + ".ns.svc.cluster.local:8080",
				svc + ".ns", svc, fmt.Sprintf("10.0.0.%d", i), "*." + svc + ".example.com"},
			Routes: []*config.Route{
				{Name: "exact", Match: config.RouteMatch{PathKind: config.PathExact, Path: "/healthz", CaseSensitive: true}},
				{Name: "header", Match: config.RouteMatch{Path: "/api", CaseSensitive: true,
					Headers: []config.HeaderMatch{{Name: "x-canary", Value: config.StringMatch{Value: "true"}}}}},
				{Name: "segment", Match: config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/api/v2", CaseSensitive: true}},
				{Name: "prefix", Match: config.RouteMatch{Path: "/static/"}},
				{Name: "regex", Match: config.RouteMatch{PathKind: config.PathRegex, PathRegex: regexp.MustCompile(`/users/[0-9]+`)}},
			},
		})
	}
	return rc
}

type benchCase struct {
	name, host, target, route string
	headers                   []string
	zeroAlloc                 bool
}

var benchCases = []benchCase{
	{"exact", "svc9.ns.svc.cluster.local", "/healthz", "exact", nil, true},
	{"header", "svc9.ns.svc.cluster.local", "/api/users", "header", []string{"X-Canary", "true"}, true},
	{"segment-prefix", "svc9.ns.svc.cluster.local", "/api/v2/users?limit=10", "segment", nil, true},
	{"prefix-4th-route", "svc9.ns.svc.cluster.local", "/Static/app.js", "prefix", nil, true},
	{"host-with-port", "svc9.ns.svc.cluster.local:8080", "/healthz", "exact", nil, true},
	{"host-port-ignored", "svc9:9090", "/healthz", "exact", nil, true},
	{"host-mixed-case", "SVC9.NS.svc.cluster.local", "/healthz", "exact", nil, true},
	{"host-wildcard", "a.svc9.example.com", "/healthz", "exact", nil, true},
	{"regex-5th-route", "svc9.ns.svc.cluster.local", "/users/12345", "regex", nil, true},
	{"no-route", "svc9.ns.svc.cluster.local", "/nothing/here", "", nil, true},
}

func (bc benchCase) request() *http.Request {
	r := req("GET", bc.target, bc.headers...)
	r.Host = bc.host
	return r
}

func BenchmarkMatch(b *testing.B) {
	tab := Compile(benchConfig())
	for _, bc := range benchCases {
		r := bc.request()
		if _, rt := tab.Match(r); routeName(rt) != bc.route && !(bc.route == "" && rt == nil) {
			b.Fatalf("%s: matched %s, want %s", bc.name, routeName(rt), bc.route)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tab.Match(r)
			}
		})
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	tab := Compile(benchConfig())
	for _, bc := range benchCases {
		if !bc.zeroAlloc {
			continue
		}
		r := bc.request()
		if n := testing.AllocsPerRun(100, func() { tab.Match(r) }); n != 0 {
			t.Errorf("%s: %v allocs per Match, want 0", bc.name, n)
		}
	}
}

func TestHelpersDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	f := &config.ForwardAction{
		Clusters:   []config.WeightedCluster{{Name: "a", Weight: 10}, {Name: "b", Weight: 90}},
		HashPolicy: []config.HashPolicy{{Header: "x-user"}, {Cookie: "session"}, {SourceIP: true}},
	}
	route := &config.Route{Forward: f}
	byHeader := req("GET", "/", "X-User", "alice")
	byCookie := req("GET", "/", "Cookie", "a=b; session=xyz")
	bySource := req("GET", "/")
	bySource.RemoteAddr = "10.1.2.3:4567"
	for name, fn := range map[string]func(){
		"PickCluster":        func() { PickCluster(f, 12345) },
		"HashKey/header":     func() { HashKey(byHeader, f) },
		"HashKey/cookie":     func() { HashKey(byCookie, f) },
		"HashKey/source":     func() { HashKey(bySource, f) },
		"RewritePath/none":   func() { RewritePath(route, "/a/b?c") },
		"ApplyHeaders/empty": func() { ApplyHeaders(byHeader.Header, config.HeaderMutation{}, "") },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", name, n)
		}
	}
}

func BenchmarkPickCluster(b *testing.B) {
	f := &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: "a", Weight: 10}, {Name: "b", Weight: 20}, {Name: "c", Weight: 70}}}
	b.ReportAllocs()
	var i uint64
	for b.Loop() {
		PickCluster(f, i)
		i += 7919
	}
}

func BenchmarkHashKey(b *testing.B) {
	f := &config.ForwardAction{HashPolicy: []config.HashPolicy{{Header: "x-user"}, {Cookie: "session"}, {SourceIP: true}}}
	for name, r := range map[string]*http.Request{
		"header": req("GET", "/", "X-User", "alice@example.com"),
		"cookie": req("GET", "/", "Cookie", "theme=dark; session=0123456789abcdef; lang=en"),
		"source": func() *http.Request { r := req("GET", "/"); r.RemoteAddr = "10.1.2.3:4567"; return r }(),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				HashKey(r, f)
			}
		})
	}
}

func BenchmarkRewritePath(b *testing.B) {
	seg := &config.Route{Match: config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/api", CaseSensitive: true},
		Forward: &config.ForwardAction{PrefixRewrite: "/"}}
	re := &config.Route{Forward: &config.ForwardAction{RegexRewrite: regexp.MustCompile(`^/service/([^/]+)(/.*)$`), RegexSubstitution: `\2/instance/\1`}}
	for _, bc := range []struct {
		name  string
		route *config.Route
		path  string
	}{
		{"none", &config.Route{Forward: &config.ForwardAction{}}, "/api/v1/users?x=1"},
		{"prefix", seg, "/api/v1/users?x=1"},
		{"regex", re, "/service/foo/v1/api"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				RewritePath(bc.route, bc.path)
			}
		})
	}
}

func BenchmarkApplyHeaders(b *testing.B) {
	m := config.HeaderMutation{
		Remove: []string{"x-internal"},
		Set:    []config.HeaderValue{{Name: "X-Real-Ip", Value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
		Add:    []config.HeaderValue{{Name: "X-Route", Value: "r1"}},
	}
	base := http.Header{"X-Internal": {"1"}, "Accept": {"*/*"}}
	b.ReportAllocs()
	for b.Loop() {
		h := http.Header{"X-Internal": base["X-Internal"], "Accept": base["Accept"]}
		ApplyHeaders(h, m, "10.1.2.3:4567")
	}
}

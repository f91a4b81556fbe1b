package authz

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/causewaymesh/causeway/proxy/config"
)

func name(kind config.StringKind, v string) config.Principal {
	return config.Principal{Authenticated: &config.PrincipalName{Name: &config.StringMatch{Kind: kind, Value: v}}}
}

func TestCheck(t *testing.T) {
	get := config.Permission{Header: &config.HeaderMatch{Name: ":method", Value: config.StringMatch{Value: "GET"}}}
	e := Compile([]*config.RBAC{
		{Name: "deny", Action: config.RBACDeny, Policies: []config.RBACPolicy{{
			Name:        "no-debug",
			Permissions: []config.Permission{{URLPath: &config.StringMatch{Kind: config.StringPrefix, Value: "/debug/"}}},
			Principals:  []config.Principal{{Any: true}},
		}}},
		{Name: "allow", Action: config.RBACAllow, Policies: []config.RBACPolicy{
			{Name: "ns-a-get", Permissions: []config.Permission{get}, Principals: []config.Principal{name(config.StringPrefix, "spiffe://td/ns/a/")}},
			{Name: "port-9090", Permissions: []config.Permission{{DestinationPort: 9090}}, Principals: []config.Principal{{Authenticated: &config.PrincipalName{}}}},
			{Name: "not-b", Permissions: []config.Permission{{Not: &config.Permission{Or: []config.Permission{get, {Any: true}}}}},
				Principals: []config.Principal{{Any: true}}}, // never matches: not(any)
		}},
	})
	req := func(method, path string) *http.Request { return httptest.NewRequest(method, "http://x"+path, nil) }
	for _, tc := range []struct {
		name   string
		in     Input
		allow  bool
		policy string
	}{
		{"ns a GET", Input{PeerID: "spiffe://td/ns/a/sa/x", Authenticated: true, Port: 80, Request: req("GET", "/")}, true, ""},
		{"ns a POST", Input{PeerID: "spiffe://td/ns/a/sa/x", Authenticated: true, Port: 80, Request: req("POST", "/")}, false, ""},
		{"ns ab is not ns a", Input{PeerID: "spiffe://td/ns/ab/sa/x", Authenticated: true, Port: 80, Request: req("GET", "/")}, false, ""},
		{"any peer on 9090", Input{PeerID: "spiffe://other/ns/z/sa/z", Authenticated: true, Port: 9090, Request: req("POST", "/")}, true, ""},
		{"unauthenticated on 9090", Input{Port: 9090, Request: req("GET", "/")}, false, ""},
		{"debug denied first", Input{PeerID: "spiffe://td/ns/a/sa/x", Authenticated: true, Port: 80, Request: req("GET", "/debug/pprof")}, false, "no-debug"},
		{"debug with dot segments", Input{PeerID: "spiffe://td/ns/a/sa/x", Authenticated: true, Port: 80, Request: req("GET", "/x/../debug/vars")}, false, "no-debug"},
		{"tcp: path rules never match", Input{PeerID: "spiffe://td/ns/a/sa/x", Authenticated: true, Port: 9090}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Check(&tc.in)
			if d.Allowed != tc.allow || d.Policy != tc.policy {
				t.Errorf("Check = %+v (%s), want allowed %v policy %q", d, d.Reason(), tc.allow, tc.policy)
			}
		})
	}
	var none *Engine
	if d := none.Check(&Input{}); !d.Allowed {
		t.Error("a listener without RBAC filters refused")
	}
	if Compile(nil) != nil {
		t.Error("Compile(nil) is not nil")
	}
}

func TestNormalPath(t *testing.T) {
	for in, want := range map[string]string{
		"":             "/",
		"/":            "/",
		"/a/b":         "/a/b",
		"/a/b/":        "/a/b/",
		"/a//b":        "/a/b",
		"/a/./b":       "/a/b",
		"/a/../b":      "/b",
		"/../../etc":   "/etc",
		"/a/..":        "/",
		"/a/.":         "/a",
		"relative/x/":  "/relative/x/",
		"/a/b/../c//d": "/a/c/d",
	} {
		if got := normalPath(in); got != want {
			t.Errorf("normalPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	e := Compile([]*config.RBAC{{Name: "allow", Action: config.RBACAllow, Policies: []config.RBACPolicy{
		{Name: "other", Permissions: []config.Permission{{Any: true}}, Principals: []config.Principal{name(config.StringExact, "spiffe://td/ns/z/sa/z")}},
		{Name: "ns-a-get", Permissions: []config.Permission{{And: []config.Permission{
			{Header: &config.HeaderMatch{Name: ":method", Value: config.StringMatch{Value: "GET"}}},
			{URLPath: &config.StringMatch{Kind: config.StringPrefix, Value: "/api/"}},
		}}}, Principals: []config.Principal{name(config.StringPrefix, "spiffe://td/ns/a/")}},
	}}})
	in := &Input{PeerID: "spiffe://td/ns/a/sa/x", Authenticated: true, Port: 80, Request: httptest.NewRequest("GET", "http://x/api/items", nil)}
	if n := testing.AllocsPerRun(100, func() { e.Check(in) }); n != 0 {
		b.Fatalf("Check allocates %v times per call", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !e.Check(in).Allowed {
			b.Fatal("denied")
		}
	}
}

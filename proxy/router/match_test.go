package router

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// req builds a server-side request for target ("http://host/path?q" or
// "/path?q") with header pairs.
func req(method, target string, kv ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

func vhosts(vs ...*config.VirtualHost) *config.RouteConfig {
	return &config.RouteConfig{Name: "test", VirtualHosts: vs}
}

func TestDomainPrecedence(t *testing.T) {
	rc := vhosts(
		&config.VirtualHost{Name: "exact", Domains: []string{"www.foo.com", "api.foo.com:8443"}},
		&config.VirtualHost{Name: "suffix", Domains: []string{"*.foo.com"}},
		&config.VirtualHost{Name: "suffix-bar", Domains: []string{"*-bar.foo.com"}},
		&config.VirtualHost{Name: "prefix", Domains: []string{"www.*"}},
		&config.VirtualHost{Name: "prefix-long", Domains: []string{"www.foo.*"}},
		&config.VirtualHost{Name: "upper", Domains: []string{"MiXeD.Example.COM"}},
		&config.VirtualHost{Name: "v6", Domains: []string{"[::1]"}},
		&config.VirtualHost{Name: "dup", Domains: []string{"www.foo.com", "*.foo.com", "www.*"}},
		&config.VirtualHost{Name: "star", Domains: []string{"*"}},
		&config.VirtualHost{Name: "star2", Domains: []string{"*"}},
	)
	tab := Compile(rc)
	for _, tc := range []struct{ host, want string }{
		{"www.foo.com", "exact"},
		{"WWW.Foo.COM", "exact"},
		{"www.foo.com:8080", "exact"},  // port ignored
		{"api.foo.com:8443", "exact"},  // the domain names the port
		{"api.foo.com", "suffix"},      // "api.foo.com:8443" is not "api.foo.com"
		{"api.foo.com:9000", "suffix"}, // other port: bare host
		{"a.b.foo.com", "suffix"},
		{"baz-bar.foo.com", "suffix-bar"}, // longest suffix wins
		{"-bar.foo.com", "suffix"},        // "*-bar" needs a non-empty wildcard
		{".foo.com", "star"},              // "*." needs a non-empty wildcard
		{"www.x.foo.com", "suffix"},       // suffix beats prefix
		{"www.foo.org", "prefix-long"},    // longest prefix wins
		{"www.bar.org", "prefix"},
		{"www.", "star"},
		{"www.foo.com.evil", "prefix-long"},
		{"mixed.example.com", "upper"},
		{"MIXED.example.com:80", "upper"},
		{"[::1]:8080", "v6"},
		{"[::1]", "v6"},
		{"other.org", "star"},
		{"", "star"},
		{"foo.com:", "star"},
	} {
		r := req("GET", "/")
		r.Host = tc.host
		vh, _ := tab.Match(r)
		if vh == nil || vh.Name != tc.want {
			t.Errorf("host %q: got %v, want %s", tc.host, name(vh), tc.want)
		}
		if got := tab.VirtualHost(tc.host); got != vh {
			t.Errorf("VirtualHost(%q) = %v, Match gave %v", tc.host, name(got), name(vh))
		}
	}
}

func name(vh *config.VirtualHost) string {
	if vh == nil {
		return "<nil>"
	}
	return vh.Name
}

func TestDomainPorts(t *testing.T) {
	tab := Compile(vhosts(
		&config.VirtualHost{Name: "with-port", Domains: []string{"foo.com:8080"}},
		&config.VirtualHost{Name: "bare", Domains: []string{"foo.com"}},
		&config.VirtualHost{Name: "prefix", Domains: []string{"foo.*"}},
		&config.VirtualHost{Name: "any-9090", Domains: []string{"*:9090"}},
	))
	for _, tc := range []struct{ host, want string }{
		{"foo.com:8080", "with-port"},
		{"foo.com", "bare"},
		{"foo.com:7070", "bare"},
		{"foo.com:9090", "bare"}, // exact beats the suffix wildcard
		{"bar.com:9090", "any-9090"},
		{"foo.org:8080", "prefix"},
		{"bar.org", "<nil>"},
		{"[2001:db8::1]:9090", "any-9090"},
		{"2001:db8::1", "<nil>"}, // bare IPv6: no port to strip
	} {
		if got := name(tab.VirtualHost(tc.host)); got != tc.want {
			t.Errorf("host %q: got %s, want %s", tc.host, got, tc.want)
		}
	}
}

func TestEmptyTables(t *testing.T) {
	r := req("GET", "/")
	for name, tab := range map[string]*Table{"nil": nil, "nil-config": Compile(nil), "zero": {}} {
		if vh, rt := tab.Match(r); vh != nil || rt != nil {
			t.Errorf("%s: Match = %v, %v; want nil, nil", name, vh, rt)
		}
	}
	// A virtual host without a matching route gives the host and a nil route.
	vh := &config.VirtualHost{Name: "v", Domains: []string{"*"},
		Routes: []*config.Route{{Name: "r", Match: config.RouteMatch{PathKind: config.PathExact, Path: "/x"}}}}
	gotVH, gotRT := Compile(vhosts(vh)).Match(r)
	if gotVH != vh || gotRT != nil {
		t.Errorf("Match = %v, %v; want %v, nil", gotVH, gotRT, vh)
	}
}

func TestFirstRouteWins(t *testing.T) {
	routes := []*config.Route{
		{Name: "exact", Match: config.RouteMatch{PathKind: config.PathExact, Path: "/a", CaseSensitive: true}},
		{Name: "header", Match: config.RouteMatch{Path: "/a", CaseSensitive: true,
			Headers: []config.HeaderMatch{{Name: "x-v", Value: config.StringMatch{Value: "2"}}}}},
		{Name: "prefix-a", Match: config.RouteMatch{Path: "/a", CaseSensitive: true}},
		{Name: "all", Match: config.RouteMatch{}},
	}
	tab := Compile(vhosts(&config.VirtualHost{Name: "v", Domains: []string{"*"}, Routes: routes}))
	for _, tc := range []struct {
		r    *http.Request
		want string
	}{
		{req("GET", "/a"), "exact"},
		{req("GET", "/a", "x-v", "2"), "exact"},
		{req("GET", "/ab", "x-v", "2"), "header"},
		{req("GET", "/ab"), "prefix-a"},
		{req("GET", "/b"), "all"},
	} {
		_, rt := tab.Match(tc.r)
		if rt == nil || rt.Name != tc.want {
			t.Errorf("%s: got %v, want %s", tc.r.URL, rt, tc.want)
		}
	}
}

func sm(kind config.StringKind, v string) config.StringMatch {
	return config.StringMatch{Kind: kind, Value: v}
}

func TestRouteMatch(t *testing.T) {
	cs := func(m config.RouteMatch) config.RouteMatch { m.CaseSensitive = true; return m }
	hdr := func(h ...config.HeaderMatch) config.RouteMatch { return cs(config.RouteMatch{Headers: h}) }
	qry := func(q ...config.QueryMatch) config.RouteMatch { return cs(config.RouteMatch{Query: q}) }
	tlsReq := req("GET", "/")
	tlsReq.TLS = &tls.ConnectionState{}

	for _, tc := range []struct {
		name  string
		match config.RouteMatch
		r     *http.Request
		want  bool
	}{
		// Prefix.
		{"prefix empty matches all", cs(config.RouteMatch{}), req("GET", "/anything"), true},
		{"prefix exact length", cs(config.RouteMatch{Path: "/api"}), req("GET", "/api"), true},
		{"prefix longer", cs(config.RouteMatch{Path: "/api"}), req("GET", "/api/x"), true},
		{"prefix not segment", cs(config.RouteMatch{Path: "/api"}), req("GET", "/apix"), true},
		{"prefix shorter path", cs(config.RouteMatch{Path: "/api"}), req("GET", "/ap"), false},
		{"prefix case sensitive", cs(config.RouteMatch{Path: "/api"}), req("GET", "/API/x"), false},
		{"prefix case insensitive", config.RouteMatch{Path: "/Api"}, req("GET", "/aPI/x"), true},
		{"prefix ignores query", cs(config.RouteMatch{Path: "/a?"}), req("GET", "/a?b"), false},
		// Exact.
		{"exact", cs(config.RouteMatch{PathKind: config.PathExact, Path: "/a"}), req("GET", "/a"), true},
		{"exact with query", cs(config.RouteMatch{PathKind: config.PathExact, Path: "/a"}), req("GET", "/a?x=1"), true},
		{"exact trailing slash", cs(config.RouteMatch{PathKind: config.PathExact, Path: "/a"}), req("GET", "/a/"), false},
		{"exact case sensitive", cs(config.RouteMatch{PathKind: config.PathExact, Path: "/a"}), req("GET", "/A"), false},
		{"exact case insensitive", config.RouteMatch{PathKind: config.PathExact, Path: "/A"}, req("GET", "/a"), true},
		{"exact escaped path", cs(config.RouteMatch{PathKind: config.PathExact, Path: "/a%2Fb"}), req("GET", "/a%2Fb"), true},
		{"escaped slash is no separator", cs(config.RouteMatch{Path: "/a/"}), req("GET", "/a%2Fb"), false},
		// Regex: whole path, case always significant.
		{"regex", cs(config.RouteMatch{PathKind: config.PathRegex, PathRegex: regexp.MustCompile(`/v[0-9]+/.*`)}), req("GET", "/v1/x?q=1"), true},
		{"regex is anchored at start", cs(config.RouteMatch{PathKind: config.PathRegex, PathRegex: regexp.MustCompile(`/v[0-9]+/.*`)}), req("GET", "/x/v1/x"), false},
		{"regex is anchored at end", cs(config.RouteMatch{PathKind: config.PathRegex, PathRegex: regexp.MustCompile(`/v[0-9]+`)}), req("GET", "/v1/x"), false},
		{"regex whole-match alternation", cs(config.RouteMatch{PathKind: config.PathRegex, PathRegex: regexp.MustCompile(`/a|/ab`)}), req("GET", "/ab"), true},
		{"regex ignores CaseSensitive", config.RouteMatch{PathKind: config.PathRegex, PathRegex: regexp.MustCompile(`/abc`)}, req("GET", "/ABC"), false},
		// Segment prefix (Gateway API PathPrefix).
		{"segment equal", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a"}), req("GET", "/a"), true},
		{"segment slash", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a"}), req("GET", "/a/"), true},
		{"segment child", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a"}), req("GET", "/a/b"), true},
		{"segment not partial", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a"}), req("GET", "/ab"), false},
		{"segment trailing slash ignored", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a/"}), req("GET", "/a"), true},
		{"segment trailing slash child", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a/"}), req("GET", "/a/b"), true},
		{"segment trailing slash not partial", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a/"}), req("GET", "/ab"), false},
		{"segment root", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/"}), req("GET", "/x/y"), true},
		{"segment with query", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a"}), req("GET", "/a?b=c"), true},
		{"segment case insensitive", config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/A/B"}, req("GET", "/a/b/c"), true},
		{"segment case sensitive", cs(config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/A/B"}), req("GET", "/a/b/c"), false},

		// Headers: every StringKind, IgnoreCase, presence, invert.
		{"header exact", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringExact, "v")}), req("GET", "/", "X-A", "v"), true},
		{"header exact miss", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringExact, "v")}), req("GET", "/", "X-A", "vv"), false},
		{"header exact empty", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringExact, "")}), req("GET", "/", "X-A", ""), true},
		{"header prefix", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringPrefix, "ab")}), req("GET", "/", "X-A", "abc"), true},
		{"header prefix miss", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringPrefix, "ab")}), req("GET", "/", "X-A", "cab"), false},
		{"header suffix", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringSuffix, "bc")}), req("GET", "/", "X-A", "abc"), true},
		{"header suffix miss", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringSuffix, "bc")}), req("GET", "/", "X-A", "bca"), false},
		{"header contains", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringContains, "b")}), req("GET", "/", "X-A", "abc"), true},
		{"header contains miss", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringContains, "d")}), req("GET", "/", "X-A", "abc"), false},
		{"header regex", hdr(config.HeaderMatch{Name: "x-a", Value: config.StringMatch{Kind: config.StringRegex, Regex: regexp.MustCompile(`\d{3}`)}}), req("GET", "/", "X-A", "123"), true},
		{"header regex whole value", hdr(config.HeaderMatch{Name: "x-a", Value: config.StringMatch{Kind: config.StringRegex, Regex: regexp.MustCompile(`\d{3}`)}}), req("GET", "/", "X-A", "1234"), false},
		{"header regex inverted", hdr(config.HeaderMatch{Name: "x-a", Invert: true, Value: config.StringMatch{Kind: config.StringRegex, Regex: regexp.MustCompile(`\d{3}`)}}), req("GET", "/", "X-A", "1234"), true},
		{"header regex ignores IgnoreCase", hdr(config.HeaderMatch{Name: "x-a", Value: config.StringMatch{Kind: config.StringRegex, Regex: regexp.MustCompile(`abc`), IgnoreCase: true}}), req("GET", "/", "X-A", "ABC"), false},
		{"header exact ignore case", hdr(config.HeaderMatch{Name: "x-a", Value: config.StringMatch{Value: "AbC", IgnoreCase: true}}), req("GET", "/", "X-A", "aBc"), true},
		{"header prefix ignore case", hdr(config.HeaderMatch{Name: "x-a", Value: config.StringMatch{Kind: config.StringPrefix, Value: "AB", IgnoreCase: true}}), req("GET", "/", "X-A", "abX"), true},
		{"header suffix ignore case", hdr(config.HeaderMatch{Name: "x-a", Value: config.StringMatch{Kind: config.StringSuffix, Value: "BC", IgnoreCase: true}}), req("GET", "/", "X-A", "Xbc"), true},
		{"header contains ignore case", hdr(config.HeaderMatch{Name: "x-a", Value: config.StringMatch{Kind: config.StringContains, Value: "B", IgnoreCase: true}}), req("GET", "/", "X-A", "abc"), true},
		{"header exact case sensitive", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringExact, "AbC")}), req("GET", "/", "X-A", "abc"), false},
		{"header name any case", hdr(config.HeaderMatch{Name: "X-a", Value: sm(config.StringExact, "v")}), req("GET", "/", "x-A", "v"), true},
		{"header multi values joined", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringExact, "1,2")}), req("GET", "/", "X-A", "1", "X-A", "2"), true},
		{"header multi value not first", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringExact, "1")}), req("GET", "/", "X-A", "1", "X-A", "2"), false},
		{"header absent", hdr(config.HeaderMatch{Name: "x-a", Value: sm(config.StringExact, "v")}), req("GET", "/"), false},
		{"header absent inverted value", hdr(config.HeaderMatch{Name: "x-a", Invert: true, Value: sm(config.StringExact, "v")}), req("GET", "/"), false},
		{"header inverted value", hdr(config.HeaderMatch{Name: "x-a", Invert: true, Value: sm(config.StringExact, "v")}), req("GET", "/", "X-A", "w"), true},
		{"header inverted value miss", hdr(config.HeaderMatch{Name: "x-a", Invert: true, Value: sm(config.StringExact, "v")}), req("GET", "/", "X-A", "v"), false},
		{"header present", hdr(config.HeaderMatch{Name: "x-a", Present: true}), req("GET", "/", "X-A", ""), true},
		{"header present absent", hdr(config.HeaderMatch{Name: "x-a", Present: true}), req("GET", "/"), false},
		{"header not present", hdr(config.HeaderMatch{Name: "x-a", Present: true, Invert: true}), req("GET", "/"), true},
		{"header not present but is", hdr(config.HeaderMatch{Name: "x-a", Present: true, Invert: true}), req("GET", "/", "X-A", "v"), false},
		{"two headers both", hdr(config.HeaderMatch{Name: "x-a", Present: true}, config.HeaderMatch{Name: "x-b", Present: true}), req("GET", "/", "X-A", "1", "X-B", "2"), true},
		{"two headers one", hdr(config.HeaderMatch{Name: "x-a", Present: true}, config.HeaderMatch{Name: "x-b", Present: true}), req("GET", "/", "X-A", "1"), false},

		// Pseudo-headers.
		{":method", hdr(config.HeaderMatch{Name: ":method", Value: sm(config.StringExact, "POST")}), req("POST", "/"), true},
		{":method miss", hdr(config.HeaderMatch{Name: ":method", Value: sm(config.StringExact, "POST")}), req("GET", "/"), false},
		{":authority", hdr(config.HeaderMatch{Name: ":authority", Value: sm(config.StringExact, "a.com:81")}), req("GET", "http://a.com:81/"), true},
		{"host", hdr(config.HeaderMatch{Name: "host", Value: sm(config.StringPrefix, "a.com")}), req("GET", "http://a.com:81/"), true},
		{":path has query", hdr(config.HeaderMatch{Name: ":path", Value: sm(config.StringExact, "/p?q=1")}), req("GET", "/p?q=1"), true},
		{":scheme http", hdr(config.HeaderMatch{Name: ":scheme", Value: sm(config.StringExact, "http")}), req("GET", "/"), true},
		{":scheme https", hdr(config.HeaderMatch{Name: ":scheme", Value: sm(config.StringExact, "https")}), tlsReq, true},
		{"unknown pseudo absent", hdr(config.HeaderMatch{Name: ":protocol", Present: true}), req("GET", "/"), false},
		{"unknown pseudo inverted", hdr(config.HeaderMatch{Name: ":protocol", Present: true, Invert: true}), req("GET", "/"), true},

		// Query parameters.
		{"query exact", qry(config.QueryMatch{Name: "a", Value: sm(config.StringExact, "1")}), req("GET", "/?a=1"), true},
		{"query first value", qry(config.QueryMatch{Name: "a", Value: sm(config.StringExact, "2")}), req("GET", "/?a=1&a=2"), false},
		{"query among others", qry(config.QueryMatch{Name: "a", Value: sm(config.StringExact, "1")}), req("GET", "/?b=2&&a=1"), true},
		{"query name case sensitive", qry(config.QueryMatch{Name: "a", Value: sm(config.StringExact, "1")}), req("GET", "/?A=1"), false},
		{"query decoded", qry(config.QueryMatch{Name: "q", Value: sm(config.StringExact, "a b&c")}), req("GET", "/?q=a%20b%26c"), true},
		{"query plus", qry(config.QueryMatch{Name: "q", Value: sm(config.StringExact, "a b")}), req("GET", "/?q=a+b"), true},
		{"query encoded name", qry(config.QueryMatch{Name: "a b", Present: true}), req("GET", "/?a%20b=1"), true},
		{"query bad escape skipped", qry(config.QueryMatch{Name: "a", Value: sm(config.StringExact, "2")}), req("GET", "/?a=%zz&a=2"), true},
		{"query absent", qry(config.QueryMatch{Name: "a", Value: sm(config.StringExact, "1")}), req("GET", "/?b=1"), false},
		{"query present", qry(config.QueryMatch{Name: "a", Present: true}), req("GET", "/?a"), true},
		{"query present empty", qry(config.QueryMatch{Name: "a", Present: true}), req("GET", "/?a="), true},
		{"query present absent", qry(config.QueryMatch{Name: "a", Present: true}), req("GET", "/?ab=1"), false},
		{"query empty value", qry(config.QueryMatch{Name: "a", Value: sm(config.StringExact, "")}), req("GET", "/?a"), true},
		{"query regex", qry(config.QueryMatch{Name: "a", Value: config.StringMatch{Kind: config.StringRegex, Regex: regexp.MustCompile(`[a-z]+`)}}), req("GET", "/?a=xyz"), true},
		{"query ignore case", qry(config.QueryMatch{Name: "a", Value: config.StringMatch{Kind: config.StringPrefix, Value: "X", IgnoreCase: true}}), req("GET", "/?a=xyz"), true},
		{"query and header", cs(config.RouteMatch{Path: "/p",
			Headers: []config.HeaderMatch{{Name: "x-a", Present: true}},
			Query:   []config.QueryMatch{{Name: "a", Present: true}}}), req("GET", "/p?a", "X-A", "1"), true},
		{"query and header, no query", cs(config.RouteMatch{Path: "/p",
			Headers: []config.HeaderMatch{{Name: "x-a", Present: true}},
			Query:   []config.QueryMatch{{Name: "a", Present: true}}}), req("GET", "/p?b", "X-A", "1"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &config.Route{Name: "r", Match: tc.match}
			tab := Compile(vhosts(&config.VirtualHost{Name: "v", Domains: []string{"*"}, Routes: []*config.Route{rt}}))
			_, got := tab.Match(tc.r)
			if (got != nil) != tc.want {
				t.Errorf("%s %s: matched=%v, want %v", tc.r.Method, tc.r.RequestURI, got != nil, tc.want)
			}
		})
	}
}

// TestMatchClientRequest covers requests built by hand (no RequestURI),
// as the engine's tests and mirrors may produce.
func TestMatchClientRequest(t *testing.T) {
	rt := &config.Route{Name: "r", Match: config.RouteMatch{CaseSensitive: true,
		Headers: []config.HeaderMatch{{Name: ":path", Value: sm(config.StringExact, "/x?y=1")}}}}
	tab := Compile(vhosts(&config.VirtualHost{Name: "v", Domains: []string{"*"}, Routes: []*config.Route{rt}}))
	r, err := http.NewRequestWithContext(t.Context(), "GET", "http://h/x?y=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, got := tab.Match(r); got != rt {
		t.Errorf("Match = %v, want %v", got, rt)
	}
	r.URL = nil
	if _, got := tab.Match(r); got != nil { // ":path" is "/" now
		t.Errorf("Match without URL = %v, want nil", got)
	}
}

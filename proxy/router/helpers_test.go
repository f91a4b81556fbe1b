package router

import (
	"crypto/tls"
	"net/http"
	"reflect"
	"regexp"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestPickClusterDistribution(t *testing.T) {
	f := &config.ForwardAction{Clusters: []config.WeightedCluster{
		{Name: "a", Weight: 1}, {Name: "b", Weight: 2}, {Name: "c", Weight: 3},
		{Name: "zero", Weight: 0}, {Name: "d", Weight: 4},
	}}
	const total = 10
	for _, base := range []uint64{0, 1 << 40, ^uint64(0) - 10*total + 1} {
		counts := map[string]int{}
		for i := uint64(0); i < 10*total; i++ {
			counts[PickCluster(f, base+i).Name]++
		}
		want := map[string]int{"a": 10, "b": 20, "c": 30, "d": 40}
		if !reflect.DeepEqual(counts, want) {
			t.Errorf("base %d: counts %v, want %v", base, counts, want)
		}
	}
	// rnd in [0, total) selects by cumulative weight.
	for rnd, want := range []string{"a", "b", "b", "c", "c", "c", "d", "d", "d", "d"} {
		if got := PickCluster(f, uint64(rnd)).Name; got != want {
			t.Errorf("rnd %d: got %s, want %s", rnd, got, want)
		}
	}
}

func TestPickClusterEdges(t *testing.T) {
	one := &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: "only", Weight: 0}}}
	if got := PickCluster(one, 12345); got == nil || got.Name != "only" {
		t.Errorf("single cluster: got %v", got)
	}
	if got := PickCluster(one, 0); got != &one.Clusters[0] {
		t.Errorf("single cluster: not a pointer into the config")
	}
	zeros := &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: "a"}, {Name: "b"}}}
	for name, f := range map[string]*config.ForwardAction{"nil": nil, "empty": {}, "all zero": zeros} {
		if got := PickCluster(f, 7); got != nil {
			t.Errorf("%s: got %v, want nil", name, got)
		}
	}
}

func TestApplyHeaders(t *testing.T) {
	hv := func(kv ...string) []config.HeaderValue {
		var out []config.HeaderValue
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, config.HeaderValue{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		in       http.Header
		m        config.HeaderMutation
		remote   string
		want     http.Header
		wantHost string
	}{
		{name: "empty", in: http.Header{"A": {"1"}}, want: http.Header{"A": {"1"}}},
		{name: "remove", in: http.Header{"X-A": {"1"}, "X-B": {"2"}}, m: config.HeaderMutation{Remove: []string{"x-a"}},
			want: http.Header{"X-B": {"2"}}},
		{name: "set replaces all values", in: http.Header{"X-A": {"1", "2"}}, m: config.HeaderMutation{Set: hv("x-a", "3")},
			want: http.Header{"X-A": {"3"}}},
		{name: "add appends", in: http.Header{"X-A": {"1"}}, m: config.HeaderMutation{Add: hv("x-a", "2", "X-B", "3")},
			want: http.Header{"X-A": {"1", "2"}, "X-B": {"3"}}},
		{name: "remove then set then add", in: http.Header{"X-A": {"old"}},
			m:    config.HeaderMutation{Remove: []string{"x-a"}, Set: hv("x-a", "s"), Add: hv("x-a", "a")},
			want: http.Header{"X-A": {"s", "a"}}},
		{name: "remove does not undo set", in: http.Header{},
			m:    config.HeaderMutation{Remove: []string{"x-a"}, Add: hv("x-a", "a")},
			want: http.Header{"X-A": {"a"}}},
		{name: "host via set", in: http.Header{}, m: config.HeaderMutation{Set: hv("Host", "h.example")},
			want: http.Header{}, wantHost: "h.example"},
		{name: "authority via add, last wins", in: http.Header{}, m: config.HeaderMutation{Set: hv("host", "a"), Add: hv(":authority", "b")},
			want: http.Header{}, wantHost: "b"},
		{name: "pseudo headers and host removal ignored", in: http.Header{"X-A": {"1"}},
			m:    config.HeaderMutation{Remove: []string{"host", ":authority", ":path"}, Set: hv(":path", "/x"), Add: hv(":method", "POST")},
			want: http.Header{"X-A": {"1"}}},
		{name: "remote address", in: http.Header{}, remote: "10.1.2.3:5555",
			m:    config.HeaderMutation{Set: hv("x-real-ip", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")},
			want: http.Header{"X-Real-Ip": {"10.1.2.3"}}},
		{name: "remote IPv6 address in text", in: http.Header{}, remote: "[2001:db8::1]:80",
			m:    config.HeaderMutation{Add: hv("forwarded", "for=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;proto=http")},
			want: http.Header{"Forwarded": {"for=2001:db8::1;proto=http"}}},
		{name: "remote address without port", in: http.Header{}, remote: "10.1.2.3",
			m:    config.HeaderMutation{Set: hv("x", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")},
			want: http.Header{"X": {"10.1.2.3"}}},
		{name: "other variables literal", in: http.Header{}, remote: "10.1.2.3:5",
			m:    config.HeaderMutation{Set: hv("x", "%REQ(x-y)%/%DOWNSTREAM_REMOTE_ADDRESS%/%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")},
			want: http.Header{"X": {"%REQ(x-y)%/%DOWNSTREAM_REMOTE_ADDRESS%/10.1.2.3"}}},
		{name: "escaped percent and lone percent", in: http.Header{},
			m:    config.HeaderMutation{Set: hv("x", "100%% sure", "y", "50% off")},
			want: http.Header{"X": {"100% sure"}, "Y": {"50% off"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			host := ApplyHeaders(h, tc.m, tc.remote)
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("headers = %v, want %v", h, tc.want)
			}
			if host != tc.wantHost {
				t.Errorf("host = %q, want %q", host, tc.wantHost)
			}
		})
	}
}

func TestRewritePath(t *testing.T) {
	fwd := func(kind config.PathKind, prefix, rewrite string) *config.Route {
		return &config.Route{
			Match:   config.RouteMatch{PathKind: kind, Path: prefix, CaseSensitive: true},
			Forward: &config.ForwardAction{PrefixRewrite: rewrite},
		}
	}
	regex := func(re, sub string) *config.Route {
		return &config.Route{Forward: &config.ForwardAction{RegexRewrite: regexp.MustCompile(re), RegexSubstitution: sub}}
	}
	seg := config.PathSegmentPrefix
	for _, tc := range []struct {
		name  string
		route *config.Route
		path  string
		want  string
	}{
		{"no forward", &config.Route{}, "/a?b", "/a?b"},
		{"nil route", nil, "/a", "/a"},
		{"no rewrite", &config.Route{Forward: &config.ForwardAction{}}, "/a?b", "/a?b"},
		{"prefix /api to / (segment)", fwd(seg, "/api", "/"), "/api/v1", "/v1"},
		{"prefix /api to / (prefix)", fwd(config.PathPrefix, "/api", "/"), "/api/v1", "/v1"},
		{"envoy style /api/ to /", fwd(config.PathPrefix, "/api/", "/"), "/api/v1", "/v1"},
		{"prefix keeps query", fwd(seg, "/api", "/"), "/api/v1?x=1&y", "/v1?x=1&y"},
		{"prefix whole path to /", fwd(seg, "/api", "/"), "/api", "/"},
		{"prefix no double slash", fwd(config.PathPrefix, "/api", "/v2/"), "/api/x", "/v2/x"},
		{"prefix plain", fwd(config.PathPrefix, "/api", "/v2"), "/apix", "/v2x"},
		{"prefix case insensitive", &config.Route{Match: config.RouteMatch{Path: "/API"},
			Forward: &config.ForwardAction{PrefixRewrite: "/x"}}, "/api/1", "/x/1"},
		{"prefix not matching is unchanged", fwd(config.PathPrefix, "/api", "/x"), "/other", "/other"},
		{"segment not matching is unchanged", fwd(seg, "/api", "/x"), "/apix", "/apix"},
		// Gateway API ReplacePrefixMatch table.
		{"gw 1", fwd(seg, "/foo", "/xyz"), "/foo/bar", "/xyz/bar"},
		{"gw 2", fwd(seg, "/foo", "/xyz/"), "/foo/bar", "/xyz/bar"},
		{"gw 3", fwd(seg, "/foo/", "/xyz"), "/foo/bar", "/xyz/bar"},
		{"gw 4", fwd(seg, "/foo/", "/xyz/"), "/foo/bar", "/xyz/bar"},
		{"gw 5", fwd(seg, "/foo", "/xyz"), "/foo", "/xyz"},
		{"gw 6", fwd(seg, "/foo", "/xyz"), "/foo/", "/xyz/"},
		{"gw 7", fwd(seg, "/foo", "/"), "/foo/", "/"},
		{"gw 8", fwd(seg, "/foo", "/"), "/foo", "/"},
		{"gw 9", fwd(seg, "/foo", "/"), "/foo/bar", "/bar"},
		{"segment root prefix", fwd(seg, "/", "/xyz"), "/foo", "/xyz/foo"},
		{"exact replaces whole path", fwd(config.PathExact, "/a", "/b"), "/a?q", "/b?q"},
		{"regex match kind leaves path", &config.Route{Match: config.RouteMatch{PathKind: config.PathRegex},
			Forward: &config.ForwardAction{PrefixRewrite: "/x"}}, "/a", "/a"},
		{"full path", &config.Route{Match: config.RouteMatch{Path: "/old"},
			Forward: &config.ForwardAction{FullPathRewrite: "/new"}}, "/old/x?q=1", "/new?q=1"},
		{"full path wins over prefix", &config.Route{Match: config.RouteMatch{Path: "/old"},
			Forward: &config.ForwardAction{FullPathRewrite: "/new", PrefixRewrite: "/p"}}, "/old/x", "/new"},
		{"regex groups (envoy example)", regex(`^/service/([^/]+)(/.*)$`, `\2/instance/\1`), "/service/foo/v1/api", "/v1/api/instance/foo"},
		{"regex replaces all (envoy example)", regex(`one`, `two`), "/xxx/one/yyy/one/zzz", "/xxx/two/yyy/two/zzz"},
		{"regex no match", regex(`zzz`, `y`), "/a?zzz", "/a?zzz"},
		{"regex keeps query", regex(`^/a`, `/b`), "/a/c?a=1", "/b/c?a=1"},
		{"regex dollar literal, backslash escape", regex(`(a)`, `$1\\\1\x`), "/a", `/$1\a\x`},
		{"regex missing group is empty", regex(`(a)|(b)`, `[\2]`), "/a", "/[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RewritePath(tc.route, tc.path); got != tc.want {
				t.Errorf("RewritePath(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestRedirect(t *testing.T) {
	redir := func(ra config.RedirectAction) *config.Route {
		return &config.Route{Match: config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/a", CaseSensitive: true}, Redirect: &ra}
	}
	tlsReq := req("GET", "http://foo.com:443/a/b")
	tlsReq.TLS = &tls.ConnectionState{}
	for _, tc := range []struct {
		name       string
		r          *http.Request
		route      *config.Route
		want       string
		wantStatus int
	}{
		{"keep all, default 301", req("GET", "http://foo.com/a/b?x=1"), redir(config.RedirectAction{}), "http://foo.com/a/b?x=1", 301},
		{"status 302", req("GET", "http://foo.com/a"), redir(config.RedirectAction{StatusCode: 302}), "http://foo.com/a", 302},
		{"status 307", req("GET", "http://foo.com/a"), redir(config.RedirectAction{StatusCode: 307}), "http://foo.com/a", 307},
		{"scheme https", req("GET", "http://foo.com/a/b?x=1"), redir(config.RedirectAction{Scheme: "https"}), "https://foo.com/a/b?x=1", 301},
		{"scheme takes its port", req("GET", "http://foo.com:8080/a"), redir(config.RedirectAction{Scheme: "https"}), "https://foo.com/a", 301},
		{"scheme and port", req("GET", "http://foo.com/a"), redir(config.RedirectAction{Scheme: "https", Port: 8443}), "https://foo.com:8443/a", 301},
		{"scheme https port 443 omitted", req("GET", "http://foo.com/a"), redir(config.RedirectAction{Scheme: "https", Port: 443}), "https://foo.com/a", 301},
		{"host keeps request port", req("GET", "http://foo.com:8080/a"), redir(config.RedirectAction{Host: "bar.com"}), "http://bar.com:8080/a", 301},
		{"host", req("GET", "http://foo.com/a"), redir(config.RedirectAction{Host: "bar.com"}), "http://bar.com/a", 301},
		{"port", req("GET", "http://foo.com/a"), redir(config.RedirectAction{Port: 8081}), "http://foo.com:8081/a", 301},
		{"port 80 on http omitted", req("GET", "http://foo.com:8080/a"), redir(config.RedirectAction{Port: 80}), "http://foo.com/a", 301},
		{"request port 80 omitted", req("GET", "http://foo.com:80/a"), redir(config.RedirectAction{}), "http://foo.com/a", 301},
		{"tls request scheme", tlsReq, redir(config.RedirectAction{}), "https://foo.com/a/b", 301},
		{"path", req("GET", "http://foo.com/a/b?x=1"), redir(config.RedirectAction{Path: "/new"}), "http://foo.com/new?x=1", 301},
		{"path with query overrides", req("GET", "http://foo.com/a/b?x=1"), redir(config.RedirectAction{Path: "/new?y=2"}), "http://foo.com/new?y=2", 301},
		{"path with query survives strip", req("GET", "http://foo.com/a?x=1"), redir(config.RedirectAction{Path: "/new?y=2", StripQuery: true}), "http://foo.com/new?y=2", 301},
		{"strip query", req("GET", "http://foo.com/a/b?x=1"), redir(config.RedirectAction{StripQuery: true}), "http://foo.com/a/b", 301},
		{"prefix", req("GET", "http://foo.com/a/b?x=1"), redir(config.RedirectAction{PrefixRewrite: "/z"}), "http://foo.com/z/b?x=1", 301},
		{"prefix to /", req("GET", "http://foo.com/a/b"), redir(config.RedirectAction{PrefixRewrite: "/"}), "http://foo.com/b", 301},
		{"everything", req("GET", "http://foo.com:8080/a/b?x=1"),
			redir(config.RedirectAction{Scheme: "https", Host: "bar.com", Port: 9443, PrefixRewrite: "/c", StripQuery: true, StatusCode: 308}),
			"https://bar.com:9443/c/b", 308},
		{"ipv6 request host", req("GET", "http://[::1]:8080/a"), redir(config.RedirectAction{}), "http://[::1]:8080/a", 301},
		{"ipv6 redirect host", req("GET", "http://foo.com/a"), redir(config.RedirectAction{Host: "::1", Port: 81}), "http://[::1]:81/a", 301},
		{"escaped path kept", req("GET", "http://foo.com/a/b%2Fc"), redir(config.RedirectAction{Host: "x"}), "http://x/a/b%2Fc", 301},
		{"empty query kept", req("GET", "http://foo.com/a?"), redir(config.RedirectAction{}), "http://foo.com/a?", 301},
		{"no redirect", req("GET", "/"), &config.Route{}, "", 0},
		{"nil route", req("GET", "/"), nil, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, status := Redirect(tc.r, tc.route)
			if got != tc.want || status != tc.wantStatus {
				t.Errorf("Redirect = %q, %d; want %q, %d", got, status, tc.want, tc.wantStatus)
			}
		})
	}
}

func TestHashKey(t *testing.T) {
	h := xxhash.Sum64String
	byHeader := config.HashPolicy{Header: "x-user"}
	byCookie := config.HashPolicy{Cookie: "session"}
	bySource := config.HashPolicy{SourceIP: true}
	withRemote := func(r *http.Request, addr string) *http.Request { r.RemoteAddr = addr; return r }
	for _, tc := range []struct {
		name     string
		r        *http.Request
		policies []config.HashPolicy
		want     uint64
		wantOK   bool
	}{
		{"header", req("GET", "/", "X-User", "alice"), []config.HashPolicy{byHeader}, h("alice"), true},
		{"header multi", req("GET", "/", "X-User", "a", "X-User", "b"), []config.HashPolicy{byHeader}, h("a,b"), true},
		{"header non-canonical stored", func() *http.Request {
			r := req("GET", "/")
			r.Header["x-user"] = []string{"raw"}
			return r
		}(), []config.HashPolicy{byHeader}, h("raw"), true},
		{"header name any case", req("GET", "/", "X-User", "bob"), []config.HashPolicy{{Header: "X-USER"}}, h("bob"), true},
		{"host header", req("GET", "http://svc.local:80/"), []config.HashPolicy{{Header: "host"}}, h("svc.local:80"), true},
		{"authority", req("GET", "http://svc.local/"), []config.HashPolicy{{Header: ":authority"}}, h("svc.local"), true},
		{"header absent falls through", withRemote(req("GET", "/"), "10.0.0.9:1234"), []config.HashPolicy{byHeader, bySource}, h("10.0.0.9"), true},
		{"cookie", req("GET", "/", "Cookie", `a=1; session="xyz"; b=2`), []config.HashPolicy{byCookie}, h("xyz"), true},
		{"cookie second header", req("GET", "/", "Cookie", "a=1", "Cookie", "session=s2"), []config.HashPolicy{byCookie}, h("s2"), true},
		{"cookie prefix name is not it", req("GET", "/", "Cookie", "session2=x; xsession=y"), []config.HashPolicy{byCookie}, 0, false},
		{"source ipv6", withRemote(req("GET", "/"), "[2001:db8::2]:443"), []config.HashPolicy{bySource}, h("2001:db8::2"), true},
		{"first policy wins", withRemote(req("GET", "/", "X-User", "u"), "10.0.0.9:1"), []config.HashPolicy{byHeader, bySource}, h("u"), true},
		{"nothing", withRemote(req("GET", "/"), ""), []config.HashPolicy{byHeader, byCookie, bySource}, 0, false},
		{"no policy", req("GET", "/"), nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := HashKey(tc.r, &config.ForwardAction{HashPolicy: tc.policies})
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("HashKey = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
	if _, ok := HashKey(req("GET", "/"), nil); ok {
		t.Error("HashKey(nil action) ok")
	}
}

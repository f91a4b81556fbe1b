package router

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/causewaymesh/causeway/proxy/config"
)

// fuzzConfig is a fixed route config with every kind of matcher.
func fuzzConfig() *config.RouteConfig {
	re := regexp.MustCompile
	return vhosts(
		&config.VirtualHost{Name: "api", Domains: []string{"api.example.com", "api.example.com:8443", "*.api.example.com"},
			Routes: []*config.Route{
				{Name: "healthz", Match: config.RouteMatch{PathKind: config.PathExact, Path: "/healthz", CaseSensitive: true}},
				{Name: "users-v2", Match: config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/v1/users/", CaseSensitive: true,
					Headers: []config.HeaderMatch{{Name: "x-version", Value: config.StringMatch{Value: "V2", IgnoreCase: true}}}},
					Forward: &config.ForwardAction{PrefixRewrite: "/users", HashPolicy: []config.HashPolicy{{Header: "x-test"}, {SourceIP: true}}}},
				{Name: "items", Match: config.RouteMatch{PathKind: config.PathRegex, PathRegex: re(`/v[0-9]+/items/[^/]+|/v[0-9]+`)},
					Forward: &config.ForwardAction{RegexRewrite: re(`^/v([0-9]+)/`), RegexSubstitution: `/\1/`}},
				{Name: "static", Match: config.RouteMatch{Path: "/Static"},
					Redirect: &config.RedirectAction{Scheme: "https", PrefixRewrite: "/assets/"}},
				{Name: "debug", Match: config.RouteMatch{Path: "/", CaseSensitive: true,
					Query: []config.QueryMatch{{Name: "debug", Present: true}}}},
				{Name: "get", Match: config.RouteMatch{CaseSensitive: true,
					Headers: []config.HeaderMatch{{Name: ":method", Value: config.StringMatch{Kind: config.StringRegex, Regex: re(`GET|HEAD`)}}}}},
			}},
		&config.VirtualHost{Name: "web", Domains: []string{"*.example.com", "www.*", "Web.Example.Org", "*-web.example.com"},
			Routes: []*config.Route{
				{Name: "humans", Match: config.RouteMatch{Path: "/", CaseSensitive: true,
					Headers: []config.HeaderMatch{{Name: "x-test", Invert: true, Value: config.StringMatch{Kind: config.StringContains, Value: "bot", IgnoreCase: true}}}},
					Forward: &config.ForwardAction{FullPathRewrite: "/index.html"}},
				{Name: "rest", Match: config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/"},
					Redirect: &config.RedirectAction{Host: "www.example.com", Path: "/new?x=1", StatusCode: 302}},
			}},
		&config.VirtualHost{Name: "star", Domains: []string{"*"},
			Routes: []*config.Route{
				{Name: "a-header", Match: config.RouteMatch{CaseSensitive: true,
					Headers: []config.HeaderMatch{{Name: "x-test", Value: config.StringMatch{Kind: config.StringPrefix, Value: "a"}}}}},
				{Name: "q", Match: config.RouteMatch{CaseSensitive: true,
					Query: []config.QueryMatch{{Name: "q", Value: config.StringMatch{Kind: config.StringSuffix, Value: "1"}}}}},
				{Name: "port80", Match: config.RouteMatch{CaseSensitive: true,
					Headers: []config.HeaderMatch{{Name: ":authority", Value: config.StringMatch{Kind: config.StringSuffix, Value: ":80"}}}}},
				{Name: "pct", Match: config.RouteMatch{CaseSensitive: true,
					Headers: []config.HeaderMatch{{Name: ":path", Value: config.StringMatch{Kind: config.StringContains, Value: "%"}}}}},
				{Name: "https", Match: config.RouteMatch{CaseSensitive: true,
					Headers: []config.HeaderMatch{{Name: ":scheme", Value: config.StringMatch{Value: "https"}}}}},
				{Name: "no-version", Match: config.RouteMatch{PathKind: config.PathSegmentPrefix, Path: "/A/b",
					Headers: []config.HeaderMatch{{Name: "x-version", Present: true, Invert: true}}}},
				{Name: "root", Match: config.RouteMatch{PathKind: config.PathExact, Path: "/"}},
			}},
	)
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][6]string{
		{"api.example.com", "/healthz", "GET", "", "", ""},
		{"API.example.com:8443", "/v1/users/7", "POST", "v2", "", ""},
		{"x.api.example.com", "/v12/items/x", "PUT", "", "", ""},
		{"api.example.com:1", "/STATIC/a", "DELETE", "", "", ""},
		{"api.example.com", "/x", "POST", "", "debug&x=1", ""},
		{"www.foo", "/", "GET", "a bot", "", ""},
		{"a-web.example.com", "/a", "GET", "Bot", "", ""},
		{"[::1]:80", "/a%2Fb", "GET", "abc", "q=%31", "/a%2Fb"},
		{"other:80", "/a/B/c", "GET", "", "q=a;b", ""},
		{"", "", "", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	rc := fuzzConfig()
	tab := Compile(rc)
	tab2 := Compile(fuzzConfig())
	f.Fuzz(func(t *testing.T, host, path, method, hval, rawQuery, rawPath string) {
		r := &http.Request{
			Method:     method,
			Host:       host,
			URL:        &url.URL{Path: path, RawPath: rawPath, RawQuery: rawQuery},
			Header:     http.Header{"X-Test": {hval}, "Cookie": {hval}},
			RemoteAddr: hval,
		}
		if len(hval)%2 == 1 {
			r.Header["X-Version"] = []string{hval, rawQuery}
		}
		vh, rt := tab.Match(r)
		vh2, rt2 := tab.Match(r)
		if vh != vh2 || rt != rt2 {
			t.Fatalf("Match is not deterministic: %v/%v then %v/%v", name(vh), rt, name(vh2), rt2)
		}
		vh3, rt3 := tab2.Match(r)
		if name(vh) != name(vh3) || routeName(rt) != routeName(rt3) {
			t.Fatalf("tables compiled from equal configs disagree: %s/%s vs %s/%s", name(vh), routeName(rt), name(vh3), routeName(rt3))
		}
		wantVH := refVHost(rc, host)
		if vh != wantVH {
			t.Fatalf("host %q: virtual host %s, reference says %s", host, name(vh), name(wantVH))
		}
		if vh != nil {
			if want := refRoute(vh, r); rt != want {
				t.Fatalf("host %q path %q query %q: route %s, reference says %s", host, path, rawQuery, routeName(rt), routeName(want))
			}
		}
		if rt != nil {
			p := RewritePath(rt, r.URL.EscapedPath()+"?"+rawQuery)
			if !strings.HasSuffix(p, "?"+rawQuery) {
				t.Fatalf("RewritePath lost the query: %q", p)
			}
			Redirect(r, rt)
			HashKey(r, rt.Forward)
			PickCluster(rt.Forward, uint64(len(path)))
		}
	})
}

func routeName(r *config.Route) string {
	if r == nil {
		return "<nil>"
	}
	return r.Name
}

// The reference matcher below is a slow, direct reading of the semantics
// in doc.go, written independently of the compiled table.

func refLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func refPortStart(h string) int {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.Trim(h[i+1:], "0123456789") != "" {
		return -1
	}
	if k := strings.LastIndexByte(h[:i], ':'); k >= 0 && strings.LastIndexByte(h[:i], ']') < k {
		return -1
	}
	return i
}

func refVHost(rc *config.RouteConfig, authority string) *config.VirtualHost {
	h := refLower(authority)
	portDomains := false
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			if d != "*" && refPortStart(strings.Trim(d, "*")) >= 0 {
				portDomains = true
			}
		}
	}
	cands := []string{h}
	if i := refPortStart(h); i >= 0 {
		if portDomains {
			cands = []string{h, h[:i]}
		} else {
			cands = []string{h[:i]}
		}
	}
	var best *config.VirtualHost
	bestRank := [3]int{99}
	consider := func(vh *config.VirtualHost, rank [3]int) {
		for i := range rank {
			if rank[i] != bestRank[i] {
				if rank[i] < bestRank[i] {
					best, bestRank = vh, rank
				}
				return
			}
		}
	}
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			d = refLower(d)
			for ci, c := range cands {
				switch {
				case d == "":
				case d == "*":
					consider(vh, [3]int{3, 0, 0})
				case d[0] == '*':
					if fixed := d[1:]; len(c) > len(fixed) && strings.HasSuffix(c, fixed) {
						consider(vh, [3]int{1, ci, -len(fixed)})
					}
				case d[len(d)-1] == '*':
					if fixed := d[:len(d)-1]; len(c) > len(fixed) && strings.HasPrefix(c, fixed) {
						consider(vh, [3]int{2, ci, -len(fixed)})
					}
				case d == c:
					consider(vh, [3]int{0, ci, 0})
				}
			}
		}
	}
	return best
}

func refRoute(vh *config.VirtualHost, r *http.Request) *config.Route {
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	for _, rt := range vh.Routes {
		if refMatch(&rt.Match, r, path) {
			return rt
		}
	}
	return nil
}

// refFull reports whether re matches all of s, using leftmost-longest
// semantics instead of an anchored copy.
func refFull(re *regexp.Regexp, s string) bool {
	l := regexp.MustCompile(re.String())
	l.Longest()
	loc := l.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}

func refMatch(m *config.RouteMatch, r *http.Request, path string) bool {
	p, mp := path, m.Path
	if !m.CaseSensitive {
		p, mp = refLower(p), refLower(mp)
	}
	switch m.PathKind {
	case config.PathPrefix:
		if !strings.HasPrefix(p, mp) {
			return false
		}
	case config.PathExact:
		if p != mp {
			return false
		}
	case config.PathRegex:
		if !refFull(m.PathRegex, path) {
			return false
		}
	case config.PathSegmentPrefix:
		mp = strings.TrimRight(mp, "/")
		if mp != "" && p != mp && !strings.HasPrefix(p, mp+"/") {
			return false
		}
	}
	for _, hm := range m.Headers {
		v, ok := refHeader(r, hm.Name)
		switch {
		case !ok:
			if !(hm.Present && hm.Invert) {
				return false
			}
		case hm.Present:
			if hm.Invert {
				return false
			}
		case refString(hm.Value, v) == hm.Invert:
			return false
		}
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	for _, qm := range m.Query {
		vs, ok := q[qm.Name]
		if !ok || (!qm.Present && !refString(qm.Value, vs[0])) {
			return false
		}
	}
	return true
}

func refHeader(r *http.Request, name string) (string, bool) {
	switch n := refLower(name); {
	case n == ":method":
		if r.Method == "" {
			return "GET", true
		}
		return r.Method, true
	case n == ":authority" || n == "host":
		return r.Host, true
	case n == ":path":
		if r.RequestURI != "" {
			return r.RequestURI, true
		}
		return r.URL.RequestURI(), true
	case n == ":scheme":
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	case strings.HasPrefix(n, ":"):
		return "", false
	}
	vs := r.Header.Values(name)
	if len(vs) == 0 {
		return "", false
	}
	return strings.Join(vs, ","), true
}

func refString(s config.StringMatch, v string) bool {
	want := s.Value
	if s.IgnoreCase && s.Kind != config.StringRegex {
		v, want = refLower(v), refLower(want)
	}
	switch s.Kind {
	case config.StringExact:
		return v == want
	case config.StringPrefix:
		return strings.HasPrefix(v, want)
	case config.StringSuffix:
		return strings.HasSuffix(v, want)
	case config.StringContains:
		return strings.Contains(v, want)
	case config.StringRegex:
		return refFull(s.Regex, v)
	}
	return false
}

func FuzzRewritePath(f *testing.F) {
	f.Add(uint8(0), "/api", "/", "/api/v1?x=1", true)
	f.Add(uint8(1), "/foo/", "/xyz/", "/foo/bar", true)
	f.Add(uint8(2), "/a", "/b", "/A", false)
	f.Add(uint8(3), "", "", "/service/foo/v1?x", true)
	f.Add(uint8(4), "", "/new", "/old?q", true)
	f.Add(uint8(1), "/", "", "//x", true)
	re := regexp.MustCompile(`^/service/([^/]+)(/.*)$|(x)`)
	f.Fuzz(func(t *testing.T, mode uint8, prefix, rewrite, path string, caseSensitive bool) {
		rt := &config.Route{
			Match:   config.RouteMatch{Path: prefix, CaseSensitive: caseSensitive},
			Forward: &config.ForwardAction{},
		}
		switch mode % 5 {
		case 0:
			rt.Match.PathKind = config.PathPrefix
			rt.Forward.PrefixRewrite = rewrite
		case 1:
			rt.Match.PathKind = config.PathSegmentPrefix
			rt.Forward.PrefixRewrite = rewrite
		case 2:
			rt.Match.PathKind = config.PathExact
			rt.Forward.PrefixRewrite = rewrite
		case 3:
			rt.Forward.RegexRewrite, rt.Forward.RegexSubstitution = re, rewrite
		case 4:
			rt.Forward.FullPathRewrite = rewrite
		}
		got := RewritePath(rt, path)
		if again := RewritePath(rt, path); again != got {
			t.Fatalf("not deterministic: %q then %q", got, again)
		}
		p, q, hasQuery := strings.Cut(path, "?")
		if hasQuery && !strings.HasSuffix(got, "?"+q) {
			t.Fatalf("RewritePath(%q) = %q lost the query", path, got)
		}
		if mode%5 < 3 && rewrite != "" {
			route := compileRoute(rt)
			matched := route.matchPath(p)
			newPath, _, _ := strings.Cut(got, "?")
			if !strings.ContainsRune(rewrite, '?') {
				if matched && !strings.HasPrefix(newPath, "/") {
					t.Fatalf("RewritePath(%q) = %q does not start with /", path, got)
				}
				if !matched && mode%5 != 2 && got != path {
					t.Fatalf("RewritePath(%q) = %q, but the route does not match it", path, got)
				}
			}
			if matched && mode%5 == 1 && rewrite == "/" && !strings.Contains(p, "//") && strings.Contains(newPath, "//") {
				t.Fatalf("RewritePath(%q) with rewrite / = %q has a double slash", path, got)
			}
		}
	})
}

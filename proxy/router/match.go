package router

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/causewaymesh/causeway/proxy/config"
)

// route is a compiled config.Route.
type route struct {
	cfg  *config.Route
	kind config.PathKind
	// path is the match path: lower-cased when fold, and without trailing
	// slashes for PathSegmentPrefix.
	path    string
	fold    bool
	re      *regexp.Regexp // anchored, for PathRegex
	headers []headerMatcher
	query   []queryMatcher
}

// pseudo identifies where a header matcher reads its value.
type pseudo uint8

const (
	regularHeader pseudo = iota
	pseudoMethod
	pseudoAuthority // ":authority" and "host": Go keeps Host outside Header
	pseudoPath
	pseudoScheme
	pseudoUnknown // another ":name": never present
)

type headerMatcher struct {
	key     string // canonical MIME key, for regularHeader
	src     pseudo
	present bool
	invert  bool
	value   stringMatcher
}

type queryMatcher struct {
	name    string
	present bool
	value   stringMatcher
}

// stringMatcher is a compiled config.StringMatch.
type stringMatcher struct {
	kind  config.StringKind
	value string // lower-cased when fold
	fold  bool
	re    *regexp.Regexp // anchored, for StringRegex
}

func compileRoute(r *config.Route) route {
	m := &r.Match
	rt := route{cfg: r, kind: m.PathKind, path: m.Path, fold: !m.CaseSensitive}
	switch m.PathKind {
	case config.PathRegex:
		rt.re = anchor(m.PathRegex)
		rt.fold = false // Envoy: case_sensitive does not apply to regexes
	case config.PathSegmentPrefix:
		rt.path = strings.TrimRight(rt.path, "/")
	}
	if rt.fold {
		rt.path = lowerString(rt.path)
	}
	for _, h := range m.Headers {
		hm := compileHeader(h)
		rt.headers = append(rt.headers, hm)
	}
	for _, q := range m.Query {
		rt.query = append(rt.query, queryMatcher{name: q.Name, present: q.Present, value: compileString(q.Value)})
	}
	return rt
}

func compileHeader(h config.HeaderMatch) headerMatcher {
	hm := headerMatcher{present: h.Present, invert: h.Invert, value: compileString(h.Value)}
	switch name := lowerString(h.Name); name {
	case ":method":
		hm.src = pseudoMethod
	case ":authority", "host":
		hm.src = pseudoAuthority
	case ":path":
		hm.src = pseudoPath
	case ":scheme":
		hm.src = pseudoScheme
	default:
		if strings.HasPrefix(name, ":") {
			hm.src = pseudoUnknown
		} else {
			hm.key = http.CanonicalHeaderKey(name)
		}
	}
	return hm
}

// HeaderMatcher is a compiled config.HeaderMatch with the route matcher's
// semantics (pseudo-headers, multiple values joined by ","), for filters
// other than the router, such as RBAC.
type HeaderMatcher struct{ m headerMatcher }

// CompileHeader compiles h.
func CompileHeader(h config.HeaderMatch) HeaderMatcher { return HeaderMatcher{compileHeader(h)} }

// Matches reports whether r matches. It does not allocate unless the
// header has several values.
func (h *HeaderMatcher) Matches(r *http.Request) bool { return h.m.matches(r) }

// StringMatcher is a compiled config.StringMatch with Envoy's semantics
// (regexes match the whole value).
type StringMatcher struct{ m stringMatcher }

// CompileString compiles s.
func CompileString(s config.StringMatch) StringMatcher { return StringMatcher{compileString(s)} }

// Match reports whether v matches. It does not allocate.
func (s *StringMatcher) Match(v string) bool { return s.m.match(v) }

func compileString(s config.StringMatch) stringMatcher {
	sm := stringMatcher{kind: s.Kind, value: s.Value, fold: s.IgnoreCase}
	if s.Kind == config.StringRegex {
		sm.re = anchor(s.Regex)
		sm.fold = false // Envoy: ignore_case has no effect on safe_regex
	}
	if sm.fold {
		sm.value = lowerString(sm.value)
	}
	return sm
}

func (rt *route) matches(r *http.Request, path string) bool {
	if !rt.matchPath(path) {
		return false
	}
	for i := range rt.headers {
		if !rt.headers[i].matches(r) {
			return false
		}
	}
	if len(rt.query) > 0 {
		q := ""
		if r.URL != nil {
			q = r.URL.RawQuery
		}
		for i := range rt.query {
			if !rt.query[i].matches(q) {
				return false
			}
		}
	}
	return true
}

func (rt *route) matchPath(path string) bool {
	switch rt.kind {
	case config.PathPrefix:
		return hasPrefix(path, rt.path, rt.fold)
	case config.PathExact:
		return equal(path, rt.path, rt.fold)
	case config.PathRegex:
		return rt.re != nil && rt.re.MatchString(path)
	case config.PathSegmentPrefix:
		return segmentPrefixLen(path, rt.path, rt.fold) >= 0
	}
	return false
}

// segmentPrefixLen returns len(p) when p (without trailing slashes) is a
// whole-segment prefix of path, else -1. An empty p (from "/" or "")
// matches every path.
func segmentPrefixLen(path, p string, fold bool) int {
	if !hasPrefix(path, p, fold) {
		return -1
	}
	if len(path) == len(p) || path[len(p)] == '/' || p == "" {
		return len(p)
	}
	return -1
}

func (hm *headerMatcher) matches(r *http.Request) bool {
	v, ok := hm.lookup(r)
	if !ok {
		// Envoy: an absent header matches only an inverted presence check.
		return hm.present && hm.invert
	}
	if hm.present {
		return !hm.invert
	}
	return hm.value.match(v) != hm.invert
}

func (hm *headerMatcher) lookup(r *http.Request) (string, bool) {
	switch hm.src {
	case regularHeader:
		vs := r.Header[hm.key]
		switch len(vs) {
		case 0:
			return "", false
		case 1:
			return vs[0], true
		}
		return strings.Join(vs, ","), true // as Envoy; allocates, rare
	case pseudoMethod:
		if r.Method == "" {
			return http.MethodGet, true // net/http: "" means GET
		}
		return r.Method, true
	case pseudoAuthority:
		return r.Host, true
	case pseudoPath:
		if r.RequestURI != "" {
			return r.RequestURI, true
		}
		if r.URL == nil {
			return "/", true
		}
		return r.URL.RequestURI(), true
	case pseudoScheme:
		return scheme(r), true
	}
	return "", false
}

// scheme is the downstream request's scheme: "https" over TLS, else the
// scheme of an absolute-form target, else "http".
func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if r.URL != nil && r.URL.Scheme != "" {
		return r.URL.Scheme // absolute-form request target
	}
	return "http"
}

func (qm *queryMatcher) matches(rawQuery string) bool {
	v, ok := queryValue(rawQuery, qm.name)
	if !ok {
		return false
	}
	if qm.present {
		return true
	}
	return qm.value.match(v)
}

// queryValue returns the decoded value of the first parameter called name
// in rawQuery, parsing as url.ParseQuery does (malformed pairs are skipped).
// It allocates only for percent- or plus-encoded parameters.
func queryValue(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		if kv == "" || strings.IndexByte(kv, ';') >= 0 {
			continue // net/url.ParseQuery rejects ';' separators the same way
		}
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			dk, err := url.QueryUnescape(k)
			if err != nil {
				continue // net/url skips malformed pairs too
			}
			k = dk
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			dv, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			v = dv
		}
		return v, true
	}
	return "", false
}

func (sm *stringMatcher) match(v string) bool {
	switch sm.kind {
	case config.StringExact:
		return equal(v, sm.value, sm.fold)
	case config.StringPrefix:
		return hasPrefix(v, sm.value, sm.fold)
	case config.StringSuffix:
		return hasSuffix(v, sm.value, sm.fold)
	case config.StringContains:
		return contains(v, sm.value, sm.fold)
	case config.StringRegex:
		return sm.re != nil && sm.re.MatchString(v)
	}
	return false
}

// The fold helpers compare s against lower, which is already lower case,
// folding only ASCII letters of s (as Envoy's absl::EqualsIgnoreCase).

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// lowerString lower-cases the ASCII letters of s and leaves every other
// byte alone (strings.ToLower would also rewrite invalid UTF-8, and then
// compiled values would disagree with the byte-wise fold helpers).
func lowerString(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return string(appendLower(make([]byte, 0, len(s)), s))
		}
	}
	return s
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, lowerASCII(s[i]))
	}
	return dst
}

func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerASCII(s[i]) != lower[i] {
			return false
		}
	}
	return true
}

func equal(s, v string, fold bool) bool {
	if fold {
		return equalFold(s, v)
	}
	return s == v
}

func hasPrefix(s, p string, fold bool) bool {
	if len(s) < len(p) {
		return false
	}
	if fold {
		return equalFold(s[:len(p)], p)
	}
	return s[:len(p)] == p
}

func hasSuffix(s, p string, fold bool) bool {
	if len(s) < len(p) {
		return false
	}
	if fold {
		return equalFold(s[len(s)-len(p):], p)
	}
	return s[len(s)-len(p):] == p
}

func contains(s, sub string, fold bool) bool {
	if !fold {
		return strings.Contains(s, sub)
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

package router

import (
	"net/http"
	"regexp"
	"slices"

	"github.com/causewaymesh/causeway/proxy/config"
)

// Table is a compiled RouteConfig. It is immutable and safe for concurrent
// use. The zero Table (and a nil *Table) matches nothing.
type Table struct {
	exact    map[string]*vhost
	suffixes []wildcardGroup // longest suffix first
	prefixes []wildcardGroup // longest prefix first
	star     *vhost
	// portDomains is true when some domain names a port, so a "host:port"
	// authority is tried as is before the port is ignored.
	portDomains bool
}

// wildcardGroup holds the wildcard domains whose fixed part has length n.
type wildcardGroup struct {
	n int
	m map[string]*vhost
}

type vhost struct {
	cfg    *config.VirtualHost
	routes []route
}

// Compile builds the table for rc. A nil rc gives an empty table. Domains
// are case-insensitive; a domain listed twice keeps its first virtual host.
func Compile(rc *config.RouteConfig) *Table {
	t := &Table{exact: map[string]*vhost{}}
	if rc == nil {
		return t
	}
	suffixes := map[int]map[string]*vhost{}
	prefixes := map[int]map[string]*vhost{}
	for _, vh := range rc.VirtualHosts {
		if vh == nil {
			continue
		}
		v := &vhost{cfg: vh, routes: make([]route, 0, len(vh.Routes))}
		for _, r := range vh.Routes {
			if r != nil {
				v.routes = append(v.routes, compileRoute(r))
			}
		}
		for _, d := range vh.Domains {
			d = lowerString(d)
			switch {
			case d == "":
				continue
			case d == "*":
				if t.star == nil {
					t.star = v
				}
				continue
			case d[0] == '*':
				addWildcard(suffixes, d[1:], v)
				d = d[1:]
			case d[len(d)-1] == '*':
				addWildcard(prefixes, d[:len(d)-1], v)
				d = d[:len(d)-1]
			default:
				if _, dup := t.exact[d]; !dup {
					t.exact[d] = v
				}
			}
			if namesPort(d) {
				t.portDomains = true
			}
		}
	}
	t.suffixes = groups(suffixes)
	t.prefixes = groups(prefixes)
	return t
}

func addWildcard(by map[int]map[string]*vhost, fixed string, v *vhost) {
	m := by[len(fixed)]
	if m == nil {
		m = map[string]*vhost{}
		by[len(fixed)] = m
	}
	if _, dup := m[fixed]; !dup {
		m[fixed] = v
	}
}

func groups(by map[int]map[string]*vhost) []wildcardGroup {
	out := make([]wildcardGroup, 0, len(by))
	for n, m := range by {
		out = append(out, wildcardGroup{n: n, m: m})
	}
	slices.SortFunc(out, func(a, b wildcardGroup) int { return b.n - a.n })
	return out
}

// namesPort reports whether a domain (or a wildcard's fixed part) ends in
// ":port".
func namesPort(d string) bool {
	return portStart(d) >= 0
}

// portStart returns the index of the ':' that starts a trailing ":port"
// (digits only, possibly none) of an authority, or -1. A bracketed IPv6
// literal's colons are not ports; an unbracketed string with several colons
// (a bare IPv6 address) has no port.
func portStart[S ~string | ~[]byte](h S) int {
	i := -1
	colons := 0
	for j := len(h) - 1; j >= 0; j-- {
		c := h[j]
		if c == ':' {
			if i < 0 {
				i = j
			}
			colons++
		} else if c == ']' {
			if i < 0 {
				return -1 // "[v6]" without a port
			}
			colons = 1 // "[v6]:port": the colons inside do not count
			break
		}
	}
	if i < 0 || colons != 1 {
		return -1
	}
	for j := i + 1; j < len(h); j++ {
		if h[j] < '0' || h[j] > '9' {
			return -1
		}
	}
	return i
}

// maxStackHost is the longest authority that is lower-cased without
// allocating (DNS names are at most 253 bytes).
const maxStackHost = 255

// Match returns the virtual host for r's authority and the first of its
// routes that matches r. It returns a nil route when the virtual host has
// no matching route, and nil, nil when no virtual host matches.
func (t *Table) Match(r *http.Request) (*config.VirtualHost, *config.Route) {
	if t == nil {
		return nil, nil
	}
	v := t.lookup(r.Host)
	if v == nil {
		return nil, nil
	}
	path := requestPath(r)
	for i := range v.routes {
		rt := &v.routes[i]
		if rt.matches(r, path) {
			return v.cfg, rt.cfg
		}
	}
	return v.cfg, nil
}

// VirtualHost returns the virtual host that serves authority, or nil.
func (t *Table) VirtualHost(authority string) *config.VirtualHost {
	if t == nil {
		return nil
	}
	if v := t.lookup(authority); v != nil {
		return v.cfg
	}
	return nil
}

func (t *Table) lookup(authority string) *vhost {
	var buf [maxStackHost]byte
	h := appendLower(buf[:0], authority)
	full, bare := h, h
	if i := portStart(h); i >= 0 {
		bare = h[:i]
		if !t.portDomains {
			full = bare
		}
	}
	// Within each tier the full authority comes first; when it equals the
	// bare host the second lookup is skipped.
	if len(t.exact) > 0 {
		if v := t.exact[string(full)]; v != nil {
			return v
		}
		if len(bare) != len(full) {
			if v := t.exact[string(bare)]; v != nil {
				return v
			}
		}
	}
	if v := matchSuffix(t.suffixes, full); v != nil {
		return v
	}
	if len(bare) != len(full) {
		if v := matchSuffix(t.suffixes, bare); v != nil {
			return v
		}
	}
	if v := matchPrefix(t.prefixes, full); v != nil {
		return v
	}
	if len(bare) != len(full) {
		if v := matchPrefix(t.prefixes, bare); v != nil {
			return v
		}
	}
	return t.star
}

func matchSuffix(gs []wildcardGroup, h []byte) *vhost {
	for _, g := range gs {
		if g.n < len(h) { // the wildcard matches at least one byte
			if v := g.m[string(h[len(h)-g.n:])]; v != nil {
				return v
			}
		}
	}
	return nil
}

func matchPrefix(gs []wildcardGroup, h []byte) *vhost {
	for _, g := range gs {
		if g.n < len(h) {
			if v := g.m[string(h[:g.n])]; v != nil {
				return v
			}
		}
	}
	return nil
}

// requestPath is the escaped path of r without the query. For a server
// request whose path needs no re-escaping this neither allocates nor
// differs from what the client sent.
func requestPath(r *http.Request) string {
	if r.URL == nil {
		return "/"
	}
	p := r.URL.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

// anchor returns a copy of re that must match a whole string (Envoy's
// safe_regex semantics). Go's regexp has no full-match call, and checking
// the leftmost match's bounds is wrong for alternations like "a|ab".
func anchor(re *regexp.Regexp) *regexp.Regexp {
	if re == nil {
		return nil
	}
	a, err := regexp.Compile(`^(?:` + re.String() + `)$`)
	if err != nil {
		return re // cannot happen for a valid re; keep the original
	}
	return a
}

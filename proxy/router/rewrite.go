package router

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/causewaymesh/causeway/proxy/config"
)

// RewritePath returns the upstream path for a request to route. path is the
// request's escaped path, optionally followed by "?query"; the query is kept
// unchanged. Without a rewrite (or without a Forward action) path is
// returned as is, without allocating. One rewrite applies, in this order:
//
//   - FullPathRewrite replaces the whole path (Gateway API ReplaceFullPath).
//   - PrefixRewrite replaces the matched prefix. For PathSegmentPrefix it
//     follows Gateway API ReplacePrefixMatch: trailing slashes of the match
//     and of the replacement are ignored, and the result is never empty
//     ("/api" -> "/" turns "/api/v1" into "/v1"). For PathPrefix it is
//     Envoy's prefix_rewrite, except that a replacement ending in "/" and a
//     remainder starting with "/" share one slash (no "//"). For PathExact
//     it replaces the whole path; for PathRegex it does nothing (Envoy
//     rejects that combination).
//   - RegexRewrite replaces every match of the pattern in the path with
//     RegexSubstitution, in Envoy's syntax: \0-\9 are capture groups, "\\"
//     is a backslash ($ is literal).
//
// A path that does not start with the route's prefix (the route did not
// match it) is returned unchanged.
func RewritePath(route *config.Route, path string) string {
	if route == nil || route.Forward == nil {
		return path
	}
	f := route.Forward
	if f.FullPathRewrite == "" && f.PrefixRewrite == "" && f.RegexRewrite == nil {
		return path
	}
	p, q, hasQuery := strings.Cut(path, "?")
	switch {
	case f.FullPathRewrite != "":
		p = f.FullPathRewrite
	case f.PrefixRewrite != "":
		p = replacePrefix(&route.Match, p, f.PrefixRewrite)
	default:
		p = regexReplaceAll(f.RegexRewrite, p, f.RegexSubstitution)
	}
	if hasQuery {
		return p + "?" + q
	}
	return p
}

// replacePrefix replaces the part of path that m matched with repl (see
// RewritePath).
func replacePrefix(m *config.RouteMatch, path, repl string) string {
	fold := !m.CaseSensitive
	var out string
	switch m.PathKind {
	case config.PathSegmentPrefix:
		prefix := strings.TrimRight(m.Path, "/")
		if !prefixFold(path, prefix, fold) ||
			(len(path) > len(prefix) && prefix != "" && path[len(prefix)] != '/') {
			return path
		}
		rest := path[len(prefix):]
		if prefix == "" {
			rest = strings.TrimPrefix(rest, "/")
			if rest != "" {
				rest = "/" + rest
			}
		}
		out = strings.TrimRight(repl, "/") + rest
	case config.PathPrefix:
		if !prefixFold(path, m.Path, fold) {
			return path
		}
		rest := path[len(m.Path):]
		if strings.HasSuffix(repl, "/") && strings.HasPrefix(rest, "/") {
			rest = rest[1:]
		}
		out = repl + rest
	case config.PathExact:
		out = repl
	default:
		return path
	}
	if out == "" || out[0] != '/' {
		out = "/" + out
	}
	return out
}

// prefixFold reports whether s starts with p, ignoring ASCII case when fold.
func prefixFold(s, p string, fold bool) bool {
	if len(s) < len(p) {
		return false
	}
	if !fold {
		return s[:len(p)] == p
	}
	for i := 0; i < len(p); i++ {
		if lowerASCII(s[i]) != lowerASCII(p[i]) {
			return false
		}
	}
	return true
}

// regexReplaceAll replaces every match of re in s with sub, expanded in
// Envoy's (RE2's) substitution syntax.
func regexReplaceAll(re *regexp.Regexp, s, sub string) string {
	matches := re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s
	}
	b := make([]byte, 0, len(s)+len(sub))
	last := 0
	for _, m := range matches {
		b = append(b, s[last:m[0]]...)
		b = expandEnvoy(b, sub, s, m)
		last = m[1]
	}
	b = append(b, s[last:]...)
	return string(b)
}

// expandEnvoy appends template to dst with \N replaced by capture group N
// of match (empty when the group did not participate or does not exist)
// and "\\" by a backslash. Any other byte, including a backslash before
// something else, is literal.
func expandEnvoy(dst []byte, template, src string, match []int) []byte {
	for i := 0; i < len(template); i++ {
		c := template[i]
		if c != '\\' || i+1 == len(template) {
			dst = append(dst, c)
			continue
		}
		n := template[i+1]
		switch {
		case n >= '0' && n <= '9':
			g := int(n - '0')
			if 2*g+1 < len(match) && match[2*g] >= 0 {
				dst = append(dst, src[match[2*g]:match[2*g+1]]...)
			}
			i++
		case n == '\\':
			dst = append(dst, '\\')
			i++
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// Redirect computes the Location and status code of the redirect that
// route answers r with. It returns "", 0 when route has no Redirect.
//
//   - Scheme: RedirectAction.Scheme, else the request's (see Match).
//   - Host: RedirectAction.Host, else r.Host without its port.
//   - Port: RedirectAction.Port; else, when Scheme is set, the scheme's
//     well-known port; else the port of r.Host (Gateway API: the listener
//     port). Port 80 for http and 443 for https are left out.
//   - Path: RedirectAction.Path replaces the whole path; a "?query" in it
//     replaces the request's query (Envoy's path_redirect). Else
//     PrefixRewrite replaces the matched prefix as RewritePath does. Else
//     the request's escaped path.
//   - Query: kept unless StripQuery.
//   - Status: StatusCode, 301 when zero (Envoy's default; the Gateway API
//     translator sets 302 explicitly).
func Redirect(r *http.Request, route *config.Route) (location string, status int) {
	if route == nil || route.Redirect == nil {
		return "", 0
	}
	ra := route.Redirect
	status = ra.StatusCode
	if status == 0 {
		status = http.StatusMovedPermanently
	}

	sch := scheme(r)
	if ra.Scheme != "" {
		sch = strings.ToLower(ra.Scheme)
	}

	authority := r.Host
	if authority == "" && r.URL != nil {
		authority = r.URL.Host
	}
	host, port := authority, ""
	if i := portStart(authority); i >= 0 {
		host, port = authority[:i], authority[i+1:]
	}
	if ra.Host != "" {
		host = ra.Host
	}
	switch {
	case ra.Port != 0:
		port = strconv.FormatUint(uint64(ra.Port), 10)
	case ra.Scheme != "":
		port = ""
	}
	if (sch == "http" && port == "80") || (sch == "https" && port == "443") {
		port = ""
	}
	if strings.IndexByte(host, ':') >= 0 && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // an IPv6 literal
	}

	path := requestPath(r)
	query, hasQuery := "", false
	if r.URL != nil {
		query, hasQuery = r.URL.RawQuery, r.URL.RawQuery != "" || r.URL.ForceQuery
	}
	if ra.StripQuery {
		query, hasQuery = "", false
	}
	switch {
	case ra.Path != "":
		path = ra.Path
		if p, q, ok := strings.Cut(ra.Path, "?"); ok {
			path, query, hasQuery = p, q, true
		}
	case ra.PrefixRewrite != "":
		path = replacePrefix(&route.Match, path, ra.PrefixRewrite)
	}

	var b strings.Builder
	b.Grow(len(sch) + 3 + len(host) + 1 + len(port) + len(path) + 1 + len(query))
	b.WriteString(sch)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(path)
	if hasQuery {
		b.WriteByte('?')
		b.WriteString(query)
	}
	return b.String(), status
}

package model

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RouteTable is the routing of one parent: a Gateway listener (ingress) or
// one port of a Service or ServiceImport (GAMMA mesh routes, applied by
// the callers' sidecars). Package gateway produces route tables; they hold
// only validated, resolved values. A table has HTTP virtual hosts (HTTPRoute
// and GRPCRoute) or TLS passthrough routes (TLSRoute), never both.
type RouteTable struct {
	Parent RouteParent
	// VirtualHosts sorted by Hostname. Mesh tables have one, "*": GAMMA
	// ignores route hostnames, the caller supplies the service's domains.
	VirtualHosts []VirtualHost
	// TLS routes by SNI, for TLS passthrough listeners; sorted by
	// namespace, name.
	TLS []TLSRoute
}

// ParentKind is what a route table is attached to.
type ParentKind uint8

// Parent kinds.
const (
	ParentGateway       ParentKind = iota // a listener of a Gateway
	ParentService                         // GAMMA: a Service port
	ParentServiceImport                   // GAMMA: a ServiceImport port (clusterset)
)

func (k ParentKind) String() string {
	switch k {
	case ParentService:
		return "Service"
	case ParentServiceImport:
		return "ServiceImport"
	}
	return "Gateway"
}

// RouteParent names a table's parent.
type RouteParent struct {
	Kind            ParentKind
	Namespace, Name string
	// Listener is the Gateway listener's name; empty for mesh parents.
	Listener string
	// Port is the listener port, or the service port of a mesh parent.
	Port uint32
	// Protocol is the listener protocol: "HTTP", "HTTPS" or "TLS"; mesh
	// parents have "HTTP".
	Protocol string
	// Hostname is the listener's hostname; empty matches any.
	Hostname string
	// CertificateRefs are the Secrets ("namespace/name") of an HTTPS
	// listener, resolved and permitted.
	CertificateRefs []string
	// ConsumerNamespace is set on mesh tables built from routes that live
	// outside the service's namespace (GAMMA consumer routes): the table
	// applies only to callers in that namespace, and replaces the producer
	// table (ConsumerNamespace "") for them.
	ConsumerNamespace string
}

// String is "Gateway ns/name listener http:80" or "Service ns/name port 80".
func (p RouteParent) String() string {
	if p.Kind == ParentGateway {
		return fmt.Sprintf("Gateway %s/%s listener %s:%d %s", p.Namespace, p.Name, p.Listener, p.Port, p.Protocol)
	}
	s := fmt.Sprintf("%s %s/%s port %d", p.Kind, p.Namespace, p.Name, p.Port)
	if p.ConsumerNamespace != "" {
		s += " consumer " + p.ConsumerNamespace
	}
	return s
}

// VirtualHost is the routes of one hostname, in precedence order (the first
// that matches wins).
type VirtualHost struct {
	// Hostname is exact ("foo.example.com"), a wildcard
	// ("*.example.com") or "*".
	Hostname string
	Routes   []HTTPRoute
}

// RouteKind is the Gateway API kind a route entry came from.
type RouteKind uint8

// Route kinds.
const (
	KindHTTPRoute RouteKind = iota
	KindGRPCRoute
	KindTLSRoute
)

func (k RouteKind) String() string {
	switch k {
	case KindGRPCRoute:
		return "GRPCRoute"
	case KindTLSRoute:
		return "TLSRoute"
	}
	return "HTTPRoute"
}

// HTTPRoute is one match of one rule of an HTTPRoute or GRPCRoute, with
// the rule's action. Exactly one of Backends (possibly all unresolved),
// Redirect is meaningful: Redirect wins when set.
type HTTPRoute struct {
	// Source: kind, namespace, name, rule index, rule name, match index.
	Kind            RouteKind
	Namespace, Name string
	Rule, Match     int
	RuleName        string

	PathKind PathKind
	// Path is the literal (Exact, Prefix) or regular expression (RE2,
	// whole-path match).
	Path    string
	Method  string // empty: any
	Headers []ValueMatch
	Query   []ValueMatch

	RequestHeaders  HeaderModifier
	ResponseHeaders HeaderModifier
	Redirect        *Redirect
	// HostRewrite replaces the Host header; empty keeps it.
	HostRewrite string
	PathRewrite *PathRewrite
	Mirrors     []Mirror
	// Backends share traffic by Weight. Unresolved backends keep their
	// weight: their share of requests is answered with 500 (Gateway API).
	Backends []Backend
	// Timeout bounds the whole request; BackendTimeout each try. Zero is
	// unset; negative disables.
	Timeout, BackendTimeout time.Duration
	Retry                   *Retry
}

// PathKind is how an HTTPRoute matches the path.
type PathKind uint8

// Path kinds. PathPrefix has Gateway API semantics: whole segments, a
// trailing "/" ignored ("/a" matches "/a", "/a/b", not "/ab").
const (
	PathPrefix PathKind = iota
	PathExact
	PathRegex
)

func (k PathKind) String() string {
	switch k {
	case PathExact:
		return "Exact"
	case PathRegex:
		return "RegularExpression"
	}
	return "PathPrefix"
}

// ValueMatch matches a header or query parameter: exact value, or an RE2
// regular expression matched against the whole value.
type ValueMatch struct {
	Name  string // headers: lower case
	Value string
	Regex bool
}

// HeaderModifier sets, adds and removes headers.
type HeaderModifier struct {
	Set, Add []Header
	Remove   []string // lower case
}

// Header is one header name (lower case) and value.
type Header struct{ Name, Value string }

// String is "set a=1 add b=2 remove c" (empty for an empty modifier).
func (m HeaderModifier) String() string {
	var parts []string
	for _, h := range m.Set {
		parts = append(parts, fmt.Sprintf("set %s=%q", h.Name, h.Value))
	}
	for _, h := range m.Add {
		parts = append(parts, fmt.Sprintf("add %s=%q", h.Name, h.Value))
	}
	for _, h := range m.Remove {
		parts = append(parts, "remove "+h)
	}
	return strings.Join(parts, " ")
}

// Empty reports whether m changes nothing.
func (m HeaderModifier) Empty() bool { return len(m.Set) == 0 && len(m.Add) == 0 && len(m.Remove) == 0 }

// Redirect answers with a redirect. Empty fields keep the request's value.
type Redirect struct {
	Scheme   string
	Hostname string
	Port     uint32
	Path     *PathRewrite
	Status   int // 301, 302, 303, 307 or 308
}

// PathRewriteKind says how a path is replaced.
type PathRewriteKind uint8

// Path rewrite kinds.
const (
	ReplaceFullPath    PathRewriteKind = iota
	ReplacePrefixMatch                 // only with a PathPrefix match
)

// PathRewrite replaces the full path or the matched prefix.
type PathRewrite struct {
	Kind  PathRewriteKind
	Value string
}

// BackendKind is the kind of a backend reference.
type BackendKind uint8

// Backend kinds.
const (
	BackendService       BackendKind = iota // this cluster's endpoints
	BackendServiceImport                    // every cluster's (clusterset)
)

func (k BackendKind) String() string {
	if k == BackendServiceImport {
		return "ServiceImport"
	}
	return "Service"
}

// Backend is one weighted backend of a route.
type Backend struct {
	Kind            BackendKind
	Namespace, Name string
	Port            uint32
	Weight          uint32
	// Unresolved is why the reference could not be used ("BackendNotFound",
	// "RefNotPermitted", "InvalidKind"); empty when resolved.
	Unresolved      string
	RequestHeaders  HeaderModifier
	ResponseHeaders HeaderModifier
}

// Mirror copies Percent of requests to a backend (weight unused).
type Mirror struct {
	Backend Backend
	Percent float64 // 0..100
}

// Retry retries failed tries of a request.
type Retry struct {
	// Codes are HTTP status codes (400-599) retried; connection failures
	// and resets are always retried.
	Codes    []int
	Attempts int // retries after the first try; 0 takes the data plane's default (1)
	Backoff  time.Duration
}

// TLSRoute sends TLS connections whose SNI matches Hostnames to Backends
// without terminating TLS.
type TLSRoute struct {
	Namespace, Name string
	Hostnames       []string // intersected with the listener's; sorted
	Backends        []Backend
}

// CompareRouteTables orders tables by parent: kind, namespace, name,
// listener, port, consumer namespace.
func CompareRouteTables(a, b RouteTable) int {
	x, y := a.Parent, b.Parent
	return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name),
		cmp.Compare(x.Listener, y.Listener), cmp.Compare(x.Port, y.Port), cmp.Compare(x.ConsumerNamespace, y.ConsumerNamespace),
		// Listeners that share a name (invalid, but possible in a folder)
		// are still ordered.
		cmp.Compare(x.Protocol, y.Protocol), cmp.Compare(x.Hostname, y.Hostname), slices.Compare(x.CertificateRefs, y.CertificateRefs))
}

// Equal reports whether two tables are the same.
func (t RouteTable) Equal(u RouteTable) bool {
	return t.Parent.equal(&u.Parent) &&
		slices.EqualFunc(t.VirtualHosts, u.VirtualHosts, func(a, b VirtualHost) bool {
			return a.Hostname == b.Hostname && slices.EqualFunc(a.Routes, b.Routes, HTTPRoute.equal)
		}) &&
		slices.EqualFunc(t.TLS, u.TLS, func(a, b TLSRoute) bool {
			return a.Namespace == b.Namespace && a.Name == b.Name && slices.Equal(a.Hostnames, b.Hostnames) &&
				slices.EqualFunc(a.Backends, b.Backends, Backend.equal)
		})
}

func (p *RouteParent) equal(q *RouteParent) bool {
	return p.Kind == q.Kind && p.Namespace == q.Namespace && p.Name == q.Name && p.Listener == q.Listener &&
		p.Port == q.Port && p.Protocol == q.Protocol && p.Hostname == q.Hostname &&
		p.ConsumerNamespace == q.ConsumerNamespace && slices.Equal(p.CertificateRefs, q.CertificateRefs)
}

func (r HTTPRoute) equal(s HTTPRoute) bool {
	return r.Kind == s.Kind && r.Namespace == s.Namespace && r.Name == s.Name && r.Rule == s.Rule &&
		r.Match == s.Match && r.RuleName == s.RuleName && r.PathKind == s.PathKind && r.Path == s.Path &&
		r.Method == s.Method && slices.Equal(r.Headers, s.Headers) && slices.Equal(r.Query, s.Query) &&
		r.RequestHeaders.equal(s.RequestHeaders) && r.ResponseHeaders.equal(s.ResponseHeaders) &&
		ptrEqual(r.Redirect, s.Redirect, func(a, b *Redirect) bool {
			return a.Scheme == b.Scheme && a.Hostname == b.Hostname && a.Port == b.Port && a.Status == b.Status &&
				ptrEqual(a.Path, b.Path, func(x, y *PathRewrite) bool { return *x == *y })
		}) &&
		r.HostRewrite == s.HostRewrite &&
		ptrEqual(r.PathRewrite, s.PathRewrite, func(x, y *PathRewrite) bool { return *x == *y }) &&
		slices.EqualFunc(r.Mirrors, s.Mirrors, func(a, b Mirror) bool { return a.Percent == b.Percent && a.Backend.equal(b.Backend) }) &&
		slices.EqualFunc(r.Backends, s.Backends, Backend.equal) &&
		r.Timeout == s.Timeout && r.BackendTimeout == s.BackendTimeout &&
		ptrEqual(r.Retry, s.Retry, func(a, b *Retry) bool {
			return a.Attempts == b.Attempts && a.Backoff == b.Backoff && slices.Equal(a.Codes, b.Codes)
		})
}

func (b Backend) equal(c Backend) bool {
	return b.Kind == c.Kind && b.Namespace == c.Namespace && b.Name == c.Name && b.Port == c.Port &&
		b.Weight == c.Weight && b.Unresolved == c.Unresolved &&
		b.RequestHeaders.equal(c.RequestHeaders) && b.ResponseHeaders.equal(c.ResponseHeaders)
}

func (m HeaderModifier) equal(n HeaderModifier) bool {
	return slices.Equal(m.Set, n.Set) && slices.Equal(m.Add, n.Add) && slices.Equal(m.Remove, n.Remove)
}

func ptrEqual[T any](a, b *T, eq func(a, b *T) bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return eq(a, b)
}

// String prints t in a stable, line-oriented form (golden files, logs).
func (t *RouteTable) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s", t.Parent)
	if t.Parent.Hostname != "" {
		fmt.Fprintf(&b, " hostname=%s", t.Parent.Hostname)
	}
	if len(t.Parent.CertificateRefs) > 0 {
		fmt.Fprintf(&b, " certs=%s", strings.Join(t.Parent.CertificateRefs, ","))
	}
	b.WriteByte('\n')
	for _, vh := range t.VirtualHosts {
		fmt.Fprintf(&b, "  host %s\n", vh.Hostname)
		for i := range vh.Routes {
			vh.Routes[i].write(&b)
		}
	}
	for _, r := range t.TLS {
		fmt.Fprintf(&b, "  tls %s/%s sni=%s\n", r.Namespace, r.Name, strings.Join(r.Hostnames, ","))
		for _, be := range r.Backends {
			fmt.Fprintf(&b, "      backend %s\n", be)
		}
	}
	return b.String()
}

func (r *HTTPRoute) write(b *strings.Builder) {
	fmt.Fprintf(b, "    route %s %s/%s rule %d", r.Kind, r.Namespace, r.Name, r.Rule)
	if r.RuleName != "" {
		fmt.Fprintf(b, " (%s)", r.RuleName)
	}
	fmt.Fprintf(b, " match %d: path %s %q", r.Match, r.PathKind, r.Path)
	if r.Method != "" {
		fmt.Fprintf(b, " method %s", r.Method)
	}
	for _, h := range r.Headers {
		fmt.Fprintf(b, " header %s", h)
	}
	for _, q := range r.Query {
		fmt.Fprintf(b, " query %s", q)
	}
	b.WriteByte('\n')
	writeMod := func(what string, m HeaderModifier) {
		if m.Empty() {
			return
		}
		fmt.Fprintf(b, "      %s %s\n", what, m)
	}
	writeMod("request-headers", r.RequestHeaders)
	writeMod("response-headers", r.ResponseHeaders)
	if rd := r.Redirect; rd != nil {
		fmt.Fprintf(b, "      redirect status=%d scheme=%s host=%s port=%d path=%s\n", rd.Status, orDash(rd.Scheme), orDash(rd.Hostname), rd.Port, rd.Path)
	}
	if r.HostRewrite != "" || r.PathRewrite != nil {
		fmt.Fprintf(b, "      rewrite host=%s path=%s\n", orDash(r.HostRewrite), r.PathRewrite)
	}
	for _, m := range r.Mirrors {
		fmt.Fprintf(b, "      mirror %s %s%%\n", m.Backend, strconv.FormatFloat(m.Percent, 'g', -1, 64))
	}
	if r.Timeout != 0 || r.BackendTimeout != 0 {
		fmt.Fprintf(b, "      timeout request=%v backend=%v\n", r.Timeout, r.BackendTimeout)
	}
	if rt := r.Retry; rt != nil {
		fmt.Fprintf(b, "      retry attempts=%d codes=%v backoff=%v\n", rt.Attempts, rt.Codes, rt.Backoff)
	}
	if r.Redirect == nil {
		for _, be := range r.Backends {
			fmt.Fprintf(b, "      backend %s\n", be)
		}
	}
}

// String is "name=value", "name~regex".
func (m ValueMatch) String() string {
	if m.Regex {
		return m.Name + "~" + m.Value
	}
	return m.Name + "=" + m.Value
}

// String is "ReplaceFullPath:/x", "ReplacePrefixMatch:/x" or "-".
func (p *PathRewrite) String() string {
	if p == nil {
		return "-"
	}
	if p.Kind == ReplacePrefixMatch {
		return "ReplacePrefixMatch:" + p.Value
	}
	return "ReplaceFullPath:" + p.Value
}

// String is "Service ns/name:port weight=w" plus " unresolved=<reason>"
// and header modifiers.
func (b Backend) String() string {
	s := fmt.Sprintf("%s %s/%s:%d weight=%d", b.Kind, b.Namespace, b.Name, b.Port, b.Weight)
	if b.Unresolved != "" {
		s += " unresolved=" + b.Unresolved
	}
	if !b.RequestHeaders.Empty() {
		s += " request-headers[" + b.RequestHeaders.String() + "]"
	}
	if !b.ResponseHeaders.Empty() {
		s += " response-headers[" + b.ResponseHeaders.String() + "]"
	}
	return s
}

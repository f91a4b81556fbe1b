package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/router"
)

// Explanation is what the proxy would do with one request, read from its
// live state: the listener and route that match, the weighted clusters, and
// for each cluster the priority levels, localities and shares its balancer
// uses now, with ejected endpoints and panic mode. It is served as JSON by
// the admin endpoint /explain and printed by `causeway explain`.
type Explanation struct {
	Listener    string        `json:"listener"`
	Authority   string        `json:"authority"`
	Path        string        `json:"path"`
	Method      string        `json:"method"`
	RouteConfig string        `json:"route_config,omitempty"`
	VirtualHost string        `json:"virtual_host,omitempty"`
	Route       *ExplainRoute `json:"route,omitempty"`
	// Action is "forward", "redirect", "direct" or "none" (no route: 404).
	Action string `json:"action"`
	// Redirect is the Location a redirect route answers with; Direct the
	// status of a direct response.
	Redirect       string `json:"redirect,omitempty"`
	RedirectStatus int    `json:"redirect_status,omitempty"`
	DirectStatus   int    `json:"direct_status,omitempty"`
	// Clusters are every weighted cluster of a forward route, in route
	// order, with its share of the split.
	Clusters []ExplainCluster `json:"clusters,omitempty"`
	// Timeout is the route timeout ("none" when disabled).
	Timeout string        `json:"timeout,omitempty"`
	Retry   *ExplainRetry `json:"retry,omitempty"`
	// Why has one line per decision, in the order the proxy takes them.
	Why []string `json:"why"`
}

// ExplainRoute names the matching route.
type ExplainRoute struct {
	Name  string `json:"name,omitempty"`
	Match string `json:"match"` // e.g. `prefix "/api" header x-canary exact "yes"`
}

// ExplainCluster is one weighted cluster and its balancer's current view.
type ExplainCluster struct {
	Name          string  `json:"name"`
	Weight        uint32  `json:"weight"`
	WeightPercent float64 `json:"weight_percent"`
	// Configured is false when the route names a cluster the proxy does
	// not have (requests to it get 503).
	Configured        bool              `json:"configured"`
	Policy            string            `json:"lb_policy,omitempty"`
	NoHealthyUpstream bool              `json:"no_healthy_upstream"`
	Panic             bool              `json:"panic"` // some level balances ignoring health
	Priorities        []ExplainPriority `json:"priorities,omitempty"`
	Ejected           []ExplainEjected  `json:"ejected,omitempty"`
	Why               string            `json:"why"`
}

// ExplainPriority is one priority level of a cluster.
type ExplainPriority struct {
	Priority      uint32            `json:"priority"`
	LoadPercent   uint32            `json:"load_percent"` // share of the cluster's traffic
	HealthPercent uint32            `json:"health_percent"`
	Healthy       int               `json:"healthy"`
	Total         int               `json:"total"`
	Panic         bool              `json:"panic"`
	Localities    []ExplainLocality `json:"localities"`
}

// ExplainLocality is one locality of a level.
type ExplainLocality struct {
	Region       string  `json:"region"`
	Zone         string  `json:"zone"`
	SubZone      string  `json:"sub_zone,omitempty"`
	Cluster      string  `json:"cluster,omitempty"` // Kubernetes cluster
	Healthy      int     `json:"healthy"`
	Total        int     `json:"total"`
	SharePercent float64 `json:"share_percent"` // of the cluster's traffic
	// Candidates are the endpoints a pick in this locality may return now.
	Candidates []string `json:"candidates,omitempty"`
}

// ExplainEjected is an endpoint outlier detection has ejected.
type ExplainEjected struct {
	Address  string    `json:"address"`
	Locality string    `json:"locality"`
	Cluster  string    `json:"cluster,omitempty"`
	Reason   string    `json:"reason"`
	Until    time.Time `json:"until,omitzero"`
}

// ExplainRetry is the effective retry policy.
type ExplainRetry struct {
	On            []string `json:"on"`
	NumRetries    int      `json:"num_retries"`
	PerTryTimeout string   `json:"per_try_timeout,omitempty"`
	StatusCodes   []int    `json:"retriable_status_codes,omitempty"`
	From          string   `json:"from"` // "route" or "virtual_host"
}

// Explain reports what the proxy would do now with a request for authority
// and path (which may carry a query) with method and headers arriving on
// listener. An empty listener picks the HTTP listener whose port is the
// authority's, else the only HTTP listener, else the first whose routes
// have a virtual host for authority. It reads the current immutable state
// and the balancers' status; it changes nothing and picks nothing.
func (p *Proxy) Explain(listener, authority, path, method string, headers http.Header) Explanation {
	st := p.state.Load()
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/"
	}
	e := Explanation{Listener: listener, Authority: authority, Path: path, Method: method}
	why := func(format string, a ...any) { e.Why = append(e.Why, fmt.Sprintf(format, a...)) }

	l, how := chooseListener(st, listener, authority)
	if l == nil {
		e.Action = "none"
		why("%s", how)
		return e
	}
	e.Listener = l.Name
	why("listener %s (%s): %s", l.Name, l.Address, how)

	var table *router.Table
	if l.HTTP.Routes != nil {
		e.RouteConfig = "(inline)"
		table = st.tables[inlineRoutesKey(l.Name)]
	} else {
		e.RouteConfig = l.HTTP.RouteConfigName
		table = st.tables[l.HTTP.RouteConfigName]
	}
	if table == nil {
		e.Action = "none"
		why("route configuration %q has not arrived: the proxy answers 404", l.HTTP.RouteConfigName)
		return e
	}

	u, err := url.ParseRequestURI(path)
	if err != nil {
		e.Action = "none"
		why("path %q is not a request URI: %v", path, err)
		return e
	}
	if headers == nil {
		headers = http.Header{}
	}
	r := &http.Request{Method: method, Host: authority, URL: u, Header: headers, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, RemoteAddr: "127.0.0.1:0"}
	vh, route := table.Match(r)
	if vh == nil {
		e.Action = "none"
		why("no virtual host of %s serves %q: the proxy answers 404", e.RouteConfig, authority)
		return e
	}
	e.VirtualHost = vh.Name
	why("virtual host %s: domains %s", vh.Name, strings.Join(vh.Domains, ", "))
	if route == nil {
		e.Action = "none"
		why("no route of virtual host %s matches %s %s: the proxy answers 404", vh.Name, method, path)
		return e
	}
	e.Route = &ExplainRoute{Name: route.Name, Match: describeMatch(&route.Match)}
	why("route %s: first route whose match holds (%s)", dash(route.Name), e.Route.Match)
	if f := route.Fault; f != nil && (f.DelayPercent > 0 || f.AbortPercent > 0) {
		why("fault injection: %.4g%% delayed by %s, %.4g%% aborted with %d", f.DelayPercent, f.Delay, f.AbortPercent, f.AbortStatus)
	}

	switch {
	case route.Redirect != nil:
		e.Action = "redirect"
		e.Redirect, e.RedirectStatus = router.Redirect(r, route)
		why("redirect: %d to %s", e.RedirectStatus, e.Redirect)
		return e
	case route.Direct != nil:
		e.Action = "direct"
		e.DirectStatus = route.Direct.Status
		why("direct response: %d", e.DirectStatus)
		return e
	}
	e.Action = "forward"
	fa := route.Forward
	explainPolicy(&e, vh, fa)

	var total uint64
	for i := range fa.Clusters {
		total += uint64(fa.Clusters[i].Weight)
	}
	for i := range fa.Clusters {
		wc := &fa.Clusters[i]
		c := ExplainCluster{Name: wc.Name, Weight: wc.Weight}
		switch {
		case len(fa.Clusters) == 1:
			c.WeightPercent = 100 // router.PickCluster: a single cluster is always picked
		case total > 0:
			c.WeightPercent = 100 * float64(wc.Weight) / float64(total)
		}
		explainCluster(&c, st.upstreams[wc.Name])
		e.Clusters = append(e.Clusters, c)
	}
	if len(fa.Clusters) > 1 {
		parts := make([]string, 0, len(e.Clusters))
		for _, c := range e.Clusters {
			parts = append(parts, fmt.Sprintf("%s %.4g%%", c.Name, c.WeightPercent))
		}
		if total == 0 {
			why("weighted clusters all have weight 0: the proxy answers 500")
		} else {
			why("split by weight: %s", strings.Join(parts, ", "))
		}
	}
	for _, c := range e.Clusters {
		why("%s: %s", c.Name, c.Why)
	}
	return e
}

// chooseListener finds the HTTP listener named name, or guesses one for
// authority when name is empty.
func chooseListener(st *state, name, authority string) (*config.Listener, string) {
	var https []*config.Listener
	for _, l := range st.snap.Listeners {
		if l.HTTP == nil {
			if l.Name == name {
				return nil, fmt.Sprintf("listener %s is not an HTTP listener; explain covers HTTP routes only", name)
			}
			continue
		}
		if name != "" && l.Name == name {
			return l, "named by the caller"
		}
		https = append(https, l)
	}
	if name != "" {
		return nil, fmt.Sprintf("no listener %q (pass one of the proxy's HTTP listeners, e.g. outbound_<port>)", name)
	}
	if _, port, err := net.SplitHostPort(authority); err == nil {
		for _, l := range https {
			if _, lp, err := net.SplitHostPort(l.Address); err == nil && lp == port && l.Direction == config.Outbound {
				return l, "outbound HTTP listener on the authority's port " + port
			}
		}
	}
	if len(https) == 1 {
		return https[0], "the only HTTP listener"
	}
	for _, l := range https {
		var t *router.Table
		if l.HTTP.Routes != nil {
			t = st.tables[inlineRoutesKey(l.Name)]
		} else {
			t = st.tables[l.HTTP.RouteConfigName]
		}
		if l.Direction == config.Outbound && t.VirtualHost(authority) != nil {
			return l, "first outbound HTTP listener with a virtual host for " + strconv.Quote(authority)
		}
	}
	return nil, fmt.Sprintf("no HTTP listener serves %q (%d HTTP listeners; pass --listener)", authority, len(https))
}

func explainPolicy(e *Explanation, vh *config.VirtualHost, fa *config.ForwardAction) {
	switch {
	case fa.Timeout < 0:
		e.Timeout = "none"
	case fa.Timeout == 0:
		e.Timeout = defaultRouteTimeout.String()
	default:
		e.Timeout = fa.Timeout.String()
	}
	rp, from := fa.Retry, "route"
	if rp == nil {
		rp, from = vh.Retry, "virtual_host"
	}
	if rp == nil {
		e.Why = append(e.Why, fmt.Sprintf("timeout %s, no retries", e.Timeout))
		return
	}
	e.Retry = &ExplainRetry{On: retryOnNames(rp.On), NumRetries: rp.NumRetries, StatusCodes: rp.RetriableStatusCodes, From: from}
	if rp.PerTryTimeout > 0 {
		e.Retry.PerTryTimeout = rp.PerTryTimeout.String()
	}
	e.Why = append(e.Why, fmt.Sprintf("timeout %s, up to %d retries on %s (policy of the %s); a retry prefers another locality",
		e.Timeout, rp.NumRetries, strings.Join(e.Retry.On, ","), strings.ReplaceAll(from, "_", " ")))
}

func retryOnNames(on config.RetryOn) []string {
	names := [...]string{"5xx", "gateway-error", "connect-failure", "reset", "refused-stream", "retriable-status-codes"}
	out := []string{}
	for i, n := range names {
		if on&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// explainCluster fills c from the balancer's Status and LocalityLoads.
func explainCluster(c *ExplainCluster, u *upstream) {
	if u == nil {
		c.Why = "not configured on this proxy: requests picking it get 503"
		return
	}
	c.Configured = true
	s := u.lb.Status()
	loads := u.lb.LocalityLoads()
	c.Policy, c.NoHealthyUpstream = s.Policy, s.NoHealthyUpstream
	for _, h := range s.Hosts {
		if h.Ejected {
			c.Ejected = append(c.Ejected, ExplainEjected{Address: h.Address, Locality: h.Locality.String(), Cluster: h.Cluster, Reason: h.EjectionReason, Until: h.EjectedUntil})
		}
	}
	var loaded []string
	for _, L := range s.Levels {
		ep := ExplainPriority{Priority: L.Priority, LoadPercent: L.LoadPercent, HealthPercent: L.HealthPercent, Healthy: L.Healthy, Total: L.Total, Panic: L.Panic}
		c.Panic = c.Panic || L.Panic
		for _, ll := range loads {
			if ll.Priority != L.Priority {
				continue
			}
			el := ExplainLocality{Region: ll.Locality.Region, Zone: ll.Locality.Zone, SubZone: ll.Locality.SubZone, Cluster: ll.Cluster,
				Healthy: ll.Healthy, Total: ll.Total, SharePercent: ll.SharePercent}
			if ll.SharePercent > 0 {
				for _, h := range s.Hosts {
					if h.Priority == ll.Priority && h.Locality == ll.Locality && h.Cluster == ll.Cluster &&
						(L.Panic || (h.Health.Usable() && !h.Ejected)) {
						el.Candidates = append(el.Candidates, h.Address)
					}
				}
			}
			ep.Localities = append(ep.Localities, el)
		}
		if L.LoadPercent > 0 {
			d := fmt.Sprintf("P%d %d%% (%d/%d healthy", L.Priority, L.LoadPercent, L.Healthy, L.Total)
			if L.Panic {
				d += ", panic: balancing over all hosts"
			}
			loaded = append(loaded, d+")")
		}
		c.Priorities = append(c.Priorities, ep)
	}
	var b strings.Builder
	switch {
	case len(s.Levels) == 0:
		b.WriteString("no endpoints: requests get 503")
	case s.NoHealthyUpstream:
		fmt.Fprintf(&b, "no usable endpoint and panic mode is off (threshold %.4g%%): requests get 503", s.PanicThreshold)
	default:
		fmt.Fprintf(&b, "%s over %s", s.Policy, strings.Join(loaded, ", "))
		if len(loaded) > 1 || (len(s.Levels) > 0 && s.Levels[0].LoadPercent < 100) {
			fmt.Fprintf(&b, "; spilling over because P0 is below full health (overprovisioning %.4g%%)", s.OverprovisioningFactor)
		}
	}
	if n := len(c.Ejected); n > 0 {
		fmt.Fprintf(&b, "; %d ejected", n)
	}
	c.Why = b.String()
}

// describeMatch renders a route match the way a person would write it.
func describeMatch(m *config.RouteMatch) string {
	var parts []string
	switch m.PathKind {
	case config.PathExact:
		parts = append(parts, "exact "+strconv.Quote(m.Path))
	case config.PathRegex:
		if m.PathRegex != nil {
			parts = append(parts, "regex "+strconv.Quote(m.PathRegex.String()))
		}
	case config.PathSegmentPrefix:
		parts = append(parts, "path-prefix "+strconv.Quote(m.Path))
	default:
		parts = append(parts, "prefix "+strconv.Quote(m.Path))
	}
	if !m.CaseSensitive {
		parts = append(parts, "(case-insensitive)")
	}
	for _, h := range m.Headers {
		s := "header " + h.Name
		if h.Invert {
			s = "not " + s
		}
		if !h.Present {
			s += " " + describeString(h.Value)
		}
		parts = append(parts, s)
	}
	for _, q := range m.Query {
		s := "query " + q.Name
		if !q.Present {
			s += " " + describeString(q.Value)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func describeString(s config.StringMatch) string {
	kinds := [...]string{"exact", "prefix", "suffix", "contains", "regex"}
	k := "exact"
	if int(s.Kind) < len(kinds) {
		k = kinds[s.Kind]
	}
	v := s.Value
	if s.Kind == config.StringRegex && s.Regex != nil {
		v = s.Regex.String()
	}
	if s.IgnoreCase {
		k += "-ignore-case"
	}
	return k + " " + strconv.Quote(v)
}

func dash(s string) string {
	if s == "" {
		return "(unnamed)"
	}
	return s
}

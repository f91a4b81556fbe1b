package xds

import (
	"errors"
	"fmt"
	"math"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/causewaymesh/causeway/internal/model"
)

// InvalidBackendCluster is the cluster name given to the share of traffic
// of an unresolved backendRef when other backends of the rule resolve. No
// such cluster exists, so those requests fail (the data plane answers 503
// for an unknown cluster; Gateway API asks for 500). When no backend of a
// rule resolves, the route answers 500 directly.
const InvalidBackendCluster = "causeway_invalid_backend"

// BackendCluster is the EDS cluster of a resolved model backend: a Service
// port is ClusterName (this cluster's endpoints), a ServiceImport port is
// ClustersetName (every cluster's).
func BackendCluster(b model.Backend) string {
	if b.Unresolved != "" {
		return InvalidBackendCluster
	}
	if b.Kind == model.BackendServiceImport {
		return ClustersetName(b.Namespace, b.Name, b.Port)
	}
	return ClusterName(b.Namespace, b.Name, b.Port)
}

// HTTPRouteOptions shape the translation of model routes.
type HTTPRouteOptions struct {
	// Retry applies to routes without a Retry of their own; nil: none.
	Retry *Retry
}

// GatewayVirtualHosts turns the route table of a Gateway listener into one
// virtual host per hostname, named "<listener>/<hostname>", domains
// [hostname]. Callers merging listeners of one port into one route
// configuration keep each domain in one virtual host (the data plane
// rejects duplicates).
func GatewayVirtualHosts(t *model.RouteTable, o HTTPRouteOptions) ([]*routev3.VirtualHost, error) {
	var out []*routev3.VirtualHost
	var errs []error
	for i := range t.VirtualHosts {
		vh := &t.VirtualHosts[i]
		routes, err := HTTPRoutes(vh.Routes, o)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s host %s: %w", t.Parent, vh.Hostname, err))
			continue
		}
		out = append(out, &routev3.VirtualHost{Name: t.Parent.Listener + "/" + vh.Hostname, Domains: []string{vh.Hostname}, Routes: routes})
	}
	return out, errors.Join(errs...)
}

// MeshVirtualHost is the virtual host of a service port under GAMMA
// routes: the caller's name and domains (the service's names), with the
// routes of the table's virtual hosts ("*" only: GAMMA ignores hostnames)
// in order. A request that matches no route gets 404, as Gateway API
// specifies for a service with routes attached. The virtual host is
// always returned; routes that fail validation are left out of it and
// named in the error.
func MeshVirtualHost(name string, domains []string, t *model.RouteTable, o HTTPRouteOptions) (*routev3.VirtualHost, error) {
	vh := &routev3.VirtualHost{Name: name, Domains: domains}
	var errs []error
	for i := range t.VirtualHosts {
		routes, err := HTTPRoutes(t.VirtualHosts[i].Routes, o)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Parent, err))
		}
		vh.Routes = append(vh.Routes, routes...)
	}
	return vh, errors.Join(errs...)
}

// HTTPRoutes turns model route entries (in precedence order) into Envoy
// routes in the same order, each passing ValidateAll and the data plane's
// supported subset (docs/xds.md). Encoding:
//
//   - PathPrefix "/x" → path_separated_prefix "/x" (whole segments); "/" →
//     prefix "/". Exact → path. RegularExpression → safe_regex.
//   - Method → header ":method" exact; headers and query parameters →
//     string_match exact or safe_regex.
//   - Redirect → redirect (scheme, host, port, path_redirect or
//     prefix_rewrite, response code).
//   - Backends → cluster (one, without header modifiers) or
//     weighted_clusters; no resolved backend or zero total weight →
//     direct_response 500.
//   - ReplacePrefixMatch → prefix_rewrite; ReplaceFullPath → regex_rewrite
//     "^.*$"; hostname → host_rewrite_literal.
//   - Timeout → timeout (negative: 0s, disabled). BackendTimeout →
//     retry_policy.per_try_timeout with a Retry, else it bounds the timeout.
//   - Retry → retry_on "connect-failure,refused-stream,reset" plus
//     "retriable-status-codes" with the codes, num_retries, back-off base.
//   - Mirrors → request_mirror_policies (runtime_fraction in millionths).
func HTTPRoutes(rs []model.HTTPRoute, o HTTPRouteOptions) ([]*routev3.Route, error) {
	out := make([]*routev3.Route, 0, len(rs))
	var errs []error
	for i := range rs {
		r := httpRoute(&rs[i], o)
		if err := r.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("route %q: %w", r.Name, err))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

func routeName(r *model.HTTPRoute) string {
	return fmt.Sprintf("%s/%s/%s/rule/%d/match/%d", strings.ToLower(r.Kind.String()), r.Namespace, r.Name, r.Rule, r.Match)
}

func httpRoute(r *model.HTTPRoute, o HTTPRouteOptions) *routev3.Route {
	out := &routev3.Route{Name: routeName(r), Match: routeMatch(r)}
	out.RequestHeadersToAdd, out.RequestHeadersToRemove = headerMods(r.RequestHeaders)
	out.ResponseHeadersToAdd, out.ResponseHeadersToRemove = headerMods(r.ResponseHeaders)
	if r.Redirect != nil {
		out.Action = &routev3.Route_Redirect{Redirect: redirect(r)}
		return out
	}
	var total uint64
	var wcs []*routev3.WeightedCluster_ClusterWeight
	plain := true
	for _, b := range r.Backends {
		total += uint64(b.Weight)
		if b.Unresolved == "" {
			plain = plain && b.RequestHeaders.Empty() && b.ResponseHeaders.Empty()
		}
		wc := &routev3.WeightedCluster_ClusterWeight{Name: BackendCluster(b), Weight: wrapperspb.UInt32(b.Weight)}
		wc.RequestHeadersToAdd, wc.RequestHeadersToRemove = headerMods(b.RequestHeaders)
		wc.ResponseHeadersToAdd, wc.ResponseHeadersToRemove = headerMods(b.ResponseHeaders)
		wcs = append(wcs, wc)
	}
	resolved := false
	for _, b := range r.Backends {
		resolved = resolved || (b.Unresolved == "" && b.Weight > 0)
	}
	if !resolved || total == 0 {
		out.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}}
		return out
	}
	a := &routev3.RouteAction{}
	if len(wcs) == 1 && plain {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: wcs[0].Name}
	} else {
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: wcs}}
	}
	timeout := r.Timeout
	if r.Retry == nil && r.BackendTimeout > 0 && (timeout <= 0 || r.BackendTimeout < timeout) {
		timeout = r.BackendTimeout
	}
	switch {
	case timeout > 0:
		a.Timeout = durationpb.New(timeout)
	case timeout < 0:
		a.Timeout = durationpb.New(0)
	}
	switch {
	case r.Retry != nil:
		rp := &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,reset"}
		if len(r.Retry.Codes) > 0 {
			rp.RetryOn += ",retriable-status-codes"
			for _, c := range r.Retry.Codes {
				rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, uint32(c))
			}
		}
		if r.Retry.Attempts > 0 {
			rp.NumRetries = wrapperspb.UInt32(uint32(r.Retry.Attempts))
		}
		if r.BackendTimeout > 0 {
			rp.PerTryTimeout = durationpb.New(r.BackendTimeout)
		}
		if r.Retry.Backoff > 0 {
			rp.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(r.Retry.Backoff)}
		}
		a.RetryPolicy = rp
	case o.Retry != nil && o.Retry.NumRetries > 0:
		a.RetryPolicy = &routev3.RetryPolicy{RetryOn: o.Retry.On, NumRetries: wrapperspb.UInt32(o.Retry.NumRetries)}
		if o.Retry.PerTry > 0 {
			a.RetryPolicy.PerTryTimeout = durationpb.New(o.Retry.PerTry)
		}
	}
	for _, m := range r.Mirrors {
		a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster: BackendCluster(m.Backend),
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
				Numerator: uint32(math.Round(min(max(m.Percent, 0), 100) * 10000)), Denominator: typev3.FractionalPercent_MILLION,
			}},
		})
	}
	if p := r.PathRewrite; p != nil {
		switch p.Kind {
		case model.ReplaceFullPath:
			a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
				Pattern:      &matcherv3.RegexMatcher{Regex: "^.*$"},
				Substitution: strings.ReplaceAll(p.Value, `\`, `\\`),
			}
		case model.ReplacePrefixMatch:
			a.PrefixRewrite = prefixReplacement(r, p.Value)
		}
	}
	if r.HostRewrite != "" {
		a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: r.HostRewrite}
	}
	out.Action = &routev3.Route_Route{Route: a}
	return out
}

// prefixReplacement is the prefix_rewrite for a Gateway API
// ReplacePrefixMatch. Segment prefixes get the data plane's Gateway API
// semantics as is; the catch-all prefix "/" (a plain prefix) needs the
// replacement to end in "/" so that "/x" becomes "<value>/x".
func prefixReplacement(r *model.HTTPRoute, v string) string {
	if strings.TrimRight(r.Path, "/") == "" {
		return strings.TrimRight(v, "/") + "/"
	}
	if v == "" {
		return "/"
	}
	return v
}

func routeMatch(r *model.HTTPRoute) *routev3.RouteMatch {
	m := &routev3.RouteMatch{}
	switch r.PathKind {
	case model.PathExact:
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: r.Path}
	case model.PathRegex:
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: r.Path}}
	default:
		if p := strings.TrimRight(r.Path, "/"); p != "" {
			m.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: p}
		} else {
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		}
	}
	if r.Method != "" {
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatch(r.Method, false)}})
	}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: h.Name,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatch(h.Value, h.Regex)}})
	}
	for _, q := range r.Query {
		m.QueryParameters = append(m.QueryParameters, &routev3.QueryParameterMatcher{Name: q.Name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatch(q.Value, q.Regex)}})
	}
	return m
}

func stringMatch(v string, regex bool) *matcherv3.StringMatcher {
	if regex {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

func headerMods(m model.HeaderModifier) ([]*corev3.HeaderValueOption, []string) {
	var add []*corev3.HeaderValueOption
	for _, h := range m.Set {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, h := range m.Add {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	return add, m.Remove
}

func redirect(r *model.HTTPRoute) *routev3.RedirectAction {
	rd := r.Redirect
	out := &routev3.RedirectAction{HostRedirect: rd.Hostname, PortRedirect: rd.Port}
	if rd.Scheme != "" {
		out.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.Scheme}
	}
	if p := rd.Path; p != nil {
		if p.Kind == model.ReplaceFullPath {
			out.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: p.Value}
		} else {
			out.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: prefixReplacement(r, p.Value)}
		}
	}
	switch rd.Status {
	case 301:
		out.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 303:
		out.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		out.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		out.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		out.ResponseCode = routev3.RedirectAction_FOUND
	}
	return out
}

package xdsclient

import (
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/leanxds"
	routev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/route/v3"
	faultv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/filters/http/fault/v3"
)

// faultFilterName is the typed_per_filter_config key of the fault filter.
const faultFilterName = "envoy.filters.http.fault"

// TranslateRouteConfig validates r and translates it. All problems are
// reported together, each naming the route configuration and field.
//
// m is Envoy's RouteConfiguration: the sidecar's lean copy (package leanxds) or
// any other Go type of it, such as go-control-plane's.
func TranslateRouteConfig(m proto.Message) (*config.RouteConfig, error) {
	return translateAs(m, "route_config", translateRouteConfig)
}

func translateRouteConfig(r *routev3.RouteConfiguration) (*config.RouteConfig, error) {
	c := newCollector("route_config", r.GetName())
	if r == nil {
		c.addf("", "send a RouteConfiguration", "nil resource")
		return nil, c.err()
	}
	if !c.validate("", r) {
		return nil, c.err()
	}
	out := c.routeConfig("", r)
	if c.failed() {
		return nil, c.err()
	}
	return out, nil
}

// named formats path[i] or, when the element has a name, path["name"].
func named(path string, i int, name string) string {
	if name == "" {
		return idx(path, i)
	}
	return fmt.Sprintf("%s[%q]", path, name)
}

func (c *collector) routeConfig(path string, r *routev3.RouteConfiguration) *config.RouteConfig {
	c.only(path, r, "name", "virtual_hosts", "validate_clusters")
	out := &config.RouteConfig{Name: r.GetName()}
	seen := make(map[string]bool)
	for i, vh := range r.GetVirtualHosts() {
		p := named(join(path, "virtual_hosts"), i, vh.GetName())
		v := c.virtualHost(p, vh)
		for j, d := range v.Domains {
			if seen[d] {
				c.addf(idx(join(p, "domains"), j), "list each domain in one virtual host only", "domain %q is already used by another virtual host", d)
			}
			seen[d] = true
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out
}

func (c *collector) virtualHost(path string, vh *routev3.VirtualHost) *config.VirtualHost {
	c.only(path, vh, "name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove", "retry_policy")
	out := &config.VirtualHost{Name: vh.GetName()}
	for i, d := range vh.GetDomains() {
		if strings.Count(d, "*") > 1 || (strings.Contains(d, "*") && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")) {
			c.addf(idx(join(path, "domains"), i), `use an exact name, "*.suffix", "prefix*" or "*"`, "invalid wildcard domain %q", d)
		}
		out.Domains = append(out.Domains, strings.ToLower(d))
	}
	out.RequestHeaders = c.headerMutation(path, vh.GetRequestHeadersToAdd(), "request_headers_to_add", vh.GetRequestHeadersToRemove(), "request_headers_to_remove")
	out.ResponseHeaders = c.headerMutation(path, vh.GetResponseHeadersToAdd(), "response_headers_to_add", vh.GetResponseHeadersToRemove(), "response_headers_to_remove")
	if rp := vh.GetRetryPolicy(); rp != nil {
		out.Retry = c.retryPolicy(join(path, "retry_policy"), rp)
	}
	for i, r := range vh.GetRoutes() {
		out.Routes = append(out.Routes, c.route(named(join(path, "routes"), i, r.GetName()), r))
	}
	return out
}

func (c *collector) route(path string, r *routev3.Route) *config.Route {
	c.only(path, r, "name", "match", "route", "redirect", "direct_response",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"typed_per_filter_config", "metadata", "decorator")
	out := &config.Route{Name: r.GetName()}
	out.Match = c.routeMatch(join(path, "match"), r.GetMatch())
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		out.Forward = c.routeAction(join(path, "route"), a.Route)
	case *routev3.Route_Redirect:
		out.Redirect = c.redirect(join(path, "redirect"), a.Redirect)
	case *routev3.Route_DirectResponse:
		out.Direct = c.directResponse(join(path, "direct_response"), a.DirectResponse)
	case nil:
		c.addf(path, "set route, redirect or direct_response", "route has no action")
	}
	out.RequestHeaders = c.headerMutation(path, r.GetRequestHeadersToAdd(), "request_headers_to_add", r.GetRequestHeadersToRemove(), "request_headers_to_remove")
	out.ResponseHeaders = c.headerMutation(path, r.GetResponseHeadersToAdd(), "response_headers_to_add", r.GetResponseHeadersToRemove(), "response_headers_to_remove")
	for name, cfg := range r.GetTypedPerFilterConfig() {
		p := fmt.Sprintf("%s.typed_per_filter_config[%q]", path, name)
		if name != faultFilterName {
			c.unsupported(p, "", "only "+faultFilterName+" may have per-route config")
			continue
		}
		out.Fault = c.fault(p, cfg)
	}
	return out
}

func (c *collector) routeMatch(path string, m *routev3.RouteMatch) config.RouteMatch {
	var out config.RouteMatch
	if m == nil {
		c.addf(path, `set match.prefix "/" to match everything`, "missing match")
		return out
	}
	c.only(path, m, "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers", "query_parameters")
	out.CaseSensitive = true
	if cs := m.GetCaseSensitive(); cs != nil {
		out.CaseSensitive = cs.GetValue()
	}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.PathKind, out.Path = config.PathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		out.PathKind, out.Path = config.PathExact, p.Path
	case *routev3.RouteMatch_SafeRegex:
		out.PathKind = config.PathRegex
		out.PathRegex = c.regex(join(path, "safe_regex"), p.SafeRegex)
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.PathKind, out.Path = config.PathSegmentPrefix, p.PathSeparatedPrefix
	case nil:
		c.addf(path, "set prefix, path, safe_regex or path_separated_prefix", "missing path specifier")
	}
	if !out.CaseSensitive && out.PathKind != config.PathRegex {
		out.Path = strings.ToLower(out.Path)
	}
	for i, h := range m.GetHeaders() {
		out.Headers = append(out.Headers, c.headerMatch(named(join(path, "headers"), i, h.GetName()), h))
	}
	for i, q := range m.GetQueryParameters() {
		p := named(join(path, "query_parameters"), i, q.GetName())
		c.only(p, q, "name", "string_match", "present_match")
		qm := config.QueryMatch{Name: q.GetName()}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			qm.Value = c.stringMatch(join(p, "string_match"), s.StringMatch)
		case *routev3.QueryParameterMatcher_PresentMatch:
			if !s.PresentMatch {
				c.unsupported(join(p, "present_match"), "false", "use present_match: true")
			}
			qm.Present = true
		case nil:
			c.addf(p, "set string_match or present_match", "missing query parameter match")
		}
		out.Query = append(out.Query, qm)
	}
	return out
}

// headerMatch translates a HeaderMatcher (routes and RBAC permissions).
func (c *collector) headerMatch(p string, h *routev3.HeaderMatcher) config.HeaderMatch {
	c.only(p, h, "name", "string_match", "present_match", "invert_match")
	hm := config.HeaderMatch{Name: strings.ToLower(h.GetName()), Invert: h.GetInvertMatch()}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		hm.Value = c.stringMatch(join(p, "string_match"), s.StringMatch)
	case *routev3.HeaderMatcher_PresentMatch:
		hm.Present = true
		if !s.PresentMatch { // present_match: false matches an absent header
			hm.Invert = !hm.Invert
		}
	case nil:
		c.addf(p, "set string_match or present_match", "missing header match")
	}
	return hm
}

func (c *collector) routeAction(path string, a *routev3.RouteAction) *config.ForwardAction {
	c.only(path, a, "cluster", "weighted_clusters", "timeout", "retry_policy", "request_mirror_policies",
		"prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "hash_policy")
	out := &config.ForwardAction{}
	switch s := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		out.Clusters = []config.WeightedCluster{{Name: s.Cluster, Weight: 1}}
	case *routev3.RouteAction_WeightedClusters:
		p := join(path, "weighted_clusters")
		c.only(p, s.WeightedClusters, "clusters", "total_weight")
		var total uint64
		for i, wc := range s.WeightedClusters.GetClusters() {
			q := named(join(p, "clusters"), i, wc.GetName())
			c.only(q, wc, "name", "weight", "request_headers_to_add", "request_headers_to_remove",
				"response_headers_to_add", "response_headers_to_remove")
			if wc.GetName() == "" {
				c.addf(join(q, "name"), "name the cluster", "empty cluster name")
			}
			w := wc.GetWeight().GetValue()
			total += uint64(w)
			out.Clusters = append(out.Clusters, config.WeightedCluster{
				Name:            wc.GetName(),
				Weight:          w,
				RequestHeaders:  c.headerMutation(q, wc.GetRequestHeadersToAdd(), "request_headers_to_add", wc.GetRequestHeadersToRemove(), "request_headers_to_remove"),
				ResponseHeaders: c.headerMutation(q, wc.GetResponseHeadersToAdd(), "response_headers_to_add", wc.GetResponseHeadersToRemove(), "response_headers_to_remove"),
			})
		}
		if total == 0 {
			c.addf(join(p, "clusters"), "give at least one cluster a positive weight", "weights sum to zero")
		}
	case nil:
		c.addf(path, "set cluster or weighted_clusters", "missing cluster")
	default:
		c.unsupported(path+".cluster_specifier", fmt.Sprintf("%T", s), "use cluster or weighted_clusters")
	}
	if t := a.GetTimeout(); t != nil {
		out.Timeout = t.AsDuration()
		if out.Timeout == 0 {
			out.Timeout = -1 // an explicit 0s disables the timeout
		}
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		out.Retry = c.retryPolicy(join(path, "retry_policy"), rp)
	}
	for i, m := range a.GetRequestMirrorPolicies() {
		p := named(join(path, "request_mirror_policies"), i, m.GetCluster())
		c.only(p, m, "cluster", "runtime_fraction", "trace_sampled")
		if m.GetCluster() == "" {
			c.addf(join(p, "cluster"), "name the mirror cluster", "empty cluster name")
		}
		pct := 100.0
		if rf := m.GetRuntimeFraction(); rf != nil {
			c.only(join(p, "runtime_fraction"), rf, "default_value", "runtime_key")
			pct = c.fractionPercent(join(p, "runtime_fraction.default_value"), rf.GetDefaultValue())
		}
		out.Mirrors = append(out.Mirrors, config.Mirror{Cluster: m.GetCluster(), Percent: pct})
	}
	out.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		p := join(path, "regex_rewrite")
		c.only(p, rr, "pattern", "substitution")
		if out.PrefixRewrite != "" {
			c.addf(p, "use prefix_rewrite or regex_rewrite, not both", "both prefix_rewrite and regex_rewrite set")
		}
		if rr.GetPattern() == nil {
			c.addf(join(p, "pattern"), "set pattern.regex", "missing pattern")
		} else {
			c.only(join(p, "pattern"), rr.GetPattern(), "regex", "google_re2")
			re, err := regexp.Compile(rr.GetPattern().GetRegex())
			if err != nil {
				c.wrap(join(p, "pattern.regex"), "use RE2 syntax", err, "invalid regex %q", rr.GetPattern().GetRegex())
			}
			out.RegexRewrite = re
			out.RegexSubstitution = rr.GetSubstitution()
		}
	}
	out.HostRewrite = a.GetHostRewriteLiteral()
	for i, h := range a.GetHashPolicy() {
		p := idx(join(path, "hash_policy"), i)
		c.only(p, h, "header", "cookie", "connection_properties", "terminal")
		switch s := h.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			c.only(join(p, "header"), s.Header, "header_name")
			out.HashPolicy = append(out.HashPolicy, config.HashPolicy{Header: strings.ToLower(s.Header.GetHeaderName())})
		case *routev3.RouteAction_HashPolicy_Cookie_:
			c.only(join(p, "cookie"), s.Cookie, "name")
			out.HashPolicy = append(out.HashPolicy, config.HashPolicy{Cookie: s.Cookie.GetName()})
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			c.only(join(p, "connection_properties"), s.ConnectionProperties, "source_ip")
			if !s.ConnectionProperties.GetSourceIp() {
				c.addf(join(p, "connection_properties.source_ip"), "set source_ip: true", "connection_properties without source_ip hashes nothing")
			}
			out.HashPolicy = append(out.HashPolicy, config.HashPolicy{SourceIP: true})
		case nil:
			c.addf(p, "set header, cookie or connection_properties", "empty hash policy")
		default:
			c.unsupported(p+".policy_specifier", fmt.Sprintf("%T", s), "use header, cookie or connection_properties.source_ip")
		}
	}
	return out
}

// retryOnNames maps retry_on tokens to conditions.
func retryOn(tok string) (config.RetryOn, bool) {
	switch tok {
	case "5xx":
		return config.Retry5xx, true
	case "gateway-error":
		return config.RetryGatewayError, true
	case "connect-failure":
		return config.RetryConnectFailure, true
	case "reset":
		return config.RetryReset, true
	case "refused-stream":
		return config.RetryRefusedStream, true
	case "retriable-status-codes":
		return config.RetryRetriableStatusCodes, true
	}
	return 0, false
}

func (c *collector) retryPolicy(path string, rp *routev3.RetryPolicy) *config.RetryPolicy {
	c.only(path, rp, "retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "retry_back_off",
		"retry_host_predicate", "host_selection_retry_max_attempts", "retry_priority")
	out := &config.RetryPolicy{NumRetries: 1}
	for tok := range strings.SplitSeq(rp.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		on, ok := retryOn(tok)
		if !ok {
			c.unsupported(fmt.Sprintf("%s.retry_on[%q]", path, tok), "", "use 5xx, gateway-error, connect-failure, reset, refused-stream, retriable-status-codes")
			continue
		}
		out.On |= on
	}
	if n := rp.GetNumRetries(); n != nil {
		out.NumRetries = int(n.GetValue())
	}
	out.PerTryTimeout = duration(rp.GetPerTryTimeout())
	for i, code := range rp.GetRetriableStatusCodes() {
		if code < 100 || code > 599 {
			c.addf(idx(join(path, "retriable_status_codes"), i), "use an HTTP status 100..599", "invalid status %d", code)
			continue
		}
		out.RetriableStatusCodes = append(out.RetriableStatusCodes, int(code))
	}
	if len(out.RetriableStatusCodes) > 0 && out.On&config.RetryRetriableStatusCodes == 0 {
		c.addf(join(path, "retriable_status_codes"), `add "retriable-status-codes" to retry_on`, "status codes given but never retried")
	}
	if b := rp.GetRetryBackOff(); b != nil {
		c.only(join(path, "retry_back_off"), b, "base_interval", "max_interval")
		out.BackoffBase = duration(b.GetBaseInterval())
		out.BackoffMax = duration(b.GetMaxInterval())
		if out.BackoffMax != 0 && out.BackoffMax < out.BackoffBase {
			c.addf(join(path, "retry_back_off.max_interval"), "make max_interval at least base_interval", "max_interval %v below base_interval %v", out.BackoffMax, out.BackoffBase)
		}
	}
	return out
}

func (c *collector) redirect(path string, r *routev3.RedirectAction) *config.RedirectAction {
	c.only(path, r, "https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect",
		"prefix_rewrite", "response_code", "strip_query")
	out := &config.RedirectAction{Host: r.GetHostRedirect(), Port: r.GetPortRedirect(), StripQuery: r.GetStripQuery()}
	switch s := r.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			out.Scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		out.Scheme = strings.ToLower(s.SchemeRedirect)
	}
	out.Path = r.GetPathRedirect()
	out.PrefixRewrite = r.GetPrefixRewrite()
	switch r.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		out.StatusCode = 301
	case routev3.RedirectAction_FOUND:
		out.StatusCode = 302
	case routev3.RedirectAction_SEE_OTHER:
		out.StatusCode = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		out.StatusCode = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		out.StatusCode = 308
	default:
		c.addf(join(path, "response_code"), "use MOVED_PERMANENTLY, FOUND, SEE_OTHER, TEMPORARY_REDIRECT or PERMANENT_REDIRECT", "unknown response code %d", r.GetResponseCode())
	}
	return out
}

func (c *collector) directResponse(path string, d *routev3.DirectResponseAction) *config.DirectResponse {
	c.only(path, d, "status", "body")
	out := &config.DirectResponse{Status: int(d.GetStatus())}
	if b := d.GetBody(); b != nil {
		c.only(join(path, "body"), b, "inline_string", "inline_bytes")
		if s := b.GetInlineString(); s != "" {
			out.Body = s
		} else {
			out.Body = string(b.GetInlineBytes())
		}
	}
	return out
}

func (c *collector) fault(path string, a *anypb.Any) *config.FaultPolicy {
	var f faultv3.HTTPFault
	if err := leanxds.UnmarshalAny(a, &f); err != nil {
		c.wrap(path, "send an envoy.extensions.filters.http.fault.v3.HTTPFault", err, "cannot decode %q", a.GetTypeUrl())
		return nil
	}
	if !c.validate(path, &f) {
		return nil
	}
	c.only(path, &f, "delay", "abort")
	out := &config.FaultPolicy{}
	if d := f.GetDelay(); d != nil {
		p := join(path, "delay")
		c.only(p, d, "fixed_delay", "percentage")
		if d.GetFixedDelay() == nil {
			c.addf(join(p, "fixed_delay"), "set fixed_delay", "missing fixed_delay")
		}
		out.Delay = duration(d.GetFixedDelay())
		out.DelayPercent = c.fractionPercent(join(p, "percentage"), d.GetPercentage())
	}
	if ab := f.GetAbort(); ab != nil {
		p := join(path, "abort")
		c.only(p, ab, "http_status", "percentage")
		if ab.GetHttpStatus() == 0 {
			c.addf(join(p, "http_status"), "set http_status", "missing http_status")
		}
		out.AbortStatus = int(ab.GetHttpStatus())
		out.AbortPercent = c.fractionPercent(join(p, "percentage"), ab.GetPercentage())
	}
	return out
}

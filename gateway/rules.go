package gateway

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/causewaymesh/causeway/internal/model"
)

// ruleCtx collects the problems of one rule; any problem drops the rule.
type ruleCtx struct {
	t     *translator
	rt    *route
	field string // "HTTPRoute ns/name: spec.rules[0]"
	probs []problem
}

func (c *ruleCtx) bad(reason, format string, args ...any) {
	c.probs = append(c.probs, problem{reason, c.field + fmt.Sprintf(format, args...)})
}

func (c *ruleCtx) done() bool {
	if len(c.probs) > 0 {
		c.rt.ruleProblems = append(c.rt.ruleProblems, c.probs...)
		return false
	}
	c.rt.validRules++
	return true
}

const (
	reasonUnsupported  = string(gatewayv1.RouteReasonUnsupportedValue)
	reasonIncompatible = string(gatewayv1.RouteReasonIncompatibleFilters)
)

func (t *translator) buildHTTP(rt *route, rules []gatewayv1.HTTPRouteRule) {
	if len(rules) == 0 {
		rules = []gatewayv1.HTTPRouteRule{{}}
	}
	for i := range rules {
		rule := &rules[i]
		c := &ruleCtx{t: t, rt: rt, field: fmt.Sprintf("%s: spec.rules[%d]", rt.obj(), i)}
		base := model.HTTPRoute{Kind: rt.kind, Namespace: rt.meta.Namespace, Name: rt.meta.Name, Rule: i}
		if rule.Name != nil {
			base.RuleName = string(*rule.Name)
		}
		allPrefix := len(rule.Matches) == 0 || !slices.ContainsFunc(rule.Matches, func(m gatewayv1.HTTPRouteMatch) bool {
			return m.Path != nil && m.Path.Type != nil && *m.Path.Type != gatewayv1.PathMatchPathPrefix
		})
		c.httpFilters(&base, rule.Filters, allPrefix)
		if to := rule.Timeouts; to != nil {
			base.Timeout = c.duration(".timeouts.request", to.Request)
			base.BackendTimeout = c.duration(".timeouts.backendRequest", to.BackendRequest)
			if base.Timeout > 0 && base.BackendTimeout > base.Timeout {
				c.bad(reasonUnsupported, ".timeouts.backendRequest: %s exceeds timeouts.request %s; make it at most the request timeout", *to.BackendRequest, *to.Request)
			}
		}
		if r := rule.Retry; r != nil {
			base.Retry = &model.Retry{}
			for _, code := range r.Codes {
				base.Retry.Codes = append(base.Retry.Codes, int(code))
			}
			if r.Attempts != nil {
				base.Retry.Attempts = *r.Attempts
			}
			base.Retry.Backoff = c.duration(".retry.backoff", r.Backoff)
		}
		if rule.SessionPersistence != nil {
			c.bad(reasonUnsupported, ".sessionPersistence: session persistence is not supported; remove it")
		}
		for j := range rule.BackendRefs {
			br := &rule.BackendRefs[j]
			f := fmt.Sprintf(".backendRefs[%d]", j)
			be := t.backend(rt, c.field+f, br.BackendObjectReference, br.Weight)
			for k, fl := range br.Filters {
				c.backendFilter(&be, fmt.Sprintf("%s.filters[%d]", f, k), string(fl.Type), fl.RequestHeaderModifier, fl.ResponseHeaderModifier)
			}
			base.Backends = append(base.Backends, be)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		var out []model.HTTPRoute
		for j := range matches {
			m := &matches[j]
			r := base
			r.Match = j
			f := fmt.Sprintf(".matches[%d]", j)
			r.PathKind, r.Path = model.PathPrefix, "/"
			if p := m.Path; p != nil {
				if p.Value != nil {
					r.Path = *p.Value
				}
				if p.Type != nil {
					switch *p.Type {
					case gatewayv1.PathMatchExact:
						r.PathKind = model.PathExact
					case gatewayv1.PathMatchRegularExpression:
						r.PathKind = model.PathRegex
						c.regex(f+".path.value", r.Path)
					case gatewayv1.PathMatchPathPrefix:
					default:
						c.bad(reasonUnsupported, "%s.path.type: %q is not supported; use Exact, PathPrefix or RegularExpression", f, *p.Type)
					}
				}
				if r.PathKind != model.PathRegex && !strings.HasPrefix(r.Path, "/") {
					c.bad(reasonUnsupported, "%s.path.value: %q must start with \"/\"", f, r.Path)
				}
			}
			if m.Method != nil {
				r.Method = string(*m.Method)
			}
			for k, h := range m.Headers {
				regex := h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression
				r.Headers = c.valueMatch(r.Headers, fmt.Sprintf("%s.headers[%d]", f, k), strings.ToLower(string(h.Name)), h.Value, regex, true)
			}
			for k, q := range m.QueryParams {
				regex := q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression
				r.Query = c.valueMatch(r.Query, fmt.Sprintf("%s.queryParams[%d]", f, k), string(q.Name), q.Value, regex, false)
			}
			out = append(out, r)
		}
		if c.done() {
			rt.entries = append(rt.entries, out...)
		}
	}
}

// valueMatch appends a header or query match; only the first of equal
// names counts (Gateway API).
func (c *ruleCtx) valueMatch(list []model.ValueMatch, field, name, value string, regex, fold bool) []model.ValueMatch {
	if slices.ContainsFunc(list, func(v model.ValueMatch) bool {
		return v.Name == name || (fold && strings.EqualFold(v.Name, name))
	}) {
		return list
	}
	if regex {
		c.regex(field+".value", value)
	}
	return append(list, model.ValueMatch{Name: name, Value: value, Regex: regex})
}

func (c *ruleCtx) regex(field, re string) {
	if _, err := regexp.Compile(re); err != nil {
		c.bad(reasonUnsupported, "%s: %q is not an RE2 regular expression (%v); fix the expression", field, re, err)
	}
}

func (c *ruleCtx) duration(field string, d *gatewayv1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil || v < 0 {
		c.bad(reasonUnsupported, "%s: %q is not a duration; use e.g. \"10s\" or \"500ms\"", field, *d)
		return 0
	}
	if v == 0 {
		return -1 // disabled
	}
	return v
}

// backendFilter applies one filter of a backendRef (HTTPRoute or GRPCRoute:
// the filter types share their names): only the header modifiers apply.
func (c *ruleCtx) backendFilter(be *model.Backend, field, typ string, req, resp *gatewayv1.HTTPHeaderFilter) {
	switch typ {
	case string(gatewayv1.HTTPRouteFilterRequestHeaderModifier):
		be.RequestHeaders = c.headers(field+".requestHeaderModifier", req)
	case string(gatewayv1.HTTPRouteFilterResponseHeaderModifier):
		be.ResponseHeaders = c.headers(field+".responseHeaderModifier", resp)
	default:
		c.bad(reasonUnsupported, "%s.type: %s is not supported on a backendRef; use RequestHeaderModifier or ResponseHeaderModifier", field, typ)
	}
}

func (c *ruleCtx) headers(field string, h *gatewayv1.HTTPHeaderFilter) model.HeaderModifier {
	var m model.HeaderModifier
	if h == nil {
		c.bad(reasonUnsupported, "%s: missing; set the filter's configuration", field)
		return m
	}
	for _, x := range h.Set {
		m.Set = append(m.Set, model.Header{Name: strings.ToLower(string(x.Name)), Value: x.Value})
	}
	for _, x := range h.Add {
		m.Add = append(m.Add, model.Header{Name: strings.ToLower(string(x.Name)), Value: x.Value})
	}
	for _, x := range h.Remove {
		m.Remove = append(m.Remove, strings.ToLower(x))
	}
	return m
}

func (c *ruleCtx) pathModifier(field string, p *gatewayv1.HTTPPathModifier, allPrefix bool) *model.PathRewrite {
	if p == nil {
		return nil
	}
	switch p.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath == nil {
			c.bad(reasonUnsupported, "%s.replaceFullPath: required with type ReplaceFullPath", field)
			return nil
		}
		return &model.PathRewrite{Kind: model.ReplaceFullPath, Value: *p.ReplaceFullPath}
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch == nil {
			c.bad(reasonUnsupported, "%s.replacePrefixMatch: required with type ReplacePrefixMatch", field)
			return nil
		}
		if !allPrefix {
			c.bad(reasonUnsupported, "%s: ReplacePrefixMatch needs every match of the rule to be a PathPrefix match; use ReplaceFullPath or PathPrefix matches", field)
			return nil
		}
		return &model.PathRewrite{Kind: model.ReplacePrefixMatch, Value: *p.ReplacePrefixMatch}
	}
	c.bad(reasonUnsupported, "%s.type: %q is not supported; use ReplaceFullPath or ReplacePrefixMatch", field, p.Type)
	return nil
}

func (c *ruleCtx) httpFilters(r *model.HTTPRoute, filters []gatewayv1.HTTPRouteFilter, allPrefix bool) {
	var redirect, rewrite bool
	for k, fl := range filters {
		f := fmt.Sprintf(".filters[%d]", k)
		switch fl.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			r.RequestHeaders = c.headers(f+".requestHeaderModifier", fl.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			r.ResponseHeaders = c.headers(f+".responseHeaderModifier", fl.ResponseHeaderModifier)
		case gatewayv1.HTTPRouteFilterRequestMirror:
			c.mirror(r, f, fl.RequestMirror)
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			redirect = true
			rr := fl.RequestRedirect
			if rr == nil {
				c.bad(reasonUnsupported, "%s.requestRedirect: missing; configure the redirect", f)
				continue
			}
			rd := &model.Redirect{Status: 302}
			if rr.Scheme != nil {
				rd.Scheme = strings.ToLower(*rr.Scheme)
				if rd.Scheme != "http" && rd.Scheme != "https" {
					c.bad(reasonUnsupported, "%s.requestRedirect.scheme: %q is not supported; use http or https", f, *rr.Scheme)
				}
			}
			if rr.Hostname != nil {
				rd.Hostname = string(*rr.Hostname)
			}
			if rr.Port != nil {
				rd.Port = uint32(*rr.Port)
			}
			if rr.StatusCode != nil {
				switch *rr.StatusCode {
				case 301, 302, 303, 307, 308:
					rd.Status = *rr.StatusCode
				default:
					c.bad(reasonUnsupported, "%s.requestRedirect.statusCode: %d is not supported; use 301, 302, 303, 307 or 308", f, *rr.StatusCode)
				}
			}
			rd.Path = c.pathModifier(f+".requestRedirect.path", rr.Path, allPrefix)
			r.Redirect = rd
		case gatewayv1.HTTPRouteFilterURLRewrite:
			rewrite = true
			uw := fl.URLRewrite
			if uw == nil {
				c.bad(reasonUnsupported, "%s.urlRewrite: missing; configure the rewrite", f)
				continue
			}
			if uw.Hostname != nil {
				r.HostRewrite = string(*uw.Hostname)
			}
			r.PathRewrite = c.pathModifier(f+".urlRewrite.path", uw.Path, allPrefix)
		case gatewayv1.HTTPRouteFilterCORS, gatewayv1.HTTPRouteFilterExternalAuth, gatewayv1.HTTPRouteFilterExtensionRef:
			c.bad(reasonUnsupported, "%s.type: %s is not supported by Causeway; remove the filter", f, fl.Type)
		default:
			c.bad(reasonUnsupported, "%s.type: unknown filter %q; use RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite or RequestMirror", f, fl.Type)
		}
	}
	if redirect && rewrite {
		c.bad(reasonIncompatible, ".filters: RequestRedirect and URLRewrite cannot be combined in one rule; keep one")
	}
}

func (c *ruleCtx) mirror(r *model.HTTPRoute, f string, m *gatewayv1.HTTPRequestMirrorFilter) {
	if m == nil {
		c.bad(reasonUnsupported, "%s.requestMirror: missing; set backendRef", f)
		return
	}
	pct := 100.0
	switch {
	case m.Percent != nil && m.Fraction != nil:
		c.bad(reasonUnsupported, "%s.requestMirror: set percent or fraction, not both", f)
	case m.Percent != nil:
		pct = float64(*m.Percent)
	case m.Fraction != nil:
		den := int32(100)
		if m.Fraction.Denominator != nil {
			den = *m.Fraction.Denominator
		}
		if den <= 0 || m.Fraction.Numerator < 0 || m.Fraction.Numerator > den {
			c.bad(reasonUnsupported, "%s.requestMirror.fraction: %d/%d is not a fraction in [0,1]; fix numerator/denominator", f, m.Fraction.Numerator, den)
		} else {
			pct = 100 * float64(m.Fraction.Numerator) / float64(den)
		}
	}
	be := c.t.backend(c.rt, c.field+f+".requestMirror.backendRef", m.BackendRef, nil)
	if be.Unresolved == "" {
		r.Mirrors = append(r.Mirrors, model.Mirror{Backend: be, Percent: pct})
	}
}

// backend resolves a backend reference of rt; problems go to ResolvedRefs
// and the backend keeps its weight with Unresolved set.
func (t *translator) backend(rt *route, field string, ref gatewayv1.BackendObjectReference, weight *int32) model.Backend {
	group, kind, ns := groupCore, "Service", rt.meta.Namespace
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	be := model.Backend{Namespace: ns, Name: string(ref.Name), Weight: 1}
	if weight != nil {
		be.Weight = uint32(max(*weight, 0))
	}
	if ref.Port != nil {
		be.Port = uint32(*ref.Port)
	}
	fail := func(reason, format string, args ...any) model.Backend {
		be.Unresolved = reason
		rt.refProblems = append(rt.refProblems, problem{reason, field + ": " + fmt.Sprintf(format, args...)})
		return be
	}
	switch {
	case group == groupCore && kind == "Service":
		be.Kind = model.BackendService
	case group == groupMCS && kind == "ServiceImport":
		be.Kind = model.BackendServiceImport
	default:
		return fail(string(gatewayv1.RouteReasonInvalidKind), "%s/%s is not a supported backend; reference a core Service or a multicluster.x-k8s.io ServiceImport", group, kind)
	}
	if !t.permitted(rt.kind.String(), rt.meta.Namespace, group, kind, ns, be.Name) {
		return fail(string(gatewayv1.RouteReasonRefNotPermitted), "%s %s/%s is in another namespace; add a ReferenceGrant in %s from %s in %s to %s", kind, ns, be.Name, ns, rt.kind, rt.meta.Namespace, kind)
	}
	if ref.Port == nil {
		return fail(string(gatewayv1.RouteReasonBackendNotFound), "port is required for a %s; set port", kind)
	}
	var found, portOK bool
	if be.Kind == model.BackendService {
		if s, ok := t.services[nsName{ns, be.Name}]; ok {
			found = true
			portOK = slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == *ref.Port })
		}
	} else if s, ok := t.imports[nsName{ns, be.Name}]; ok {
		found = true
		for _, p := range s.Spec.Ports {
			portOK = portOK || p.Port == *ref.Port
		}
	}
	switch {
	case !found:
		return fail(string(gatewayv1.RouteReasonBackendNotFound), "%s %s/%s not found; create it or fix the name", kind, ns, be.Name)
	case !portOK:
		return fail(string(gatewayv1.RouteReasonBackendNotFound), "%s %s/%s has no port %d; use one of its ports", kind, ns, be.Name, *ref.Port)
	}
	return be
}

func (t *translator) buildGRPC(rt *route, rules []gatewayv1.GRPCRouteRule) {
	if len(rules) == 0 {
		rules = []gatewayv1.GRPCRouteRule{{}}
	}
	for i := range rules {
		rule := &rules[i]
		c := &ruleCtx{t: t, rt: rt, field: fmt.Sprintf("%s: spec.rules[%d]", rt.obj(), i)}
		base := model.HTTPRoute{Kind: rt.kind, Namespace: rt.meta.Namespace, Name: rt.meta.Name, Rule: i}
		if rule.Name != nil {
			base.RuleName = string(*rule.Name)
		}
		for k, fl := range rule.Filters {
			f := fmt.Sprintf(".filters[%d]", k)
			switch fl.Type {
			case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
				base.RequestHeaders = c.headers(f+".requestHeaderModifier", fl.RequestHeaderModifier)
			case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
				base.ResponseHeaders = c.headers(f+".responseHeaderModifier", fl.ResponseHeaderModifier)
			case gatewayv1.GRPCRouteFilterRequestMirror:
				c.mirror(&base, f, fl.RequestMirror)
			default:
				c.bad(reasonUnsupported, "%s.type: %s is not supported; use RequestHeaderModifier, ResponseHeaderModifier or RequestMirror", f, fl.Type)
			}
		}
		if rule.SessionPersistence != nil {
			c.bad(reasonUnsupported, ".sessionPersistence: session persistence is not supported; remove it")
		}
		for j := range rule.BackendRefs {
			br := &rule.BackendRefs[j]
			f := fmt.Sprintf(".backendRefs[%d]", j)
			be := t.backend(rt, c.field+f, br.BackendObjectReference, br.Weight)
			for k, fl := range br.Filters {
				c.backendFilter(&be, fmt.Sprintf("%s.filters[%d]", f, k), string(fl.Type), fl.RequestHeaderModifier, fl.ResponseHeaderModifier)
			}
			base.Backends = append(base.Backends, be)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.GRPCRouteMatch{{}}
		}
		var out []model.HTTPRoute
		for j := range matches {
			m := &matches[j]
			r := base
			r.Match = j
			f := fmt.Sprintf(".matches[%d]", j)
			r.PathKind, r.Path = grpcPath(c, f, m.Method)
			for k, h := range m.Headers {
				regex := h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression
				r.Headers = c.valueMatch(r.Headers, fmt.Sprintf("%s.headers[%d]", f, k), strings.ToLower(string(h.Name)), h.Value, regex, true)
			}
			out = append(out, r)
		}
		if c.done() {
			rt.entries = append(rt.entries, out...)
		}
	}
}

// grpcPath maps a gRPC method match to a path match: service and method
// exact → Exact "/svc/method"; service only → PathPrefix "/svc"; method
// only or RegularExpression → a regex over "/service/method".
func grpcPath(c *ruleCtx, f string, m *gatewayv1.GRPCMethodMatch) (model.PathKind, string) {
	if m == nil || (m.Service == nil && m.Method == nil) {
		return model.PathPrefix, "/"
	}
	svc, meth := "", ""
	if m.Service != nil {
		svc = *m.Service
	}
	if m.Method != nil {
		meth = *m.Method
	}
	if m.Type != nil && *m.Type == gatewayv1.GRPCMethodMatchRegularExpression {
		s, mm := "[^/]+", "[^/]+"
		if svc != "" {
			c.regex(f+".method.service", svc)
			s = "(?:" + svc + ")"
		}
		if meth != "" {
			c.regex(f+".method.method", meth)
			mm = "(?:" + meth + ")"
		}
		return model.PathRegex, "/" + s + "/" + mm
	}
	if m.Type != nil && *m.Type != gatewayv1.GRPCMethodMatchExact {
		c.bad(reasonUnsupported, "%s.method.type: %q is not supported; use Exact or RegularExpression", f, *m.Type)
	}
	switch {
	case svc != "" && meth != "":
		return model.PathExact, "/" + svc + "/" + meth
	case svc != "":
		return model.PathPrefix, "/" + svc
	}
	return model.PathRegex, "/[^/]+/" + regexp.QuoteMeta(meth)
}

func (t *translator) buildTLS(rt *route, rules []gatewayv1.TLSRouteRule) {
	for i := range rules {
		rule := &rules[i]
		c := &ruleCtx{t: t, rt: rt, field: fmt.Sprintf("%s: spec.rules[%d]", rt.obj(), i)}
		for j := range rule.BackendRefs {
			br := &rule.BackendRefs[j]
			rt.tlsBackends = append(rt.tlsBackends, t.backend(rt, fmt.Sprintf("%s.backendRefs[%d]", c.field, j), br.BackendObjectReference, br.Weight))
		}
		c.done()
	}
	if len(rules) == 0 {
		rt.ruleProblems = append(rt.ruleProblems, problem{reasonUnsupported, rt.obj() + ": spec.rules: a TLSRoute needs a rule with backendRefs; add one"})
	}
}

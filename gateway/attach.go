package gateway

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/causewaymesh/causeway/internal/model"
)

// route is one HTTPRoute, GRPCRoute or TLSRoute being attached.
type route struct {
	kind      model.RouteKind
	meta      *metav1.ObjectMeta
	parents   []gatewayv1.ParentReference
	hostnames []gatewayv1.Hostname
	build     func()
	built     bool

	entries      []model.HTTPRoute // HTTP/GRPC, without hostnames
	tlsBackends  []model.Backend   // TLS
	refProblems  []problem         // ResolvedRefs
	ruleProblems []problem         // rules dropped
	validRules   int
}

func (rt *route) obj() string {
	return rt.kind.String() + " " + rt.meta.Namespace + "/" + rt.meta.Name
}

// attach attaches rt to each of its parents this controller owns and
// returns its status; ok is false when no parent is owned.
func (t *translator) attach(rt *route) (RouteStatus, bool) {
	st := RouteStatus{Namespace: rt.meta.Namespace, Name: rt.meta.Name, Status: gatewayv1.RouteStatus{Parents: []gatewayv1.RouteParentStatus{}}}
	gen := rt.meta.Generation
	for i, pr := range rt.parents {
		group, kind, ns := groupGateway, "Gateway", rt.meta.Namespace
		if pr.Group != nil {
			group = string(*pr.Group)
		}
		if pr.Kind != nil {
			kind = string(*pr.Kind)
		}
		if pr.Namespace != nil {
			ns = string(*pr.Namespace)
		}
		field := fmt.Sprintf("%s: spec.parentRefs[%d] (%s %s/%s)", rt.obj(), i, kind, ns, pr.Name)
		var mesh bool
		switch {
		case group == groupGateway && kind == "Gateway":
			if _, ok := t.gws[nsName{ns, string(pr.Name)}]; !ok {
				continue // not a Gateway of ours
			}
		case group == groupCore && kind == "Service", group == groupMCS && kind == "ServiceImport":
			mesh = true
		default:
			continue
		}
		if !rt.built {
			rt.built = true
			rt.build()
		}
		var acc metav1.Condition
		switch {
		case rt.validRules == 0 && len(rt.ruleProblems) > 0:
			acc = t.cond(string(gatewayv1.RouteConditionAccepted), rt.ruleProblems[0].reason, false, gen,
				"no rule is valid: %s", joinProblems(rt.ruleProblems))
		case mesh:
			acc = t.attachMesh(rt, pr, kind, ns, field)
		default:
			acc = t.attachGateway(rt, pr, ns, field)
		}
		conds := []metav1.Condition{acc}
		if len(rt.refProblems) == 0 {
			conds = append(conds, t.cond(string(gatewayv1.RouteConditionResolvedRefs), string(gatewayv1.RouteReasonResolvedRefs), true, gen, "%s: all references resolved", rt.obj()))
		} else {
			conds = append(conds, t.cond(string(gatewayv1.RouteConditionResolvedRefs), rt.refProblems[0].reason, false, gen, "%s", joinProblems(rt.refProblems)))
		}
		if rt.validRules > 0 && len(rt.ruleProblems) > 0 {
			conds = append(conds, t.cond(string(gatewayv1.RouteConditionPartiallyInvalid), rt.ruleProblems[0].reason, true, gen,
				"rules dropped: %s", joinProblems(rt.ruleProblems)))
		}
		st.Status.Parents = append(st.Status.Parents, gatewayv1.RouteParentStatus{ParentRef: pr, ControllerName: gatewayv1.GatewayController(t.ctrl), Conditions: conds})
	}
	return st, len(st.Status.Parents) > 0
}

func (t *translator) attachGateway(rt *route, pr gatewayv1.ParentReference, ns, field string) metav1.Condition {
	g := t.gws[nsName{ns, string(pr.Name)}]
	gen := rt.meta.Generation
	if g.addrErr != "" {
		return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonNoMatchingParent), false, gen,
			"%s: the Gateway is not accepted (%s)", field, g.addrErr)
	}
	var cands []*listenerState
	for _, ls := range g.listeners {
		if (pr.SectionName == nil || *pr.SectionName == ls.l.Name) && (pr.Port == nil || *pr.Port == ls.l.Port) {
			cands = append(cands, ls)
		}
	}
	if len(cands) == 0 {
		var what []string
		if pr.SectionName != nil {
			what = append(what, fmt.Sprintf("sectionName %q", *pr.SectionName))
		}
		if pr.Port != nil {
			what = append(what, fmt.Sprintf("port %d", *pr.Port))
		}
		return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonNoMatchingParent), false, gen,
			"%s: the Gateway has no listener with %s; fix sectionName/port to name one of its listeners", field, strings.Join(what, " and "))
	}
	kind := rt.kind.String()
	var allowed, attached []string
	for _, ls := range cands {
		if !ls.accepted || ls.conflicted || !t.allows(g, ls, kind, rt.meta.Namespace) {
			continue
		}
		allowed = append(allowed, string(ls.l.Name))
		hosts := intersectHostnames(hostOf(ls.l), rt.hostnames)
		if len(hosts) == 0 {
			continue
		}
		attached = append(attached, string(ls.l.Name))
		ls.attached++
		if !ls.ready() {
			continue
		}
		p := listenerParent(g, ls)
		ts := t.table(tableKey{kind: model.ParentGateway, ns: p.Namespace, name: p.Name, listener: p.Listener, port: p.Port,
			protocol: string(p.Protocol), hostname: p.Hostname, certs: strings.Join(p.CertificateRefs, ",")}, p)
		t.add(ts, rt, hosts)
	}
	switch {
	case len(attached) > 0:
		return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonAccepted), true, gen, "%s: accepted by listener(s) %s", field, strings.Join(attached, ", "))
	case len(allowed) > 0:
		return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonNoMatchingListenerHostname), false, gen,
			"%s: spec.hostnames %v match no hostname of listener(s) %s; add a matching hostname", field, rt.hostnames, strings.Join(allowed, ", "))
	}
	return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonNotAllowedByListeners), false, gen,
		"%s: no listener admits a %s from namespace %s (see each listener's allowedRoutes, protocol and conditions); change allowedRoutes or the route's namespace", field, kind, rt.meta.Namespace)
}

// attachMesh attaches an HTTPRoute or GRPCRoute to every port (or the
// named one) of a Service or ServiceImport (GAMMA).
func (t *translator) attachMesh(rt *route, pr gatewayv1.ParentReference, kind, ns, field string) metav1.Condition {
	gen := rt.meta.Generation
	if rt.kind == model.KindTLSRoute {
		return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonUnsupportedValue), false, gen,
			"%s: a TLSRoute cannot attach to a %s (mesh routes are HTTPRoute and GRPCRoute); reference a Gateway", field, kind)
	}
	type port struct {
		name string
		num  uint32
	}
	var ports []port
	pk := model.ParentService
	switch kind {
	case "Service":
		svc, ok := t.services[nsName{ns, string(pr.Name)}]
		if !ok {
			return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonNoMatchingParent), false, gen, "%s: Service not found; create it or fix the parentRef", field)
		}
		for _, p := range svc.Spec.Ports {
			if p.Protocol == "" || p.Protocol == "TCP" {
				ports = append(ports, port{p.Name, uint32(p.Port)})
			}
		}
	default:
		pk = model.ParentServiceImport
		si, ok := t.imports[nsName{ns, string(pr.Name)}]
		if !ok {
			return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonNoMatchingParent), false, gen, "%s: ServiceImport not found; export the service from a peer cluster or fix the parentRef", field)
		}
		for _, p := range si.Spec.Ports {
			if p.Protocol == "" || p.Protocol == "TCP" {
				ports = append(ports, port{p.Name, uint32(p.Port)})
			}
		}
	}
	ports = slices.DeleteFunc(ports, func(p port) bool {
		return (pr.Port != nil && uint32(*pr.Port) != p.num) || (pr.SectionName != nil && string(*pr.SectionName) != p.name)
	})
	if len(ports) == 0 {
		return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonNoMatchingParent), false, gen,
			"%s: the %s has no TCP port matching the parentRef's port/sectionName; name an existing port", field, kind)
	}
	consumer := ""
	if rt.meta.Namespace != ns {
		consumer = rt.meta.Namespace
	}
	var nums []string
	for _, p := range ports {
		parent := model.RouteParent{Kind: pk, Namespace: ns, Name: string(pr.Name), Port: p.num, Protocol: "HTTP", ConsumerNamespace: consumer}
		ts := t.table(tableKey{kind: pk, ns: ns, name: parent.Name, port: p.num, consumer: consumer}, parent)
		t.add(ts, rt, []string{"*"})
		nums = append(nums, fmt.Sprint(p.num))
	}
	how := "for every caller"
	if consumer != "" {
		how = "for callers in namespace " + consumer + " (consumer route)"
	}
	return t.cond(string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteReasonAccepted), true, gen, "%s: accepted on port(s) %s %s", field, strings.Join(nums, ", "), how)
}

func (t *translator) add(ts *tableState, rt *route, hosts []string) {
	if rt.kind == model.KindTLSRoute {
		ts.tls = append(ts.tls, model.TLSRoute{Namespace: rt.meta.Namespace, Name: rt.meta.Name, Hostnames: hosts, Backends: rt.tlsBackends})
		return
	}
	for _, h := range hosts {
		for _, e := range rt.entries {
			ts.hosts[h] = append(ts.hosts[h], entry{r: e, created: rt.meta.CreationTimestamp})
		}
	}
}

// comparePrecedence orders route entries of one hostname as the Gateway
// API defines it: Exact paths first, then regular expressions (longer
// first), then prefixes (longer first, a trailing "/" not counted); then a
// method match, more header matches, more query matches; then the older
// route, then namespace/name, then rule and match order.
func comparePrecedence(a, b entry) int {
	x, y := &a.r, &b.r
	rank := func(k model.PathKind) int {
		switch k {
		case model.PathExact:
			return 0
		case model.PathRegex:
			return 1
		}
		return 2
	}
	plen := func(r *model.HTTPRoute) int {
		if r.PathKind == model.PathPrefix {
			return len(strings.TrimRight(r.Path, "/"))
		}
		return len(r.Path)
	}
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	return cmp.Or(cmp.Compare(rank(x.PathKind), rank(y.PathKind)),
		cmp.Compare(plen(y), plen(x)),
		cmp.Compare(b2i(y.Method != ""), b2i(x.Method != "")),
		cmp.Compare(len(y.Headers), len(x.Headers)),
		cmp.Compare(len(y.Query), len(x.Query)),
		a.created.Compare(b.created.Time),
		cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name), cmp.Compare(x.Kind, y.Kind),
		cmp.Compare(x.Rule, y.Rule), cmp.Compare(x.Match, y.Match))
}

// intersectHostnames is the hostnames a route serves on a listener: the
// route's hostnames that the listener's admits (a wildcard route hostname
// narrowed to the listener's exact one), or the listener's hostname when
// the route has none, or "*" when neither has any. Sorted, unique.
func intersectHostnames(listener string, route []gatewayv1.Hostname) []string {
	if len(route) == 0 {
		if listener == "" {
			return []string{"*"}
		}
		return []string{listener}
	}
	var out []string
	for _, h := range route {
		r := strings.ToLower(string(h))
		switch {
		case listener == "":
			out = append(out, r)
		case r == listener:
			out = append(out, r)
		case wildcardMatches(listener, r):
			out = append(out, r)
		case wildcardMatches(r, listener):
			out = append(out, listener)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// wildcardMatches reports whether pattern "*.suffix" covers host (an exact
// name, or a narrower wildcard). A wildcard matches one or more labels.
func wildcardMatches(pattern, host string) bool {
	suffix, ok := strings.CutPrefix(pattern, "*")
	if !ok {
		return false
	}
	if strings.HasPrefix(host, "*") {
		return strings.HasSuffix(host[1:], suffix) && len(host)-1 > len(suffix)
	}
	return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
}

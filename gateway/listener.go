package gateway

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/causewaymesh/causeway/internal/model"
)

type gatewayState struct {
	gw        *gatewayv1.Gateway
	obj       string // "Gateway ns/name"
	listeners []*listenerState
	addrErr   string
}

type listenerState struct {
	l     *gatewayv1.Listener
	field string // "spec.listeners[0] (http)"

	accepted                    bool
	acceptedReason, acceptedMsg string
	resolved                    bool
	resolvedReason, resolvedMsg string
	conflicted                  bool
	conflictReason, conflictMsg string
	certBad                     bool
	kinds                       []gatewayv1.RouteGroupKind
	certs                       []string
	attached                    int32
	from                        gatewayv1.FromNamespaces
	selector                    labels.Selector
}

// ready: routes attached to the listener are served. Invalid route kinds
// (ResolvedRefs False InvalidRouteKinds) do not stop the valid ones.
func (l *listenerState) ready() bool {
	return l.accepted && !l.conflicted && !l.certBad && len(l.kinds) > 0
}

func (l *listenerState) reject(reason, format string, args ...any) {
	if l.accepted {
		l.accepted, l.acceptedReason = false, reason
	}
	l.acceptedMsg = joinMsg(l.acceptedMsg, fmt.Sprintf(format, args...))
}

func (l *listenerState) unresolved(reason, format string, args ...any) {
	if l.resolved {
		l.resolved, l.resolvedReason = false, reason
	}
	l.resolvedMsg = joinMsg(l.resolvedMsg, fmt.Sprintf(format, args...))
}

func joinMsg(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func protoOf(p gatewayv1.ProtocolType) string { return string(p) }

// defaultKinds are the route kinds a listener of the protocol takes.
func defaultKinds(p gatewayv1.ProtocolType) []string {
	switch p {
	case gatewayv1.HTTPProtocolType, gatewayv1.HTTPSProtocolType:
		return []string{"HTTPRoute", "GRPCRoute"}
	case gatewayv1.TLSProtocolType:
		return []string{"TLSRoute"}
	}
	return nil
}

func (t *translator) gateways() {
	for i := range t.in.Gateways {
		gw := &t.in.Gateways[i]
		if !t.ownClass[string(gw.Spec.GatewayClassName)] {
			continue
		}
		g := &gatewayState{gw: gw, obj: "Gateway " + gw.Namespace + "/" + gw.Name}
		if len(gw.Spec.Addresses) > 0 {
			g.addrErr = fmt.Sprintf("%s: spec.addresses: static addresses are not supported; remove spec.addresses (the ingress proxy's address is reported in status)", g.obj)
		}
		for j := range gw.Spec.Listeners {
			g.listeners = append(g.listeners, t.listener(g, j))
		}
		conflicts(g)
		t.gws[nsName{gw.Namespace, gw.Name}] = g
		t.gwOrder = append(t.gwOrder, g)
	}
}

func (t *translator) listener(g *gatewayState, j int) *listenerState {
	l := &g.gw.Spec.Listeners[j]
	ls := &listenerState{l: l, field: fmt.Sprintf("spec.listeners[%d] (%s)", j, l.Name), accepted: true, resolved: true,
		acceptedReason: string(gatewayv1.ListenerReasonAccepted), resolvedReason: string(gatewayv1.ListenerReasonResolvedRefs)}
	where := g.obj + ": " + ls.field
	noKinds := false
	switch l.Protocol {
	case gatewayv1.HTTPProtocolType:
	case gatewayv1.HTTPSProtocolType:
		if l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
			ls.certBad = true
			ls.unresolved(string(gatewayv1.ListenerReasonInvalidCertificateRef), "%s.tls.certificateRefs: an HTTPS listener needs a certificate; add a kubernetes.io/tls Secret reference", where)
			break
		}
		if l.TLS.Mode != nil && *l.TLS.Mode != gatewayv1.TLSModeTerminate {
			ls.reject(string(gatewayv1.ListenerReasonUnsupportedValue), "%s.tls.mode: %s is not valid for HTTPS; use Terminate, or protocol TLS for passthrough", where, *l.TLS.Mode)
		}
		for k, ref := range l.TLS.CertificateRefs {
			t.certRef(g, ls, fmt.Sprintf("%s.tls.certificateRefs[%d]", where, k), ref)
		}
	case gatewayv1.TLSProtocolType:
		if l.TLS == nil || l.TLS.Mode == nil || *l.TLS.Mode != gatewayv1.TLSModePassthrough {
			ls.reject(string(gatewayv1.ListenerReasonUnsupportedValue), "%s.tls.mode: TLS termination on TLS listeners is not supported; set tls.mode: Passthrough (or use protocol HTTPS)", where)
			noKinds = true // no route kind is served by a mode we do not support
		}
	default:
		ls.reject(string(gatewayv1.ListenerReasonUnsupportedProtocol), "%s.protocol: %s is not supported; use HTTP, HTTPS or TLS", where, l.Protocol)
	}
	// allowedRoutes.kinds
	valid := defaultKinds(l.Protocol)
	if noKinds {
		// The listener is rejected; its supportedKinds stay empty.
	} else if ar := l.AllowedRoutes; ar != nil && len(ar.Kinds) > 0 {
		for k, rk := range ar.Kinds {
			group := groupGateway
			if rk.Group != nil {
				group = string(*rk.Group)
			}
			if group == groupGateway && slices.Contains(valid, string(rk.Kind)) {
				if !slices.ContainsFunc(ls.kinds, func(x gatewayv1.RouteGroupKind) bool { return x.Kind == rk.Kind }) {
					ls.kinds = append(ls.kinds, rgk(string(rk.Kind)))
				}
				continue
			}
			ls.unresolved(string(gatewayv1.ListenerReasonInvalidRouteKinds), "%s.allowedRoutes.kinds[%d]: %s/%s cannot attach to a %s listener; use one of %s",
				where, k, group, rk.Kind, l.Protocol, strings.Join(valid, ", "))
		}
	} else {
		for _, k := range valid {
			ls.kinds = append(ls.kinds, rgk(k))
		}
	}
	// allowedRoutes.namespaces
	ls.from = gatewayv1.NamespacesFromSame
	if ar := l.AllowedRoutes; ar != nil && ar.Namespaces != nil && ar.Namespaces.From != nil {
		ls.from = *ar.Namespaces.From
	}
	if ls.from == gatewayv1.NamespacesFromSelector {
		var sel *metav1.LabelSelector
		if l.AllowedRoutes.Namespaces.Selector != nil {
			sel = l.AllowedRoutes.Namespaces.Selector
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		switch {
		case sel == nil:
			ls.reject(string(gatewayv1.ListenerReasonUnsupportedValue), "%s.allowedRoutes.namespaces.selector: required with from: Selector; add a label selector", where)
			ls.selector = labels.Nothing()
		case err != nil:
			ls.reject(string(gatewayv1.ListenerReasonUnsupportedValue), "%s.allowedRoutes.namespaces.selector: %v; fix the label selector", where, err)
			ls.selector = labels.Nothing()
		default:
			ls.selector = s
		}
	}
	return ls
}

func rgk(kind string) gatewayv1.RouteGroupKind {
	g := gatewayv1.Group(groupGateway)
	return gatewayv1.RouteGroupKind{Group: &g, Kind: gatewayv1.Kind(kind)}
}

func (t *translator) certRef(g *gatewayState, ls *listenerState, field string, ref gatewayv1.SecretObjectReference) {
	n := len(ls.certs)
	defer func() { ls.certBad = ls.certBad || len(ls.certs) == n }()
	group, kind := groupCore, "Secret"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := g.gw.Namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	name := string(ref.Name)
	switch {
	case group != groupCore || kind != "Secret":
		ls.unresolved(string(gatewayv1.ListenerReasonInvalidCertificateRef), "%s: %s/%s is not supported; reference a core Secret", field, group, kind)
	case !t.permitted("Gateway", g.gw.Namespace, groupCore, "Secret", ns, name):
		ls.unresolved(string(gatewayv1.ListenerReasonRefNotPermitted), "%s: Secret %s/%s is in another namespace; add a ReferenceGrant in %s from Gateway in %s to Secret", field, ns, name, ns, g.gw.Namespace)
	default:
		s, ok := t.secrets[nsName{ns, name}]
		switch {
		case !ok:
			ls.unresolved(string(gatewayv1.ListenerReasonInvalidCertificateRef), "%s: Secret %s/%s not found; create it (type kubernetes.io/tls)", field, ns, name)
		case s.Type != "" && s.Type != "kubernetes.io/tls":
			ls.unresolved(string(gatewayv1.ListenerReasonInvalidCertificateRef), "%s: Secret %s/%s has type %s; use a kubernetes.io/tls Secret", field, ns, name, s.Type)
		case len(s.Data) > 0 && !validKeyPair(s.Data):
			ls.unresolved(string(gatewayv1.ListenerReasonInvalidCertificateRef), "%s: Secret %s/%s: tls.crt and tls.key are not a PEM certificate chain and its private key; fix the Secret's data", field, ns, name)
		default:
			ls.certs = append(ls.certs, ns+"/"+name)
		}
	}
}

// conflicts marks listeners that share a port with an incompatible
// protocol (HTTP with HTTPS/TLS), or share port, protocol and hostname.
// The first listener (in spec order) of a conflicting pair is kept.
func conflicts(g *gatewayState) {
	for i, a := range g.listeners {
		for _, b := range g.listeners[:i] {
			if a.l.Port != b.l.Port || b.conflicted {
				continue
			}
			httpA, httpB := a.l.Protocol == gatewayv1.HTTPProtocolType, b.l.Protocol == gatewayv1.HTTPProtocolType
			if httpA != httpB {
				a.conflicted, a.conflictReason = true, string(gatewayv1.ListenerReasonProtocolConflict)
				a.conflictMsg = fmt.Sprintf("%s: %s: port %d is already used by listener %s with protocol %s; use another port", g.obj, a.field, a.l.Port, b.l.Name, b.l.Protocol)
				break
			}
			if hostOf(a.l) == hostOf(b.l) {
				a.conflicted, a.conflictReason = true, string(gatewayv1.ListenerReasonHostnameConflict)
				a.conflictMsg = fmt.Sprintf("%s: %s: port %d and hostname %s are already used by listener %s; change the hostname or port", g.obj, a.field, a.l.Port, cmp.Or(hostOf(a.l), "(any)"), b.l.Name)
				break
			}
		}
	}
}

func hostOf(l *gatewayv1.Listener) string {
	if l.Hostname == nil {
		return ""
	}
	return string(*l.Hostname)
}

// allows reports whether the listener admits a route of kind from ns.
func (t *translator) allows(g *gatewayState, ls *listenerState, kind, ns string) bool {
	if !slices.ContainsFunc(ls.kinds, func(k gatewayv1.RouteGroupKind) bool { return string(k.Kind) == kind }) {
		return false
	}
	switch ls.from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSame:
		return ns == g.gw.Namespace
	case gatewayv1.NamespacesFromSelector:
		return ls.selector != nil && ls.selector.Matches(t.nsLabels[ns])
	}
	return false
}

func (g *gatewayState) status(t *translator) GatewayStatus {
	gw := g.gw
	st := GatewayStatus{Namespace: gw.Namespace, Name: gw.Name}
	gen := gw.Generation
	accepted := 0
	programmed := 0
	var bad []string
	for _, ls := range g.listeners {
		lst := gatewayv1.ListenerStatus{Name: ls.l.Name, SupportedKinds: ls.kinds, AttachedRoutes: ls.attached}
		if lst.SupportedKinds == nil {
			lst.SupportedKinds = []gatewayv1.RouteGroupKind{}
		}
		acc := ls.accepted && !ls.conflicted
		reason, msg := ls.acceptedReason, ls.acceptedMsg
		if ls.conflicted && ls.accepted {
			reason, msg = ls.conflictReason, ls.conflictMsg
		}
		if acc {
			accepted++
			msg = fmt.Sprintf("%s: %s accepted", g.obj, ls.field)
		}
		lst.Conditions = append(lst.Conditions, t.cond(string(gatewayv1.ListenerConditionAccepted), reason, acc, gen, "%s", msg))
		if ls.conflicted {
			lst.Conditions = append(lst.Conditions, t.cond(string(gatewayv1.ListenerConditionConflicted), ls.conflictReason, true, gen, "%s", ls.conflictMsg))
		} else {
			lst.Conditions = append(lst.Conditions, t.cond(string(gatewayv1.ListenerConditionConflicted), string(gatewayv1.ListenerReasonNoConflicts), false, gen, "%s: %s has no conflicts", g.obj, ls.field))
		}
		if ls.resolved {
			lst.Conditions = append(lst.Conditions, t.cond(string(gatewayv1.ListenerConditionResolvedRefs), ls.resolvedReason, true, gen, "%s: %s references resolved", g.obj, ls.field))
		} else {
			lst.Conditions = append(lst.Conditions, t.cond(string(gatewayv1.ListenerConditionResolvedRefs), ls.resolvedReason, false, gen, "%s", ls.resolvedMsg))
		}
		if ls.ready() && g.addrErr == "" {
			programmed++
			lst.Conditions = append(lst.Conditions, t.cond(string(gatewayv1.ListenerConditionProgrammed), string(gatewayv1.ListenerReasonProgrammed), true, gen, "%s: %s programmed", g.obj, ls.field))
		} else {
			bad = append(bad, string(ls.l.Name))
			lst.Conditions = append(lst.Conditions, t.cond(string(gatewayv1.ListenerConditionProgrammed), string(gatewayv1.ListenerReasonInvalid), false, gen, "%s: %s is not programmed: see its Accepted, Conflicted and ResolvedRefs conditions", g.obj, ls.field))
		}
		st.Status.Listeners = append(st.Status.Listeners, lst)
	}
	switch {
	case g.addrErr != "":
		st.Status.Conditions = append(st.Status.Conditions, t.cond(string(gatewayv1.GatewayConditionAccepted), string(gatewayv1.GatewayReasonUnsupportedAddress), false, gen, "%s", g.addrErr))
	case accepted == 0 && len(g.listeners) > 0:
		st.Status.Conditions = append(st.Status.Conditions, t.cond(string(gatewayv1.GatewayConditionAccepted), string(gatewayv1.GatewayReasonListenersNotValid), false, gen, "%s: no listener is valid (%s); see the listener conditions", g.obj, strings.Join(bad, ", ")))
	case len(bad) > 0:
		st.Status.Conditions = append(st.Status.Conditions, t.cond(string(gatewayv1.GatewayConditionAccepted), string(gatewayv1.GatewayReasonListenersNotValid), true, gen, "%s accepted; listeners not programmed: %s; see their conditions", g.obj, strings.Join(bad, ", ")))
	default:
		st.Status.Conditions = append(st.Status.Conditions, t.cond(string(gatewayv1.GatewayConditionAccepted), string(gatewayv1.GatewayReasonAccepted), true, gen, "%s accepted by %s", g.obj, t.ctrl))
	}
	if g.addrErr == "" && programmed > 0 {
		st.Status.Conditions = append(st.Status.Conditions, t.cond(string(gatewayv1.GatewayConditionProgrammed), string(gatewayv1.GatewayReasonProgrammed), true, gen, "%s: %d listener(s) programmed", g.obj, programmed))
	} else {
		st.Status.Conditions = append(st.Status.Conditions, t.cond(string(gatewayv1.GatewayConditionProgrammed), string(gatewayv1.GatewayReasonInvalid), false, gen, "%s: nothing to program; fix the conditions above", g.obj))
	}
	return st
}

// listenerParent is the model parent of a ready listener.
func listenerParent(g *gatewayState, ls *listenerState) model.RouteParent {
	return model.RouteParent{Kind: model.ParentGateway, Namespace: g.gw.Namespace, Name: g.gw.Name, Listener: string(ls.l.Name),
		Port: uint32(ls.l.Port), Protocol: protoOf(ls.l.Protocol), Hostname: hostOf(ls.l), CertificateRefs: ls.certs}
}

// validKeyPair reports whether data's tls.crt and tls.key are a PEM
// certificate chain and its private key.
func validKeyPair(data map[string][]byte) bool {
	_, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	return err == nil
}

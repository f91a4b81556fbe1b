package gateway

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/causewaymesh/causeway/internal/model"
)

// Group names of references.
const (
	groupGateway = gatewayv1.GroupName   // gateway.networking.k8s.io
	groupMCS     = mcsv1alpha1.GroupName // multicluster.x-k8s.io
	groupCore    = ""
)

// Translate turns Gateway API objects into model route tables and the
// status of every owned object. It is pure and deterministic: the same
// Input gives the same Output (sorted everywhere), it never stops at the
// first problem, and every problem of user input is a status condition
// whose message names the object, the field and the fix. The error is
// non-nil only for an unusable Input (a malformed ControllerName); the
// Output is then empty.
func Translate(in Input) (Output, error) {
	ctrl := cmp.Or(in.ControllerName, ControllerName)
	if d, _, ok := strings.Cut(ctrl, "/"); !ok || d == "" || strings.ContainsAny(ctrl, " \t\n") {
		return Output{}, fmt.Errorf("gateway: Input.ControllerName %q: must be a domain-prefixed path such as %q", ctrl, ControllerName)
	}
	t := newTranslator(in, ctrl)
	t.classes()
	t.gateways()
	for i := range in.HTTPRoutes {
		r := &in.HTTPRoutes[i]
		rt := &route{kind: model.KindHTTPRoute, meta: &r.ObjectMeta, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames}
		rt.build = func() { t.buildHTTP(rt, r.Spec.Rules) }
		if st, ok := t.attach(rt); ok {
			t.out.HTTPRoutes = append(t.out.HTTPRoutes, st)
		}
	}
	for i := range in.GRPCRoutes {
		r := &in.GRPCRoutes[i]
		rt := &route{kind: model.KindGRPCRoute, meta: &r.ObjectMeta, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames}
		rt.build = func() { t.buildGRPC(rt, r.Spec.Rules) }
		if st, ok := t.attach(rt); ok {
			t.out.GRPCRoutes = append(t.out.GRPCRoutes, st)
		}
	}
	for i := range in.TLSRoutes {
		r := &in.TLSRoutes[i]
		rt := &route{kind: model.KindTLSRoute, meta: &r.ObjectMeta, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames}
		rt.build = func() { t.buildTLS(rt, r.Spec.Rules) }
		if st, ok := t.attach(rt); ok {
			t.out.TLSRoutes = append(t.out.TLSRoutes, st)
		}
	}
	t.finish()
	return t.out, nil
}

type nsName struct{ ns, name string }

type translator struct {
	in   Input
	ctrl string
	now  metav1.Time
	out  Output

	services  map[nsName]*corev1.Service
	imports   map[nsName]*mcsv1alpha1.ServiceImport
	secrets   map[nsName]*corev1.Secret
	nsLabels  map[string]labels.Set
	grants    map[string][]*gatewayv1.ReferenceGrant // by namespace
	ownClass  map[string]bool                        // owned and accepted
	gws       map[nsName]*gatewayState
	gwOrder   []*gatewayState
	tables    map[tableKey]*tableState
	tableKeys []tableKey
}

type tableKey struct {
	kind               model.ParentKind
	ns, name, listener string
	port               uint32
	consumer           string
	// The rest of a listener's parent: two listeners that share a name
	// (invalid, but a folder is not validated by an apiserver) still get
	// a table each, whatever order their routes come in.
	protocol, hostname, certs string
}

type tableState struct {
	parent model.RouteParent
	hosts  map[string][]entry
	tls    []model.TLSRoute
}

// entry is a route entry with what precedence needs beyond the model.
type entry struct {
	r       model.HTTPRoute
	created metav1.Time
}

func newTranslator(in Input, ctrl string) *translator {
	t := &translator{
		in: in, ctrl: ctrl, now: metav1.NewTime(in.Now),
		services: map[nsName]*corev1.Service{}, imports: map[nsName]*mcsv1alpha1.ServiceImport{},
		secrets: map[nsName]*corev1.Secret{}, nsLabels: map[string]labels.Set{},
		grants: map[string][]*gatewayv1.ReferenceGrant{}, ownClass: map[string]bool{},
		gws: map[nsName]*gatewayState{}, tables: map[tableKey]*tableState{},
	}
	for i := range in.Services {
		s := &in.Services[i]
		t.services[nsName{s.Namespace, s.Name}] = s
	}
	for i := range in.ServiceImports {
		s := &in.ServiceImports[i]
		t.imports[nsName{s.Namespace, s.Name}] = s
	}
	for i := range in.Secrets {
		s := &in.Secrets[i]
		t.secrets[nsName{s.Namespace, s.Name}] = s
	}
	for i := range in.Namespaces {
		n := &in.Namespaces[i]
		t.nsLabels[n.Name] = labels.Set(n.Labels)
	}
	for i := range in.ReferenceGrants {
		g := &in.ReferenceGrants[i]
		t.grants[g.Namespace] = append(t.grants[g.Namespace], g)
	}
	return t
}

// permitted reports whether an object of fromKind in fromNS may refer to
// toGroup/toKind toNS/toName: same namespace, or a ReferenceGrant in toNS.
func (t *translator) permitted(fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	if fromNS == toNS {
		return true
	}
	for _, g := range t.grants[toNS] {
		from := slices.ContainsFunc(g.Spec.From, func(f gatewayv1.ReferenceGrantFrom) bool {
			return string(f.Group) == groupGateway && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
		})
		to := slices.ContainsFunc(g.Spec.To, func(to gatewayv1.ReferenceGrantTo) bool {
			return string(to.Group) == toGroup && string(to.Kind) == toKind && (to.Name == nil || *to.Name == "" || string(*to.Name) == toName)
		})
		if from && to {
			return true
		}
	}
	return false
}

func (t *translator) cond(typ, reason string, ok bool, gen int64, format string, args ...any) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: fmt.Sprintf(format, args...),
		ObservedGeneration: gen, LastTransitionTime: t.now}
}

func (t *translator) classes() {
	for i := range t.in.GatewayClasses {
		gc := &t.in.GatewayClasses[i]
		if string(gc.Spec.ControllerName) != t.ctrl {
			continue
		}
		st := GatewayClassStatus{Name: gc.Name}
		if p := gc.Spec.ParametersRef; p != nil {
			st.Status.Conditions = append(st.Status.Conditions, t.cond(string(gatewayv1.GatewayClassConditionStatusAccepted),
				string(gatewayv1.GatewayClassReasonInvalidParameters), false, gc.Generation,
				"GatewayClass %s: spec.parametersRef (%s %s): %s takes no parameters; remove parametersRef", gc.Name, p.Kind, p.Name, t.ctrl))
		} else {
			t.ownClass[gc.Name] = true
			st.Status.Conditions = append(st.Status.Conditions, t.cond(string(gatewayv1.GatewayClassConditionStatusAccepted),
				string(gatewayv1.GatewayClassReasonAccepted), true, gc.Generation, "GatewayClass %s is handled by %s", gc.Name, t.ctrl))
			st.Status.SupportedFeatures = SupportedFeatures()
		}
		t.out.GatewayClasses = append(t.out.GatewayClasses, st)
	}
	slices.SortFunc(t.out.GatewayClasses, func(a, b GatewayClassStatus) int { return cmp.Compare(a.Name, b.Name) })
}

// finish builds the sorted route tables and gateway statuses.
func (t *translator) finish() {
	for _, g := range t.gwOrder {
		t.out.Gateways = append(t.out.Gateways, g.status(t))
	}
	slices.SortFunc(t.out.Gateways, func(a, b GatewayStatus) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, rs := range [][]RouteStatus{t.out.HTTPRoutes, t.out.GRPCRoutes, t.out.TLSRoutes} {
		slices.SortFunc(rs, func(a, b RouteStatus) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
	}
	for _, k := range t.tableKeys {
		ts := t.tables[k]
		rt := model.RouteTable{Parent: ts.parent}
		hosts := make([]string, 0, len(ts.hosts))
		for h := range ts.hosts {
			hosts = append(hosts, h)
		}
		slices.Sort(hosts)
		for _, h := range hosts {
			es := ts.hosts[h]
			slices.SortStableFunc(es, comparePrecedence)
			vh := model.VirtualHost{Hostname: h, Routes: make([]model.HTTPRoute, len(es))}
			for i := range es {
				vh.Routes[i] = es[i].r
			}
			rt.VirtualHosts = append(rt.VirtualHosts, vh)
		}
		slices.SortFunc(ts.tls, func(a, b model.TLSRoute) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
		rt.TLS = ts.tls
		t.out.Routes = append(t.out.Routes, rt)
	}
	slices.SortFunc(t.out.Routes, model.CompareRouteTables)
}

func (t *translator) table(k tableKey, p model.RouteParent) *tableState {
	ts, ok := t.tables[k]
	if !ok {
		ts = &tableState{parent: p, hosts: map[string][]entry{}}
		t.tables[k] = ts
		t.tableKeys = append(t.tableKeys, k)
	}
	return ts
}

// problem is one finding about a route, with its condition reason.
type problem struct {
	reason string
	msg    string
}

func joinProblems(ps []problem) string {
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.msg
	}
	return strings.Join(msgs, "; ")
}

package merge

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/causewaymesh/causeway/internal/model"
)

// Inputs are what one merge combines.
type Inputs struct {
	// Local is this cluster's discovery snapshot: canonical and valid.
	// Required.
	Local *model.Snapshot
	// Imported are the services imported from peers
	// (federation.Imports.Services): sorted by namespace and name, one per
	// namespace/name, endpoints canonical with Cluster = the peer.
	Imported []model.Service
	// Routes are the Gateway API controller's route tables, sorted by
	// model.CompareRouteTables.
	Routes []model.RouteTable
}

// Conflict is one input merge left out, and why.
type Conflict struct {
	Object string // "service shop/cart", "route table Service shop/cart port 80"
	Field  string // "ports[\"http\"]", "endpoints[10.0.0.1]"
	Reason string
}

func (c Conflict) Error() string { return c.Object + ": " + c.Field + ": " + c.Reason }

// Merge combines in into the snapshot to serve (see the package doc for
// the rules) and lists what it left out. It never modifies in; the result
// shares the slices it did not change with in.
func Merge(in Inputs) (*model.Snapshot, []Conflict) {
	r := Update(nil, in)
	return r.Snapshot, r.Conflicts
}

// Result is one merge: the snapshot and the conflicts Merge returns, and
// what Update needs to redo the merge for new inputs without redoing the
// services whose inputs did not change. Immutable once returned.
type Result struct {
	Snapshot  *model.Snapshot
	Conflicts []Conflict

	local    *model.Snapshot
	imported []model.Service // normalised (sorted, one per name)
	// src[k] is where Snapshot.Services[k] came from (nil when nothing
	// was imported: the services are then local's own slice).
	src []source
	// conf[k]:conf[k+1] are the conflicts of Snapshot.Services[k] in
	// Conflicts (len(src)+1 offsets).
	conf []int32
}

// source: indices of a merged service's inputs in Result.local.Services
// and Result.imported; -1 when it has none there.
type source struct{ l, im int32 }

// Update is Merge(in), reusing prev (the Result of an earlier Update, or
// nil): a merged service whose local and imported inputs are the same as
// in prev (Same, or Equal) is prev's merged service, with prev's conflicts
// for it, so a change of one service costs one service's merge. The
// result equals Merge(in) field by field, conflicts included, in the same
// order.
func Update(prev *Result, in Inputs) *Result {
	local := in.Local
	out := *local // every field of the local truth, shared
	r := &Result{Snapshot: &out, local: local}
	var cs []Conflict
	imp := in.Imported
	if !sortedUniqueServices(imp) {
		imp = normaliseImports(imp, &cs)
	}
	r.imported = imp
	if prev != nil && (prev.src == nil || prev.local.Cluster != local.Cluster) {
		prev = nil // nothing merged there, or for another cluster: nothing to reuse
	}
	if len(imp) > 0 {
		ls := local.Services
		svcs := make([]model.Service, 0, len(ls)+len(imp))
		r.src = make([]source, 0, cap(svcs))
		r.conf = make([]int32, 0, cap(svcs)+1)
		k := 0 // cursor in prev's merged services
		i, j := 0, 0
		for i < len(ls) || j < len(imp) {
			c := 0
			switch {
			case i == len(ls):
				c = 1
			case j == len(imp):
				c = -1
			default:
				c = compareServiceNames(&ls[i], &imp[j])
			}
			r.conf = append(r.conf, int32(len(cs)))
			src := source{-1, -1}
			var l, im *model.Service
			if c <= 0 {
				l, src.l = &ls[i], int32(i)
				i++
			}
			if c >= 0 {
				im, src.im = &imp[j], int32(j)
				j++
			}
			r.src = append(r.src, src)
			if l != nil && im == nil {
				svcs = append(svcs, *l)
				continue
			}
			if prev != nil {
				name := l
				if name == nil {
					name = im
				}
				ps := prev.Snapshot.Services
				for k < len(ps) && compareServiceNames(&ps[k], name) < 0 {
					k++
				}
				if k < len(ps) && prev.reusable(k, l, im) {
					svcs = append(svcs, ps[k])
					cs = append(cs, prev.Conflicts[prev.conf[k]:prev.conf[k+1]]...)
					continue
				}
			}
			if l == nil {
				svcs = append(svcs, importedOnly(im, local.Cluster, &cs))
			} else {
				svcs = append(svcs, combined(l, im, local.Cluster, &cs))
			}
		}
		r.conf = append(r.conf, int32(len(cs)))
		out.Services = svcs
	}
	out.Routes = mergeRoutes(local.Routes, in.Routes, &cs)
	r.Conflicts = cs
	return r
}

// reusable: prev's merged service k (of the same name) came from inputs
// the same as l and im (nil: none).
func (prev *Result) reusable(k int, l, im *model.Service) bool {
	s := prev.src[k]
	if (s.l >= 0) != (l != nil) || (s.im >= 0) != (im != nil) {
		return false
	}
	if l != nil && !sameOrEqual(&prev.local.Services[s.l], l) {
		return false
	}
	return im == nil || sameOrEqual(&prev.imported[s.im], im)
}

func sameOrEqual(a, b *model.Service) bool { return Same(a, b) || a.Equal(b) }

// Same is model.Service.Same: a and b are the same service by identity
// (the same slices), which an incremental merge of unchanged inputs gives.
func Same(a, b *model.Service) bool { return a.Same(b) }

// importedOnly is a service no local one shares a name with.
func importedOnly(im *model.Service, cluster string, cs *[]Conflict) model.Service {
	obj := objName{im.Namespace, im.Name}
	return model.Service{
		Namespace: im.Namespace, Name: im.Name, Imported: true,
		Ports:     unionPorts(nil, im.Ports, obj, cs),
		Endpoints: foreignEndpoints(im.Endpoints, cluster, obj, cs),
	}
}

// combined is a local service with the imports of the same name.
func combined(l, im *model.Service, cluster string, cs *[]Conflict) model.Service {
	obj := objName{l.Namespace, l.Name}
	sv := *l
	sv.Imported = true
	sv.Ports = unionPorts(l.Ports, im.Ports, obj, cs)
	if eps := foreignEndpoints(im.Endpoints, cluster, obj, cs); len(eps) > 0 {
		sv.Endpoints = mergeEndpoints(l.Endpoints, eps)
	}
	return sv
}

// mergeEndpoints merges two canonical endpoint lists into a new one.
func mergeEndpoints(a, b []model.Endpoint) []model.Endpoint {
	out := make([]model.Endpoint, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if compareEndpoints(a[0], b[0]) <= 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// objName names a service in conflicts; the string is built only for one.
type objName struct{ ns, name string }

func (o objName) String() string { return "service " + o.ns + "/" + o.name }

// foreignEndpoints is eps without the endpoints that claim this cluster
// (shared when there are none).
func foreignEndpoints(eps []model.Endpoint, cluster string, obj objName, cs *[]Conflict) []model.Endpoint {
	if !slices.ContainsFunc(eps, func(e model.Endpoint) bool { return e.Cluster == cluster }) {
		return eps
	}
	out := make([]model.Endpoint, 0, len(eps))
	for _, e := range eps {
		if e.Cluster == cluster {
			*cs = append(*cs, Conflict{Object: obj.String(), Field: "endpoints[" + e.Address + "]",
				Reason: fmt.Sprintf("imported endpoint claims cluster %q, which is this cluster; left out (only this cluster's discovery speaks for it)", cluster)})
			continue
		}
		out = append(out, e)
	}
	return out
}

// unionPorts adds to base the ports of extra that keep the service valid;
// base is returned as it is when nothing is added, and extra when base is
// empty and extra is valid on its own.
func unionPorts(base, extra []model.ServicePort, obj objName, cs *[]Conflict) []model.ServicePort {
	if len(base) == 0 && portsValid(extra) {
		return extra
	}
	if slices.Equal(base, extra) {
		return base // the common case: every cluster defines the service alike
	}
	out, owned := base, false
	for _, p := range extra {
		field := "ports[" + strconv.Quote(p.Name) + "]"
		if k := slices.IndexFunc(out, func(q model.ServicePort) bool { return q.Name == p.Name }); k >= 0 {
			if q := out[k]; q.Port != p.Port || q.Protocol != p.Protocol {
				*cs = append(*cs, Conflict{Object: obj.String(), Field: field, Reason: fmt.Sprintf(
					"imported as %d/%s but defined as %d/%s; the first definition (this cluster's, else the lowest port) wins, and peers' endpoints are still reached on their own target ports", p.Port, p.Protocol, q.Port, q.Protocol)})
			}
			continue
		}
		if len(out) > 0 && (p.Name == "" || slices.ContainsFunc(out, func(q model.ServicePort) bool { return q.Name == "" })) {
			*cs = append(*cs, Conflict{Object: obj.String(), Field: field, Reason: fmt.Sprintf(
				"imported port %d/%s cannot be added: a service with several ports needs every port named; name the ports alike in every cluster", p.Port, p.Protocol)})
			continue
		}
		if k := slices.IndexFunc(out, func(q model.ServicePort) bool { return q.Port == p.Port }); k >= 0 {
			*cs = append(*cs, Conflict{Object: obj.String(), Field: field, Reason: fmt.Sprintf(
				"imported port %d/%s is already port %q here; one name per port number", p.Port, p.Protocol, out[k].Name)})
			continue
		}
		if !owned {
			out, owned = slices.Clone(out), true
		}
		out = append(out, p)
	}
	if owned {
		slices.SortFunc(out, comparePorts)
	}
	return out
}

// portsValid: sorted, names unique (and non-empty when several), one port
// per number.
func portsValid(ps []model.ServicePort) bool {
	if !slices.IsSortedFunc(ps, comparePorts) {
		return false
	}
	for i := range ps {
		if len(ps) > 1 && ps[i].Name == "" {
			return false
		}
		for j := range i {
			if ps[j].Name == ps[i].Name || ps[j].Port == ps[i].Port {
				return false
			}
		}
	}
	return true
}

// mergeRoutes is local's tables and the controller's, in model order; for
// a parent in both, the controller's table.
func mergeRoutes(local, ctrl []model.RouteTable, cs *[]Conflict) []model.RouteTable {
	if len(ctrl) == 0 {
		return local
	}
	if !slices.IsSortedFunc(ctrl, model.CompareRouteTables) {
		ctrl = slices.Clone(ctrl)
		slices.SortStableFunc(ctrl, model.CompareRouteTables)
	}
	if len(local) == 0 {
		return ctrl
	}
	out := make([]model.RouteTable, 0, len(local)+len(ctrl))
	i, j := 0, 0
	for i < len(local) || j < len(ctrl) {
		c := 0
		switch {
		case i == len(local):
			c = 1
		case j == len(ctrl):
			c = -1
		default:
			c = model.CompareRouteTables(local[i], ctrl[j])
		}
		switch {
		case c < 0:
			out = append(out, local[i])
			i++
		case c > 0:
			out = append(out, ctrl[j])
			j++
		default:
			*cs = append(*cs, Conflict{Object: "route table " + ctrl[j].Parent.String(), Field: "parent",
				Reason: "defined by the discovery source and by the Gateway API controller; the controller's wins"})
			out = append(out, ctrl[j])
			i++
			j++
		}
	}
	return out
}

// normaliseImports sorts a copy of imp and keeps the first of each name.
func normaliseImports(imp []model.Service, cs *[]Conflict) []model.Service {
	imp = slices.Clone(imp)
	slices.SortStableFunc(imp, func(a, b model.Service) int { return compareServiceNames(&a, &b) })
	out := imp[:0]
	for i := range imp {
		if len(out) > 0 && compareServiceNames(&out[len(out)-1], &imp[i]) == 0 {
			*cs = append(*cs, Conflict{Object: "service " + imp[i].Namespace + "/" + imp[i].Name, Field: "imports",
				Reason: "imported twice; the first is kept (federation.Importer merges peers into one service)"})
			continue
		}
		out = append(out, imp[i])
	}
	return out
}

func sortedUniqueServices(ss []model.Service) bool {
	for i := 1; i < len(ss); i++ {
		if compareServiceNames(&ss[i-1], &ss[i]) >= 0 {
			return false
		}
	}
	return true
}

func compareServiceNames(a, b *model.Service) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// comparePorts and compareEndpoints are the model's canonical orders
// (model.Snapshot.Canonicalize); the tests check the output with Validate,
// which enforces them.
func comparePorts(a, b model.ServicePort) int {
	return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Name, b.Name))
}

func compareEndpoints(a, b model.Endpoint) int {
	return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Address, b.Address),
		slices.CompareFunc(a.Ports, b.Ports, func(x, y model.EndpointPort) int {
			return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.Port, y.Port))
		}), cmp.Compare(a.Workload, b.Workload))
}

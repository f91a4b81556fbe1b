package federation

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/causewaymesh/causeway/internal/model"
)

// MergeImports merges the imports of several Importers (each with its own
// peers, no peer in two of them) into one, as a single Importer with all
// their peers would: one service per namespace/name with the union of the
// ports and every peer's endpoints (canonical order), and the localities
// sorted by service, cluster and locality. nil parts are skipped. The
// result shares the parts' endpoint slices when a service comes from one
// part only; like every Imports it must not be modified.
//
// Incremental: the Imports an Importer publishes remember the last merge
// they went into. A service of several parts whose parts' services are the
// same slices as in that merge (an Importer keeps the services a change
// did not touch) is that merge's service, not merged again: a change of
// one service costs one service, and the result shares the unchanged
// services' slices with the previous one. The result is the same as a
// merge from scratch either way.
func MergeImports(parts ...*Imports) *Imports {
	var nonEmpty []*Imports
	for _, p := range parts {
		if p != nil && (len(p.Services) > 0 || len(p.Localities) > 0) {
			nonEmpty = append(nonEmpty, p)
		}
	}
	switch len(nonEmpty) {
	case 0:
		return &Imports{}
	case 1:
		return nonEmpty[0]
	}
	var prev *Imports // a previous merge of (some of) these parts, to reuse
	for _, p := range nonEmpty {
		if p.memo != nil {
			if last := p.memo.last.Load(); last != nil && last.from != nil {
				prev = last
				break
			}
		}
	}
	all := servicesByName(nonEmpty)
	out := &Imports{from: &mergedFrom{}}
	for _, p := range nonEmpty {
		out.Localities = append(out.Localities, p.Localities...)
	}
	out.Services = make([]model.Service, 0, len(all))
	from := out.from
	from.off, from.refs = make([]int32, 0, len(all)+1), make([]sourceRef, 0, len(all))
	k := 0 // cursor in prev.Services
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].Namespace == all[i].Namespace && all[j].Name == all[i].Name {
			j++
		}
		from.off = append(from.off, int32(len(from.refs)))
		if j == i+1 {
			out.Services = append(out.Services, *all[i])
			i = j
			continue
		}
		group := all[i:j]
		// Each part's endpoints are canonical; in cluster order their
		// concatenation usually is too (one peer per part), so sort
		// only when it is not.
		slices.SortStableFunc(group, func(a, b *model.Service) int { return cmp.Compare(firstCluster(a), firstCluster(b)) })
		for _, s := range group {
			from.refs = append(from.refs, refOf(s))
		}
		if prev != nil {
			for k < len(prev.Services) && compareServices(&prev.Services[k], group[0]) < 0 {
				k++
			}
			if k < len(prev.Services) && prev.from.sameSources(k, &prev.Services[k], group) {
				out.Services = append(out.Services, prev.Services[k])
				i = j
				continue
			}
		}
		out.Services = append(out.Services, mergeGroup(group))
		i = j
	}
	from.off = append(from.off, int32(len(from.refs)))
	slices.SortStableFunc(out.Localities, func(a, b LocalitySummary) int {
		return cmp.Or(compareNames(a.Service, b.Service), cmp.Compare(a.Cluster, b.Cluster), compareLocality(a.Locality, b.Locality))
	})
	for _, p := range nonEmpty {
		if p.memo != nil {
			p.memo.last.Store(out)
		}
	}
	return out
}

// servicesByName is every service of parts, sorted by namespace and name
// (stable: parts' order within a name). Each part is sorted already, so a
// few parts are merged in one pass.
func servicesByName(parts []*Imports) []*model.Service {
	total := 0
	for _, p := range parts {
		total += len(p.Services)
	}
	all := make([]*model.Service, 0, total)
	for _, p := range parts {
		if len(parts) > 8 || !sortedServices(p.Services) {
			// Many parts, or a part out of order (not from an Importer):
			// sort them all.
			for _, p := range parts {
				for i := range p.Services {
					all = append(all, &p.Services[i])
				}
			}
			slices.SortStableFunc(all, compareServices)
			return all
		}
	}
	next := make([]int, len(parts))
	for len(all) < total {
		best := -1
		for pi, p := range parts {
			if next[pi] < len(p.Services) && (best < 0 || compareServices(&p.Services[next[pi]], &parts[best].Services[next[best]]) < 0) {
				best = pi
			}
		}
		all = append(all, &parts[best].Services[next[best]])
		next[best]++
	}
	return all
}

// mergeGroup merges the services of one name from several parts (sorted by
// cluster).
func mergeGroup(group []*model.Service) model.Service {
	sv := *group[0]
	np, ne := 0, 0
	for _, s := range group {
		np += len(s.Ports)
		ne += len(s.Endpoints)
	}
	ports := make([]model.ServicePort, 0, np)
	eps := make([]model.Endpoint, 0, ne)
	for _, s := range group {
		ports = append(ports, s.Ports...)
		eps = append(eps, s.Endpoints...)
	}
	slices.SortFunc(ports, comparePorts)
	sv.Ports = slices.Compact(ports)
	if !slices.IsSortedFunc(eps, compareEndpoints) {
		slices.SortStableFunc(eps, compareEndpoints)
	}
	sv.Endpoints = eps
	return sv
}

// importsMemo is what an Importer's Imports remember for MergeImports:
// the last merge they went into. It is the only mutable part of an
// Imports, written and read atomically.
type importsMemo struct {
	last atomic.Pointer[Imports]
}

// mergedFrom records, for a merged Imports, which parts' slices each
// service of several parts was made from: the refs of Services[i] are
// refs[off[i]:off[i+1]] (none for a service of one part, which shares the
// part's slices). Immutable.
type mergedFrom struct {
	off  []int32
	refs []sourceRef
}

// sourceRef identifies a part's service by its slices (the model is
// immutable once published: the same slices are the same content).
type sourceRef struct {
	ports     *model.ServicePort
	endpoints *model.Endpoint
	np, ne    int
}

func refOf(s *model.Service) sourceRef {
	r := sourceRef{np: len(s.Ports), ne: len(s.Endpoints)}
	if r.np > 0 {
		r.ports = &s.Ports[0]
	}
	if r.ne > 0 {
		r.endpoints = &s.Endpoints[0]
	}
	return r
}

// sameSources: merged service k (sv) was made from exactly the slices of
// group, and group's first service has sv's fields besides the slices.
func (f *mergedFrom) sameSources(k int, sv *model.Service, group []*model.Service) bool {
	refs := f.refs[f.off[k]:f.off[k+1]]
	if len(refs) != len(group) {
		return false
	}
	for i, s := range group {
		if refs[i] != refOf(s) {
			return false
		}
	}
	g := group[0]
	return g.Namespace == sv.Namespace && g.Name == sv.Name && g.Exported == sv.Exported && g.Imported == sv.Imported &&
		g.ClusterIP == sv.ClusterIP && g.ClustersetIP == sv.ClustersetIP
}

func sortedServices(ss []model.Service) bool {
	for i := 1; i < len(ss); i++ {
		if compareServices(&ss[i-1], &ss[i]) > 0 {
			return false
		}
	}
	return true
}

func compareServices(a, b *model.Service) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

func firstCluster(s *model.Service) string {
	if len(s.Endpoints) == 0 {
		return ""
	}
	return s.Endpoints[0].Cluster
}

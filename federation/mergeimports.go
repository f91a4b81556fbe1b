package federation

import (
	"cmp"
	"slices"

	"github.com/causewaymesh/causeway/internal/model"
)

// MergeImports merges the imports of several Importers (each with its own
// peers, no peer in two of them) into one, as a single Importer with all
// their peers would: one service per namespace/name with the union of the
// ports and every peer's endpoints (canonical order), and the localities
// sorted by service, cluster and locality. nil parts are skipped. The
// result shares the parts' endpoint slices when a service comes from one
// part only; like every Imports it must not be modified.
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
	total := 0
	for _, p := range nonEmpty {
		total += len(p.Services)
	}
	all := make([]*model.Service, 0, total)
	out := &Imports{}
	for _, p := range nonEmpty {
		for i := range p.Services {
			all = append(all, &p.Services[i])
		}
		out.Localities = append(out.Localities, p.Localities...)
	}
	slices.SortStableFunc(all, func(a, b *model.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	out.Services = make([]model.Service, 0, len(all))
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].Namespace == all[i].Namespace && all[j].Name == all[i].Name {
			j++
		}
		if j == i+1 {
			out.Services = append(out.Services, *all[i])
		} else {
			group := all[i:j]
			// Each part's endpoints are canonical; in cluster order their
			// concatenation usually is too (one peer per part), so sort
			// only when it is not.
			slices.SortStableFunc(group, func(a, b *model.Service) int { return cmp.Compare(firstCluster(a), firstCluster(b)) })
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
			out.Services = append(out.Services, sv)
		}
		i = j
	}
	slices.SortStableFunc(out.Localities, func(a, b LocalitySummary) int {
		return cmp.Or(compareNames(a.Service, b.Service), cmp.Compare(a.Cluster, b.Cluster), compareLocality(a.Locality, b.Locality))
	})
	return out
}

func firstCluster(s *model.Service) string {
	if len(s.Endpoints) == 0 {
		return ""
	}
	return s.Endpoints[0].Cluster
}

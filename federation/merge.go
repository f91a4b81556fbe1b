package federation

import (
	"slices"

	"github.com/causewaymesh/causeway/internal/model"
)

// merge builds the merged imports from every peer's view, stores them and
// calls OnImports. It runs on the Run goroutine only.
func (im *Importer) merge() {
	views := make([]*peerView, len(im.peers))
	total, nonEmpty := 0, 0
	for i, p := range im.peers {
		views[i] = p.view.Load()
		if n := len(views[i].services); n > 0 {
			total += n
			nonEmpty++
		}
	}
	// Gather every (service, peer) in name order, peers in cluster order.
	all := make([]*importedService, 0, total)
	for _, v := range views {
		all = append(all, v.services...)
	}
	if nonEmpty > 1 {
		slices.SortStableFunc(all, func(a, b *importedService) int { return compareNames(a.name, b.name) })
	}
	out := &Imports{Services: make([]model.Service, 0, len(all)), memo: &importsMemo{}}
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].name == all[i].name {
			j++
		}
		out.Services = append(out.Services, mergeService(all[i:j]))
		for _, is := range all[i:j] {
			out.Localities = append(out.Localities, is.localities...)
		}
		i = j
	}
	im.imports.Store(out)
	if im.cfg.OnImports != nil {
		im.cfg.OnImports(out)
	}
}

// mergeService merges one service from several peers (sorted by cluster):
// the union of ports, the endpoints of all (canonical: cluster first).
func mergeService(group []*importedService) model.Service {
	if len(group) == 1 {
		return group[0].svc
	}
	sv := group[0].svc
	var ports []model.ServicePort
	n := 0
	for _, is := range group {
		ports = append(ports, is.svc.Ports...)
		n += len(is.svc.Endpoints)
	}
	slices.SortFunc(ports, comparePorts)
	sv.Ports = slices.Compact(ports)
	sv.Endpoints = make([]model.Endpoint, 0, n)
	for _, is := range group {
		sv.Endpoints = append(sv.Endpoints, is.svc.Endpoints...)
	}
	return sv
}

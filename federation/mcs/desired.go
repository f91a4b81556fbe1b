package mcs

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/internal/merge"
	"github.com/causewaymesh/causeway/internal/model"
)

// Name is a namespace/name.
type Name struct{ Namespace, Name string }

func (n Name) String() string { return n.Namespace + "/" + n.Name }

func compareNames(a, b Name) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// Import is the ServiceImport one clusterset service should have.
type Import struct {
	Service Name
	// IP is the clusterset VIP (model.Service.ClustersetIP, assigned by
	// model.WithClustersetIPs): spec.ips[0]. Empty: none assigned.
	IP string
	// Ports are the served ports: this cluster's definition plus the
	// peers' ports internal/merge added (spec.ports).
	Ports []mcsv1alpha1.ServicePort
	// Clusters export the service, sorted (status.clusters): this cluster
	// when it has a ServiceExport, and every peer with at least one
	// imported endpoint or locality of it.
	Clusters []string
}

// Export is the status this cluster's export of a Service should have.
type Export struct {
	Service Name
	// IP is the ServiceImport's VIP, for the Ready message.
	IP string
	// Clusters is the Import's.
	Clusters []string
	// Conflicts are the properties peers export differently, sorted by
	// field; empty: none.
	Conflicts []Conflict
}

// Conflict is one property of a Service exported here that a peer's
// export of the same name defines differently. This cluster's definition
// is the one served here (internal/merge: local wins).
type Conflict struct {
	// Reason is the MCS API reason: PortConflict for ports (number,
	// protocol, appProtocol, naming).
	Reason mcsv1alpha1.ServiceExportConditionReason
	// Field is the property, `ports["http"]`.
	Field string
	// Peers are the peer clusters that define it differently, sorted.
	Peers []string
	// Message says what differs, which cluster wins and why.
	Message string
}

// Desired is what the MCS objects of one cluster should say.
type Desired struct {
	// Imports are the ServiceImports, sorted by namespace and name: one
	// per service exported here or imported from a peer, in the namespaces
	// this cluster has (local.Namespaces).
	Imports []Import
	// Exports are the statuses of this cluster's exports: the Services of
	// the local model with Exported set, sorted by namespace and name.
	// A ServiceExport whose Service is not among them is not Valid.
	Exports []Export
}

// Export returns the export of n, if the local model exports it.
func (d *Desired) Export(n Name) (*Export, bool) {
	i, ok := slices.BinarySearchFunc(d.Exports, n, func(e Export, n Name) int { return compareNames(e.Service, n) })
	if !ok {
		return nil, false
	}
	return &d.Exports[i], true
}

// Compute is the MCS view of cluster: local is its discovery snapshot
// (canonical, valid); imports the merged imports of its peers (nil: none).
// The served services are internal/merge's merge of both with
// model.WithClustersetIPs applied, exactly as controlplane.Merger builds
// the model the proxies get, so the ServiceImports carry the VIPs the
// sidecars answer clusterset.local with. Pure; it never modifies its
// inputs.
func Compute(cluster string, local *model.Snapshot, imports *federation.Imports) Desired {
	var imported []model.Service
	if imports != nil {
		imported = imports.Services
	}
	served, _ := merge.Merge(merge.Inputs{Local: local, Imported: imported})
	served = model.WithClustersetIPs(served, model.DefaultClustersetPrefix)
	peers := peerClusters(cluster, imports)

	d := Desired{Imports: make([]Import, 0, len(served.Services))}
	for i := range served.Services {
		sv := &served.Services[i]
		if !sv.Exported && !sv.Imported {
			continue
		}
		if _, ok := slices.BinarySearch(local.Namespaces, sv.Namespace); !ok {
			continue // namespace sameness: no namespace here, no ServiceImport
		}
		n := Name{sv.Namespace, sv.Name}
		im := Import{Service: n, IP: sv.ClustersetIP, Ports: servicePorts(sv.Ports)}
		ps := peers[n]
		switch {
		case !sv.Exported:
			im.Clusters = ps // peerClusters' own slice, sorted there
		case len(ps) == 0:
			im.Clusters = []string{cluster}
		default:
			im.Clusters = make([]string, 0, len(ps)+1)
			im.Clusters = append(append(im.Clusters, cluster), ps...)
			slices.Sort(im.Clusters) // peers never include cluster
		}
		d.Imports = append(d.Imports, im)
	}
	ii := 0
	for i := range local.Services {
		if local.Services[i].Exported && d.Exports == nil {
			d.Exports = make([]Export, 0, len(local.Services)-i)
		}
		l := &local.Services[i]
		if !l.Exported {
			continue
		}
		n := Name{l.Namespace, l.Name}
		e := Export{Service: n}
		// d.Imports and local.Services are both in name order.
		for ii < len(d.Imports) && compareNames(d.Imports[ii].Service, n) < 0 {
			ii++
		}
		if ii < len(d.Imports) && d.Imports[ii].Service == n {
			e.IP, e.Clusters = d.Imports[ii].IP, d.Imports[ii].Clusters
		}
		if im := importedService(imported, n); im != nil {
			e.Conflicts = portConflicts(cluster, l, im)
		}
		d.Exports = append(d.Exports, e)
	}
	return d
}

// peerClusters maps each imported service to the peers that export it:
// the clusters of its endpoints and of its localities behind gateways.
// A peer that exports a service with no endpoint at all is not seen
// (federation.Imports does not name it).
func peerClusters(cluster string, imports *federation.Imports) map[Name][]string {
	if imports == nil {
		return nil
	}
	out := make(map[Name][]string, len(imports.Services))
	add := func(n Name, c string) {
		if c == "" || c == cluster {
			return
		}
		if cs := out[n]; !slices.Contains(cs, c) {
			out[n] = append(cs, c)
		}
	}
	for i := range imports.Services {
		sv := &imports.Services[i]
		n := Name{sv.Namespace, sv.Name}
		for j := range sv.Endpoints {
			add(n, sv.Endpoints[j].Cluster)
		}
	}
	for i := range imports.Localities {
		l := &imports.Localities[i]
		add(Name{l.Service.Namespace, l.Service.Name}, l.Cluster)
	}
	for _, cs := range out {
		slices.Sort(cs)
	}
	return out
}

// importedService finds n in the sorted imports.
func importedService(imported []model.Service, n Name) *model.Service {
	i, ok := slices.BinarySearchFunc(imported, n, func(s model.Service, n Name) int {
		return compareNames(Name{s.Namespace, s.Name}, n)
	})
	if !ok {
		return nil
	}
	return &imported[i]
}

// servicePorts converts model ports to ServiceImport ports.
func servicePorts(ps []model.ServicePort) []mcsv1alpha1.ServicePort {
	out := make([]mcsv1alpha1.ServicePort, len(ps))
	for i, p := range ps {
		out[i] = mcsv1alpha1.ServicePort{Name: p.Name, Protocol: corev1.Protocol(p.Protocol), Port: int32(p.Port)}
		if p.AppProtocol != "" {
			ap := p.AppProtocol
			out[i].AppProtocol = &ap
		}
	}
	return out
}

// portConflicts compares this cluster's ports of a service with the ports
// its peers export under the same name (the union federation.Imports
// holds), by internal/merge's rules: a port with the same name must have
// the same number, protocol and appProtocol; a port is added only when
// named and its number is free. Each conflict names the peers whose
// endpoints use the port's name (for a port they all name differently,
// every peer exporting the service).
func portConflicts(cluster string, l, im *model.Service) []Conflict {
	if slices.Equal(l.Ports, im.Ports) {
		return nil
	}
	svc := l.Namespace + "/" + l.Name
	var out []Conflict
	for _, p := range im.Ports {
		field := "ports[" + strconv.Quote(p.Name) + "]"
		mk := func(what string) {
			peers := portPeers(cluster, im, p.Name)
			out = append(out, Conflict{Reason: mcsv1alpha1.ServiceExportReasonPortConflict, Field: field, Peers: peers,
				Message: fmt.Sprintf("service %s %s: %s; %s (this cluster) wins here, where its own definition always does, and %s's endpoints are still reached on their own target ports",
					svc, field, what, cluster, strings.Join(peers, ", "))})
		}
		if k := slices.IndexFunc(l.Ports, func(q model.ServicePort) bool { return q.Name == p.Name }); k >= 0 {
			q := l.Ports[k]
			switch {
			case q.Port != p.Port:
				mk(fmt.Sprintf("port is %d in %s but %d in %s", q.Port, cluster, p.Port, strings.Join(portPeers(cluster, im, p.Name), ", ")))
			case q.Protocol != p.Protocol:
				mk(fmt.Sprintf("protocol is %s in %s but %s in %s", q.Protocol, cluster, p.Protocol, strings.Join(portPeers(cluster, im, p.Name), ", ")))
			case q.AppProtocol != p.AppProtocol:
				mk(fmt.Sprintf("appProtocol is %q in %s but %q in %s", q.AppProtocol, cluster, p.AppProtocol, strings.Join(portPeers(cluster, im, p.Name), ", ")))
			}
			continue
		}
		if len(l.Ports) > 0 && (p.Name == "" || slices.ContainsFunc(l.Ports, func(q model.ServicePort) bool { return q.Name == "" })) {
			mk(fmt.Sprintf("%d/%s is exported by %s but cannot be added to %s's ports: a service with several ports needs every port named; name the ports alike in every cluster",
				p.Port, p.Protocol, strings.Join(portPeers(cluster, im, p.Name), ", "), cluster))
			continue
		}
		if k := slices.IndexFunc(l.Ports, func(q model.ServicePort) bool { return q.Port == p.Port }); k >= 0 {
			mk(fmt.Sprintf("port %d/%s is named %q in %s but %q in %s; one name per port number",
				p.Port, p.Protocol, l.Ports[k].Name, cluster, p.Name, strings.Join(portPeers(cluster, im, p.Name), ", ")))
		}
	}
	slices.SortStableFunc(out, func(a, b Conflict) int { return cmp.Compare(a.Field, b.Field) })
	return out
}

// portPeers are the peers whose endpoints of im use port name; all of
// im's peers when none does.
func portPeers(cluster string, im *model.Service, name string) []string {
	var named, all []string
	for i := range im.Endpoints {
		e := &im.Endpoints[i]
		if e.Cluster == "" || e.Cluster == cluster {
			continue
		}
		if !slices.Contains(all, e.Cluster) {
			all = append(all, e.Cluster)
		}
		if !slices.Contains(named, e.Cluster) && slices.ContainsFunc(e.Ports, func(p model.EndpointPort) bool { return p.Name == name }) {
			named = append(named, e.Cluster)
		}
	}
	out := named
	if len(out) == 0 {
		out = all
	}
	if len(out) == 0 {
		return []string{"a peer"}
	}
	slices.Sort(out)
	return out
}

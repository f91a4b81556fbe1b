package xds

import (
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/causewaymesh/causeway/internal/model"
)

// meshRoutes is what the GAMMA route tables of a snapshot mean for one
// service, for callers in one namespace (the node class's). It is built
// once per translation (indexMeshRoutes) and never modified after.
type meshRoutes struct {
	// tables are the mesh tables whose parent is the service (kind
	// Service or ServiceImport) and that apply to the caller: producer
	// tables (ConsumerNamespace "") and the consumer tables of the
	// caller's namespace, in the snapshot's order.
	tables []*model.RouteTable
	// setPorts are the service ports named by resolved ServiceImport
	// backends (and mirrors) of tables that apply to the caller: their
	// clusterset cluster must exist even when the service is not
	// exported here. Sorted, unique.
	setPorts []uint32
	// hostPorts are the ports of the service's applicable ServiceImport
	// parents: their clusterset virtual host (and cluster) is served even
	// when the service is not exported here. Sorted, unique; 0 is every
	// port.
	hostPorts []uint32
}

// indexMeshRoutes groups the mesh route tables of s that apply to callers
// in namespace ns by the service they concern (as a parent or as a
// ServiceImport backend). Gateway tables are left out: they belong to the
// ingress proxy. It returns nil when no table applies.
func indexMeshRoutes(s *model.Snapshot, ns string) map[serviceKey]*meshRoutes {
	var idx map[serviceKey]*meshRoutes
	get := func(namespace, name string) *meshRoutes {
		if idx == nil {
			idx = map[serviceKey]*meshRoutes{}
		}
		k := serviceKey{namespace, name}
		m := idx[k]
		if m == nil {
			m = &meshRoutes{}
			idx[k] = m
		}
		return m
	}
	addSet := func(b *model.Backend) {
		if b.Kind == model.BackendServiceImport && b.Unresolved == "" {
			m := get(b.Namespace, b.Name)
			m.setPorts = append(m.setPorts, b.Port)
		}
	}
	for i := range s.Routes {
		t := &s.Routes[i]
		p := &t.Parent
		if p.Kind == model.ParentGateway || (p.ConsumerNamespace != "" && p.ConsumerNamespace != ns) {
			continue
		}
		m := get(p.Namespace, p.Name)
		m.tables = append(m.tables, t)
		if p.Kind == model.ParentServiceImport {
			m.hostPorts = append(m.hostPorts, p.Port)
		}
		for j := range t.VirtualHosts {
			for k := range t.VirtualHosts[j].Routes {
				r := &t.VirtualHosts[j].Routes[k]
				if r.Redirect == nil {
					for b := range r.Backends {
						addSet(&r.Backends[b])
					}
				}
				for mi := range r.Mirrors {
					addSet(&r.Mirrors[mi].Backend)
				}
			}
		}
	}
	for _, m := range idx {
		slices.Sort(m.setPorts)
		m.setPorts = slices.Compact(m.setPorts)
		slices.Sort(m.hostPorts)
		m.hostPorts = slices.Compact(m.hostPorts)
	}
	return idx
}

// hasPort reports whether ports holds port, or 0 (every port).
func hasPort(ports []uint32, port uint32) bool {
	_, ok := slices.BinarySearch(ports, port)
	return ok || (len(ports) > 0 && ports[0] == 0)
}

// clusterset reports whether the service's clusterset cluster for port is
// needed by the routes (besides being exported).
func (m *meshRoutes) clusterset(port uint32) bool {
	return m != nil && (hasPort(m.setPorts, port) || hasPort(m.hostPorts, port))
}

// clustersetHost reports whether the routes serve the service's
// clusterset virtual host for port (besides being exported).
func (m *meshRoutes) clustersetHost(port uint32) bool {
	return m != nil && hasPort(m.hostPorts, port)
}

// table is the table that routes the service's port for a parent kind
// (ParentService: the cluster.local virtual host; ParentServiceImport:
// the clusterset.local one), or nil. A consumer table (the caller's
// namespace) wins over the producer's (GEP-1426), then a table of the
// port over one of every port (0).
func (m *meshRoutes) table(kind model.ParentKind, port uint32) *model.RouteTable {
	if m == nil {
		return nil
	}
	var best *model.RouteTable
	bestScore := -1
	for _, t := range m.tables {
		p := &t.Parent
		if p.Kind != kind || (p.Port != port && p.Port != 0) {
			continue
		}
		score := 0
		if p.ConsumerNamespace != "" {
			score += 2
		}
		if p.Port == port {
			score++
		}
		if score > bestScore {
			best, bestScore = t, score
		}
	}
	return best
}

// sameClusters reports whether a and b need the same clusterset clusters
// and virtual hosts (nil is no routes).
func sameClusters(a, b *meshRoutes) bool {
	if a == b {
		return true
	}
	var none meshRoutes
	a, b = orNone(a, &none), orNone(b, &none)
	return slices.Equal(a.setPorts, b.setPorts) && slices.Equal(a.hostPorts, b.hostPorts)
}

// sameTables reports whether a and b route with equal tables (nil is no
// routes). Tables of one snapshot compare by pointer.
func sameTables(a, b *meshRoutes) bool {
	if a == b {
		return true
	}
	var none meshRoutes
	a, b = orNone(a, &none), orNone(b, &none)
	return slices.EqualFunc(a.tables, b.tables, func(x, y *model.RouteTable) bool { return x == y || x.Equal(*y) })
}

func orNone(m, none *meshRoutes) *meshRoutes {
	if m == nil {
		return none
	}
	return m
}

// meshHost is the virtual host of a service port routed by a GAMMA table:
// the table's routes (MeshVirtualHost) with retry as the virtual host's
// retry policy, which routes with a retry of their own override. Routes
// that fail validation are left out and reported.
func meshHost(name string, domains []string, t *model.RouteTable, retry Retry) (*routev3.VirtualHost, error) {
	vh, err := MeshVirtualHost(name, domains, t, HTTPRouteOptions{})
	if retry.NumRetries > 0 {
		vh.RetryPolicy = &routev3.RetryPolicy{RetryOn: retry.On, NumRetries: wrapperspb.UInt32(retry.NumRetries)}
		if retry.PerTry > 0 {
			vh.RetryPolicy.PerTryTimeout = durationpb.New(retry.PerTry)
		}
	}
	return vh, err
}

// servesHTTP reports whether s has the service with an HTTP port numbered
// port (so its translation builds the port's clusters).
func servesHTTP(s *model.Snapshot, k serviceKey, port uint32) bool {
	sv, ok := s.Service(k.namespace, k.name)
	if !ok {
		return false
	}
	for _, p := range sv.Ports {
		if p.Port == port && portClass(p) != protoOther {
			return true
		}
	}
	return false
}

// orphanSets are the clusterset clusters that ServiceImport backends name
// but no service of s builds (the service is not in the model, or has no
// HTTP port of that number): sorted names.
func orphanSets(s *model.Snapshot, idx map[serviceKey]*meshRoutes) []string {
	var names []string
	for k, m := range idx {
		for _, port := range m.setPorts {
			if !servesHTTP(s, k, port) {
				names = append(names, ClustersetName(k.namespace, k.name, port))
			}
		}
	}
	slices.Sort(names)
	return names
}

// orphanCluster is an EDS cluster (HTTP/1.1, no mTLS: no identity is
// known) with an empty load assignment: requests routed to it fail with
// 503 (no healthy upstream) instead of naming a cluster that does not
// exist.
func orphanCluster(name string, co ClusterOptions) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	co.HTTP2 = false
	return EDSCluster(name, co), &endpointv3.ClusterLoadAssignment{ClusterName: name}
}

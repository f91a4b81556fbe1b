package federation

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	pb "github.com/causewaymesh/causeway/federation/federationpb"
	"github.com/causewaymesh/causeway/internal/model"
)

// exportEntry is one exported service in both wire forms. Immutable.
type exportEntry struct {
	svc        *model.Service // local endpoints only
	direct     *pb.ExportedService
	gateway    *pb.ExportedService // nil without a gateway
	directSize int
	gwSize     int
}

func (e *exportEntry) forMode(m pb.Mode) (*pb.ExportedService, int) {
	if m == pb.Mode_MODE_GATEWAY {
		return e.gateway, e.gwSize
	}
	return e.direct, e.directSize
}

// logEntry is the services that changed in one revision, sorted.
type logEntry struct {
	rev   uint64
	names []NamespacedName
}

// exportState is the exported state at one revision. Immutable; next is
// closed when a newer state replaces it.
type exportState struct {
	epoch    string
	rev      uint64
	services map[NamespacedName]*exportEntry
	names    []NamespacedName // keys of services, sorted
	// log holds the changes of revisions (floor, rev]. States share its
	// backing array: a writer only appends past the end of the newest state.
	log   []logEntry
	floor uint64
	next  chan struct{}
}

// changedSince returns the services that changed after rev (sorted; shared,
// read-only), or ok false when the log no longer covers rev.
func (st *exportState) changedSince(rev uint64) (names []NamespacedName, ok bool) {
	if rev == st.rev {
		return nil, true
	}
	if rev < st.floor || rev > st.rev {
		return nil, false
	}
	i := sort.Search(len(st.log), func(i int) bool { return st.log[i].rev > rev })
	if i == len(st.log)-1 {
		return st.log[i].names, true
	}
	var out []NamespacedName
	for _, e := range st.log[i:] {
		out = append(out, e.names...)
	}
	slices.SortFunc(out, compareNames)
	return slices.Compact(out), true
}

// buildState computes the state after old for the exported services of
// snap, or returns old when nothing exported changed. A service whose
// slices are those old has (sameService) costs a map lookup: a change of
// one service builds one entry and copies old's map once.
func buildState(old *exportState, snap *model.Snapshot, cfg *ServerConfig) *exportState {
	var (
		changed         []NamespacedName
		entries         []*exportEntry // of changed, in order
		exported, added int
		last            *model.Service
	)
	for i := range snap.Services {
		sv := &snap.Services[i]
		if !sv.Exported {
			continue
		}
		if last != nil && compareServiceNames(last, sv) >= 0 {
			return rebuildState(old, snap, cfg) // not canonical
		}
		last = sv
		exported++
		n := NamespacedName{sv.Namespace, sv.Name}
		e, ok := old.services[n]
		if ok && sameService(e.svc, sv) {
			continue
		}
		local := localOnly(sv, cfg.Cluster)
		if ok && e.svc.Equal(local) {
			continue
		}
		if !ok {
			added++
		}
		changed = append(changed, n)
		entries = append(entries, newExportEntry(local, cfg))
	}
	removed := len(old.names) - (exported - added)
	if len(changed) == 0 && removed == 0 {
		return old
	}
	services := maps.Clone(old.services)
	for i, n := range changed {
		services[n] = entries[i]
	}
	names := old.names
	if added > 0 || removed > 0 {
		names = make([]NamespacedName, 0, exported)
		for i := range snap.Services {
			if sv := &snap.Services[i]; sv.Exported {
				names = append(names, NamespacedName{sv.Namespace, sv.Name})
			}
		}
		for _, n := range old.names {
			if _, ok := slices.BinarySearchFunc(names, n, compareNames); !ok {
				delete(services, n)
				changed = append(changed, n)
			}
		}
		slices.SortFunc(changed, compareNames)
	}
	return nextState(old, services, names, changed, cfg)
}

// sameService: a and b have the same fields and the same slices (the
// model is immutable once published).
func sameService(a, b *model.Service) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Exported == b.Exported && a.Imported == b.Imported &&
		a.ClusterIP == b.ClusterIP && a.ClustersetIP == b.ClustersetIP &&
		len(a.Ports) == len(b.Ports) && (len(a.Ports) == 0 || &a.Ports[0] == &b.Ports[0]) &&
		len(a.Endpoints) == len(b.Endpoints) && (len(a.Endpoints) == 0 || &a.Endpoints[0] == &b.Endpoints[0])
}

func compareServiceNames(a, b *model.Service) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// rebuildState is buildState for a snapshot that is not canonical: the
// first of each exported name counts.
func rebuildState(old *exportState, snap *model.Snapshot, cfg *ServerConfig) *exportState {
	services := make(map[NamespacedName]*exportEntry, len(old.services))
	names := make([]NamespacedName, 0, len(old.names))
	var changed []NamespacedName
	for i := range snap.Services {
		sv := &snap.Services[i]
		if !sv.Exported {
			continue
		}
		n := NamespacedName{sv.Namespace, sv.Name}
		if _, dup := services[n]; dup {
			continue // not canonical; keep the first
		}
		local := localOnly(sv, cfg.Cluster)
		names = append(names, n)
		if e, ok := old.services[n]; ok && e.svc.Equal(local) {
			services[n] = e
			continue
		}
		services[n] = newExportEntry(local, cfg)
		changed = append(changed, n)
	}
	for _, n := range old.names {
		if _, ok := services[n]; !ok {
			changed = append(changed, n)
		}
	}
	if len(changed) == 0 {
		return old
	}
	slices.SortFunc(changed, compareNames)
	slices.SortFunc(names, compareNames)
	return nextState(old, services, names, changed, cfg)
}

// nextState is the state after old with services (names: its keys,
// sorted), changed (sorted) in the log.
func nextState(old *exportState, services map[NamespacedName]*exportEntry, names, changed []NamespacedName, cfg *ServerConfig) *exportState {
	st := &exportState{
		epoch: old.epoch, rev: old.rev + 1, services: services, names: names,
		log: append(old.log, logEntry{rev: old.rev + 1, names: changed}), floor: old.floor,
		next: make(chan struct{}),
	}
	if drop := len(st.log) - cfg.ChangeLogLength; drop > 0 {
		st.floor = st.log[drop-1].rev
		st.log = st.log[drop:]
	}
	return st
}

// localOnly returns sv without endpoints of other clusters (imports are
// never re-exported); sv itself when all are local.
func localOnly(sv *model.Service, cluster string) *model.Service {
	c := *sv
	for i := range sv.Endpoints {
		if e := &sv.Endpoints[i]; e.Cluster != cluster && e.Cluster != "" {
			c.Endpoints = make([]model.Endpoint, 0, len(sv.Endpoints))
			for _, e := range sv.Endpoints {
				if e.Cluster == cluster || e.Cluster == "" {
					c.Endpoints = append(c.Endpoints, e)
				}
			}
			break
		}
	}
	return &c
}

func newExportEntry(sv *model.Service, cfg *ServerConfig) *exportEntry {
	e := &exportEntry{svc: sv, direct: directProto(sv)}
	e.directSize = proto.Size(e.direct)
	if cfg.Gateway.Address.IsValid() {
		e.gateway = gatewayProto(sv, cfg.Gateway.Address, cfg.Gateway.SNI(sv.Namespace, sv.Name))
		e.gwSize = proto.Size(e.gateway)
	}
	return e
}

func portsProto(sv *model.Service) []*pb.Port {
	ports := make([]*pb.Port, len(sv.Ports))
	for i, p := range sv.Ports {
		ports[i] = &pb.Port{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol), AppProtocol: p.AppProtocol}
	}
	return ports
}

func localityProto(l model.Locality) *pb.Locality {
	if l == (model.Locality{}) {
		return nil
	}
	return &pb.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone}
}

func directProto(sv *model.Service) *pb.ExportedService {
	out := &pb.ExportedService{Namespace: sv.Namespace, Name: sv.Name, Ports: portsProto(sv)}
	out.Endpoints = make([]*pb.Endpoint, len(sv.Endpoints))
	for i := range sv.Endpoints {
		e := &sv.Endpoints[i]
		pe := &pb.Endpoint{
			Address: e.Address, Locality: localityProto(e.Locality), Identity: e.Identity,
			Weight: max(e.Weight, 1), Healthy: e.Ready,
		}
		pe.Ports = make([]*pb.EndpointPort, len(e.Ports))
		for j, p := range e.Ports {
			pe.Ports[j] = &pb.EndpointPort{Name: p.Name, Port: p.Port}
		}
		out.Endpoints[i] = pe
	}
	return out
}

// gatewayProto summarises sv's endpoints per locality behind the gateway,
// sorted by locality.
func gatewayProto(sv *model.Service, gw netip.AddrPort, sni string) *pb.ExportedService {
	out := &pb.ExportedService{Namespace: sv.Namespace, Name: sv.Name, Ports: portsProto(sv)}
	type acc struct {
		s   *pb.LocalitySummary
		ids map[string]bool
	}
	by := map[model.Locality]*acc{}
	var locs []model.Locality
	for i := range sv.Endpoints {
		e := &sv.Endpoints[i]
		a := by[e.Locality]
		if a == nil {
			a = &acc{s: &pb.LocalitySummary{Locality: localityProto(e.Locality), GatewayAddress: gw.String(), Sni: sni}, ids: map[string]bool{}}
			by[e.Locality] = a
			locs = append(locs, e.Locality)
		}
		a.s.Endpoints++
		if e.Ready {
			a.s.HealthyEndpoints++
			a.s.Weight += uint64(max(e.Weight, 1))
		}
		if e.Identity != "" && !a.ids[e.Identity] {
			a.ids[e.Identity] = true
			a.s.Identities = append(a.s.Identities, e.Identity)
		}
	}
	slices.SortFunc(locs, compareLocality)
	for _, l := range locs {
		s := by[l].s
		slices.Sort(s.Identities)
		out.Localities = append(out.Localities, s)
	}
	return out
}

func compareLocality(a, b model.Locality) int {
	if a.Region != b.Region {
		return compareString(a.Region, b.Region)
	}
	if a.Zone != b.Zone {
		return compareString(a.Zone, b.Zone)
	}
	return compareString(a.SubZone, b.SubZone)
}

func compareString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

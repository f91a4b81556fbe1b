package xds

import (
	"slices"
	"sync"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/causewaymesh/causeway/internal/model"
)

// Translator is Translate with memory: per node class, it keeps what each
// service translated to last time, with the GAMMA route tables that
// applied to it, and reuses those messages (the same pointers) for a
// service that is equal to the one it saw under equal tables, so a change
// to one service or to one service's routes rebuilds, validates and (in
// Server.Publish) marshals that service's resources only. The output is
// the same as Translate's.
//
// Safe for concurrent use; calls are serialised.
type Translator struct {
	o TranslateOptions

	mu      sync.Mutex
	classes map[Node]*classMemo
}

// NewTranslator translates with o.
func NewTranslator(o TranslateOptions) *Translator {
	return &Translator{o: o, classes: map[Node]*classMemo{}}
}

// Translate is Translate(s, n, o) for the Translator's options.
func (t *Translator) Translate(s *model.Snapshot, n Node) (Resources, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := n.Class()
	m := t.classes[c]
	if m == nil {
		m = &classMemo{services: map[serviceKey]*serviceMemo{}, ports: map[uint32]*portMemo{}, orphans: map[string]*orphanMemo{}}
		t.classes[c] = m
	}
	return translate(s, n, t.o, m)
}

// Forget drops the memory of n's class (its last node has gone).
func (t *Translator) Forget(n Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.classes, n.Class())
}

type serviceKey struct{ namespace, name string }

type serviceMemo struct {
	sv      model.Service // the input, as it was (the model is immutable)
	cluster string        // the snapshot's cluster it was translated in
	routes  *meshRoutes   // the route tables that applied (nil: none)
	pieces  *servicePieces
	used    bool // seen by the translation in progress
}

type orphanMemo struct {
	cluster, cla types.Resource
	used         bool
}

type portMemo struct {
	addr   string
	vhosts []*routev3.VirtualHost
	l      *listenerv3.Listener
	rc     *routev3.RouteConfiguration
	used   bool
}

// classMemo is one class's memory. Entries not used by a translation are
// dropped at its end (sweep), so it holds one model's worth.
type classMemo struct {
	services map[serviceKey]*serviceMemo
	ports    map[uint32]*portMemo
	orphans  map[string]*orphanMemo // by cluster name
}

// service is the remembered translation of sv (nil when there is none
// that can be reused) under routes mr, and which of its parts still hold.
// When all do, the pieces are reused whole and marked used.
func (m *classMemo) service(sv *model.Service, cluster string, mr *meshRoutes) (*servicePieces, reuse) {
	e := m.services[serviceKey{sv.Namespace, sv.Name}]
	if e == nil || e.cluster != cluster || !sameShape(&e.sv, sv) || !sameClusters(e.routes, mr) ||
		!sharesEndpoints(&e.sv, sv) && !slices.Equal(identities(&e.sv), identities(sv)) {
		// Identities shape the clusters' mTLS SAN lists.
		return nil, reuse{}
	}
	keep := reuse{clusters: true, endpoints: sameEndpoints(&e.sv, sv), hosts: sameTables(e.routes, mr)}
	if keep.all() {
		// The tables compare equal: remember this snapshot's, so the next
		// comparison is by pointer when the routes do not change.
		e.used, e.routes = true, mr
	}
	return e.pieces, keep
}

func (m *classMemo) keep(sv *model.Service, cluster string, mr *meshRoutes, pc *servicePieces) {
	m.services[serviceKey{sv.Namespace, sv.Name}] = &serviceMemo{sv: *sv, cluster: cluster, routes: mr, pieces: pc, used: true}
}

// orphan is the remembered empty clusterset cluster and load assignment
// of name (see orphanSets), or nils.
func (m *classMemo) orphan(name string) (cluster, cla types.Resource) {
	e := m.orphans[name]
	if e == nil {
		return nil, nil
	}
	e.used = true
	return e.cluster, e.cla
}

func (m *classMemo) keepOrphan(name string, cluster, cla types.Resource) {
	m.orphans[name] = &orphanMemo{cluster: cluster, cla: cla, used: true}
}

// port is the remembered listener and route configuration of port when
// its address and virtual hosts (by pointer) are unchanged.
func (m *classMemo) port(port uint32, addr string, vhs []*routev3.VirtualHost) (*listenerv3.Listener, *routev3.RouteConfiguration) {
	e := m.ports[port]
	if e == nil || e.addr != addr || !slices.Equal(e.vhosts, vhs) {
		return nil, nil
	}
	e.used = true
	return e.l, e.rc
}

func (m *classMemo) keepPort(port uint32, addr string, vhs []*routev3.VirtualHost, l *listenerv3.Listener, rc *routev3.RouteConfiguration) {
	m.ports[port] = &portMemo{addr: addr, vhosts: vhs, l: l, rc: rc, used: true}
}

// sweep forgets the services and orphan clusters not seen since the last
// sweep.
func (m *classMemo) sweep() {
	for k, e := range m.services {
		if !e.used {
			delete(m.services, k)
		}
		e.used = false
	}
	for k, e := range m.orphans {
		if !e.used {
			delete(m.orphans, k)
		}
		e.used = false
	}
}

// sweepPorts forgets the ports not seen since the last sweep.
func (m *classMemo) sweepPorts() {
	for k, e := range m.ports {
		if !e.used {
			delete(m.ports, k)
		}
		e.used = false
	}
}

// sameShape: everything but the endpoints is equal (clusters, virtual
// hosts and api listeners depend on nothing else).
func sameShape(a, b *model.Service) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Exported == b.Exported && a.Imported == b.Imported && slices.Equal(a.Ports, b.Ports) &&
		a.ClusterIP == b.ClusterIP && a.ClustersetIP == b.ClustersetIP // VIPs are virtual host domains
}

// sharesEndpoints: the same endpoints slice (so the same identities too).
func sharesEndpoints(a, b *model.Service) bool {
	return len(a.Endpoints) == len(b.Endpoints) && (len(a.Endpoints) == 0 || &a.Endpoints[0] == &b.Endpoints[0])
}

// sameEndpoints compares the endpoints, with a shortcut for slices that
// share their backing array (a source that rebuilds one service leaves the
// others' slices alone; the model is immutable once offered).
func sameEndpoints(a, b *model.Service) bool {
	if len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	if len(a.Endpoints) > 0 && &a.Endpoints[0] == &b.Endpoints[0] {
		return true
	}
	return slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y model.Endpoint) bool { return x.Equal(&y) })
}

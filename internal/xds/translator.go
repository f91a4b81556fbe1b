package xds

import (
	"slices"
	"sync"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/causewaymesh/causeway/internal/model"
)

// Translator is Translate with memory: per node class, it keeps what each
// service translated to last time and reuses those messages (the same
// pointers) for a service that is equal to the one it saw, so a change to
// one service rebuilds, validates and (in Server.Publish) marshals that
// service's resources only. The output is the same as Translate's.
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
		m = &classMemo{services: map[serviceKey]*serviceMemo{}, ports: map[uint32]*portMemo{}}
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
	pieces  *servicePieces
	used    bool // seen by the translation in progress
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
}

// service is the remembered pieces of sv, or nil when sv changed; then
// shape is the remembered pieces when only the endpoints changed.
func (m *classMemo) service(sv *model.Service, cluster string) (pieces, shape *servicePieces) {
	e := m.services[serviceKey{sv.Namespace, sv.Name}]
	if e == nil || e.cluster != cluster || !sameShape(&e.sv, sv) || !slices.Equal(identities(&e.sv), identities(sv)) {
		// Identities shape the clusters' mTLS SAN lists.
		return nil, nil
	}
	if !sameEndpoints(&e.sv, sv) {
		return nil, e.pieces
	}
	e.used = true
	return e.pieces, nil
}

func (m *classMemo) keep(sv *model.Service, cluster string, pc *servicePieces) {
	m.services[serviceKey{sv.Namespace, sv.Name}] = &serviceMemo{sv: *sv, cluster: cluster, pieces: pc, used: true}
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

// sweep forgets the services not seen since the last sweep.
func (m *classMemo) sweep() {
	for k, e := range m.services {
		if !e.used {
			delete(m.services, k)
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
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Exported == b.Exported && slices.Equal(a.Ports, b.Ports)
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

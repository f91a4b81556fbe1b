package federation

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/internal/model"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one cluster: an exporter and an importer.
type node struct {
	name, network, td string
	snap              *model.Snapshot
	srv               *Server
	addr              string
	im                *Importer
	imClk             *fakeClock
}

type meshOptions struct {
	importer func(*ImporterConfig)
	server   func(*ServerConfig)
	// dial maps a peer's address to the one importers dial (a flaky proxy).
	dial func(t *testing.T, n *node) string
}

// newMesh starts a server and an importer per cluster; every cluster
// exports to and imports from every other.
func newMesh(t *testing.T, ctx context.Context, p *pki, nodes []*node, o meshOptions) {
	t.Helper()
	for _, n := range nodes {
		cfg := ServerConfig{
			Cluster: n.name, Network: n.network, TrustDomain: td(n.td),
			SVID: p.controlPlane(t, n.td), Bundles: p.set, HeartbeatInterval: time.Hour,
			Clock: newFakeClock(), Logger: quiet, Registerer: newRegistry(),
		}
		for _, m := range nodes {
			if m != n {
				cfg.Peers = append(cfg.Peers, ExportPeer{TrustDomain: td(m.td), Cluster: m.name})
			}
		}
		if o.server != nil {
			o.server(&cfg)
		}
		srv, err := NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.srv = srv
		if n.snap != nil {
			srv.Update(n.snap)
		}
		n.addr = serve(t, ctx, srv)
	}
	for _, n := range nodes {
		n.imClk = newFakeClock()
		cfg := ImporterConfig{
			Cluster: n.name, Network: n.network, SVID: p.controlPlane(t, n.td), Bundles: p.set,
			HeartbeatTimeout: time.Hour, ConnectTimeout: time.Hour, StalenessWindow: time.Hour,
			BackoffInitial: time.Second, BackoffMax: time.Second,
			Clock: n.imClk, Rand: func() float64 { return 0.5 }, Logger: quiet, Registerer: newRegistry(),
		}
		for _, m := range nodes {
			if m != n {
				addr := m.addr
				if o.dial != nil {
					addr = o.dial(t, m)
				}
				cfg.Peers = append(cfg.Peers, ImportPeer{Cluster: m.name, TrustDomain: td(m.td), Address: addr})
			}
		}
		if o.importer != nil {
			o.importer(&cfg)
		}
		im, err := NewImporter(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.im = im
		background(t, ctx, im.Run)
	}
}

func others(nodes []*node, n *node) []*model.Snapshot {
	var out []*model.Snapshot
	for _, m := range nodes {
		if m != n {
			out = append(out, m.snap)
		}
	}
	return out
}

func waitConverged(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		want := expected(others(nodes, n)...)
		waitFor(t, "imports of "+n.name+" equal the exports of its peers", func() bool {
			return equalServices(n.im.Imports().Services, want)
		})
	}
}

func threeNodes() []*node {
	return []*node{
		{name: "east", network: "flat", td: "east.test"},
		{name: "north", network: "flat", td: "north.test"},
		{name: "west", network: "flat", td: "west.test"},
	}
}

func TestThreeClustersExportImportAndDeltas(t *testing.T) {
	ctx := testCtx(t)
	nodes := threeNodes()
	p := newPKI(t, "east.test", "north.test", "west.test")
	for i, n := range nodes {
		n.snap = snapshot(n.name, n.network, n.td, i+1, 20, 3)
	}
	newMesh(t, ctx, p, nodes, meshOptions{})
	waitConverged(t, nodes)
	for _, n := range nodes {
		for _, s := range n.im.Status() {
			if !s.Connected || s.Stale || s.Resyncs != 1 || s.Services != 16 || s.Endpoints != 48 || s.LastError != nil {
				t.Errorf("%s: status of peer %s = %+v; want connected, 1 resync, 16 services, 48 endpoints", n.name, s.Cluster, s)
			}
		}
	}

	// Deltas: change an endpoint, delete a service, unexport one, add one.
	east := clone(nodes[0].snap)
	east.Services[0].Endpoints[0].Weight = 7
	east.Services[0].Endpoints[1].Ready = false
	east.Services = append(east.Services[:1], east.Services[2:]...)
	north := clone(nodes[1].snap)
	north.Services[2].Exported = false
	west := clone(nodes[2].snap)
	west.Services = append(west.Services, model.Service{Namespace: "zoo", Name: "new", Exported: true,
		Ports: []model.ServicePort{{Port: 80, Protocol: model.TCP}},
		Endpoints: []model.Endpoint{{Address: "fd00::1", Cluster: "west", Network: "flat", Weight: 1, Ready: true,
			Ports: []model.EndpointPort{{Port: 8080}}}}})
	west.Canonicalize()
	for n, s := range map[*node]*model.Snapshot{nodes[0]: east, nodes[1]: north, nodes[2]: west} {
		n.snap = s
		n.srv.Update(s)
	}
	waitConverged(t, nodes)
	st := peerStatus(nodes[1].im, "east")
	if st.Resyncs != 1 || st.Upserts != 16+1 || st.Deletes != 1 {
		t.Errorf("north's import from east: resyncs %d upserts %d deletes %d; want 1, 17, 1 (only the change is sent)", st.Resyncs, st.Upserts, st.Deletes)
	}
	// No-op updates send nothing.
	rev := nodes[0].srv.Revision()
	if got := nodes[0].srv.Update(clone(east)); got != rev {
		t.Errorf("an equal snapshot moved the revision from %d to %d", rev, got)
	}
}

func TestImportsNeverReexported(t *testing.T) {
	snap := snapshot("east", "flat", "east.test", 1, 1, 2)
	snap.Services[0].Endpoints[1].Cluster = "elsewhere" // an import merged into east's model
	st := buildState(&exportState{services: map[NamespacedName]*exportEntry{}, next: make(chan struct{})}, snap, &ServerConfig{Cluster: "east", ChangeLogLength: 10})
	if got := len(st.services[NamespacedName{"shop", "svc-0000"}].direct.Endpoints); got != 1 {
		t.Fatalf("exported %d endpoints; want only the local one", got)
	}
}

func TestResumeSendsOnlyChanges(t *testing.T) {
	ctx := testCtx(t)
	nodes := []*node{{name: "east", network: "flat", td: "east.test"}, {name: "west", network: "flat", td: "west.test"}}
	p := newPKI(t, "east.test", "west.test")
	nodes[0].snap = snapshot("east", "flat", "east.test", 1, 50, 4)
	nodes[1].snap = snapshot("west", "flat", "west.test", 2, 0, 0)
	proxies := map[string]*flaky{}
	newMesh(t, ctx, p, nodes, meshOptions{dial: func(t *testing.T, n *node) string {
		f := newFlaky(t, n.addr)
		proxies[n.name] = f
		return f.addr()
	}})
	west := nodes[1]
	waitConverged(t, nodes)
	before := peerStatus(west.im, "east")

	proxies["east"].partition()
	waitFor(t, "west to lose east", func() bool { s := peerStatus(west.im, "east"); return !s.Connected && s.LastError != nil })
	changed := clone(nodes[0].snap)
	changed.Services[0].Endpoints[0].Weight = 9
	changed.Services[1].Endpoints = changed.Services[1].Endpoints[:1]
	nodes[0].snap = changed
	nodes[0].srv.Update(changed)
	proxies["east"].heal()
	west.imClk.Advance(time.Second) // the backoff
	waitConverged(t, nodes)
	after := peerStatus(west.im, "east")
	if after.Resyncs != 1 || after.Upserts != before.Upserts+2 || after.Connects != 2 || after.Messages != before.Messages+2 {
		t.Errorf("after resumption: resyncs %d, upserts %d (before %d), connects %d, messages %d (before %d); want 1 resync, 2 more upserts, 2 connects, hello+delta",
			after.Resyncs, after.Upserts, before.Upserts, after.Connects, after.Messages, before.Messages)
	}
	if after.LastSequence <= before.LastSequence {
		t.Errorf("sequence did not continue: %d after %d", after.LastSequence, before.LastSequence)
	}
}

func TestStaleness(t *testing.T) {
	const window = time.Minute
	for _, tc := range []struct {
		name      string
		partition time.Duration // before the staleness window ends: kept; after: withdrawn
		withdrawn bool
	}{
		{"shorter than the window: kept, stale, then fresh", 30 * time.Second, false},
		{"longer than the window: withdrawn, then re-imported", 61 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			nodes := []*node{{name: "east", network: "flat", td: "east.test"}, {name: "west", network: "flat", td: "west.test"}}
			p := newPKI(t, "east.test", "west.test")
			nodes[0].snap = snapshot("east", "flat", "east.test", 1, 10, 2)
			nodes[1].snap = snapshot("west", "flat", "west.test", 2, 0, 0)
			var proxy *flaky
			newMesh(t, ctx, p, nodes, meshOptions{
				importer: func(c *ImporterConfig) { c.StalenessWindow = window },
				dial: func(t *testing.T, n *node) string {
					f := newFlaky(t, n.addr)
					if n.name == "east" {
						proxy = f
					}
					return f.addr()
				},
			})
			west := nodes[1]
			waitConverged(t, nodes)
			want := west.im.Imports().Services

			proxy.partition()
			waitFor(t, "west to lose east", func() bool { s := peerStatus(west.im, "east"); return !s.Connected && s.LastError != nil })
			s := peerStatus(west.im, "east")
			if !s.Stale || s.StaleSince != west.imClk.Now() || testutil.ToFloat64(west.im.metrics.stale.WithLabelValues("east")) != 1 {
				t.Fatalf("after the disconnect: %+v; want stale since now and the stale metric 1", s)
			}
			// The partition lasts; reconnects fail.
			f := s.Failures
			west.imClk.Advance(tc.partition - 2*time.Second)
			waitFor(t, "a failed reconnect", func() bool { return peerStatus(west.im, "east").Failures > f })
			if s := peerStatus(west.im, "east"); !s.Stale || s.Withdrawn || !equalServices(west.im.Imports().Services, want) {
				t.Fatalf("within the window: stale %t withdrawn %t; want the last-known-good imports kept and marked stale", s.Stale, s.Withdrawn)
			}
			if tc.withdrawn {
				f := peerStatus(west.im, "east").Failures
				west.imClk.Advance(2 * time.Second)
				waitFor(t, "withdrawal", func() bool {
					s := peerStatus(west.im, "east")
					return s.Withdrawn && s.Failures > f && len(west.im.Imports().Services) == 0
				})
				if s := peerStatus(west.im, "east"); s.Stale || s.Services != 0 || testutil.ToFloat64(west.im.metrics.withdrawn.WithLabelValues("east")) != 1 {
					t.Fatalf("after the window: %+v; want withdrawn, not stale, nothing imported", s)
				}
			}
			proxy.heal()
			west.imClk.Advance(time.Second)
			waitConverged(t, nodes)
			waitFor(t, "east connected and fresh", func() bool { s := peerStatus(west.im, "east"); return s.Connected && !s.Stale })
			s = peerStatus(west.im, "east")
			wantResyncs := uint64(1)
			if tc.withdrawn {
				wantResyncs = 2 // the imports were dropped: a full resync
			}
			if s.Withdrawn || s.Resyncs != wantResyncs || s.Services != 8 || testutil.ToFloat64(west.im.metrics.stale.WithLabelValues("east")) != 0 {
				t.Errorf("after healing: %+v; want fresh, %d resyncs, 8 services", s, wantResyncs)
			}
		})
	}
}

func TestHeartbeats(t *testing.T) {
	ctx := testCtx(t)
	nodes := []*node{{name: "east", network: "flat", td: "east.test"}, {name: "west", network: "flat", td: "west.test"}}
	p := newPKI(t, "east.test", "west.test")
	nodes[0].snap = snapshot("east", "flat", "east.test", 1, 2, 1)
	nodes[1].snap = snapshot("west", "flat", "west.test", 2, 0, 0)
	srvClk := newFakeClock()
	newMesh(t, ctx, p, nodes, meshOptions{
		server:   func(c *ServerConfig) { c.HeartbeatInterval = 10 * time.Second; c.Clock = srvClk },
		importer: func(c *ImporterConfig) { c.HeartbeatTimeout = 30 * time.Second },
	})
	west := nodes[1]
	waitConverged(t, nodes)
	for i := range 3 {
		m := peerStatus(west.im, "east").Messages
		waitFor(t, "a heartbeat", func() bool {
			srvClk.Advance(10 * time.Second)
			return peerStatus(west.im, "east").Messages > m
		})
		_ = i
	}
	if got := testutil.ToFloat64(west.im.metrics.messages.WithLabelValues("east", "heartbeat")); got < 3 {
		t.Fatalf("heartbeats received = %v; want at least 3", got)
	}
	// The exporter falls silent (its clock stops); the importer gives up.
	west.imClk.Advance(30 * time.Second)
	waitFor(t, "a heartbeat timeout", func() bool {
		s := peerStatus(west.im, "east")
		return !s.Connected && s.LastError != nil && strings.Contains(s.LastError.Error(), "heartbeat timeout")
	})
	if s := peerStatus(west.im, "east"); !s.Stale || s.Services != 2 {
		t.Errorf("after a heartbeat timeout: %+v; want stale with the imports kept", s)
	}
}

func TestGatewayModeSendsLocalitySummaries(t *testing.T) {
	ctx := testCtx(t)
	nodes := []*node{{name: "east", network: "net-east", td: "east.test"}, {name: "west", network: "net-west", td: "west.test"}}
	p := newPKI(t, "east.test", "west.test")
	nodes[0].snap = snapshot("east", "net-east", "east.test", 1, 3, 6)
	nodes[1].snap = snapshot("west", "net-west", "west.test", 2, 0, 0)
	gw := netip.MustParseAddrPort("127.0.0.1:15443")
	newMesh(t, ctx, p, nodes, meshOptions{server: func(c *ServerConfig) {
		if c.Cluster == "east" {
			c.Gateway = Gateway{Address: gw}
		}
	}})
	west, east := nodes[1], nodes[0]
	waitFor(t, "localities", func() bool { return len(west.im.Imports().Localities) == 9 })
	imp := west.im.Imports()
	for _, ls := range imp.Localities {
		// 6 endpoints over 3 zones: 2 each; endpoint j is unhealthy when j%4 == 3.
		if ls.Cluster != "east" || ls.Network != "net-east" || ls.Gateway != gw || ls.Endpoints != 2 ||
			ls.SNI != ls.Service.Name+".shop.svc.clusterset.local" || len(ls.Identities) != 1 {
			t.Errorf("summary %+v", ls)
		}
		wantHealthy := uint32(2)
		if ls.Locality.Zone == "z0" { // j=3 is in z0
			wantHealthy = 1
		}
		if ls.HealthyEndpoints != wantHealthy {
			t.Errorf("%s %s: healthy %d; want %d", ls.Service, ls.Locality, ls.HealthyEndpoints, wantHealthy)
		}
	}
	for _, sv := range imp.Services {
		if len(sv.Endpoints) != 3 {
			t.Errorf("%s/%s: %d endpoints; want one per locality (never one per cluster)", sv.Namespace, sv.Name, len(sv.Endpoints))
		}
		ids := map[string]bool{}
		for _, ls := range imp.Localities {
			if ls.Service.Namespace == sv.Namespace && ls.Service.Name == sv.Name {
				for _, id := range ls.Identities {
					ids[id] = true
				}
			}
		}
		for _, e := range sv.Endpoints {
			if e.Address != "127.0.0.1" || e.Ports[0].Port != 15443 || e.Cluster != "east" {
				t.Errorf("gateway endpoint %+v", e)
			}
			if len(ids) > 0 && !ids[e.Identity] {
				t.Errorf("gateway endpoint of %s/%s pins identity %q, not one its localities advertise %v", sv.Namespace, sv.Name, e.Identity, ids)
			}
		}
	}
	// east has no gateway: west imports nothing and is told why.
	waitFor(t, "east refused", func() bool {
		s := peerStatus(east.im, "west")
		return isRefusal(s.LastError, ReasonRefusedByPeer) && strings.Contains(s.LastError.Error(), "no east-west gateway")
	})
}

func TestFilterAndChunks(t *testing.T) {
	ctx := testCtx(t)
	nodes := []*node{{name: "east", network: "flat", td: "east.test"}, {name: "west", network: "flat", td: "west.test"}, {name: "north", network: "flat", td: "north.test"}}
	p := newPKI(t, "east.test", "west.test", "north.test")
	nodes[0].snap = snapshot("east", "flat", "east.test", 1, 200, 10)
	nodes[1].snap = snapshot("west", "flat", "west.test", 2, 0, 0)
	nodes[2].snap = snapshot("north", "flat", "north.test", 3, 0, 0)
	newMesh(t, ctx, p, nodes, meshOptions{
		server: func(c *ServerConfig) {
			for i := range c.Peers {
				if c.Peers[i].Cluster == "north" {
					c.Peers[i].Filter = Filter{Names: []NamespacedName{{"shop", "svc-0001"}}}
				}
			}
		},
		importer: func(c *ImporterConfig) { c.MaxMessageBytes = 8 << 10 },
	})
	west := nodes[1]
	want := expected(nodes[0].snap)
	waitFor(t, "west's imports", func() bool { return equalServices(west.im.Imports().Services, want) })
	s := peerStatus(west.im, "east")
	if s.Resyncs != 1 || s.Messages < 10 {
		t.Errorf("west: %d resyncs in %d messages; want one resync in many chunks of at most 8 KiB", s.Resyncs, s.Messages)
	}
	waitFor(t, "north's filtered import", func() bool {
		sv := nodes[2].im.Imports().Services
		return len(sv) == 1 && sv[0].Name == "svc-0001"
	})
}

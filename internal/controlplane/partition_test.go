package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/xds"
)

// partitionYAML is cluster name's folder source (k numbers its addresses):
// cart (exported by every cluster, two endpoints in two zones, plus the
// extra ones), pay-<name> (exported, a gRPC port) and private (not
// exported: no peer may ever see it).
func partitionYAML(name string, k int, extra ...string) string {
	eps := fmt.Sprintf(`- addresses: [10.%[1]d.0.1]
  nodeName: node-z1
  conditions: {ready: true}
- addresses: [10.%[1]d.0.2]
  nodeName: node-z2
  conditions: {ready: true}
`, k)
	for _, a := range extra {
		eps += fmt.Sprintf("- addresses: [%s]\n  nodeName: node-z2\n  conditions: {ready: true}\n", a)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-%[1]s, namespace: shop, labels: {kubernetes.io/service-name: cart}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
%[3]s---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: pay-%[1]s, namespace: shop}
spec:
  ports: [{name: grpc, port: 9090, appProtocol: grpc}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: pay-%[1]s, namespace: shop, labels: {kubernetes.io/service-name: pay-%[1]s}}
addressType: IPv4
ports: [{name: grpc, port: 9090}]
endpoints:
- addresses: [10.%[2]d.1.1]
  nodeName: node-z1
  conditions: {ready: true}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: pay-%[1]s, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: private, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: private-%[1]s, namespace: shop, labels: {kubernetes.io/service-name: private}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.%[2]d.2.1]
  nodeName: node-z1
  conditions: {ready: true}
`, name, k, eps)
}

// newWestService is exported by west while the link is cut.
const newWestService = `apiVersion: v1
kind: Service
metadata: {name: new-west, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: new-west, namespace: shop, labels: {kubernetes.io/service-name: new-west}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.2.3.1]
  nodeName: node-z2
  conditions: {ready: true}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: new-west, namespace: shop}
`

// metricValue is the value of the sample of family name whose peer label
// is peer (0 when there is none).
func metricValue(t *testing.T, reg *prometheus.Registry, name, peer string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "peer" && l.GetValue() == peer {
					if g := m.GetGauge(); g != nil {
						return g.GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestFederationPartition: three control planes (east, west, south), each
// with its own trust domain, federated both ways over real mutual-TLS gRPC
// on loopback. East imports from west through a TCP relay the test owns;
// every other link is direct. East's staleness window is 2 s.
//
// A partition longer than the window: east keeps west's imports, marked
// stale (status and metric), then withdraws them from its model and from a
// connected xDS client; south's link is undisturbed; after healing every
// cluster's imports equal the exports again. A partition shorter than the
// window: nothing is withdrawn, the stream resumes without a full resync,
// and what west changed meanwhile (an endpoint added, a service exported,
// one unexported) arrives after healing. After each heal the imports of every cluster from every other
// are compared with the exports (service, ports, endpoints, localities,
// weights): no duplicates, no orphans.
func TestFederationPartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const staleness = 2 * time.Second
	east := newFedNode(t, "east", "127.72.1.1")
	west := newFedNode(t, "west", "127.72.1.2")
	south := newFedNode(t, "south", "127.72.1.3")
	nodes := []*fedNode{east, west, south}
	link := startRelay(t, "127.72.1.100:17100", west.fedLn.Addr().String())
	for i, n := range nodes {
		write(t, n.dir, "nodes.yaml", nodesYAML)
		write(t, n.dir, "services.yaml", partitionYAML(n.name, i+1))
	}
	east.start(t, ctx, nil, []FederationPeer{west.peerOf(t, link.Addr()), south.peerOf(t, "")}, staleness, 10*time.Millisecond, testLogger(t, "east"))
	west.start(t, ctx, nil, []FederationPeer{east.peerOf(t, ""), south.peerOf(t, "")}, 0, 10*time.Millisecond, testLogger(t, "west"))
	south.start(t, ctx, nil, []FederationPeer{east.peerOf(t, ""), west.peerOf(t, "")}, 0, 10*time.Millisecond, testLogger(t, "south"))
	cart := watchEDS(t, ctx, east.cp.Addr(), "east", xds.ClustersetName("shop", "cart", 8080), nil)

	// mismatch compares, for every ordered pair, what the importer's model
	// holds of the exporter's endpoints with what the exporter exports.
	mismatch := func() error {
		var errs []string
		for _, im := range nodes {
			for _, ex := range nodes {
				if im == ex {
					continue
				}
				want := exportProjection(ex.cp.Model(), ex.name, true)
				got := exportProjection(im.cp.Model(), ex.name, false)
				if len(want) == 0 {
					errs = append(errs, ex.name+" exports nothing yet")
				} else if err := diffLines(want, got); err != nil {
					errs = append(errs, fmt.Sprintf("%s's imports from %s:\n%v", im.name, ex.name, err))
				}
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "\n"))
		}
		return nil
	}
	// converged waits until every import set equals its exports and
	// east's xDS client has want (sorted "ip:port") for cart.
	converged := func(t *testing.T, what string, want []string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			err := mismatch()
			got := cart.addresses()
			if err == nil && slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not converged after 30s: %v\neast's xDS client has cart at %v, want %v", what, err, got, want)
			}
			<-tick.C
		}
	}
	link1 := func(n *fedNode, peer string) LinkStatus {
		for _, l := range n.cp.Status(StatusSources{Federation: n.fed}).Links {
			if l.Peer == peer {
				return l
			}
		}
		t.Fatalf("%s's status has no link to %s", n.name, peer)
		return LinkStatus{}
	}
	cartAll := []string{"10.1.0.1:8080", "10.1.0.2:8080", "10.2.0.1:8080", "10.2.0.2:8080", "10.3.0.1:8080", "10.3.0.2:8080"}
	cartNoWest := []string{"10.1.0.1:8080", "10.1.0.2:8080", "10.3.0.1:8080", "10.3.0.2:8080"}
	start := time.Now()
	converged(t, "start", cartAll)
	t.Logf("three clusters converged in %s; east imports from west:\n%s", time.Since(start).Round(time.Millisecond), strings.Join(exportProjection(east.cp.Model(), "west", false), "\n"))
	t.Run("private services never leave their cluster", func(t *testing.T) {
		for _, n := range nodes {
			sv, _ := n.cp.Model().Service("shop", "private")
			for _, e := range sv.Endpoints {
				if e.Cluster != n.name {
					t.Errorf("%s's private service has an endpoint of %s: %+v", n.name, e.Cluster, e)
				}
			}
		}
	})

	t.Run("partition longer than the staleness window: stale, then withdrawn, then converged", func(t *testing.T) {
		t0 := time.Now()
		link.Cut()
		waitUntil(t, 10*time.Second, "east to mark west stale", func() bool { return link1(east, "west").State == "stale" })
		tStale := time.Since(t0)
		if got := metricValue(t, east.reg, "causeway_federation_peer_stale", "west"); got != 1 {
			t.Errorf("causeway_federation_peer_stale{peer=west} = %v while stale, want 1", got)
		}
		if got := metricValue(t, east.reg, "causeway_federation_peer_connected", "west"); got != 0 {
			t.Errorf("causeway_federation_peer_connected{peer=west} = %v while cut, want 0", got)
		}
		// Last known good: east still holds exactly what west exports.
		if err := diffLines(exportProjection(west.cp.Model(), "west", true), exportProjection(east.cp.Model(), "west", false)); err != nil {
			t.Errorf("east's stale imports from west differ from west's exports:\n%v", err)
		}
		if got := cart.addresses(); !slices.Equal(got, cartAll) {
			t.Errorf("east's xDS client while west is stale: cart at %v, want %v (last known good)", got, cartAll)
		}
		if l := link1(east, "south"); l.State != "connected" {
			t.Errorf("east's link to south is %q while west's is cut, want connected", l.State)
		}
		// The same over the admin /status endpoint (`causeway status`).
		srv := httptest.NewServer(east.cp.StatusHandler(StatusSources{Federation: east.fed, Merger: east.merger}))
		defer srv.Close()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/status", nil)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rep StatusReport
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range rep.Links {
			if l.Peer == "west" && (l.State != "stale" || l.Healthy || l.StaleSince.IsZero() || l.Services != 2 || l.LastError == "") {
				t.Errorf("east's /status link to west while cut: %+v, want stale, unhealthy, stale_since set, 2 services kept, the error named", l)
			}
		}

		waitUntil(t, 15*time.Second, "east to withdraw west's imports", func() bool { return link1(east, "west").State == "withdrawn" })
		tGone := time.Since(t0)
		if tGone < staleness {
			t.Errorf("west's imports were withdrawn %s after the cut, before the staleness window %s", tGone, staleness)
		}
		waitUntil(t, 10*time.Second, "west's endpoints to leave east's model and east's xDS client", func() bool {
			return len(exportProjection(east.cp.Model(), "west", false)) == 0 && slices.Equal(cart.addresses(), cartNoWest)
		})
		tModel := time.Since(t0)
		if got := metricValue(t, east.reg, "causeway_federation_peer_stale", "west"); got != 0 {
			t.Errorf("causeway_federation_peer_stale{peer=west} = %v after the withdrawal, want 0", got)
		}
		if got := metricValue(t, east.reg, "causeway_federation_import_withdrawn_total", "west"); got != 1 {
			t.Errorf("causeway_federation_import_withdrawn_total{peer=west} = %v, want 1", got)
		}
		if _, ok := east.cp.Model().Service("shop", "pay-west"); ok {
			t.Error("pay-west (only west exports it) is still in east's model after the withdrawal")
		}
		if err := diffLines(exportProjection(west.cp.Model(), "west", true), exportProjection(south.cp.Model(), "west", false)); err != nil {
			t.Errorf("south's imports from west were disturbed by east's partition:\n%v", err)
		}
		if l := link1(east, "south"); l.State != "connected" || l.Failures != 0 {
			t.Errorf("east's link to south: %+v, want connected and never failed", l)
		}
		_, refused := link.counts()
		t.Logf("cut: stale after %s, withdrawn after %s, gone from model and xDS after %s (window %s, %d reconnects refused)",
			tStale.Round(time.Millisecond), tGone.Round(time.Millisecond), tModel.Round(time.Millisecond), staleness, refused)

		t1 := time.Now()
		link.Heal()
		converged(t, "heal after the long partition", cartAll)
		waitUntil(t, 10*time.Second, "east's link to west connected", func() bool { return link1(east, "west").State == "connected" })
		if got := metricValue(t, east.reg, "causeway_federation_peer_connected", "west"); got != 1 {
			t.Errorf("causeway_federation_peer_connected{peer=west} = %v after healing, want 1", got)
		}
		t.Logf("heal: converged in %s", time.Since(t1).Round(time.Millisecond))
	})

	t.Run("partition shorter than the staleness window: stale, never withdrawn, changes arrive after healing", func(t *testing.T) {
		withdrawn := metricValue(t, east.reg, "causeway_federation_import_withdrawn_total", "west")
		resyncs := func() (uint64, uint64) {
			for _, st := range east.fed.ImportStatus() {
				if st.Cluster == "west" {
					return st.Resyncs, st.Connects
				}
			}
			return 0, 0
		}
		resync0, connects0 := resyncs()
		t0 := time.Now()
		link.Cut()
		waitUntil(t, 10*time.Second, "east to mark west stale", func() bool { return link1(east, "west").State == "stale" })
		if got := metricValue(t, east.reg, "causeway_federation_peer_stale", "west"); got != 1 {
			t.Errorf("causeway_federation_peer_stale{peer=west} = %v while stale, want 1", got)
		}
		// West changes during the partition: one more cart endpoint, one
		// more exported service, and pay-west no longer exported (east
		// must not keep it as an orphan).
		const payExport = "---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: pay-west, namespace: shop}\n"
		changed := partitionYAML("west", 2, "10.2.0.3")
		if !strings.Contains(changed, payExport) {
			t.Fatal("partitionYAML no longer holds pay-west's ServiceExport as this test expects")
		}
		write(t, west.dir, "services.yaml", strings.Replace(changed, payExport, "", 1))
		write(t, west.dir, "new-west.yaml", newWestService)
		waitUntil(t, 10*time.Second, "west's own model to have the changes", func() bool {
			m := west.cp.Model()
			_, ok := m.Service("shop", "new-west")
			c, _ := m.Service("shop", "cart")
			pay, _ := m.Service("shop", "pay-west")
			return ok && !pay.Exported && slices.ContainsFunc(c.Endpoints, func(e model.Endpoint) bool { return e.Address == "10.2.0.3" })
		})
		if _, ok := east.cp.Model().Service("shop", "pay-west"); !ok {
			t.Error("pay-west left east's model during a partition shorter than the window")
		}
		if _, ok := east.cp.Model().Service("shop", "new-west"); ok {
			t.Fatal("new-west reached east through a cut link: the relay is not in the path")
		}
		if got := cart.addresses(); !slices.Equal(got, cartAll) {
			t.Errorf("east's xDS client during the short partition: cart at %v, want the last known good %v", got, cartAll)
		}
		link.Heal()
		tHeal := time.Since(t0)
		if tHeal >= staleness {
			t.Fatalf("the short partition lasted %s, not shorter than the window %s (machine too loaded?)", tHeal, staleness)
		}
		withNew := slices.Sorted(slices.Values(append(slices.Clone(cartAll), "10.2.0.3:8080")))
		converged(t, "heal after the short partition", withNew)
		if got := metricValue(t, east.reg, "causeway_federation_import_withdrawn_total", "west"); got != withdrawn {
			t.Errorf("causeway_federation_import_withdrawn_total{peer=west} went from %v to %v across a partition shorter than the window", withdrawn, got)
		}
		if _, ok := east.cp.Model().Service("shop", "pay-west"); ok {
			t.Error("pay-west, no longer exported by west, is still in east's model after healing (orphan)")
		}
		if l := link1(east, "west"); l.State != "connected" || !l.StaleSince.IsZero() {
			t.Errorf("east's link to west after healing: %+v, want connected, not stale", l)
		}
		if got := metricValue(t, east.reg, "causeway_federation_peer_stale", "west"); got != 0 {
			t.Errorf("causeway_federation_peer_stale{peer=west} = %v after healing, want 0", got)
		}
		resync1, connects1 := resyncs()
		if resync1 != resync0 {
			t.Errorf("east took %d full resync(s) from west after a partition shorter than the window, want it resumed from its revision", resync1-resync0)
		}
		t.Logf("short partition: east reconnected to west %d time(s), full resyncs %d -> %d (0 more: resumed from the revision it had)", connects1-connects0, resync0, resync1)
		t.Logf("short partition: healed after %s (window %s), converged with west's changes %s after the cut",
			tHeal.Round(time.Millisecond), staleness, time.Since(t0).Round(time.Millisecond))
	})
}

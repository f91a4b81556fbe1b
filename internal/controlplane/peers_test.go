package controlplane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/federation/peerapi"
)

// waitFor polls cond every 10ms until it holds or 20s pass.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		<-tick.C
	}
}

func importOf(fed *Federation, cluster string) *federation.PeerStatus {
	for _, s := range fed.ImportStatus() {
		if s.Cluster == cluster {
			return &s
		}
	}
	return nil
}

// TestPeersAtRuntime: SetPeers adds, removes and changes links of a
// running federation; the links that did not change keep their streams
// (one connect each), a removed link's imports are withdrawn at once, and
// an exporter's changed export filter takes effect on its live stream.
// Loopback 127.71.1.0/24.
func TestPeersAtRuntime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	east := newFedNode(t, "east", "127.71.1.1")
	west := newFedNode(t, "west", "127.71.1.2")
	south := newFedNode(t, "south", "127.71.1.3")
	for i, n := range []*fedNode{east, west, south} {
		write(t, n.dir, "nodes.yaml", nodesYAML)
		write(t, n.dir, "services.yaml", partitionYAML(n.name, i+1))
	}
	east.start(t, ctx, nil, nil, 0, 10*time.Millisecond, testLogger(t, "east"))
	west.start(t, ctx, nil, []FederationPeer{east.peerOf(t, "")}, 0, 10*time.Millisecond, testLogger(t, "west"))
	south.start(t, ctx, nil, []FederationPeer{east.peerOf(t, "")}, 0, 10*time.Millisecond, testLogger(t, "south"))

	imports := func(from *fedNode) error {
		want := exportProjection(from.cp.Model(), from.name, true)
		if len(want) == 0 {
			return errors.New(from.name + " exports nothing yet")
		}
		return diffLines(want, exportProjection(east.cp.Model(), from.name, false))
	}
	importsNothing := func(from *fedNode) error {
		if got := exportProjection(east.cp.Model(), from.name, false); len(got) > 0 {
			return errors.New("east still imports from " + from.name + ":\n" + strings.Join(got, "\n"))
		}
		return nil
	}
	connects := func(cluster string) uint64 {
		if s := importOf(east.fed, cluster); s != nil {
			return s.Connects
		}
		return 0
	}

	if err := east.fed.SetPeers([]FederationPeer{west.peerOf(t, "")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "east imports west after adding the link", func() error { return imports(west) })

	if err := east.fed.SetPeers([]FederationPeer{west.peerOf(t, ""), south.peerOf(t, "")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "east imports south after adding its link", func() error { return imports(south) })
	if err := imports(west); err != nil || connects("west") != 1 {
		t.Fatalf("adding south disturbed west's link: connects %d, %v", connects("west"), err)
	}
	if links := west.fed.PeerLinks(); len(links) != 1 || links[0].Exported != 2 || links[0].Import == nil {
		t.Fatalf("west's link to east: %+v, want 2 services exported and an import", links)
	}

	// The exporter narrows what east may import: west's stream to east
	// is ended and resynced under the new filter; nothing else moves.
	narrowed := east.peerOf(t, "")
	narrowed.Filter = federation.Filter{Namespaces: []string{"elsewhere"}}
	if err := west.fed.SetPeers([]FederationPeer{narrowed}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the filter withdraws west's exports from east", func() error { return importsNothing(west) })
	if links := west.fed.PeerLinks(); links[0].Exported != 0 {
		t.Fatalf("west's link to east: exported %d, want 0 under the filter", links[0].Exported)
	}
	if err := west.fed.SetPeers([]FederationPeer{east.peerOf(t, "")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "east imports west again once the filter is gone", func() error { return imports(west) })

	if err := east.fed.SetPeers([]FederationPeer{south.peerOf(t, "")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removing west's link withdraws its imports", func() error { return importsNothing(west) })
	if err := imports(south); err != nil || connects("south") != 1 {
		t.Fatalf("removing west disturbed south's link: connects %d, %v", connects("south"), err)
	}
	if s := importOf(east.fed, "west"); s != nil {
		t.Fatalf("west's import still runs: %+v", s)
	}
	if len(east.fed.BundleStatus()) != 1 {
		t.Fatalf("bundles %+v: want south's alone", east.fed.BundleStatus())
	}
	if _, ok := east.plane.Set.Federated(west.td); ok {
		t.Fatal("west's trust bundle is still trusted after its link was removed")
	}

	// A refused change changes nothing.
	if err := east.fed.SetPeers([]FederationPeer{south.peerOf(t, ""), south.peerOf(t, "")}); err == nil || !strings.Contains(err.Error(), "named twice") {
		t.Fatalf("SetPeers with a duplicate: %v", err)
	}
	if err := imports(south); err != nil || connects("south") != 1 {
		t.Fatalf("a refused SetPeers disturbed south: connects %d, %v", connects("south"), err)
	}
}

func TestCombinePeers(t *testing.T) {
	own := spiffeid.RequireTrustDomainFromString("east.local")
	west := spiffeid.RequireTrustDomainFromString("west.local")
	peer := func(name, cluster string, mod func(*peerapi.PeerSpec)) *peerapi.Peer {
		p := &peerapi.Peer{Spec: peerapi.PeerSpec{Cluster: cluster, TrustDomain: "west.local", Federation: "127.0.0.1:1",
			BundleEndpoint: &peerapi.BundleEndpoint{URL: "https://127.0.0.1:2/"}}}
		p.Name = name
		if mod != nil {
			mod(&p.Spec)
		}
		return p
	}
	flags := []FederationPeer{{Cluster: "north", TrustDomain: west, Address: "127.0.0.1:3", BundleURL: "https://127.0.0.1:2/"}}
	origin := func(p *peerapi.Peer) string { return "Peer " + p.Name + " (peers.yaml)" }
	got, problems := CombinePeers("east", own, flags, []*peerapi.Peer{
		peer("b-west", "west", func(s *peerapi.PeerSpec) {
			s.Direction = peerapi.DirectionExport
			s.Federation = ""
			s.Export = &peerapi.ExportFilter{Services: []peerapi.ServiceName{{Namespace: "shop", Name: "cart"}}}
		}),
		peer("a-north", "north", nil),
		peer("c-bad", "bad", func(s *peerapi.PeerSpec) { s.TrustDomain = "Bad!" }),
		peer("d-other-url", "south", func(s *peerapi.PeerSpec) { s.BundleEndpoint.URL = "https://127.0.0.1:9/" }),
		peer("e-import", "up", func(s *peerapi.PeerSpec) { s.Direction = peerapi.DirectionImport }),
	}, origin)
	want := []string{
		`Peer a-north (peers.yaml): spec.cluster: "north" is already linked by --peer`,
		`Peer c-bad (peers.yaml): spec.trustDomain: "Bad!" is not a SPIFFE trust domain name`,
		`Peer d-other-url (peers.yaml): control plane: FederationOptions.Peers[2].BundleURL (Peer d-other-url (peers.yaml)): https://127.0.0.1:9/ differs`,
	}
	if len(problems) != len(want) {
		t.Fatalf("problems %v, want %d", problems, len(want))
	}
	for i, w := range want {
		if !strings.Contains(problems[i].Error(), w) {
			t.Errorf("problem %d: %v, want %q", i, problems[i], w)
		}
	}
	if len(got) != 3 || got[1].Cluster != "west" || got[1].Address != "" || got[1].NoExport || len(got[1].Filter.Names) != 1 ||
		got[2].Cluster != "up" || !got[2].NoExport || got[2].Address == "" {
		t.Fatalf("peers %+v", got)
	}
}

func TestPeerObjectStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := PeerObjectStatus(nil, 3, nil, errors.New("conflict"), now)
	if st.Conditions[0].Type != peerapi.ConditionAccepted || st.Conditions[0].Status != "False" || st.Conditions[0].Reason != "Conflict" || st.LastError != "conflict" || st.ObservedGeneration != 3 {
		t.Fatalf("not applied: %+v", st)
	}
	ls := &PeerLinkStatus{Import: &federation.PeerStatus{Connected: true, Address: "a:1", Services: 2, Endpoints: 5, LastSync: now}, Exported: 4}
	st2 := PeerObjectStatus(&st, 4, ls, nil, now.Add(time.Minute))
	conds := map[string]string{}
	for _, c := range st2.Conditions {
		conds[c.Type] = string(c.Status)
	}
	if conds["Accepted"] != "True" || conds["Connected"] != "True" || conds["Stale"] != "False" || conds["BundleHealthy"] != "True" ||
		st2.ImportedServices != 2 || st2.ImportedEndpoints != 5 || st2.ExportedServices != 4 || st2.LastSync == nil || st2.LastError != "" {
		t.Fatalf("connected: %+v", st2)
	}
	if !st2.Conditions[0].LastTransitionTime.Time.Equal(now.Add(time.Minute)) {
		t.Fatalf("Accepted changed status: its transition time must move")
	}
	st3 := PeerObjectStatus(&st2, 4, ls, nil, now.Add(2*time.Minute))
	if !st3.Conditions[0].LastTransitionTime.Time.Equal(now.Add(time.Minute)) {
		t.Fatalf("Accepted kept its status: its transition time must stay")
	}
}

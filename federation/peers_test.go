package federation

import (
	"errors"
	"testing"
)

// TestServerSetPeers: removing a peer ends its stream and refuses it from
// then on; the other peer's stream is untouched; re-adding it with a
// filter resyncs it in full under the filter.
func TestServerSetPeers(t *testing.T) {
	ctx := testCtx(t)
	nodes := []*node{{name: "east", network: "flat", td: "east.test"}, {name: "west", network: "flat", td: "west.test"}, {name: "north", network: "flat", td: "north.test"}}
	p := newPKI(t, "east.test", "west.test", "north.test")
	nodes[0].snap = snapshot("east", "flat", "east.test", 1, 20, 2)
	nodes[1].snap = snapshot("west", "flat", "west.test", 2, 0, 0)
	nodes[2].snap = snapshot("north", "flat", "north.test", 3, 0, 0)
	newMesh(t, ctx, p, nodes, meshOptions{})
	east, west, north := nodes[0], nodes[1], nodes[2]
	want := expected(east.snap)
	for _, n := range []*node{west, north} {
		waitFor(t, n.name+" imports east", func() bool { return equalServices(n.im.Imports().Services, want) })
	}
	keep := ExportPeer{TrustDomain: td("north.test"), Cluster: "north"}
	if err := east.srv.SetPeers([]ExportPeer{keep, keep}); err == nil {
		t.Fatal("SetPeers with a duplicate peer: no error")
	}
	if err := east.srv.SetPeers([]ExportPeer{keep}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "west is refused once removed", func() bool {
		west.imClk.Advance(2e9) // past the reconnect backoff
		var r *RefusedError
		s := peerStatus(west.im, "east")
		return !s.Connected && errors.As(s.LastError, &r)
	})
	if s := peerStatus(north.im, "east"); !s.Connected || s.Connects != 1 {
		t.Fatalf("north's link was disturbed: %+v", s)
	}
	if len(east.srv.Peers()) != 1 {
		t.Fatalf("Peers() %+v", east.srv.Peers())
	}
	// Re-added with a filter: a full resync with the filtered set only.
	filtered := ExportPeer{TrustDomain: td("west.test"), Cluster: "west", Filter: Filter{Names: []NamespacedName{{"shop", "svc-0001"}}}}
	if err := east.srv.SetPeers([]ExportPeer{keep, filtered}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "west's filtered import", func() bool {
		west.imClk.Advance(2e9)
		sv := west.im.Imports().Services
		return len(sv) == 1 && sv[0].Name == "svc-0001" && peerStatus(west.im, "east").Connected
	})
	if s := peerStatus(north.im, "east"); s.Connects != 1 {
		t.Fatalf("north's link was disturbed: %+v", s)
	}
}

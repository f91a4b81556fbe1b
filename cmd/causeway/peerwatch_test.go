package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/testcluster"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// TestWatchPeersWritesStatus: kubernetes mode on a real apiserver (the
// Peer CRD installed from manifests/): Peers become links, each Peer's
// status is written (Accepted, Connected with the last error while the
// peer is unreachable, the conflict of a second Peer for one cluster),
// and a schema-invalid Peer is refused by the apiserver itself.
func TestWatchPeersWritesStatus(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	c := testcluster.Start(t, testcluster.Options{Name: "peers", GatewayAPIChannel: testcluster.ChannelNone})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	td := spiffeid.RequireTrustDomainFromString("east.local")
	ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := bundles.NewAuthority(ca, bundles.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := bundles.NewSet(auth)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := auth.IssueSVID(bundles.ControlPlaneID(td), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	fed, err := controlplane.NewFederation(controlplane.FederationOptions{Cluster: "east", TrustDomain: td, SVID: svid, Bundles: set, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	links := &peerLinks{cluster: "east", td: td, log: log, origin: func(p *peerapi.Peer) string { return "Peer " + p.Name }}
	links.attach(fed)

	gvr := peerapi.GroupVersionResource()
	create := func(name string, spec map[string]any) error {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": peerapi.APIVersion, "kind": peerapi.Kind,
			"metadata": map[string]any{"name": name}, "spec": spec}}
		_, err := c.Dynamic.Resource(gvr).Create(ctx, u, metav1.CreateOptions{})
		return err
	}
	// Same trust domain: no bundle endpoint needed. 127.71.3.1:9 refuses.
	if err := create("west", map[string]any{"cluster": "west", "trustDomain": "east.local", "federation": "127.71.3.1:9"}); err != nil {
		t.Fatal(err)
	}
	if err := create("west-again", map[string]any{"cluster": "west", "trustDomain": "east.local", "direction": "Export"}); err != nil {
		t.Fatal(err)
	}
	// The CRD's CEL rule: federation is required unless direction is Export.
	if err := create("nofed", map[string]any{"cluster": "north", "trustDomain": "east.local"}); err == nil {
		t.Fatal("a Peer without federation (direction Both) was accepted by the apiserver")
	}

	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	wg.Go(func() { _ = fed.Run(runCtx) })
	wg.Go(func() {
		if err := watchPeers(runCtx, c.Config, links, 100*time.Millisecond, log); err != nil {
			t.Error(err)
		}
	})
	defer func() { stop(); wg.Wait() }()

	cond := func(st peerapi.PeerStatus, typ string) *metav1.Condition {
		for i := range st.Conditions {
			if st.Conditions[i].Type == typ {
				return &st.Conditions[i]
			}
		}
		return nil
	}
	get := func(name string) (peerapi.PeerStatus, error) {
		u, err := c.Dynamic.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return peerapi.PeerStatus{}, err
		}
		var p peerapi.Peer
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
			return peerapi.PeerStatus{}, err
		}
		return p.Status, nil
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var problem error
		west, err := get("west")
		again, err2 := get("west-again")
		switch {
		case err != nil || err2 != nil:
			problem = fmt.Errorf("%v %v", err, err2)
		case cond(west, "Accepted") == nil || cond(west, "Accepted").Status != "True" || cond(west, "Connected") == nil ||
			cond(west, "Connected").Status != "False" || west.LastError == "" || west.ObservedGeneration != 1:
			problem = fmt.Errorf("west's status %+v", west)
		case cond(again, "Accepted") == nil || cond(again, "Accepted").Status != "False" || cond(again, "Accepted").Reason != "Conflict":
			problem = fmt.Errorf("west-again's status %+v", again)
		}
		if problem == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal(problem)
		case <-tick.C:
		}
	}
	if ps := fed.Peers(); len(ps) != 1 || ps[0].Cluster != "west" || ps[0].Origin != "Peer west" {
		t.Fatalf("federation peers %+v", ps)
	}
	// Deleting the Peer removes the link.
	if err := c.Dynamic.Resource(gvr).Delete(ctx, "west", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		ps := fed.Peers()
		if len(ps) == 1 && ps[0].Origin == "Peer west-again" && len(fed.ImportStatus()) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after deleting west: peers %+v, imports %+v", ps, fed.ImportStatus())
		case <-tick.C:
		}
	}
}

package controlplane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// chanSource emits what is sent on it; a send of nil makes Run fail.
type chanSource chan *model.Snapshot

func (c chanSource) Run(ctx context.Context, emit func(*model.Snapshot)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case s := <-c:
			if s == nil {
				return errors.New("source broke")
			}
			emit(s)
		}
	}
}

func localSnap(svcs ...model.Service) *model.Snapshot {
	s := &model.Snapshot{Cluster: "east", TrustDomain: "east.local", Services: svcs}
	s.Canonicalize()
	return s
}

func TestMerger(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := make(chanSource)
	var locals []*model.Snapshot
	reg := prometheus.NewRegistry()
	m, err := NewMerger(MergerOptions{Local: src, OnLocal: func(s *model.Snapshot) { locals = append(locals, s) }, Cluster: "east", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *model.Snapshot, 16)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx, func(s *model.Snapshot) { out <- s }) }()
	next := func(what string) *model.Snapshot {
		t.Helper()
		select {
		case s := <-out:
			return s
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
			return nil
		}
	}
	port := []model.ServicePort{{Name: "http", Port: 80, Protocol: model.TCP}}
	cartImport := &federation.Imports{Services: []model.Service{{Namespace: "shop", Name: "cart", Ports: port,
		Endpoints: []model.Endpoint{{Address: "10.1.0.1", Cluster: "west", Weight: 1, Ready: true, Ports: []model.EndpointPort{{Name: "http", Port: 8080}}}}}}}

	// Imports before the first local snapshot wait for it.
	m.SetImports(cartImport)
	web := model.Service{Namespace: "shop", Name: "web", Ports: port}
	l1 := localSnap(web)
	src <- l1
	s := next("the first merge")
	if _, ok := s.Service("shop", "cart"); !ok || len(s.Services) != 2 {
		t.Fatalf("first merge:\n%s\nwant web and the imported cart", s)
	}

	// The same imports in a new value, then routes: only the routes change
	// the model, so the next emitted snapshot has them.
	m.SetImports(&federation.Imports{Services: append([]model.Service(nil), cartImport.Services...)})
	routes := []model.RouteTable{{Parent: model.RouteParent{Kind: model.ParentService, Namespace: "shop", Name: "web", Port: 80, Protocol: "HTTP"}}}
	m.SetRoutes(routes)
	if s = next("the routes"); len(s.Routes) != 1 {
		t.Fatalf("after SetRoutes:\n%s\nwant one route table (and no no-op push before it)", s)
	}

	// A conflicting import is reported; the model keeps the local port.
	clash := &federation.Imports{Services: []model.Service{{Namespace: "shop", Name: "web", Ports: []model.ServicePort{{Name: "http", Port: 90, Protocol: model.TCP}}}}}
	m.SetImports(clash)
	s = next("the conflicting import")
	if sv, _ := s.Service("shop", "web"); !sv.Imported || sv.Ports[0].Port != 80 {
		t.Fatalf("web after a conflicting import: %+v, want imported with port 80", sv)
	}
	if c := m.Conflicts(); len(c) != 1 || !strings.Contains(c[0].Error(), `service shop/web: ports["http"]`) {
		t.Fatalf("Conflicts() = %v", c)
	}
	if got := testutil.ToFloat64(m.nConflicts); got != 1 {
		t.Errorf("causeway_model_merge_conflicts = %v, want 1", got)
	}

	// Withdrawal: the import goes, web is local again.
	m.SetImports(nil)
	if s = next("the withdrawal"); len(s.Services) != 1 || s.Services[0].Imported {
		t.Fatalf("after the withdrawal:\n%s", s)
	}
	if len(locals) != 1 || locals[0] != l1 {
		t.Errorf("OnLocal saw %d snapshots, want the local one once", len(locals))
	}
	if got := testutil.ToFloat64(m.merges); got != 4 {
		t.Errorf("causeway_model_merges_total = %v, want 4", got)
	}

	// A failing source ends Run with its error.
	src <- nil
	if err := <-done; err == nil || err.Error() != "source broke" {
		t.Fatalf("Run: %v, want the source's error", err)
	}
	stop()
}

func TestMergerStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := NewMerger(MergerOptions{Local: make(chanSource)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx, func(*model.Snapshot) { t.Error("emitted without a local snapshot") }) }()
	m.SetRoutes(nil)
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if _, err := NewMerger(MergerOptions{}); err == nil || !strings.Contains(err.Error(), "MergerOptions.Local: required") {
		t.Fatalf("NewMerger without a source: %v", err)
	}
}

func TestNewFederationRefuses(t *testing.T) {
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
	west := spiffeid.RequireTrustDomainFromString("west.local")
	good := func() FederationOptions {
		return FederationOptions{Cluster: "east", TrustDomain: td, SVID: svid, Bundles: set,
			Peers: []FederationPeer{{Cluster: "west", TrustDomain: west, Address: "127.0.0.1:1", BundleURL: "https://127.0.0.1:2/"}}}
	}
	tests := []struct {
		name   string
		mutate func(*FederationOptions)
		want   string
	}{
		{"no cluster", func(o *FederationOptions) { o.Cluster = "" }, "FederationOptions.Cluster: required"},
		{"no trust plane", func(o *FederationOptions) { o.SVID = nil }, "run with --mtls"},
		{"itself", func(o *FederationOptions) { o.Peers[0].Cluster = "east" }, `Peers[0].Cluster (--peer): "east" is this cluster`},
		{"twice", func(o *FederationOptions) { o.Peers = append(o.Peers, o.Peers[0]) }, `Peers[1].Cluster (--peer): peer "west" is named twice`},
		{"no bundle endpoint", func(o *FederationOptions) { o.Peers[0].BundleURL = "" }, "Peers[0].BundleURL (--peer): required for peer \"west\""},
		{"two bundle endpoints for one trust domain", func(o *FederationOptions) {
			o.Peers = append(o.Peers, FederationPeer{Cluster: "north", TrustDomain: west, BundleURL: "https://127.0.0.1:3/"})
		}, "one bundle endpoint per trust domain"},
		{"bootstrap of another trust domain", func(o *FederationOptions) {
			o.Peers[0].Bootstrap = spiffebundle.FromX509Authorities(td, auth.X509Bundle().X509Authorities())
		}, "Peers[0].Bootstrap (--peer): is a bundle of trust domain east.local"},
		{"negative staleness", func(o *FederationOptions) { o.Staleness = -time.Second }, "Staleness: -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.mutate(&o)
			if _, err := NewFederation(o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewFederation: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("a peer of the same trust domain needs no bundle endpoint; no listener, no exporter", func(t *testing.T) {
		o := good()
		o.Peers[0].TrustDomain, o.Peers[0].BundleURL = td, ""
		f, err := NewFederation(o)
		if err != nil {
			t.Fatal(err)
		}
		if f.Addr() != "" || len(f.fetchers) != 0 || len(f.imports) != 1 {
			t.Fatalf("federation %+v: want an importer only", f)
		}
		f.Update(localSnap()) // no exporter: nothing happens
	})
}

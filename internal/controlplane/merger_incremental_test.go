package controlplane

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/internal/merge"
	"github.com/causewaymesh/causeway/internal/model"
)

// TestMergerIncremental: through the Merger, a change of one imported
// service gives the model a merge from scratch gives, with every other
// service the previous model's by identity (VIPs included); equal imports
// in new slices emit nothing; an invalid local model is rejected and
// counted, and the next valid one served.
func TestMergerIncremental(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := make(chanSource)
	m, err := NewMerger(MergerOptions{Local: src, Cluster: "east"})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *model.Snapshot, 16)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
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
	mkEP := func(cluster, addr string) model.Endpoint {
		return model.Endpoint{Address: addr, Cluster: cluster, Weight: 1, Ready: true, Ports: []model.EndpointPort{{Name: "http", Port: 8080}}}
	}
	var lsv, isv []model.Service
	for i := range 20 {
		name := fmt.Sprintf("svc-%02d", i)
		lsv = append(lsv, model.Service{Namespace: "shop", Name: name, Exported: true, Ports: port,
			Endpoints: []model.Endpoint{mkEP("east", fmt.Sprintf("10.0.0.%d", i+1))}})
		isv = append(isv, model.Service{Namespace: "shop", Name: name, Ports: port,
			Endpoints: []model.Endpoint{mkEP("west", fmt.Sprintf("10.1.0.%d", i+1))}})
	}
	local := localSnap(lsv...)
	m.SetImports(&federation.Imports{Services: isv})
	src <- local
	s1 := next("the first merge")

	// One imported service changes (new slices for it only).
	isv2 := slices.Clone(isv)
	isv2[7].Endpoints = []model.Endpoint{mkEP("west", "10.1.9.9")}
	m.SetImports(&federation.Imports{Services: isv2})
	s2 := next("the change of svc-07")
	fromScratch, _ := merge.Merge(merge.Inputs{Local: local, Imported: isv2})
	fromScratch = model.WithClustersetIPs(fromScratch, model.DefaultClustersetPrefix)
	if !s2.Equal(fromScratch) {
		t.Fatalf("incremental:\n%s\nfrom scratch:\n%s", s2, fromScratch)
	}
	for i := range s2.Services {
		if same := merge.Same(&s1.Services[i], &s2.Services[i]); same == (i == 7) {
			t.Errorf("service %d: the previous model's %t", i, same)
		}
	}

	// Equal imports in new slices: nothing; the routes that follow are
	// the next model.
	deep := slices.Clone(isv2)
	for i := range deep {
		deep[i].Endpoints = slices.Clone(deep[i].Endpoints)
	}
	m.SetImports(&federation.Imports{Services: deep})
	m.SetRoutes([]model.RouteTable{{Parent: model.RouteParent{Kind: model.ParentService, Namespace: "shop", Name: "svc-00", Port: 80, Protocol: "HTTP"}}})
	if s3 := next("the routes"); len(s3.Routes) != 1 {
		t.Fatalf("after equal imports and routes:\n%s\nwant the routes (and no no-op push before them)", s3)
	}

	// An invalid local model is not served; the next valid one is.
	bad := edit(local, 3, func(sv *model.Service) { sv.Endpoints[0].Address = "10.0.0" })
	src <- bad
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for testutil.ToFloat64(m.invalid) != 1 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the invalid local model was never rejected")
		}
	}
	good := edit(local, 3, func(sv *model.Service) { sv.Endpoints[0].Address = "10.0.3.3" })
	src <- good
	s4 := next("the valid local model")
	if sv, _ := s4.Service("shop", "svc-03"); sv == nil || !slices.ContainsFunc(sv.Endpoints, func(e model.Endpoint) bool { return e.Address == "10.0.3.3" }) {
		t.Fatalf("after the invalid and the valid local model:\n%s", s4)
	}
	if got := testutil.ToFloat64(m.invalid); got != 1 {
		t.Errorf("causeway_model_merge_invalid_total = %v, want 1", got)
	}
	stop()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run: %v", err)
	}
}

package federation

import (
	"fmt"
	"slices"
	"testing"

	"github.com/causewaymesh/causeway/internal/model"
)

// importerParts: n Importers' Imports (with their memo, as Importer.merge
// publishes them), each exporting every service with 10 endpoints.
func importerParts(clusters []string, services int) []*Imports {
	var parts []*Imports
	for k, c := range clusters {
		im := &Imports{memo: &importsMemo{}}
		for i := range services {
			s := model.Service{Namespace: "shop", Name: fmt.Sprintf("svc-%04d", i), Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: "TCP"}}}
			for e := range 10 {
				s.Endpoints = append(s.Endpoints, model.Endpoint{Address: fmt.Sprintf("10.%d.%d.%d", k, i%250, e), Cluster: c})
			}
			im.Services = append(im.Services, s)
		}
		parts = append(parts, im)
	}
	return parts
}

// changed is p's next Imports as an Importer publishes it after a change
// of service i: a new Services slice sharing the other services' slices.
func changed(p *Imports, i int, addr string) *Imports {
	n := &Imports{Services: slices.Clone(p.Services), Localities: p.Localities, memo: &importsMemo{}}
	sv := &n.Services[i]
	sv.Endpoints = slices.Clone(sv.Endpoints)
	sv.Endpoints[0].Address = addr
	slices.SortFunc(sv.Endpoints, compareEndpoints)
	return n
}

// TestMergeImportsReuses: a merge after one part changed one service
// equals a merge from scratch, and shares every other service's merged
// slices with the previous merge.
func TestMergeImportsReuses(t *testing.T) {
	parts := importerParts([]string{"east", "west"}, 50)
	first := MergeImports(parts...)
	scratch := func(ps ...*Imports) *Imports {
		var plain []*Imports
		for _, p := range ps {
			plain = append(plain, &Imports{Services: p.Services, Localities: p.Localities})
		}
		return MergeImports(plain...)
	}
	for _, tc := range []struct {
		name    string
		parts   func() []*Imports
		changed int // the service that must be merged anew (-1: none)
	}{
		{"nothing changed", func() []*Imports { return parts }, -1},
		{"east changed svc-0007", func() []*Imports { return []*Imports{changed(parts[0], 7, "10.9.9.9"), parts[1]} }, 7},
		{"parts in the other order", func() []*Imports { return []*Imports{parts[1], changed(parts[0], 7, "10.9.9.9")} }, 7},
		{"west changed svc-0049", func() []*Imports { return []*Imports{parts[0], changed(parts[1], 49, "10.8.8.8")} }, 49},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := tc.parts()
			got := MergeImports(ps...)
			want := scratch(ps...)
			if !slices.EqualFunc(got.Services, want.Services, func(a, b model.Service) bool { return a.Equal(&b) }) {
				t.Fatalf("merge with reuse differs from a merge from scratch")
			}
			for i := range got.Services {
				reused := &got.Services[i].Endpoints[0] == &first.Services[i].Endpoints[0]
				if reused == (i == tc.changed) {
					t.Errorf("service %d: reused %t", i, reused)
				}
			}
			for _, p := range ps {
				if p.memo.last.Load() != got {
					t.Errorf("a part does not remember the merge")
				}
			}
			// Back to the first merge's parts for the next case.
			if MergeImports(parts...) == nil {
				t.Fatal("nil merge")
			}
		})
	}
}

// BenchmarkMergeImportsChange: 2 peers × 1,000 services × 10 endpoints,
// every service exported by both; one part changes one service per merge
// (the federation change path), so 999 services are reused.
func BenchmarkMergeImportsChange(b *testing.B) {
	parts := importerParts([]string{"east", "west"}, 1000)
	MergeImports(parts...)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		parts[0] = changed(parts[0], 500, fmt.Sprintf("10.9.%d.%d", i/250%250, i%250))
		MergeImports(parts...)
		i++
	}
}

package federation

import (
	"fmt"
	"slices"
	"testing"

	"github.com/causewaymesh/causeway/internal/model"
)

// TestBuildStateIncremental: buildState gives the state rebuildState (the
// from-scratch build) gives, through a sequence of snapshots, and keeps
// the entries of the services that did not change.
func TestBuildStateIncremental(t *testing.T) {
	cfg := &ServerConfig{Cluster: "east", ChangeLogLength: 100}
	mk := func(names ...string) *model.Snapshot {
		s := &model.Snapshot{Cluster: "east"}
		for i, n := range names {
			s.Services = append(s.Services, model.Service{Namespace: "shop", Name: n, Exported: n != "private",
				Ports: []model.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}},
				Endpoints: []model.Endpoint{{Address: fmt.Sprintf("10.0.0.%d", i+1), Cluster: "east", Weight: 1, Ready: true},
					{Address: fmt.Sprintf("10.1.0.%d", i+1), Cluster: "west", Weight: 1}}})
		}
		return s
	}
	base := mk("a", "b", "c", "private")
	// with is base with service i's first endpoint at addr (a new slice).
	with := func(s *model.Snapshot, i int, addr string) *model.Snapshot {
		c := *s
		c.Services = slices.Clone(s.Services)
		c.Services[i].Endpoints = slices.Clone(c.Services[i].Endpoints)
		c.Services[i].Endpoints[0].Address = addr
		return &c
	}
	steps := []struct {
		name    string
		snap    *model.Snapshot
		changed []string // nil: no new revision
	}{
		{"first", base, []string{"a", "b", "c"}},
		{"same slices", with(base, 0, base.Services[0].Endpoints[0].Address), nil}, // equal content in a new slice
		{"b changes", with(base, 1, "10.9.9.9"), []string{"b"}},
		{"unchanged again", with(base, 1, "10.9.9.9"), nil},
		{"a peer endpoint only changes: nothing exported changes", func() *model.Snapshot {
			c := with(base, 1, "10.9.9.9")
			c.Services[2].Endpoints = slices.Clone(c.Services[2].Endpoints)
			c.Services[2].Endpoints[1].Address = "10.1.9.9"
			return c
		}(), nil},
		{"d added, a removed", mk("b", "c", "d", "private"), []string{"a", "b", "c", "d"}},
		{"c removed (d moves to another address)", mk("b", "d", "private"), []string{"c", "d"}},
		{"not canonical: the first of a name", func() *model.Snapshot {
			s := mk("b", "d", "private")
			s.Services = append(s.Services, s.Services[0])
			s.Services[3].Endpoints = nil
			return s
		}(), nil},
	}
	old := &exportState{services: map[NamespacedName]*exportEntry{}, next: make(chan struct{})}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got := buildState(old, st.snap, cfg)
			want := rebuildState(old, st.snap, cfg)
			if (got == old) != (want == old) {
				t.Fatalf("new revision: %t, rebuild: %t", got != old, want != old)
			}
			if !slices.Equal(got.names, want.names) || len(got.services) != len(want.services) {
				t.Fatalf("names %v, want %v", got.names, want.names)
			}
			for n, e := range want.services {
				if g := got.services[n]; g == nil || !g.svc.Equal(e.svc) {
					t.Fatalf("service %s: %+v, want %+v", n, g, e)
				}
				if o := old.services[n]; o != nil && o.svc.Equal(e.svc) && got.services[n] != o {
					t.Errorf("service %s: unchanged but built anew", n)
				}
			}
			var changed []string
			if got != old {
				for _, n := range got.log[len(got.log)-1].names {
					changed = append(changed, n.Name)
				}
				if w := want.log[len(want.log)-1].names; !slices.Equal(got.log[len(got.log)-1].names, w) {
					t.Fatalf("changed %v, rebuild %v", changed, w)
				}
			}
			if !slices.Equal(changed, st.changed) {
				t.Fatalf("changed %v, want %v", changed, st.changed)
			}
			old = got
		})
	}
}

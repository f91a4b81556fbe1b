package merge

import (
	"fmt"
	"slices"
	"testing"

	"github.com/causewaymesh/causeway/internal/model"
)

// TestUpdate: Update(prev, in) gives exactly Merge(in) (snapshot and
// conflicts, in order) while reusing prev's merged services whose inputs
// did not change, and redoing the others.
func TestUpdate(t *testing.T) {
	cart := svc("cart", true, http80, ep("east", "10.0.0.1", 8080))
	web := svc("web", true, http80, ep("east", "10.0.0.2", 8080))
	cartW := svc("cart", false, http80, ep("west", "10.1.0.1", 8080))
	webW := svc("web", false, http80, ep("west", "10.1.0.2", 8080))
	// A port conflict (9090 named http) and an endpoint claiming east.
	webBad := svc("web", false, []model.ServicePort{{Name: "http", Port: 90, Protocol: model.TCP}},
		ep("east", "10.1.0.9", 8080), ep("west", "10.1.0.2", 8080))
	apiW := svc("api", false, http8080, ep("west", "10.1.0.3", 8080))
	cartW2 := svc("cart", false, http80, ep("west", "10.1.0.7", 8080))
	l := local(cart, web)
	routes := []model.RouteTable{table(model.ParentService, "web", 80, "web")}

	type step struct {
		name  string
		in    Inputs
		fresh []string // merged services that must not be prev's (others that were merged must be)
	}
	steps := []step{
		{name: "first", in: Inputs{Local: l, Imported: []model.Service{cartW, webBad}}, fresh: []string{"cart", "web"}},
		{name: "same inputs in new slices", in: Inputs{Local: l, Imported: []model.Service{cartW, webBad}}},
		{name: "equal but not the same slices", in: Inputs{Local: l, Imported: []model.Service{
			svc("cart", false, http80, ep("west", "10.1.0.1", 8080)), webBad}}},
		{name: "cart's import changes; web's conflicts are kept", in: Inputs{Local: l, Imported: []model.Service{cartW2, webBad}}, fresh: []string{"cart"}},
		{name: "web's import fixed", in: Inputs{Local: l, Imported: []model.Service{cartW2, webW}}, fresh: []string{"web"}},
		{name: "an imported-only service added", in: Inputs{Local: l, Imported: []model.Service{apiW, cartW2, webW}}, fresh: []string{"api"}},
		{name: "routes change", in: Inputs{Local: l, Imported: []model.Service{apiW, cartW2, webW}, Routes: routes}},
		{name: "local web changes", in: Inputs{Local: local(cart, svc("web", true, http80, ep("east", "10.0.0.3", 8080))),
			Imported: []model.Service{apiW, cartW2, webW}}, fresh: []string{"web"}},
		{name: "duplicate imports (normalised)", in: Inputs{Local: l, Imported: []model.Service{webW, cartW2, apiW, webBad}}, fresh: []string{"web"}},
		{name: "cart no longer imported", in: Inputs{Local: l, Imported: []model.Service{apiW, webW}}},
		{name: "another cluster: nothing reused", in: Inputs{Local: func() *model.Snapshot { s := *l; s.Cluster = "north"; return &s }(),
			Imported: []model.Service{apiW, webW}}, fresh: []string{"web"}}, // api: the import's own slices either way
		{name: "nothing imported", in: Inputs{Local: l}},
		{name: "imports again after none", in: Inputs{Local: l, Imported: []model.Service{cartW}}, fresh: []string{"cart"}},
	}
	var prev *Result
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			wantS, wantC := Merge(st.in)
			got := Update(prev, st.in)
			if !got.Snapshot.Equal(wantS) {
				t.Fatalf("Update:\n%s\nMerge:\n%s", got.Snapshot, wantS)
			}
			if !slices.Equal(got.Conflicts, wantC) {
				t.Fatalf("conflicts:\n%v\nwant\n%v", got.Conflicts, wantC)
			}
			if err := got.Snapshot.Validate(); err != nil {
				t.Fatal(err)
			}
			if prev != nil {
				for i := range got.Snapshot.Services {
					sv := &got.Snapshot.Services[i]
					p, ok := prev.Snapshot.Service(sv.Namespace, sv.Name)
					if !sv.Imported || !ok {
						continue
					}
					if fresh := slices.Contains(st.fresh, sv.Name); fresh == Same(p, sv) {
						t.Errorf("service %s: reused %t, want %t", sv.Name, !fresh, fresh)
					}
				}
			}
			prev = got
		})
	}
}

// TestSame: identity of slices and scalars.
func TestSame(t *testing.T) {
	a := svc("cart", true, http80, ep("east", "10.0.0.1", 8080))
	b := a
	c := a
	c.Endpoints = slices.Clone(a.Endpoints)
	d := a
	d.ClustersetIP = "240.240.0.1"
	for _, tc := range []struct {
		name string
		x, y *model.Service
		want bool
	}{
		{"copy of the struct", &a, &b, true},
		{"equal endpoints in another slice", &a, &c, false},
		{"another VIP", &a, &d, false},
		{"empty slices", &model.Service{Name: "x"}, &model.Service{Name: "x", Ports: []model.ServicePort{}}, true},
	} {
		if got := Same(tc.x, tc.y); got != tc.want {
			t.Errorf("%s: Same = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// BenchmarkUpdate: BenchmarkMerge's inputs, one imported service changing
// per merge (the federation change path): Update reuses the other 999.
func BenchmarkUpdate(b *testing.B) {
	in := benchInputs()
	prev := Update(nil, in)
	alt := slices.Clone(in.Imported)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		next := in
		next.Imported = slices.Clone(in.Imported)
		if i%2 == 0 {
			sv := &alt[500]
			sv.Endpoints = slices.Clone(sv.Endpoints)
			sv.Endpoints[0].Weight = uint32(2 + i%7)
			next.Imported[500] = *sv
		}
		prev = Update(prev, next)
		i++
	}
}

func benchInputs() Inputs {
	var ls, imp []model.Service
	for i := range 1000 {
		var le, ie []model.Endpoint
		for j := range 10 {
			le = append(le, ep("east", fmt.Sprintf("10.0.%d.%d", i%250, j), 8080))
			ie = append(ie, ep("west", fmt.Sprintf("10.1.%d.%d", i%250, j), 8080))
		}
		ls = append(ls, svc(fmt.Sprintf("l%04d", i), true, http80, le...))
		name := fmt.Sprintf("l%04d", i)
		if i%2 == 1 {
			name = fmt.Sprintf("r%04d", i)
		}
		imp = append(imp, svc(name, false, http80, ie...))
	}
	in := Inputs{Local: local(ls...), Imported: imp}
	slices.SortFunc(in.Imported, func(a, b model.Service) int { return compareServiceNames(&a, &b) })
	return in
}

package controlplane

import (
	"fmt"
	"slices"
	"testing"

	"github.com/causewaymesh/causeway/internal/model"
)

func checkSnap(n int) *model.Snapshot {
	s := &model.Snapshot{Cluster: "east", TrustDomain: "east.local", Namespaces: []string{"shop"}}
	for i := range n {
		s.Services = append(s.Services, model.Service{Namespace: "shop", Name: fmt.Sprintf("svc-%02d", i), Exported: i%2 == 0,
			Ports: []model.ServicePort{{Name: "http", Port: 80, Protocol: model.TCP}},
			Endpoints: []model.Endpoint{{Address: fmt.Sprintf("10.0.0.%d", i+1), Cluster: "east", Weight: 1, Ready: true,
				Ports: []model.EndpointPort{{Name: "http", Port: 8080}}}}})
	}
	return s
}

// edit is a copy of s (sharing the services' slices) with f applied to
// service i (its endpoints copied first).
func edit(s *model.Snapshot, i int, f func(*model.Service)) *model.Snapshot {
	c := *s
	c.Services = slices.Clone(s.Services)
	if i >= 0 {
		sv := &c.Services[i]
		sv.Endpoints = slices.Clone(sv.Endpoints)
		f(sv)
	}
	return &c
}

// TestValidateChanged: with a valid last model, s.ValidateChanged(last) is
// s.Validate(): nil, or the very same error.
func TestValidateChanged(t *testing.T) {
	last := checkSnap(5)
	if err := last.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		s     *model.Snapshot
		last  *model.Snapshot
		wrong bool
	}{
		{name: "unchanged", s: edit(last, -1, nil), last: last},
		{name: "one endpoint changed, valid", s: edit(last, 2, func(sv *model.Service) { sv.Endpoints[0].Address = "10.9.9.9" }), last: last},
		{name: "one endpoint changed, invalid", s: edit(last, 2, func(sv *model.Service) { sv.Endpoints[0].Address = "10.9.9" }), last: last, wrong: true},
		{name: "a changed service's weight 0", s: edit(last, 4, func(sv *model.Service) { sv.Endpoints[0].Weight = 0 }), last: last, wrong: true},
		{name: "out of order", s: func() *model.Snapshot {
			c := edit(last, -1, nil)
			c.Services[1], c.Services[3] = c.Services[3], c.Services[1]
			return c
		}(), last: last, wrong: true},
		{name: "bad trust domain", s: func() *model.Snapshot { c := edit(last, -1, nil); c.TrustDomain = "East"; return c }(), last: last, wrong: true},
		{name: "no last: everything", s: edit(last, 0, func(sv *model.Service) { sv.Endpoints[0].Cluster = "" }), wrong: true},
		{name: "a new service, invalid", s: func() *model.Snapshot {
			c := edit(last, -1, nil)
			c.Services = append(c.Services, model.Service{Namespace: "shop", Name: "zz", ClusterIP: "not-an-ip"})
			return c
		}(), last: last, wrong: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, want := tc.s.ValidateChanged(tc.last), tc.s.Validate()
			if (want != nil) != tc.wrong {
				t.Fatalf("test case: Validate() = %v", want)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("ValidateChanged = %v\nValidate        = %v", got, want)
			}
		})
	}
}

// TestEqualWithSharedSlices: Snapshot.Equal, which stops at endpoints the
// two models share (an incremental merge's unchanged services), still
// tells every change, and equal copies, apart.
func TestEqualWithSharedSlices(t *testing.T) {
	last := checkSnap(4)
	deep := edit(last, -1, nil)
	for i := range deep.Services {
		deep.Services[i].Endpoints = slices.Clone(deep.Services[i].Endpoints)
	}
	for _, tc := range []struct {
		name string
		a, b *model.Snapshot
		want bool
	}{
		{"same services", last, edit(last, -1, nil), true},
		{"equal services in new slices", last, deep, true},
		{"an endpoint changed", last, edit(last, 1, func(sv *model.Service) { sv.Endpoints[0].Ready = false }), false},
		{"a VIP assigned", last, edit(last, 1, func(sv *model.Service) { sv.ClustersetIP = "240.240.0.9" }), false},
		{"a service less", last, func() *model.Snapshot { c := edit(last, -1, nil); c.Services = c.Services[1:]; return c }(), false},
		{"routes", last, func() *model.Snapshot {
			c := edit(last, -1, nil)
			c.Routes = []model.RouteTable{{Parent: model.RouteParent{Kind: model.ParentService, Namespace: "shop", Name: "svc-00", Port: 80}}}
			return c
		}(), false},
		{"nil and one", nil, last, false},
		{"nil and nil", nil, nil, true},
	} {
		if got := tc.a.Equal(tc.b); got != tc.want {
			t.Errorf("%s: Equal = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// TestWithClustersetIPs: the reuse gives model.WithClustersetIPs' VIPs,
// through a sequence of merges.
func TestWithClustersetIPs(t *testing.T) {
	s0 := checkSnap(6)
	steps := []*model.Snapshot{
		s0,
		edit(s0, 2, func(sv *model.Service) { sv.Endpoints[0].Ready = false }),                     // VIP inputs unchanged: reused
		edit(s0, 1, func(sv *model.Service) { sv.Imported = true }),                                // one more needs a VIP
		edit(s0, 3, func(sv *model.Service) { sv.ClustersetIP = "240.240.1.1" }),                   // given by the source
		func() *model.Snapshot { c := edit(s0, -1, nil); c.Services = c.Services[:5]; return c }(), // one less
		func() *model.Snapshot { // nothing needs one
			c := edit(s0, -1, nil)
			for i := range c.Services {
				c.Services[i].Exported = false
			}
			return c
		}(),
		func() *model.Snapshot { // again nothing
			c := edit(s0, -1, nil)
			for i := range c.Services {
				c.Services[i].Exported = false
			}
			return c
		}(),
		s0,
	}
	var prevIn, prevOut *model.Snapshot
	for i, s := range steps {
		got := withClustersetIPs(s, prevIn, prevOut)
		want := model.WithClustersetIPs(s, model.DefaultClustersetPrefix)
		if !got.Equal(want) {
			t.Fatalf("step %d:\n%s\nwant\n%s", i, got, want)
		}
		prevIn, prevOut = s, got
	}
}

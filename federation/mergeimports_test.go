package federation

import (
	"fmt"
	"slices"
	"testing"

	"github.com/causewaymesh/causeway/internal/model"
)

func TestMergeImports(t *testing.T) {
	svc := func(ns, name, cluster string, port uint32, addrs ...string) model.Service {
		s := model.Service{Namespace: ns, Name: name, Ports: []model.ServicePort{{Name: "http", Port: port, Protocol: "TCP"}}}
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, model.Endpoint{Address: a, Cluster: cluster})
		}
		return s
	}
	west := &Imports{Services: []model.Service{svc("shop", "cart", "west", 8080, "10.2.0.1"), svc("shop", "pay", "west", 9090, "10.2.1.1")},
		Localities: []LocalitySummary{{Service: NamespacedName{"shop", "cart"}, Cluster: "west"}}}
	east := &Imports{Services: []model.Service{svc("shop", "cart", "east", 8081, "10.1.0.1"), svc("ads", "banner", "east", 80, "10.1.2.1")},
		Localities: []LocalitySummary{{Service: NamespacedName{"ads", "banner"}, Cluster: "east"}, {Service: NamespacedName{"shop", "cart"}, Cluster: "east"}}}

	if got := MergeImports(); len(got.Services) != 0 {
		t.Fatalf("no parts: %+v", got)
	}
	if got := MergeImports(nil, west, &Imports{}); got != west {
		t.Fatalf("one non-empty part is returned as it is")
	}
	got := MergeImports(west, east)
	var names []string
	for _, s := range got.Services {
		names = append(names, s.Namespace+"/"+s.Name)
	}
	if !slices.Equal(names, []string{"ads/banner", "shop/cart", "shop/pay"}) {
		t.Fatalf("services %v", names)
	}
	cart := got.Services[1]
	if len(cart.Ports) != 2 || cart.Ports[0].Port != 8080 || cart.Ports[1].Port != 8081 ||
		len(cart.Endpoints) != 2 || cart.Endpoints[0].Cluster != "east" || cart.Endpoints[1].Cluster != "west" {
		t.Fatalf("cart: %+v", cart)
	}
	var locs []string
	for _, l := range got.Localities {
		locs = append(locs, l.Service.String()+"@"+l.Cluster)
	}
	if !slices.Equal(locs, []string{"ads/banner@east", "shop/cart@east", "shop/cart@west"}) {
		t.Fatalf("localities %v", locs)
	}
	if len(west.Services[0].Endpoints) != 1 || len(west.Services[0].Ports) != 1 {
		t.Fatal("MergeImports modified a part")
	}
}

// BenchmarkMergeImports: 3 peers × 1,000 services × 10 endpoints, every
// service exported by all three (the worst case: every group merges).
func BenchmarkMergeImports(b *testing.B) {
	var parts []*Imports
	for _, c := range []string{"east", "north", "west"} {
		im := &Imports{}
		for i := range 1000 {
			s := model.Service{Namespace: "shop", Name: fmt.Sprintf("svc-%04d", i), Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: "TCP"}}}
			for e := range 10 {
				s.Endpoints = append(s.Endpoints, model.Endpoint{Address: fmt.Sprintf("10.0.%d.%d", i%250, e), Cluster: c})
			}
			im.Services = append(im.Services, s)
		}
		parts = append(parts, im)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = MergeImports(parts...)
	}
}

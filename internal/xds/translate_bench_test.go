package xds

import (
	"fmt"
	"testing"

	"github.com/causewaymesh/causeway/internal/model"
)

// BenchmarkTranslate: 1,000 services × 10 endpoints in 3 zones, one node.
func BenchmarkTranslate(b *testing.B) {
	s := &model.Snapshot{Cluster: "east"}
	zones := []model.Locality{{Region: "r1", Zone: "z1"}, {Region: "r1", Zone: "z2"}, {Region: "r2", Zone: "z1"}}
	for i := range 1000 {
		sv := model.Service{Namespace: "ns", Name: fmt.Sprintf("svc-%04d", i), Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.TCP}}}
		for j := range 10 {
			sv.Endpoints = append(sv.Endpoints, model.Endpoint{Address: fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j), Ports: []model.EndpointPort{{Name: "http", Port: 8080}},
				Cluster: "east", Locality: zones[j%3], Ready: true, Weight: 1})
		}
		s.Services = append(s.Services, sv)
	}
	s.Canonicalize()
	n := Node{ID: "n", Namespace: "ns", Cluster: "east", Locality: zones[0]}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Translate(s, n, TranslateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

package xds

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/causewaymesh/causeway/internal/model"
)

func benchModel(services, eps int) *model.Snapshot {
	s := &model.Snapshot{Cluster: "east"}
	zones := []model.Locality{{Region: "r1", Zone: "z1"}, {Region: "r1", Zone: "z2"}, {Region: "r2", Zone: "z1"}}
	for i := range services {
		sv := model.Service{Namespace: "ns", Name: fmt.Sprintf("svc-%04d", i), Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.TCP}}}
		for j := range eps {
			sv.Endpoints = append(sv.Endpoints, model.Endpoint{Address: fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j), Ports: []model.EndpointPort{{Name: "http", Port: 8080}},
				Cluster: "east", Locality: zones[j%3], Ready: true, Weight: 1})
		}
		s.Services = append(s.Services, sv)
	}
	s.Canonicalize()
	return s
}

// edit returns a copy of s with f applied to a copy of service i (its
// endpoints copied too), leaving s alone.
func edit(s *model.Snapshot, i int, f func(*model.Service)) *model.Snapshot {
	n := *s
	n.Services = slices.Clone(s.Services)
	n.Services[i].Endpoints = slices.Clone(n.Services[i].Endpoints)
	n.Services[i].Ports = slices.Clone(n.Services[i].Ports)
	f(&n.Services[i])
	n.Canonicalize()
	return &n
}

func resourcesEqual(t *testing.T, step string, got, want Resources) {
	t.Helper()
	for i, pair := range [][2][]types.Resource{{got.Listeners, want.Listeners}, {got.Routes, want.Routes}, {got.Clusters, want.Clusters}, {got.Endpoints, want.Endpoints}} {
		if len(pair[0]) != len(pair[1]) {
			t.Errorf("%s: type %d: %d resources, Translate has %d", step, i, len(pair[0]), len(pair[1]))
			continue
		}
		for j := range pair[0] {
			if !proto.Equal(pair[0][j], pair[1][j]) {
				t.Errorf("%s: type %d resource %d (%s) differs from Translate's", step, i, j, resourceName(pair[1][j]))
			}
		}
	}
}

// TestTranslatorMatchesTranslate: through a sequence of model changes the
// memoizing Translator produces what Translate does, and reuses the
// messages of what did not change.
func TestTranslatorMatchesTranslate(t *testing.T) {
	s0 := benchModel(20, 3)
	steps := []struct {
		name string
		next func(*model.Snapshot) *model.Snapshot
		// reused: the cluster, route and listener messages are the last
		// step's (only assignments were rebuilt).
		reused bool
	}{
		{"first", func(s *model.Snapshot) *model.Snapshot { return s }, false},
		{"same model again", func(s *model.Snapshot) *model.Snapshot { return s }, true},
		{"one endpoint moves", func(s *model.Snapshot) *model.Snapshot {
			return edit(s, 3, func(sv *model.Service) { sv.Endpoints[0].Address = "10.9.9.9" })
		}, true},
		{"one endpoint not ready", func(s *model.Snapshot) *model.Snapshot {
			return edit(s, 5, func(sv *model.Service) { sv.Endpoints[1].Ready = false })
		}, true},
		{"a port is added", func(s *model.Snapshot) *model.Snapshot {
			return edit(s, 7, func(sv *model.Service) {
				sv.Ports = append(sv.Ports, model.ServicePort{Name: "grpc", Port: 9090, Protocol: model.TCP})
				for i := range sv.Endpoints {
					sv.Endpoints[i].Ports = append(slices.Clone(sv.Endpoints[i].Ports), model.EndpointPort{Name: "grpc", Port: 9090})
				}
			})
		}, false},
		{"exported", func(s *model.Snapshot) *model.Snapshot {
			return edit(s, 2, func(sv *model.Service) { sv.Exported = true })
		}, false},
		{"a service goes", func(s *model.Snapshot) *model.Snapshot {
			n := *s
			n.Services = slices.Delete(slices.Clone(s.Services), 0, 1)
			return &n
		}, false},
	}
	nodes := []Node{
		{ID: "a", Namespace: "ns", Cluster: "east", Locality: model.Locality{Region: "r1", Zone: "z1"}},
		{ID: "b", Namespace: "other", Cluster: "east", Locality: model.Locality{Region: "r2", Zone: "z1"}},
		{ID: "g", Namespace: "ns", Cluster: "east", Locality: model.Locality{Region: "r1", Zone: "z2"}, Proxyless: true},
	}
	for _, n := range nodes {
		t.Run(n.ID, func(t *testing.T) {
			tr := NewTranslator(TranslateOptions{})
			s := s0
			var last Resources
			for _, st := range steps {
				s = st.next(s)
				got, err := tr.Translate(s, n)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				want, err := Translate(s, n, TranslateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				resourcesEqual(t, st.name, got, want)
				if st.reused {
					for _, pair := range [][2][]types.Resource{{got.Clusters, last.Clusters}, {got.Routes, last.Routes}, {got.Listeners, last.Listeners}} {
						if !slices.Equal(pair[0], pair[1]) {
							t.Errorf("%s: clusters, routes or listeners were rebuilt", st.name)
						}
					}
				}
				last = got
			}
		})
	}
}

// BenchmarkTranslatorOneChange: the bench model, one endpoint of one
// service changed per iteration (the control plane's steady state).
func BenchmarkTranslatorOneChange(b *testing.B) {
	s := benchModel(1000, 10)
	n := Node{ID: "n", Namespace: "ns", Cluster: "east", Locality: model.Locality{Region: "r1", Zone: "z1"}}
	tr := NewTranslator(TranslateOptions{})
	if _, err := tr.Translate(s, n); err != nil {
		b.Fatal(err)
	}
	snaps := make([]*model.Snapshot, 16)
	for i := range snaps {
		snaps[i] = edit(s, i*61%1000, func(sv *model.Service) { sv.Endpoints[0].Address = fmt.Sprintf("10.200.0.%d", i) })
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := tr.Translate(snaps[i%len(snaps)], n); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPublishOneChange: Server.Publish of the Translator's output
// for the bench model with one endpoint changed (what is marshalled and
// compared per change and per class).
func BenchmarkPublishOneChange(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := NewServer(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	s := benchModel(1000, 10)
	n := Node{ID: "n", Namespace: "ns", Cluster: "east", Locality: model.Locality{Region: "r1", Zone: "z1"}}
	tr := NewTranslator(TranslateOptions{})
	rs := make([]Resources, 16)
	for i := range rs {
		snap := edit(s, i*61%1000, func(sv *model.Service) { sv.Endpoints[0].Address = fmt.Sprintf("10.200.0.%d", i) })
		if rs[i], err = tr.Translate(snap, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := srv.Publish(ctx, "k", rs[i%len(rs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

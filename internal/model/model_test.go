package model

import (
	"errors"
	"strings"
	"testing"
)

func valid() *Snapshot {
	s := &Snapshot{Cluster: "east", Network: "n1", TrustDomain: "east.local", Namespaces: []string{"shop", "a"},
		Services: []Service{
			{Namespace: "shop", Name: "web", Ports: []ServicePort{{Name: "b", Port: 9090, Protocol: TCP}, {Name: "a", Port: 80, Protocol: TCP}},
				Endpoints: []Endpoint{
					{Address: "10.0.0.2", Cluster: "east", Weight: 1, Ready: true},
					{Address: "10.0.0.1", Cluster: "east", Weight: 1, Identity: SPIFFEID("east.local", "shop", "web")},
				}},
			{Namespace: "a", Name: "api", Ports: []ServicePort{{Port: 8080, Protocol: TCP}}},
		}}
	s.Canonicalize()
	return s
}

func TestCanonicalEqualString(t *testing.T) {
	a, b := valid(), valid()
	if !a.Equal(b) || a.String() != b.String() {
		t.Fatal("two canonical copies of the same truth differ")
	}
	if a.Services[0].Name != "api" || a.Services[1].Ports[0].Port != 80 || a.Services[1].Endpoints[0].Address != "10.0.0.1" {
		t.Fatalf("not sorted:\n%s", a)
	}
	b.Services[1].Endpoints[0].Ready = true
	if a.Equal(b) {
		t.Fatal("a readiness change is not a change")
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Service("shop", "web"); !ok {
		t.Fatal("Service lookup failed")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Snapshot)
		want   string
	}{
		{"no cluster", func(s *Snapshot) { s.Cluster = "" }, "snapshot: cluster"},
		{"port 0", func(s *Snapshot) { s.Services[1].Ports[0].Port = 0 }, `service shop/web: ports[0].port: "0": must be 1-65535`},
		{"bad address", func(s *Snapshot) { s.Services[1].Endpoints[0].Address = "nope" }, `service shop/web: endpoints[0].address: "nope"`},
		{"zero weight", func(s *Snapshot) { s.Services[1].Endpoints[1].Weight = 0 }, "endpoints[1].weight"},
		{"unnamed port of two", func(s *Snapshot) { s.Services[1].Ports[1].Name = "" }, "ports[1].name"},
		{"unsorted", func(s *Snapshot) { s.Services[0], s.Services[1] = s.Services[1], s.Services[0] }, "call Canonicalize"},
		{"bad name", func(s *Snapshot) { s.Services[0].Name = "Api" }, "service a/Api: name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.mutate(s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("%v is not a *FieldError", err)
			}
		})
	}
}

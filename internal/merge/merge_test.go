package merge

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/causewaymesh/causeway/internal/model"
)

func ep(cluster, addr string, port uint32) model.Endpoint {
	return model.Endpoint{Address: addr, Cluster: cluster, Ready: true, Serving: true, Weight: 1,
		Ports:    []model.EndpointPort{{Name: "http", Port: port}},
		Identity: "spiffe://" + cluster + ".local/ns/shop/sa/cart"}
}

// imp marks a service as having peers' endpoints merged in.
func imp(s model.Service) model.Service {
	s.Imported = true
	return s
}

func svc(name string, exported bool, ports []model.ServicePort, eps ...model.Endpoint) model.Service {
	return model.Service{Namespace: "shop", Name: name, Exported: exported, Ports: ports, Endpoints: eps}
}

var (
	http80   = []model.ServicePort{{Name: "http", Port: 80, Protocol: model.TCP}}
	http8080 = []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.TCP}}
)

func local(svcs ...model.Service) *model.Snapshot {
	s := &model.Snapshot{Cluster: "east", Network: "n1", TrustDomain: "east.local", Namespaces: []string{"shop"}, Services: svcs,
		Policies: []model.AuthorizationPolicy{{Namespace: "shop", Name: "allow", Action: model.AuthzAllow}}}
	s.Canonicalize()
	return s
}

func table(kind model.ParentKind, name string, port uint32, host string) model.RouteTable {
	return model.RouteTable{Parent: model.RouteParent{Kind: kind, Namespace: "shop", Name: name, Port: port, Protocol: "HTTP"},
		VirtualHosts: []model.VirtualHost{{Hostname: host}}}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name      string
		in        Inputs
		want      *model.Snapshot // nil: the local snapshot itself
		conflicts []string        // substrings, one per conflict, in order
	}{
		{
			name: "nothing to add: the local snapshot",
			in:   Inputs{Local: local(svc("cart", true, http80, ep("east", "10.0.0.1", 8080)))},
		},
		{
			name: "imported only: a service with Imported (no ServiceExport here) and the peer's endpoints",
			in: Inputs{Local: local(svc("web", false, http80)),
				Imported: []model.Service{svc("cart", false, http8080, ep("west", "10.1.0.1", 8080))}},
			want: local(imp(svc("cart", false, http8080, ep("west", "10.1.0.1", 8080))), svc("web", false, http80)),
		},
		{
			name: "same name: local and imported endpoints together, canonical order (cluster first)",
			in: Inputs{Local: local(svc("cart", true, http80, ep("east", "10.0.0.2", 8080), ep("east", "10.0.0.1", 8080))),
				Imported: []model.Service{svc("cart", false, http80, ep("alpha", "10.2.0.1", 9090), ep("west", "10.1.0.1", 8080))}},
			want: local(imp(svc("cart", true, http80, ep("alpha", "10.2.0.1", 9090), ep("east", "10.0.0.1", 8080),
				ep("east", "10.0.0.2", 8080), ep("west", "10.1.0.1", 8080)))),
		},
		{
			name: "a local service not exported here but exported by a peer answers as clusterset",
			in: Inputs{Local: local(svc("cart", false, http80, ep("east", "10.0.0.1", 8080))),
				Imported: []model.Service{svc("cart", false, http80, ep("west", "10.1.0.1", 8080))}},
			want: local(imp(svc("cart", false, http80, ep("east", "10.0.0.1", 8080), ep("west", "10.1.0.1", 8080)))),
		},
		{
			name: "an import with no endpoints still makes the clusterset name",
			in: Inputs{Local: local(svc("cart", false, http80, ep("east", "10.0.0.1", 8080))),
				Imported: []model.Service{svc("cart", false, http80)}},
			want: local(imp(svc("cart", false, http80, ep("east", "10.0.0.1", 8080)))),
		},
		{
			name: "port of the same name, other number: this cluster's wins",
			in: Inputs{Local: local(svc("cart", true, http80, ep("east", "10.0.0.1", 8080))),
				Imported: []model.Service{svc("cart", false, http8080, ep("west", "10.1.0.1", 8080))}},
			want:      local(imp(svc("cart", true, http80, ep("east", "10.0.0.1", 8080), ep("west", "10.1.0.1", 8080)))),
			conflicts: []string{`service shop/cart: ports["http"]: imported as 8080/TCP but defined as 80/TCP`},
		},
		{
			name: "a new named port is added",
			in: Inputs{Local: local(svc("cart", true, http80)),
				Imported: []model.Service{svc("cart", false, []model.ServicePort{{Name: "grpc", Port: 9090, Protocol: model.TCP, AppProtocol: "grpc"}, http80[0]})}},
			want: local(imp(svc("cart", true, []model.ServicePort{http80[0], {Name: "grpc", Port: 9090, Protocol: model.TCP, AppProtocol: "grpc"}}))),
		},
		{
			name: "an unnamed imported port cannot join named ones",
			in: Inputs{Local: local(svc("cart", true, http80)),
				Imported: []model.Service{svc("cart", false, []model.ServicePort{{Port: 9090, Protocol: model.TCP}})}},
			want:      local(imp(svc("cart", true, http80))),
			conflicts: []string{`ports[""]: imported port 9090/TCP cannot be added: a service with several ports needs every port named`},
		},
		{
			name: "a named imported port cannot join a local unnamed one",
			in: Inputs{Local: local(svc("cart", true, []model.ServicePort{{Port: 80, Protocol: model.TCP}})),
				Imported: []model.Service{svc("cart", false, http8080)}},
			want:      local(imp(svc("cart", true, []model.ServicePort{{Port: 80, Protocol: model.TCP}}))),
			conflicts: []string{`ports["http"]: imported port 8080/TCP cannot be added`},
		},
		{
			name: "an imported port on a number taken by another name",
			in: Inputs{Local: local(svc("cart", true, http80)),
				Imported: []model.Service{svc("cart", false, []model.ServicePort{{Name: "web", Port: 80, Protocol: model.TCP}})}},
			want:      local(imp(svc("cart", true, http80))),
			conflicts: []string{`ports["web"]: imported port 80/TCP is already port "http" here`},
		},
		{
			name: "imported only, two peers disagree on a port: the lowest wins",
			in: Inputs{Local: local(),
				Imported: []model.Service{svc("cart", false, []model.ServicePort{http80[0], http8080[0]}, ep("north", "10.3.0.1", 80), ep("west", "10.1.0.1", 8080))}},
			want:      local(imp(svc("cart", false, http80, ep("north", "10.3.0.1", 80), ep("west", "10.1.0.1", 8080)))),
			conflicts: []string{`ports["http"]: imported as 8080/TCP but defined as 80/TCP`},
		},
		{
			name: "an imported endpoint that claims this cluster is left out",
			in: Inputs{Local: local(),
				Imported: []model.Service{svc("cart", false, http80, ep("east", "10.9.0.1", 80), ep("west", "10.1.0.1", 8080))}},
			want:      local(imp(svc("cart", false, http80, ep("west", "10.1.0.1", 8080)))),
			conflicts: []string{`service shop/cart: endpoints[10.9.0.1]: imported endpoint claims cluster "east"`},
		},
		{
			name: "imports out of order and twice are normalised",
			in: Inputs{Local: local(),
				Imported: []model.Service{svc("web", false, http80), svc("cart", false, http80, ep("west", "10.1.0.1", 80)), svc("cart", false, http8080)}},
			want:      local(imp(svc("cart", false, http80, ep("west", "10.1.0.1", 80))), imp(svc("web", false, http80))),
			conflicts: []string{"service shop/cart: imports: imported twice"},
		},
		{
			name: "the controller's routes join the local ones; a parent in both takes the controller's",
			in: func() Inputs {
				l := local(svc("cart", true, http80))
				l.Routes = []model.RouteTable{table(model.ParentGateway, "gw", 80, "from-source"), table(model.ParentService, "cart", 80, "from-source")}
				l.Canonicalize()
				return Inputs{Local: l, Routes: []model.RouteTable{table(model.ParentServiceImport, "cart", 80, "ctrl"), table(model.ParentService, "cart", 80, "ctrl")}}
			}(),
			want: func() *model.Snapshot {
				l := local(svc("cart", true, http80))
				l.Routes = []model.RouteTable{table(model.ParentGateway, "gw", 80, "from-source"), table(model.ParentService, "cart", 80, "ctrl"), table(model.ParentServiceImport, "cart", 80, "ctrl")}
				l.Canonicalize()
				return l
			}(),
			conflicts: []string{"route table Service shop/cart port 80: parent: defined by the discovery source and by the Gateway API controller"},
		},
		{
			name: "routes only from the controller, unsorted",
			in: Inputs{Local: local(svc("cart", true, http80)),
				Routes: []model.RouteTable{table(model.ParentServiceImport, "cart", 80, "ctrl"), table(model.ParentGateway, "gw", 443, "ctrl")}},
			want: func() *model.Snapshot {
				l := local(svc("cart", true, http80))
				l.Routes = []model.RouteTable{table(model.ParentGateway, "gw", 443, "ctrl"), table(model.ParentServiceImport, "cart", 80, "ctrl")}
				return l
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := inputsString(tt.in)
			got, conflicts := Merge(tt.in)
			if inputsString(tt.in) != before {
				t.Fatalf("Merge modified its inputs:\nbefore\n%s\nafter\n%s", before, inputsString(tt.in))
			}
			want := tt.want
			if want == nil {
				want = tt.in.Local
			}
			if !got.Equal(want) || got.String() != want.String() {
				t.Errorf("merged:\n%s\nwant:\n%s", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("the merge does not validate: %v\n%s", err, got)
			}
			canon := deepCopy(got)
			canon.Canonicalize()
			if !canon.Equal(got) || canon.String() != got.String() {
				t.Errorf("the merge is not canonical:\n%s\ncanonical:\n%s", got, canon)
			}
			again, _ := Merge(tt.in)
			if !again.Equal(got) {
				t.Error("merging the same inputs twice gives different snapshots")
			}
			if len(conflicts) != len(tt.conflicts) {
				t.Fatalf("conflicts %q, want %d like %q", conflicts, len(tt.conflicts), tt.conflicts)
			}
			for i, c := range conflicts {
				if !strings.Contains(c.Error(), tt.conflicts[i]) {
					t.Errorf("conflict %d: %q, want it to contain %q", i, c.Error(), tt.conflicts[i])
				}
			}
			if got.Policies == nil || got.TrustDomain != "east.local" || got.Network != "n1" {
				t.Errorf("the local snapshot's other fields were not carried over: %s", got)
			}
		})
	}
}

// TestMergeShares: what merge does not change is the input's slice, so the
// translator's shortcuts (same backing array) keep working.
func TestMergeShares(t *testing.T) {
	l := local(svc("cart", true, http80, ep("east", "10.0.0.1", 8080)), svc("web", true, http80, ep("east", "10.0.0.2", 8080)))
	imp := []model.Service{svc("api", false, http80, ep("west", "10.1.0.1", 80)), svc("web", false, http80)}
	got, _ := Merge(Inputs{Local: l, Imported: imp})
	if &got.Services[0].Endpoints[0] != &imp[0].Endpoints[0] {
		t.Error("an imported-only service's endpoints were copied")
	}
	if &got.Services[1].Endpoints[0] != &l.Services[0].Endpoints[0] {
		t.Error("an untouched local service's endpoints were copied")
	}
	if &got.Services[2].Endpoints[0] != &l.Services[1].Endpoints[0] {
		t.Error("a local service whose import adds no endpoint had its endpoints copied")
	}
	if none, _ := Merge(Inputs{Local: l}); &none.Services[0] != &l.Services[0] {
		t.Error("with nothing imported the services were copied")
	}
}

func inputsString(in Inputs) string {
	s := in.Local.String()
	tmp := model.Snapshot{Cluster: "imports", Services: in.Imported, Routes: in.Routes}
	return s + tmp.String()
}

func deepCopy(s *model.Snapshot) *model.Snapshot {
	c := *s
	c.Namespaces = slices.Clone(s.Namespaces)
	c.Routes = slices.Clone(s.Routes)
	c.Policies = slices.Clone(s.Policies)
	c.Services = slices.Clone(s.Services)
	for i := range c.Services {
		sv := &c.Services[i]
		sv.Ports = slices.Clone(sv.Ports)
		sv.Endpoints = slices.Clone(sv.Endpoints)
		for j := range sv.Endpoints {
			sv.Endpoints[j].Ports = slices.Clone(sv.Endpoints[j].Ports)
		}
	}
	return &c
}

// BenchmarkMerge: 1,000 local services (10 endpoints each) with 1,000
// imported (half of them sharing a local name, 10 endpoints each).
func BenchmarkMerge(b *testing.B) {
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
	b.ReportAllocs()
	for b.Loop() {
		Merge(in)
	}
}

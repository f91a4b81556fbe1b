package mcs_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/federation/mcs"
	"github.com/causewaymesh/causeway/internal/model"
)

func port(name string, n uint32, proto model.Protocol) model.ServicePort {
	return model.ServicePort{Name: name, Port: n, Protocol: proto}
}

func localSnap(svcs ...model.Service) *model.Snapshot {
	return &model.Snapshot{Cluster: "east", Network: "net1", TrustDomain: "east.local", Namespaces: []string{"shop"}, Services: svcs}
}

func svc(name string, exported bool, ports ...model.ServicePort) model.Service {
	return model.Service{Namespace: "shop", Name: name, Exported: exported, Ports: ports,
		Endpoints: []model.Endpoint{{Address: "10.0.0.1", Cluster: "east", Ports: endpointPorts(ports), Ready: true, Weight: 1}}}
}

func endpointPorts(ps []model.ServicePort) []model.EndpointPort {
	var out []model.EndpointPort
	for _, p := range ps {
		out = append(out, model.EndpointPort{Name: p.Name, Port: p.Port + 8000})
	}
	return out
}

// peerSvc is name as peers export it: one endpoint per peer.
func peerSvc(name string, peers []string, ports ...model.ServicePort) model.Service {
	sv := model.Service{Namespace: "shop", Name: name, Ports: ports}
	for i, p := range peers {
		sv.Endpoints = append(sv.Endpoints, model.Endpoint{Address: fmt.Sprintf("10.9.0.%d", i+1), Cluster: p, Ports: endpointPorts(ports), Ready: true, Weight: 1})
	}
	return sv
}

func TestCompute(t *testing.T) {
	http80 := port("http", 80, model.TCP)
	for _, tc := range []struct {
		name    string
		local   *model.Snapshot
		imports *federation.Imports
		// want: per ServiceImport "ns/name clusters ports"; conflicts: per
		// export, fields and substrings of the message.
		imports_     []string
		conflicts    map[string][]string
		noExportOf   []string
		wantMessages []string
	}{
		{name: "local export only", local: localSnap(svc("cart", true, http80), svc("db", false, port("", 5432, model.TCP))),
			imports_: []string{"shop/cart [east] [http:80/TCP]"}, conflicts: map[string][]string{"shop/cart": nil}},
		{name: "same definition everywhere", local: localSnap(svc("cart", true, http80)),
			imports:  &federation.Imports{Services: []model.Service{peerSvc("cart", []string{"west"}, http80)}},
			imports_: []string{"shop/cart [east west] [http:80/TCP]"}, conflicts: map[string][]string{"shop/cart": nil}},
		{name: "port number differs", local: localSnap(svc("cart", true, http80)),
			imports:      &federation.Imports{Services: []model.Service{peerSvc("cart", []string{"west"}, port("http", 8080, model.TCP))}},
			imports_:     []string{"shop/cart [east west] [http:80/TCP]"},
			conflicts:    map[string][]string{"shop/cart": {`ports["http"]`}},
			wantMessages: []string{`service shop/cart ports["http"]: port is 80 in east but 8080 in west; east (this cluster) wins here`}},
		{name: "protocol differs", local: localSnap(svc("dns", true, port("dns", 53, model.UDP))),
			imports:      &federation.Imports{Services: []model.Service{peerSvc("dns", []string{"north", "west"}, port("dns", 53, model.TCP))}},
			imports_:     []string{"shop/dns [east north west] [dns:53/UDP]"},
			conflicts:    map[string][]string{"shop/dns": {`ports["dns"]`}},
			wantMessages: []string{"protocol is UDP in east but TCP in north, west"}},
		{name: "new named port is added, no conflict", local: localSnap(svc("cart", true, http80)),
			imports:  &federation.Imports{Services: []model.Service{peerSvc("cart", []string{"west"}, http80, port("grpc", 9090, model.TCP))}},
			imports_: []string{"shop/cart [east west] [http:80/TCP grpc:9090/TCP]"}, conflicts: map[string][]string{"shop/cart": nil}},
		{name: "same number other name", local: localSnap(svc("cart", true, http80)),
			imports:      &federation.Imports{Services: []model.Service{peerSvc("cart", []string{"west"}, port("web", 80, model.TCP))}},
			imports_:     []string{"shop/cart [east west] [http:80/TCP]"},
			conflicts:    map[string][]string{"shop/cart": {`ports["web"]`}},
			wantMessages: []string{`port 80/TCP is named "http" in east but "web" in west`}},
		{name: "imported only, local not exported", local: localSnap(svc("db", false, port("", 5432, model.TCP))),
			imports: &federation.Imports{Services: []model.Service{peerSvc("db", []string{"west"}, port("", 5433, model.TCP)), peerSvc("pay", []string{"north", "west"}, http80),
				{Namespace: "zzz-not-here", Name: "x", Ports: []model.ServicePort{http80}}}},
			imports_:   []string{"shop/db [west] [:5432/TCP]", "shop/pay [north west] [http:80/TCP]"},
			noExportOf: []string{"shop/db", "shop/pay"}},
		{name: "peer behind a gateway", local: localSnap(),
			imports: &federation.Imports{Services: []model.Service{peerSvc("pay", nil, http80)},
				Localities: []federation.LocalitySummary{{Service: federation.NamespacedName{Namespace: "shop", Name: "pay"}, Cluster: "south"}}},
			imports_: []string{"shop/pay [south] [http:80/TCP]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mcs.Compute("east", tc.local, tc.imports)
			var got []string
			for _, im := range d.Imports {
				var ps []string
				for _, p := range im.Ports {
					ps = append(ps, fmt.Sprintf("%s:%d/%s", p.Name, p.Port, p.Protocol))
				}
				got = append(got, fmt.Sprintf("%s %v %v", im.Service, im.Clusters, ps))
				if !strings.HasPrefix(im.IP, "240.240.") {
					t.Errorf("ServiceImport %s: IP %q, want one in 240.240.0.0/16 (model.DefaultClustersetPrefix)", im.Service, im.IP)
				}
			}
			if diff := cmp.Diff(tc.imports_, got); diff != "" {
				t.Errorf("ServiceImports (-want +got):\n%s", diff)
			}
			gotConf := map[string][]string{}
			var msgs []string
			for _, e := range d.Exports {
				var fields []string
				for _, c := range e.Conflicts {
					fields = append(fields, c.Field)
					msgs = append(msgs, c.Message)
					if c.Reason != mcsv1alpha1.ServiceExportReasonPortConflict {
						t.Errorf("%s %s: reason %s, want PortConflict", e.Service, c.Field, c.Reason)
					}
				}
				gotConf[e.Service.String()] = fields
			}
			if tc.conflicts == nil {
				tc.conflicts = map[string][]string{}
			}
			if diff := cmp.Diff(tc.conflicts, gotConf); diff != "" {
				t.Errorf("exports and their conflicts (-want +got):\n%s", diff)
			}
			all := strings.Join(msgs, "\n")
			for _, m := range tc.wantMessages {
				if !strings.Contains(all, m) {
					t.Errorf("conflict messages %q: want one containing %q", all, m)
				}
			}
			for _, n := range tc.noExportOf {
				ns, name, _ := strings.Cut(n, "/")
				if _, ok := d.Export(mcs.Name{Namespace: ns, Name: name}); ok {
					t.Errorf("Export(%s): found, want none (not exported here)", n)
				}
			}
		})
	}
}

// TestComputeVIPMatchesModel: the ServiceImport's VIP is the one the
// served model carries (model.WithClustersetIPs over the merge).
func TestComputeVIPMatchesModel(t *testing.T) {
	local := localSnap(svc("cart", true, port("http", 80, model.TCP)))
	want := model.WithClustersetIPs(local, model.DefaultClustersetPrefix).Services[0].ClustersetIP
	d := mcs.Compute("east", local, nil)
	if len(d.Imports) != 1 || d.Imports[0].IP != want {
		t.Fatalf("Compute: imports %+v, want shop/cart with IP %s", d.Imports, want)
	}
	if local.Services[0].ClustersetIP != "" {
		t.Fatal("Compute modified its input")
	}
}

func TestExportConditions(t *testing.T) {
	n := mcs.Name{Namespace: "shop", Name: "cart"}
	cond := func(cs []metav1.Condition) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Type+"="+string(c.Status)+"/"+c.Reason)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name string
		e    *mcs.Export
		ok   bool
		want string
	}{
		{"no service", nil, false, "Valid=False/NoService Ready=False/Failed Conflict=False/NoConflicts"},
		{"exported", &mcs.Export{Service: n, IP: "240.240.0.9", Clusters: []string{"east"}}, true, "Valid=True/Valid Ready=True/Exported Conflict=False/NoConflicts"},
		{"conflict", &mcs.Export{Service: n, Clusters: []string{"east", "west"}, Conflicts: []mcs.Conflict{
			{Reason: mcsv1alpha1.ServiceExportReasonPortConflict, Field: `ports["a"]`, Message: "a"},
			{Reason: mcsv1alpha1.ServiceExportReasonPortConflict, Field: `ports["b"]`, Message: "b"}}}, true,
			"Valid=True/Valid Ready=True/Exported Conflict=True/PortConflict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cond(mcs.ExportConditions("east", n, tc.e, tc.ok)); got != tc.want {
				t.Errorf("ExportConditions: %s, want %s", got, tc.want)
			}
		})
	}
}

// BenchmarkCompute: 1000 exported services, half of them also imported
// from two peers, ten with a port conflict.
func BenchmarkCompute(b *testing.B) {
	var locals, imported []model.Service
	for i := range 1000 {
		name := fmt.Sprintf("svc-%04d", i)
		locals = append(locals, svc(name, true, port("http", 80, model.TCP)))
		if i%2 == 0 {
			p := uint32(80)
			if i%100 == 0 {
				p = 8080
			}
			imported = append(imported, peerSvc(name, []string{"north", "west"}, port("http", p, model.TCP)))
		}
	}
	local := localSnap(locals...)
	im := &federation.Imports{Services: imported}
	b.ReportAllocs()
	for b.Loop() {
		d := mcs.Compute("east", local, im)
		if len(d.Imports) != 1000 {
			b.Fatal(len(d.Imports))
		}
	}
}

package up

import (
	"strings"
	"testing"
)

func TestTopologyValidate(t *testing.T) {
	good := func() Topology {
		return Topology{Clusters: []ClusterSpec{{Name: "a", Region: "r", Zones: []string{"z1"}}, {Name: "b", Region: "r", Zones: []string{"z2"}}},
			Services: []ServiceSpec{{Name: "echo", Export: true, Replicas: map[string]int{"b/z2": 1}}},
			Client:   Placement{Cluster: "a", Zone: "z1"}}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Topology)
		want string // "" for valid
	}{
		{"valid", func(*Topology) {}, ""},
		{"no clusters", func(t *Topology) { t.Clusters = nil }, "clusters: 0 given"},
		{"duplicate cluster", func(t *Topology) { t.Clusters[1].Name = "a" }, `"a": given twice`},
		{"zone in two clusters", func(t *Topology) { t.Clusters[1].Zones = []string{"z1"} }, "already a zone of a"},
		{"replicas in a zone of another cluster", func(t *Topology) { t.Services[0].Replicas = map[string]int{"a/z2": 1} }, `replicas["a/z2"]`},
		{"client zone", func(t *Topology) { t.Client.Zone = "z2" }, "client: cluster \"a\" zone \"z2\""},
		{"service named client", func(t *Topology) { t.Services[0].Name = "client" }, "other than \"client\""},
		{"no region", func(t *Topology) { t.Clusters[0].Region = "" }, "(a).region: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := good()
			tc.mod(&top)
			err := top.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPlanAddresses(t *testing.T) {
	top, err := LoadTopology("../../examples/three-clusters/federation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pods := plan(top, DefaultBlock)
	seen := map[string]bool{}
	var clients int
	for _, p := range pods {
		for _, ip := range []string{p.IP, p.OutboundIP} {
			if seen[ip] {
				t.Errorf("%s/%s: address %s given twice", p.Cluster, p.Name, ip)
			}
			seen[ip] = true
		}
		if p.Service == "client" {
			clients++
			if p.Where() != "east/region-1a" {
				t.Errorf("client in %s, want east/region-1a", p.Where())
			}
		}
	}
	if len(pods) != 10 || clients != 1 {
		t.Errorf("%d pods with %d clients, want 10 with 1", len(pods), clients)
	}
	if got := exportedEndpoints(top, pods); got["east"] != 3 || got["west"] != 3 || got["south"] != 2 {
		t.Errorf("exported endpoints %v, want east 3, west 3, south 2", got)
	}
	east, _ := top.cluster("east")
	files := folderYAML(top, east, pods)
	if _, ok := files["svc-cart.yaml"]; ok {
		t.Error("east's folder has cart, which east does not run")
	}
	if !strings.Contains(files["svc-checkout.yaml"], "kind: ServiceExport") || strings.Contains(files["svc-profile.yaml"], "ServiceExport") {
		t.Error("ServiceExports: want checkout's, not profile's")
	}
}

package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/proxy/lb"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
)

// TestLocalitiesBehindOneGateway: a peer on another network advertises
// two localities behind its east-west gateway, so the caller's model has
// two endpoints with the gateway's address (as federation's importer makes
// them). The model validates, the clusterset cluster originates mTLS with
// the gateway's per-port SNI and pins the identities, its load assignment
// has one locality per peer locality with the healthy weight, the proxy
// accepts it and its load balancer holds one host per locality.
func TestLocalitiesBehindOneGateway(t *testing.T) {
	const gw, westID = "10.9.0.1", "spiffe://west.local/ns/shop/sa/checkout"
	gwEndpoint := func(zone string, weight uint32) model.Endpoint {
		return model.Endpoint{Address: gw, Ports: []model.EndpointPort{{Name: "http", Port: 15443}}, Cluster: "west", Network: "net-west",
			Locality: model.Locality{Region: "r1", Zone: zone}, Identity: westID, Ready: true, Serving: true, Weight: weight,
			Workload: "EastWestGateway west locality=r1/" + zone + " sni=checkout.shop.svc.clusterset.local"}
	}
	s := &model.Snapshot{Cluster: "east", Network: "net-east", TrustDomain: "east.local", Services: []model.Service{{
		Namespace: "shop", Name: "checkout", Exported: true,
		Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.TCP}},
		Endpoints: []model.Endpoint{
			{Address: "10.0.0.1", Ports: []model.EndpointPort{{Name: "http", Port: 8080}}, Cluster: "east", Network: "net-east",
				Locality: model.Locality{Region: "r1", Zone: "z1"}, Identity: "spiffe://east.local/ns/shop/sa/checkout", Ready: true, Serving: true, Weight: 1},
			gwEndpoint("z2", 2), gwEndpoint("z3", 1),
		},
	}}}
	s.Canonicalize()
	if err := s.Validate(); err != nil {
		t.Fatalf("the model refuses two localities behind one gateway: %v", err)
	}
	n := Node{ID: "client.shop", Namespace: "shop", Cluster: "east", Network: "net-east", Locality: model.Locality{Region: "r1", Zone: "z1"}}
	res, err := Translate(s, n, TranslateOptions{MTLS: &MTLS{Bundles: testBundles(t)}})
	if err != nil {
		t.Fatal(err)
	}
	const name = "checkout.shop.svc.clusterset.local:8080"
	var cla *endpointv3.ClusterLoadAssignment
	for _, r := range res.Endpoints {
		if c := r.(*endpointv3.ClusterLoadAssignment); c.GetClusterName() == name {
			cla = c
		}
	}
	for _, r := range res.Clusters {
		c := r.(*clusterv3.Cluster)
		if c.GetName() != name {
			continue
		}
		pc, err := xdsclient.TranslateCluster(c)
		if err != nil {
			t.Fatal(err)
		}
		if pc.TLS == nil || pc.TLS.SNI != "8080.checkout.shop.svc.clusterset.local" {
			t.Errorf("clusterset cluster TLS %+v, want mTLS with the gateway's per-port SNI", pc.TLS)
		}
	}
	if cla == nil {
		t.Fatalf("no load assignment %s", name)
	}
	la, err := xdsclient.TranslateLoadAssignment(cla)
	if err != nil {
		t.Fatalf("the proxy refuses the load assignment: %v", err)
	}
	if len(la.Localities) != 3 {
		t.Fatalf("%d localities, want 3 (east/z1, west/z2, west/z3): %+v", len(la.Localities), la.Localities)
	}
	c := lb.NewCluster(nil, la, lb.Options{ManualSweep: true})
	defer c.Close()
	st := c.Status()
	var behind []lb.HostStatus
	for _, h := range st.Hosts {
		if h.Address == gw+":15443" {
			behind = append(behind, h)
		}
	}
	if len(behind) != 2 || behind[0].Locality.Zone == behind[1].Locality.Zone || behind[0].Weight+behind[1].Weight != 3 {
		t.Errorf("hosts behind the gateway %+v, want one per locality (z2 weight 2, z3 weight 1)", behind)
	}
}

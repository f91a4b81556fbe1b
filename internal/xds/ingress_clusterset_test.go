package xds

import (
	"slices"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/causewaymesh/causeway/internal/model"
)

// TestTranslateIngressServiceImportBackend: a Gateway route's
// ServiceImport backend of a port the sidecar translation does not build
// (TLS passthrough) gets the clusterset assignment of a sidecar: every
// exporting cluster's endpoints, this cluster's only when it exports the
// service (MCS), not every endpoint of the model.
func TestTranslateIngressServiceImportBackend(t *testing.T) {
	ep := func(addr, cluster string) model.Endpoint {
		return model.Endpoint{Address: addr, Cluster: cluster, Network: "net", Ready: true, Serving: true, Weight: 1,
			Locality: model.Locality{Region: "r1", Zone: "z1"}, Ports: []model.EndpointPort{{Name: "p", Port: 8443}}}
	}
	backend := model.Backend{Kind: model.BackendServiceImport, Namespace: "web", Name: "db", Port: 443, Weight: 1}
	n := Node{ID: "ing", Namespace: "causeway-system", Cluster: "east", Network: "net", Locality: model.Locality{Region: "r1", Zone: "z1"}, Gateways: "*"}
	for _, tc := range []struct {
		name     string
		exported bool
		want     []string
	}{
		{"imported only: the peer's endpoints", false, []string{"10.1.0.1"}},
		{"exported here too: both clusters'", true, []string{"10.0.0.1", "10.1.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &model.Snapshot{Cluster: "east", Network: "net", Namespaces: []string{"web"},
				Services: []model.Service{{Namespace: "web", Name: "db", Imported: true, Exported: tc.exported,
					Ports:     []model.ServicePort{{Name: "p", Port: 443, Protocol: model.TCP, AppProtocol: "tls"}},
					Endpoints: []model.Endpoint{ep("10.0.0.1", "east"), ep("10.1.0.1", "west")}}},
				Routes: []model.RouteTable{{
					Parent: model.RouteParent{Kind: model.ParentGateway, Namespace: "web", Name: "gw", Listener: "tls", Port: 8443, Protocol: "TLS"},
					TLS:    []model.TLSRoute{{Namespace: "web", Name: "t", Hostnames: []string{"db.example.com"}, Backends: []model.Backend{backend}}},
				}},
			}
			res, err := Translate(s, n, TranslateOptions{Ingress: &IngressOptions{Address: func(string, string) string { return "127.50.0.1" }}})
			if err != nil {
				t.Fatal(err)
			}
			name := ClustersetName("web", "db", 443)
			var got []string
			found := false
			for _, r := range res.Endpoints {
				cla := r.(*endpointv3.ClusterLoadAssignment)
				if cla.GetClusterName() != name {
					continue
				}
				found = true
				for _, l := range cla.GetEndpoints() {
					for _, e := range l.GetLbEndpoints() {
						got = append(got, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
					}
				}
			}
			slices.Sort(got)
			if !found || !slices.Equal(got, tc.want) {
				t.Errorf("%s: endpoints %v (found %t), want %v", name, got, found, tc.want)
			}
		})
	}
}

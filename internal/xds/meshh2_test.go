package xds

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
)

// TestSidecarToSidecarIsHTTP2: an HTTP/1.1 service whose endpoints have
// sidecars (mTLS to their identities) is reached over HTTP/2 with ALPN h2,
// multiplexed between the two proxies; without mTLS the caller speaks the
// application's HTTP/1.1 to it directly.
func TestSidecarToSidecarIsHTTP2(t *testing.T) {
	s := &model.Snapshot{Cluster: "east", Network: "net-east", TrustDomain: "east.local", Services: []model.Service{{
		Namespace: "shop", Name: "cart",
		Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.TCP}},
		Endpoints: []model.Endpoint{{Address: "10.0.0.1", Ports: []model.EndpointPort{{Name: "http", Port: 8080}}, Cluster: "east", Network: "net-east",
			Locality: model.Locality{Region: "r1", Zone: "z1"}, Identity: "spiffe://east.local/ns/shop/sa/cart", Ready: true, Serving: true, Weight: 1}},
	}}}
	s.Canonicalize()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	n := Node{ID: "client.shop", Namespace: "shop", Cluster: "east", Network: "net-east", Locality: model.Locality{Region: "r1", Zone: "z1"}}
	for _, tc := range []struct {
		name     string
		opts     TranslateOptions
		protocol config.Protocol
		alpn     []string
	}{
		{"mTLS to a sidecar", TranslateOptions{MTLS: &MTLS{Bundles: testBundles(t)}}, config.HTTP2, []string{"h2"}},
		{"plaintext to the application", TranslateOptions{}, config.HTTP1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Translate(s, n, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, r := range res.Clusters {
				c := r.(*clusterv3.Cluster)
				if c.GetName() != ClusterName("shop", "cart", 8080) {
					continue
				}
				found = true
				pc, err := xdsclient.TranslateCluster(c)
				if err != nil {
					t.Fatal(err)
				}
				if pc.Protocol != tc.protocol {
					t.Errorf("cluster %s: protocol %v, want %v", c.GetName(), pc.Protocol, tc.protocol)
				}
				var alpn []string
				if pc.TLS != nil {
					alpn = pc.TLS.ALPN
				}
				if !slices.Equal(alpn, tc.alpn) {
					t.Errorf("cluster %s: ALPN %q, want %q", c.GetName(), alpn, tc.alpn)
				}
			}
			if !found {
				t.Fatal("no cluster for shop/cart:8080")
			}
		})
	}
}

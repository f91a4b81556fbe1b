package xds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
)

func TestParseIngressNode(t *testing.T) {
	md := func(kv ...string) *corev3.Node {
		n := &corev3.Node{Id: "ing", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{}}}
		for i := 0; i+1 < len(kv); i += 2 {
			n.Metadata.Fields[kv[i]] = structpb.NewStringValue(kv[i+1])
		}
		return n
	}
	for _, tc := range []struct {
		name    string
		node    *corev3.Node
		want    string
		wantErr string
	}{
		{"not an ingress", md("role", "sidecar"), "", ""},
		{"every gateway", md("role", "ingress", "gateways", "*"), "*", ""},
		{"sorted and distinct", md("role", "ingress", "gateways", "b/gw, a/gw,b/gw"), "a/gw,b/gw", ""},
		{"missing list", md("role", "ingress"), "", `node.metadata["gateways"] is missing`},
		{"bad entry", md("role", "ingress", "gateways", "gw"), "", `entry "gw": want namespace/name`},
		{"inbound ports", md("role", "ingress", "gateways", "*", "inbound_ports", "80=127.0.0.1:8080"), "", "an ingress has no application"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseIngressNode(tc.node)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func ingressModel() *model.Snapshot {
	ep := func(addr string, port uint32) model.Endpoint {
		return model.Endpoint{Address: addr, Cluster: "east", Network: "net", Ready: true, Serving: true, Weight: 1,
			Locality: model.Locality{Region: "r1", Zone: "z1"}, Ports: []model.EndpointPort{{Name: "p", Port: port}}}
	}
	route := func(host string, backends ...model.Backend) model.VirtualHost {
		return model.VirtualHost{Hostname: host, Routes: []model.HTTPRoute{{Namespace: "web", Name: "r", Path: "/", Backends: backends}}}
	}
	web := model.Backend{Kind: model.BackendService, Namespace: "web", Name: "web", Port: 80, Weight: 1}
	tlsBackend := model.Backend{Kind: model.BackendService, Namespace: "web", Name: "tls", Port: 443, Weight: 1}
	s := &model.Snapshot{Cluster: "east", Network: "net", Namespaces: []string{"web"},
		Services: []model.Service{
			{Namespace: "web", Name: "tls", Ports: []model.ServicePort{{Name: "p", Port: 443, Protocol: model.TCP, AppProtocol: "tls"}},
				Endpoints: []model.Endpoint{ep("10.0.0.2", 8443)}},
			{Namespace: "web", Name: "web", Ports: []model.ServicePort{{Name: "p", Port: 80, Protocol: model.TCP}},
				Endpoints: []model.Endpoint{ep("10.0.0.1", 8080)}},
		},
		Routes: []model.RouteTable{
			{Parent: model.RouteParent{Kind: model.ParentGateway, Namespace: "web", Name: "gw", Listener: "http", Port: 80, Protocol: "HTTP"},
				VirtualHosts: []model.VirtualHost{route("*", web), route("a.example.com", web)}},
			{Parent: model.RouteParent{Kind: model.ParentGateway, Namespace: "web", Name: "gw", Listener: "http-b", Port: 80, Protocol: "HTTP", Hostname: "b.example.com"},
				VirtualHosts: []model.VirtualHost{route("a.example.com", web), route("b.example.com", web)}},
			{Parent: model.RouteParent{Kind: model.ParentGateway, Namespace: "web", Name: "gw", Listener: "https", Port: 443, Protocol: "HTTPS", CertificateRefs: []string{"web/cert"}},
				VirtualHosts: []model.VirtualHost{route("*", web)}},
			{Parent: model.RouteParent{Kind: model.ParentGateway, Namespace: "web", Name: "gw", Listener: "tls", Port: 8443, Protocol: "TLS"},
				TLS: []model.TLSRoute{{Namespace: "web", Name: "t", Hostnames: []string{"tls.example.com"}, Backends: []model.Backend{tlsBackend}}}},
			{Parent: model.RouteParent{Kind: model.ParentGateway, Namespace: "other", Name: "gw2", Listener: "http", Port: 80, Protocol: "HTTP"},
				VirtualHosts: []model.VirtualHost{route("*", web)}},
		},
	}
	return s
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.com"}, DNSNames: []string{"*.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestTranslateIngress(t *testing.T) {
	cert, key := selfSigned(t)
	addrs := map[string]string{"web/gw": "127.50.0.1", "other/gw2": "127.50.0.2"}
	opts := TranslateOptions{Ingress: &IngressOptions{
		Address: func(ns, name string) string { return addrs[ns+"/"+name] },
		TLSSecret: func(ns, name string) ([]byte, []byte, bool) {
			if ns+"/"+name == "web/cert" {
				return cert, key, true
			}
			return nil, nil, false
		},
	}}
	node := Node{ID: "ing", Namespace: "causeway-system", Cluster: "east", Network: "net", Locality: model.Locality{Region: "r1", Zone: "z1"}}
	for _, tc := range []struct {
		name          string
		gateways      string
		opts          TranslateOptions
		wantListeners map[string]string // name -> address
	}{
		{"every gateway", "*", opts, map[string]string{
			"ingress/other/gw2/80": "127.50.0.2:80", "ingress/web/gw/80": "127.50.0.1:80",
			"ingress/web/gw/443": "127.50.0.1:443", "ingress/web/gw/8443": "127.50.0.1:8443"}},
		{"one gateway", "other/gw2", opts, map[string]string{"ingress/other/gw2/80": "127.50.0.2:80"}},
		{"no address yet", "*", TranslateOptions{Ingress: &IngressOptions{Address: func(ns, _ string) string {
			if ns == "other" {
				return "127.50.0.2"
			}
			return ""
		}}}, map[string]string{"ingress/other/gw2/80": "127.50.0.2:80"}},
		{"no certificate", "web/gw", TranslateOptions{Ingress: &IngressOptions{Address: opts.Ingress.Address}},
			map[string]string{"ingress/web/gw/80": "127.50.0.1:80", "ingress/web/gw/8443": "127.50.0.1:8443"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := node
			n.Gateways = tc.gateways
			res, err := Translate(ingressModel(), n, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]*config.Listener{}
			for _, r := range res.Listeners {
				l, err := xdsclient.TranslateListener(r.(*listenerv3.Listener))
				if err != nil {
					t.Fatalf("the proxy refuses listener %s: %v", r.(*listenerv3.Listener).Name, err)
				}
				got[l.Name] = l
			}
			if len(got) != len(tc.wantListeners) {
				t.Errorf("listeners %v, want %v", keys(got), tc.wantListeners)
			}
			for name, addr := range tc.wantListeners {
				if l := got[name]; l == nil || l.Address != addr {
					t.Errorf("listener %s: got %+v, want on %s", name, l, addr)
				}
			}
			for _, r := range res.Routes {
				if _, err := xdsclient.TranslateRouteConfig(r.(*routev3.RouteConfiguration)); err != nil {
					t.Errorf("the proxy refuses route configuration: %v", err)
				}
			}
			for _, r := range res.Secrets {
				if _, err := xdsclient.TranslateSecret(r.(*tlsv3.Secret)); err != nil {
					t.Errorf("the proxy refuses secret: %v", err)
				}
			}
			clusters := map[string]bool{}
			for _, r := range res.Clusters {
				if _, err := xdsclient.TranslateCluster(r.(*clusterv3.Cluster)); err != nil {
					t.Errorf("the proxy refuses cluster: %v", err)
				}
				clusters[r.(*clusterv3.Cluster).Name] = true
			}
			if !clusters[ClusterName("web", "web", 80)] {
				t.Errorf("clusters %v: want the HTTP backend's", clusters)
			}
			if l := got["ingress/web/gw/8443"]; l != nil {
				if len(l.SNI) != 1 || l.SNI[0].TCP.Cluster != ClusterName("web", "tls", 443) || !clusters[ClusterName("web", "tls", 443)] {
					t.Errorf("passthrough listener %+v: want one chain to the TLS backend's cluster (present)", l.SNI)
				}
			}
			if l := got["ingress/web/gw/443"]; l != nil && (l.TLS == nil || l.TLS.CertSecret != IngressSecretName("web", "cert")) {
				t.Errorf("HTTPS listener TLS %+v: want the certificate secret", l.TLS)
			}
			for _, r := range res.Routes {
				rc := r.(*routev3.RouteConfiguration)
				if rc.Name != "ingress/web/gw/80" {
					continue
				}
				var domains []string
				for _, vh := range rc.VirtualHosts {
					domains = append(domains, vh.Domains...)
					if vh.Domains[0] == "a.example.com" && len(vh.Routes) != 2 {
						t.Errorf("a.example.com: %d routes, want both listeners' merged", len(vh.Routes))
					}
				}
				if strings.Join(domains, ",") != "*,a.example.com,b.example.com" {
					t.Errorf("domains %v: want one virtual host per hostname", domains)
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func BenchmarkTranslateIngress(b *testing.B) {
	s := ingressModel()
	o := TranslateOptions{Ingress: &IngressOptions{Address: func(string, string) string { return "127.50.0.1" }}}
	n := Node{ID: "ing", Namespace: "causeway-system", Cluster: "east", Network: "net", Locality: model.Locality{Region: "r1", Zone: "z1"}, Gateways: "*"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TranslateIngress(s, n, o); err != nil {
			b.Fatal(err)
		}
	}
}

// A TLSRoute whose backends are all unresolved keeps its server names on
// the listener, towards a cluster that does not exist: connections are
// closed rather than refused (Gateway API).
func TestTranslateIngressUnresolvedPassthrough(t *testing.T) {
	s := ingressModel()
	s.Routes = []model.RouteTable{{
		Parent: model.RouteParent{Kind: model.ParentGateway, Namespace: "web", Name: "gw", Listener: "tls", Port: 8443, Protocol: "TLS"},
		TLS: []model.TLSRoute{{Namespace: "web", Name: "t", Hostnames: []string{"tls.example.com"},
			Backends: []model.Backend{{Kind: model.BackendService, Namespace: "web", Name: "nope", Port: 443, Weight: 1, Unresolved: "BackendNotFound"}}}},
	}}
	n := Node{ID: "ing", Namespace: "causeway-system", Cluster: "east", Network: "net", Locality: model.Locality{Region: "r1", Zone: "z1"}, Gateways: "*"}
	res, err := Translate(s, n, TranslateOptions{Ingress: &IngressOptions{Address: func(string, string) string { return "127.50.0.1" }}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners) != 1 {
		t.Fatalf("%d listeners, want 1", len(res.Listeners))
	}
	l, err := xdsclient.TranslateListener(res.Listeners[0].(*listenerv3.Listener))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.SNI) != 1 || l.SNI[0].TCP.Cluster != InvalidBackendCluster || l.SNI[0].ServerNames[0] != "tls.example.com" {
		t.Errorf("chains %+v: want tls.example.com to %s", l.SNI, InvalidBackendCluster)
	}
}

package xdsclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/causewaymesh/causeway/proxy/config"
)

const bootstrapYAML = `
node:
  id: sidecar~127.0.0.1~web-0.default~default.svc.cluster.local
  cluster: web.default
  locality: {region: r1, zone: z1}
  metadata: {namespace: default, service_account: web, cluster: east, network: n1}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}
static_resources:
  listeners:
  - name: static-http
    address: {socket_address: {address: 127.0.0.1, port_value: 15080}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: static
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: xds, timeout: 5s}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15010}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services:
    - envoy_grpc: {cluster_name: xds}
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
`

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadBootstrap(t *testing.T) {
	b, err := LoadBootstrap(writeFile(t, "bootstrap.yaml", bootstrapYAML))
	if err != nil {
		t.Fatal(err)
	}
	if b.ADSServer != "127.0.0.1:15010" || b.AdminAddress != "127.0.0.1:15000" {
		t.Fatalf("ADSServer %q AdminAddress %q", b.ADSServer, b.AdminAddress)
	}
	if b.Node.GetId() != "sidecar~127.0.0.1~web-0.default~default.svc.cluster.local" || b.Node.GetLocality().GetZone() != "z1" ||
		b.Node.GetMetadata().GetFields()["service_account"].GetStringValue() != "web" {
		t.Fatalf("node = %v", b.Node)
	}
	want := &config.Snapshot{
		Version: "static",
		Listeners: []*config.Listener{{Name: "static-http", Address: "127.0.0.1:15080", HTTP: &config.HTTPListener{
			StatPrefix: "static", GenerateRequestID: true, Routes: &config.RouteConfig{Name: "local", VirtualHosts: []*config.VirtualHost{{
				Name: "all", Domains: []string{"*"}, Routes: []*config.Route{{Match: config.RouteMatch{Path: "/", CaseSensitive: true},
					Forward: &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: "xds", Weight: 1}}, Timeout: 5 * time.Second}}}}}}}}},
		Routes: map[string]*config.RouteConfig{},
		Clusters: map[string]*config.Cluster{"xds": {Name: "xds", ConnectTimeout: time.Second, Protocol: config.HTTP2, PanicThreshold: 50, RingSize: 1024,
			Static: &config.LoadAssignment{Cluster: "xds", OverprovisioningFactor: 140, Localities: []*config.LocalityEndpoints{{
				Endpoints: []config.Endpoint{{Address: "127.0.0.1:15010"}}}}}}},
		Endpoints: map[string]*config.LoadAssignment{},
		Secrets:   map[string]*config.Secret{},
	}
	if diff := cmp.Diff(want, b.Static, cmpOpts); diff != "" {
		t.Fatalf("static (-want +got):\n%s", diff)
	}
}

func TestLoadBootstrapErrors(t *testing.T) {
	for _, tt := range []struct {
		name, body, want string
	}{
		{"not yaml", "a: [", "not YAML or JSON"},
		{"unknown field", "nodes: {}", "not an envoy.config.bootstrap.v3.Bootstrap"},
		{"json google grpc", `{"node":{"id":"n"},"dynamic_resources":{"ads_config":{"api_type":"GRPC","grpc_services":[{"google_grpc":{"target_uri":"nohost","stat_prefix":"x"}}]}}}`,
			`google_grpc.target_uri: "nohost" is not host:port`},
		{"missing ads cluster", "dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: nope}}]}}",
			`no static cluster "nope"`},
		{"bad static listener", "static_resources: {listeners: [{name: l, address: {socket_address: {address: 127.0.0.1, port_value: 1}}}]}",
			`static_resources.listeners: listener "l": filter_chains: no filter chains`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBootstrap(writeFile(t, "b.yaml", tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := LoadBootstrap(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestLoadBootstrapGoogleGRPC(t *testing.T) {
	b, err := LoadBootstrap(writeFile(t, "b.json", `{"node":{"id":"n"},"dynamic_resources":{"ads_config":{"api_type":"GRPC","grpc_services":[{"google_grpc":{"target_uri":"127.0.0.1:15010","stat_prefix":"x"}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if b.ADSServer != "127.0.0.1:15010" {
		t.Fatalf("ADSServer = %q", b.ADSServer)
	}
}

package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// The typed_config messages must be linked in for protojson to resolve
// their @type URLs.
var (
	_ = routerv3.Router{}
	_ = upstreamhttpv3.HttpProtocolOptions{}
)

// substitute fills a bootstrap template's placeholders as run.sh does.
func substitute(t *testing.T, tmpl string) string {
	t.Helper()
	out := strings.NewReplacer(
		"${STAT_PREFIX}", "bench_test",
		"${ADMIN_PORT}", "19901",
		"${LISTEN_PORT}", "18081",
		"${UPSTREAM_PORT}", "18080",
	).Replace(tmpl)
	if i := strings.Index(out, "${"); i >= 0 {
		t.Fatalf("placeholder left after substitution at %q: add it to run.sh and to this test", out[i:min(len(out), i+24)])
	}
	return out
}

func parseBootstrap(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal([]byte(substitute(t, string(raw))), &doc); err != nil {
		t.Fatalf("%s: not YAML: %v", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("%s: YAML that does not convert to JSON: %v", path, err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, bs); err != nil {
		t.Fatalf("%s: not an Envoy v3 Bootstrap: %v", path, err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("%s: Bootstrap fails Envoy's validation rules: %v", path, err)
	}
	return bs
}

func TestBootstrapsAreValidEnvoyV3(t *testing.T) {
	tests := []struct {
		file        string
		wantCluster string
		wantH2C     bool
	}{
		{file: "sidecar-http1.yaml", wantCluster: "backend", wantH2C: false},
		{file: "sidecar-h2c.yaml", wantCluster: "inbound_sidecar", wantH2C: true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			bs := parseBootstrap(t, filepath.Join("bootstrap", tc.file))

			if got := bs.GetAdmin().GetAddress().GetSocketAddress().GetPortValue(); got != 19901 {
				t.Errorf("admin port = %d, want 19901", got)
			}
			ls := bs.GetStaticResources().GetListeners()
			if len(ls) != 1 {
				t.Fatalf("%d listeners, want 1", len(ls))
			}
			checkListener(t, ls[0], tc.wantCluster)

			cs := bs.GetStaticResources().GetClusters()
			if len(cs) != 1 {
				t.Fatalf("%d clusters, want 1", len(cs))
			}
			checkCluster(t, cs[0], tc.wantCluster, tc.wantH2C)
		})
	}
}

func checkListener(t *testing.T, l *listenerv3.Listener, wantCluster string) {
	t.Helper()
	sa := l.GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 18081 {
		t.Errorf("listener address = %s:%d, want 127.0.0.1:18081", sa.GetAddress(), sa.GetPortValue())
	}
	fcs := l.GetFilterChains()
	if len(fcs) != 1 || len(fcs[0].GetFilters()) != 1 {
		t.Fatalf("want one filter chain with one filter, got %v", fcs)
	}
	f := fcs[0].GetFilters()[0]
	if f.GetName() != "envoy.filters.network.http_connection_manager" {
		t.Errorf("filter name = %q, want envoy.filters.network.http_connection_manager", f.GetName())
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatalf("typed_config is not an HttpConnectionManager: %v", err)
	}
	if hcm.GetStatPrefix() == "" {
		t.Error("stat_prefix is empty")
	}
	vhs := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhs) != 1 || len(vhs[0].GetDomains()) != 1 || vhs[0].GetDomains()[0] != "*" {
		t.Fatalf("want one virtual host with domains [\"*\"], got %v", vhs)
	}
	rs := vhs[0].GetRoutes()
	if len(rs) != 1 || rs[0].GetMatch().GetPrefix() != "/" || rs[0].GetRoute().GetCluster() != wantCluster {
		t.Errorf("want one route prefix \"/\" to cluster %q, got %v", wantCluster, rs)
	}
	hf := hcm.GetHttpFilters()
	if len(hf) != 1 || hf[0].GetName() != "envoy.filters.http.router" {
		t.Fatalf("want http_filters [envoy.filters.http.router], got %v", hf)
	}
	if err := hf[0].GetTypedConfig().UnmarshalTo(&routerv3.Router{}); err != nil {
		t.Errorf("router typed_config: %v", err)
	}
}

func checkCluster(t *testing.T, c *clusterv3.Cluster, wantName string, wantH2C bool) {
	t.Helper()
	if c.GetName() != wantName {
		t.Errorf("cluster name = %q, want %q", c.GetName(), wantName)
	}
	if c.GetType() != clusterv3.Cluster_STATIC {
		t.Errorf("cluster type = %v, want STATIC", c.GetType())
	}
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		t.Fatalf("want one locality with one endpoint, got %v", eps)
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 18080 {
		t.Errorf("endpoint = %s:%d, want 127.0.0.1:18080", sa.GetAddress(), sa.GetPortValue())
	}
	const key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	anyOpts, ok := c.GetTypedExtensionProtocolOptions()[key]
	if !wantH2C {
		if ok {
			t.Errorf("cluster %q has %s, want HTTP/1.1 (none)", c.GetName(), key)
		}
		return
	}
	if !ok {
		t.Fatalf("cluster %q lacks typed_extension_protocol_options[%s]", c.GetName(), key)
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	if err := anyOpts.UnmarshalTo(opts); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %q: explicit_http_config.http2_protocol_options not set", c.GetName())
	}
}

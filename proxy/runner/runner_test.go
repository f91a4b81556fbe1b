package runner

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/internal/xds"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type zoneBackend struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

func startBackend(t *testing.T, locality string) *zoneBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &zoneBackend{addr: lis.Addr().String(), done: make(chan struct{})}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-locality", locality)
		io.WriteString(w, locality)
	})}
	go func() { b.srv.Serve(lis); close(b.done) }()
	t.Cleanup(b.stop)
	return b
}

func (b *zoneBackend) stop() { b.srv.Close(); <-b.done }

// TestSidecarOverADSFailsOverAndReportsMetrics drives a whole proxy
// process (runner.Start, as causeway-proxy runs it) from a real
// go-control-plane ADS server over gRPC, kills the caller's zone, and
// checks with Prometheus's own text parser that the metrics tell the story.
func TestSidecarOverADSFailsOverAndReportsMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	near := []*zoneBackend{startBackend(t, "r1/z1"), startBackend(t, "r1/z1")}
	far := []*zoneBackend{startBackend(t, "r1/z2")}

	srv, err := xds.NewServer(xds.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	const node = "client.shop"
	err = srv.SetResources(ctx, node, xds.Resources{
		Listeners: []types.Resource{xds.HTTPListener("outbound", "127.0.0.1:0", false, "cart")},
		Routes: []types.Resource{xds.RouteToCluster("cart", "cart.shop", 5*time.Second,
			&xds.Retry{On: "connect-failure,gateway-error,reset", NumRetries: 3})},
		Clusters: []types.Resource{xds.EDSCluster("cart.shop", xds.ClusterOptions{
			HTTP2: false, EjectAfter: 2, BaseEjectionTime: 30 * time.Second, MaxEjectPercent: 100,
		})},
		Endpoints: []types.Resource{xds.LoadAssignment("cart.shop",
			xds.Locality{Region: "r1", Zone: "z1", Priority: 0, Cluster: "east", Addresses: []string{near[0].addr, near[1].addr}},
			xds.Locality{Region: "r1", Zone: "z2", Priority: 1, Cluster: "west", Addresses: []string{far[0].addr}},
		)},
	})
	if err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(t.TempDir(), "access.log")
	cfg := DefaultConfig()
	cfg.XDS = srv.Addr()
	cfg.Admin = "127.0.0.1:0"
	cfg.NodeID = node
	cfg.Workload, cfg.Namespace, cfg.Cluster, cfg.Locality = "client", "shop", "east", "r1/z1"
	cfg.AccessLog = logPath
	cfg.DrainTimeout = 2 * time.Second
	p, err := Start(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()

	var outbound string
	waitUntil(t, 10*time.Second, "the outbound listener from LDS", func() bool {
		if a := p.Proxy.ListenerAddr("outbound"); a != nil {
			outbound = a.String()
			return true
		}
		return false
	})
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	call := func() (string, int) {
		resp, err := hc.Get("http://" + outbound + "/items")
		if err != nil {
			t.Fatalf("request through the sidecar: %v", err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.Header.Get("x-locality"), resp.StatusCode
	}
	waitUntil(t, 10*time.Second, "EDS endpoints to arrive", func() bool {
		_, code := call()
		return code == 200
	})

	// Healthy: everything stays in the caller's zone (priority 0).
	for range 20 {
		if loc, code := call(); code != 200 || loc != "r1/z1" {
			t.Fatalf("before failover: %d from %q, want 200 from r1/z1", code, loc)
		}
	}
	// Kill the caller's zone: no request may fail, and traffic moves on.
	for _, b := range near {
		b.stop()
	}
	failed := 0
	seen := map[string]int{}
	for range 50 {
		loc, code := call()
		if code != 200 {
			failed++
		}
		seen[loc]++
	}
	if failed != 0 || seen["r1/z2"] != 50 {
		t.Fatalf("after killing r1/z1: %d failed, served by %v; want 0 failed, all from r1/z2", failed, seen)
	}

	// The metrics say so, read with Prometheus's own parser.
	fams := scrape(t, "http://"+p.Admin.Addr()+"/stats/prometheus")
	if got := sumCounter(fams["causeway_proxy_requests_total"], map[string]string{
		"direction": "outbound", "destination_service": "cart.shop", "destination_locality": "r1/z2/",
		"destination_cluster": "west", "response_code": "200", "source_workload": "client", "source_namespace": "shop",
	}); got < 50 {
		t.Errorf("requests_total to r1/z2 = %v, want >= 50", got)
	}
	if got := sumCounter(fams["causeway_proxy_outlier_ejections_total"], map[string]string{"destination_service": "cart.shop"}); got < 2 {
		t.Errorf("outlier_ejections_total = %v, want both r1/z1 endpoints ejected", got)
	}
	if got := gauge(fams["causeway_proxy_failover_level"], map[string]string{"destination_service": "cart.shop"}); got != 1 {
		t.Errorf("failover_level = %v, want 1 (traffic at priority 1)", got)
	}
	if got := sumCounter(fams["causeway_proxy_upstream_connect_failures_total"], map[string]string{"destination_cluster": "east"}); got < 1 {
		t.Errorf("upstream_connect_failures_total{destination_cluster=east} = %v, want > 0", got)
	}

	for _, typ := range []string{"type.googleapis.com/envoy.config.listener.v3.Listener", "type.googleapis.com/envoy.config.cluster.v3.Cluster",
		"type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"} {
		if got := sumCounter(fams["causeway_proxy_config_updates_total"], map[string]string{"type_url": typ}); got < 1 {
			t.Errorf("config_updates_total{type_url=%q} = %v, want the ACK counted", typ, got)
		}
	}

	// /clusters shows the ejections; /config_dump shows the xDS versions.
	var clusters []map[string]any
	getJSON(t, "http://"+p.Admin.Addr()+"/clusters", &clusters)
	if len(clusters) != 1 || clusters[0]["name"] != "cart.shop" {
		t.Fatalf("/clusters = %v", clusters)
	}
	if s, _ := json.Marshal(clusters); !strings.Contains(string(s), "ejected") {
		t.Errorf("/clusters does not mention ejection: %s", s)
	}
	resp, err := hc.Get("http://" + p.Admin.Addr() + "/ready")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/ready: %v %v", resp, err)
	}
	resp.Body.Close()

	// One JSON access-log line per request, with the upstream locality.
	p.Proxy.MarkDraining()
	if err := p.Shutdown(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("access log line is not JSON: %v: %s", err, lines[len(lines)-1])
	}
	if last["upstream_cluster"] != "cart.shop" || !strings.HasPrefix(last["upstream_locality"].(string), "r1/z2") {
		t.Errorf("last access log line %v: want upstream cart.shop in r1/z2", last)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

func matches(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func sumCounter(f *dto.MetricFamily, want map[string]string) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		if matches(m, want) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func gauge(f *dto.MetricFamily, want map[string]string) float64 {
	for _, m := range f.GetMetric() {
		if matches(m, want) {
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

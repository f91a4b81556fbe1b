package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/proxy/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves s on 127.0.0.1 until the test ends.
func start(t *testing.T, s Sources) *Server {
	t.Helper()
	srv, err := New("127.0.0.1:0", s)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after Shutdown, want nil", err)
			}
		case <-ctx.Done():
			t.Error("Serve did not return after Shutdown")
		}
	})
	return srv
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, hdr http.Header) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, srv *Server, path string) response {
	t.Helper()
	return do(t, http.MethodGet, "http://"+srv.Addr()+path, nil)
}

func TestMetricsScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	self := telemetry.Workload{Name: "frontend", Namespace: "shop", Cluster: "east", Locality: "us-east1/us-east1-b/"}
	peer := telemetry.Workload{Name: "checkout", Namespace: "pay", Cluster: "west", Locality: "us-west1/us-west1-a/"}
	m, err := telemetry.NewMetrics(reg, self)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		m.ObserveRequest(&telemetry.RequestInfo{
			Direction: telemetry.DirectionOutbound, Peer: peer, Service: "checkout.pay", Code: 200,
			GRPCStatus: "0", Protocol: telemetry.ProtocolGRPC, Duration: 20 * time.Millisecond, ReqBytes: 100, RespBytes: 1000,
		})
	}
	m.ObserveRequest(&telemetry.RequestInfo{
		Direction: telemetry.DirectionInbound, Peer: peer, Service: "inbound|8080", Code: 503,
		Protocol: telemetry.ProtocolHTTP1, Duration: 50 * time.Microsecond,
	})
	m.ConnOpened("outbound_15001", telemetry.DirectionOutbound)
	m.ConnectFailure("checkout.pay", "west", peer.Locality)
	ep := telemetry.Endpoint{Service: "checkout.pay", Address: "127.0.0.9:8080", Cluster: "west", Locality: peer.Locality}
	m.Ejected(ep, "consecutive_5xx")
	m.PriorityChanged("checkout.pay", 2)
	m.Retry("checkout.pay", "5xx")
	m.CircuitOpen("checkout.pay", telemetry.LimitRequests)
	m.ConfigAccepted("type.googleapis.com/envoy.config.cluster.v3.Cluster", "v7")
	m.ConfigRejected("type.googleapis.com/envoy.config.cluster.v3.Cluster")
	m.Mirror("checkout-shadow")
	m.Fault(telemetry.FaultAbort)

	srv := start(t, Sources{Gatherer: reg})
	// A Prometheus server asks for protobuf first; the admin answers text.
	resp := do(t, http.MethodGet, "http://"+srv.Addr()+"/stats/prometheus", http.Header{
		"Accept": {"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3"},
	})
	if resp.code != http.StatusOK {
		t.Fatalf("status %d: %s", resp.code, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(resp.body))
	if err != nil {
		t.Fatalf("Prometheus text parser: %v\n%s", err, resp.body)
	}

	outbound := map[string]string{
		"direction": "outbound", "source_workload": "frontend", "source_namespace": "shop", "source_cluster": "east",
		"source_locality": "us-east1/us-east1-b/", "destination_service": "checkout.pay", "destination_workload": "checkout",
		"destination_namespace": "pay", "destination_cluster": "west", "destination_locality": "us-west1/us-west1-a/",
		"response_code": "200", "protocol": "grpc",
	}
	inbound := map[string]string{
		"direction": "inbound", "source_workload": "checkout", "source_namespace": "pay", "source_cluster": "west",
		"source_locality": "us-west1/us-west1-a/", "destination_service": "inbound|8080", "destination_workload": "frontend",
		"destination_namespace": "shop", "destination_cluster": "east", "destination_locality": "us-east1/us-east1-b/",
		"response_code": "503", "protocol": "http1",
	}
	withL := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	tests := []struct {
		name   string
		typ    dto.MetricType
		labels map[string]string
		value  float64 // counter/gauge value, or histogram sample count
	}{
		{"causeway_proxy_requests_total", dto.MetricType_COUNTER, withL(outbound, "grpc_status", "0"), 3},
		{"causeway_proxy_requests_total", dto.MetricType_COUNTER, inbound, 1},
		{"causeway_proxy_request_duration_seconds", dto.MetricType_HISTOGRAM, outbound, 3},
		{"causeway_proxy_request_duration_seconds", dto.MetricType_HISTOGRAM, inbound, 1},
		{"causeway_proxy_request_bytes_total", dto.MetricType_COUNTER, outbound, 300},
		{"causeway_proxy_response_bytes_total", dto.MetricType_COUNTER, outbound, 3000},
		{"causeway_proxy_connections_active", dto.MetricType_GAUGE, map[string]string{"listener": "outbound_15001", "direction": "outbound"}, 1},
		{"causeway_proxy_upstream_connect_failures_total", dto.MetricType_COUNTER, map[string]string{"destination_service": "checkout.pay", "destination_cluster": "west", "destination_locality": "us-west1/us-west1-a/"}, 1},
		{"causeway_proxy_outlier_ejections_total", dto.MetricType_COUNTER, map[string]string{"destination_service": "checkout.pay", "endpoint": "127.0.0.9:8080", "destination_cluster": "west", "destination_locality": "us-west1/us-west1-a/", "reason": "consecutive_5xx"}, 1},
		{"causeway_proxy_outlier_ejections_active", dto.MetricType_GAUGE, map[string]string{"destination_service": "checkout.pay", "endpoint": "127.0.0.9:8080", "destination_cluster": "west", "destination_locality": "us-west1/us-west1-a/", "reason": "consecutive_5xx"}, 1},
		{"causeway_proxy_failover_level", dto.MetricType_GAUGE, map[string]string{"destination_service": "checkout.pay"}, 2},
		{"causeway_proxy_failover_level_changes_total", dto.MetricType_COUNTER, map[string]string{"destination_service": "checkout.pay"}, 1},
		{"causeway_proxy_retries_total", dto.MetricType_COUNTER, map[string]string{"destination_service": "checkout.pay", "reason": "5xx"}, 1},
		{"causeway_proxy_circuit_breaker_open_total", dto.MetricType_COUNTER, map[string]string{"destination_service": "checkout.pay", "limit": "requests"}, 1},
		{"causeway_proxy_config_version", dto.MetricType_GAUGE, map[string]string{"type_url": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "version": "v7"}, 1},
		{"causeway_proxy_config_updates_total", dto.MetricType_COUNTER, map[string]string{"type_url": "type.googleapis.com/envoy.config.cluster.v3.Cluster"}, 1},
		{"causeway_proxy_config_rejections_total", dto.MetricType_COUNTER, map[string]string{"type_url": "type.googleapis.com/envoy.config.cluster.v3.Cluster"}, 1},
		{"causeway_proxy_mirror_requests_total", dto.MetricType_COUNTER, map[string]string{"destination_service": "checkout-shadow"}, 1},
		{"causeway_proxy_fault_injected_total", dto.MetricType_COUNTER, map[string]string{"kind": "abort"}, 1},
	}
	for _, tc := range tests {
		mf, ok := fams[tc.name]
		if !ok {
			t.Errorf("%s missing from the scrape", tc.name)
			continue
		}
		if mf.GetType() != tc.typ {
			t.Errorf("%s has type %v, want %v", tc.name, mf.GetType(), tc.typ)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", tc.name)
		}
		s := find(mf, tc.labels)
		if s == nil {
			t.Errorf("%s: no series with labels %v", tc.name, tc.labels)
			continue
		}
		var got float64
		switch tc.typ {
		case dto.MetricType_COUNTER:
			got = s.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			got = s.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			got = float64(s.GetHistogram().GetSampleCount())
		}
		if got != tc.value {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.value)
		}
	}

	// The histogram's buckets: 100µs..30s, plus +Inf; the 50µs inbound
	// sample falls in the first bucket, the 20ms outbound ones at 25ms.
	h := find(fams["causeway_proxy_request_duration_seconds"], inbound).GetHistogram()
	if b := h.GetBucket(); len(b) != 18 || b[0].GetUpperBound() != 0.0001 || b[0].GetCumulativeCount() != 1 || b[16].GetUpperBound() != 30 || !math.IsInf(b[17].GetUpperBound(), 1) {
		t.Errorf("inbound buckets = %v", b)
	}
	h = find(fams["causeway_proxy_request_duration_seconds"], outbound).GetHistogram()
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 0.025 {
			want = 3
		}
		if b.GetCumulativeCount() != want && !math.IsInf(b.GetUpperBound(), 1) {
			t.Errorf("outbound bucket le=%v count %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if math.Abs(h.GetSampleSum()-0.06) > 1e-9 {
		t.Errorf("outbound duration sum = %v, want 0.06", h.GetSampleSum())
	}
}

// find returns the series of mf whose non-empty labels are exactly want.
func find(mf *dto.MetricFamily, want map[string]string) *dto.Metric {
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			if lp.GetValue() != "" {
				got[lp.GetName()] = lp.GetValue()
			}
		}
		n := 0
		for k, v := range want {
			if v == "" {
				continue
			}
			n++
			if got[k] != v {
				continue next
			}
		}
		if n == len(got) {
			return m
		}
	}
	return nil
}

func TestReady(t *testing.T) {
	tests := []struct {
		name     string
		ok       bool
		why      string
		wantCode int
		wantBody string
	}{
		{"ready", true, "", http.StatusOK, "LIVE\n"},
		{"not ready with reason", false, "waiting for clusters (CDS not yet received)", http.StatusServiceUnavailable, "waiting for clusters (CDS not yet received)\n"},
		{"not ready without reason", false, "", http.StatusServiceUnavailable, "not ready\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t, Sources{Ready: func() (bool, string) { return tc.ok, tc.why }})
			r := get(t, srv, "/ready")
			if r.code != tc.wantCode || r.body != tc.wantBody {
				t.Errorf("/ready = %d %q, want %d %q", r.code, r.body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

// plantedDump holds key material in every place a careless caller might
// leave it.
type plantedDump struct {
	Version  string
	Secrets  map[string]any
	Cert     *tls.Certificate
	KeyPEM   string `json:"key_pem"`
	Listener struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	} `json:"listener"`
}

func TestConfigDumpRedaction(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	raw, err := priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	secretD := new(big.Int).SetBytes(raw).String()
	d := plantedDump{
		Version: "lds=3,cds=4",
		Secrets: map[string]any{
			"default": map[string]any{"private_key": "PLANTED-1", "cert_chain": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
			"other":   map[string]any{"privateKey": "PLANTED-2", "Private-Key": "PLANTED-3", "list": []any{map[string]any{"KEY": "PLANTED-4"}}},
		},
		Cert:   &tls.Certificate{Certificate: [][]byte{{1, 2, 3}}, PrivateKey: priv},
		KeyPEM: keyPEM,
	}
	d.Listener.Name = "inbound"
	d.Listener.Key = "PLANTED-5"

	srv := start(t, Sources{ConfigDump: func() any { return d }})
	r := get(t, srv, "/config_dump")
	if r.code != http.StatusOK {
		t.Fatalf("/config_dump status %d: %s", r.code, r.body)
	}
	for _, secret := range []string{"PLANTED-1", "PLANTED-2", "PLANTED-3", "PLANTED-4", "PLANTED-5", secretD, "PRIVATE KEY", strings.Split(keyPEM, "\n")[1]} {
		if strings.Contains(r.body, secret) {
			t.Errorf("/config_dump leaks %q:\n%s", secret, r.body)
		}
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("/config_dump is not JSON: %v", err)
	}
	if got["Version"] != "lds=3,cds=4" || got["key_pem"] != Redacted {
		t.Errorf("unexpected dump: Version=%v key_pem=%v", got["Version"], got["key_pem"])
	}
	if !strings.Contains(r.body, "BEGIN CERTIFICATE") {
		t.Error("certificates (public) were redacted too")
	}
	if !strings.Contains(r.body, "\n  \"") {
		t.Error("/config_dump is not indented")
	}
}

func TestConfigDumpUnencodable(t *testing.T) {
	srv := start(t, Sources{ConfigDump: func() any { return map[string]any{"f": func() {}} }})
	r := get(t, srv, "/config_dump")
	if r.code != http.StatusInternalServerError || !strings.Contains(r.body, "func()") {
		t.Errorf("got %d %q, want 500 naming the type", r.code, r.body)
	}
}

type clusterRow struct {
	Name     string `json:"name"`
	Priority int    `json:"priority"`
	Healthy  int    `json:"healthy"`
	Locality string `json:"locality"`
}

type stringer struct{}

func (stringer) String() string { return "custom table\n" }

func TestClusters(t *testing.T) {
	rows := []clusterRow{
		{"checkout", 0, 3, "us-east1/b/"},
		{"cart", 1, 0, ""},
	}
	tests := []struct {
		name      string
		value     any
		query     string
		wantCode  int
		wantParts []string
	}{
		{"json", rows, "", 200, []string{`"name": "checkout"`, `"healthy": 3`}},
		{"text table from list", rows, "?format=text", 200, []string{"NAME", "HEALTHY", "checkout  3", "cart      0"}},
		{"text table from map", map[string]clusterRow{"b": {Name: "b"}, "a": {Name: "a"}}, "?format=text", 200, []string{"NAME", "a ", "b "}},
		{"stringer", stringer{}, "?format=text", 200, []string{"custom table"}},
		{"scalar falls back to JSON", 42, "?format=text", 200, []string{"42"}},
		{"unknown format", rows, "?format=xml", 400, []string{"format=text"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t, Sources{Clusters: func() any { return tc.value }})
			r := get(t, srv, "/clusters"+tc.query)
			if r.code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", r.code, tc.wantCode, r.body)
			}
			for _, p := range tc.wantParts {
				if !strings.Contains(r.body, p) {
					t.Errorf("body lacks %q:\n%s", p, r.body)
				}
			}
		})
	}
}

func TestDrain(t *testing.T) {
	calls := make(chan struct{}, 4)
	srv := start(t, Sources{Drain: func() { calls <- struct{}{} }})
	url := "http://" + srv.Addr() + "/drain"
	if r := do(t, http.MethodGet, url, nil); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("GET /drain = %d Allow=%q, want 405 Allow=POST", r.code, r.header.Get("Allow"))
	}
	if len(calls) != 0 {
		t.Fatal("GET /drain started a drain")
	}
	if r := do(t, http.MethodPost, url, nil); r.code != http.StatusAccepted || r.body != "draining\n" {
		t.Errorf("POST /drain = %d %q", r.code, r.body)
	}
	if r := do(t, http.MethodPost, url, nil); r.code != http.StatusAccepted || r.body != "already draining\n" {
		t.Errorf("second POST /drain = %d %q", r.code, r.body)
	}
	if len(calls) != 1 {
		t.Errorf("Drain called %d times, want 1", len(calls))
	}
}

func TestNotConfiguredAndRouting(t *testing.T) {
	srv := start(t, Sources{})
	tests := []struct {
		method, path string
		wantCode     int
		wantPart     string
	}{
		{"GET", "/", 200, "/stats/prometheus"},
		{"GET", "/nope", 404, ""},
		{"GET", "/stats/prometheus", 501, "Sources.Gatherer"},
		{"GET", "/ready", 501, "Sources.Ready"},
		{"GET", "/config_dump", 501, "Sources.ConfigDump"},
		{"GET", "/clusters", 501, "Sources.Clusters"},
		{"POST", "/drain", 501, "Sources.Drain"},
		{"POST", "/ready", 405, "GET only"},
		{"DELETE", "/", 405, "GET only"},
	}
	for _, tc := range tests {
		r := do(t, tc.method, "http://"+srv.Addr()+tc.path, nil)
		if r.code != tc.wantCode || !strings.Contains(r.body, tc.wantPart) {
			t.Errorf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, r.code, r.body, tc.wantCode, tc.wantPart)
		}
	}
}

func TestLifecycle(t *testing.T) {
	t.Run("bad address", func(t *testing.T) {
		_, err := New("127.0.0.1:notaport", Sources{})
		if err == nil || !strings.Contains(err.Error(), "127.0.0.1:notaport") {
			t.Errorf("New(bad) = %v, want an error naming the address", err)
		}
	})
	t.Run("address in use", func(t *testing.T) {
		a, err := New("127.0.0.1:0", Sources{})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Shutdown(context.Background())
		if _, err := New(a.Addr(), Sources{}); err == nil {
			t.Error("second New on the same address succeeded")
		}
	})
	t.Run("shutdown without serve closes the listener", func(t *testing.T) {
		a, err := New("127.0.0.1:0", Sources{})
		if err != nil {
			t.Fatal(err)
		}
		addr := a.Addr()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Serve(); err != nil {
			t.Errorf("Serve after Shutdown = %v, want nil", err)
		}
		b, err := New(addr, Sources{}) // the port is free again
		if err != nil {
			t.Fatalf("re-listening on %s: %v", addr, err)
		}
		if err := b.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("binds only to the given host", func(t *testing.T) {
		srv := start(t, Sources{})
		if !strings.HasPrefix(srv.Addr(), "127.0.0.1:") {
			t.Errorf("Addr() = %q, want 127.0.0.1:port", srv.Addr())
		}
	})
}

func TestShutdownWaitsForContext(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	srv, err := New("127.0.0.1:0", Sources{Ready: func() (bool, string) {
		close(entered)
		<-release
		return true, ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	got := make(chan int, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.Addr()+"/ready", nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the handler")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a request in flight = %v, want DeadlineExceeded", err)
	}
	close(release)
	if code := <-got; code != http.StatusOK {
		t.Errorf("in-flight request got %d, want 200", code)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := srv.Shutdown(ctx2); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

package telemetry

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var (
	selfWL = Workload{Name: "frontend", Namespace: "shop", Cluster: "east", Locality: "us-east1/us-east1-b/"}
	peerWL = Workload{Name: "checkout", Namespace: "pay", Cluster: "west", Locality: "us-west1/us-west1-a/"}
)

func newTestMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, selfWL)
	if err != nil {
		t.Fatalf("NewMetrics: %v", err)
	}
	return m, reg
}

// series finds the metric of family name whose labels are exactly want.
func series(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if equalLabels(got, want) {
				return m
			}
		}
		var have []string
		for _, m := range mf.GetMetric() {
			have = append(have, fmt.Sprint(m.GetLabel()))
		}
		t.Fatalf("%s: no series with labels %v; have:\n%s", name, want, strings.Join(have, "\n"))
	}
	t.Fatalf("no metric family %s", name)
	return nil
}

func equalLabels(got, want map[string]string) bool {
	// An empty label value is the same as an absent label in Prometheus
	// (the text format drops it; Gather keeps it).
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	for k, v := range got {
		if want[k] != v {
			return false
		}
	}
	return true
}

func reqLabels(dir string, src, dst Workload, svc, code, proto string) map[string]string {
	return map[string]string{
		"direction":       dir,
		"source_workload": src.Name, "source_namespace": src.Namespace, "source_cluster": src.Cluster, "source_locality": src.Locality,
		"destination_service":  svc,
		"destination_workload": dst.Name, "destination_namespace": dst.Namespace, "destination_cluster": dst.Cluster, "destination_locality": dst.Locality,
		"response_code": code, "protocol": proto,
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}

func TestObserveRequestSourceDestination(t *testing.T) {
	tests := []struct {
		name     string
		ri       RequestInfo
		src, dst Workload
		code     string
	}{
		{
			name: "outbound: source is self",
			ri:   RequestInfo{Direction: DirectionOutbound, Peer: peerWL, Service: "checkout", Code: 503, Protocol: ProtocolHTTP1, Duration: 3 * time.Millisecond, ReqBytes: 10, RespBytes: 20},
			src:  selfWL, dst: peerWL, code: "503",
		},
		{
			name: "inbound: destination is self",
			ri:   RequestInfo{Direction: DirectionInbound, Peer: peerWL, Service: "inbound|8080", Code: 200, Protocol: ProtocolHTTP2, Duration: 3 * time.Millisecond, ReqBytes: 10, RespBytes: 20},
			src:  peerWL, dst: selfWL, code: "200",
		},
		{
			name: "tcp: no response code",
			ri:   RequestInfo{Direction: DirectionOutbound, Peer: peerWL, Service: "db", Protocol: ProtocolTCP, Duration: 2 * time.Second, ReqBytes: 1000, RespBytes: 5000},
			src:  selfWL, dst: peerWL, code: "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newTestMetrics(t)
			m.ObserveRequest(&tc.ri)
			m.ObserveRequest(&tc.ri)
			want := reqLabels(tc.ri.Direction, tc.src, tc.dst, tc.ri.Service, tc.code, tc.ri.Protocol)
			if got := series(t, reg, "causeway_proxy_requests_total", with(want, "grpc_status", "")).GetCounter().GetValue(); got != 2 {
				t.Errorf("requests_total = %v, want 2", got)
			}
			h := series(t, reg, "causeway_proxy_request_duration_seconds", want).GetHistogram()
			if h.GetSampleCount() != 2 || h.GetSampleSum() != 2*tc.ri.Duration.Seconds() {
				t.Errorf("duration count/sum = %d/%v, want 2/%v", h.GetSampleCount(), h.GetSampleSum(), 2*tc.ri.Duration.Seconds())
			}
			if got := series(t, reg, "causeway_proxy_request_bytes_total", want).GetCounter().GetValue(); got != float64(2*tc.ri.ReqBytes) {
				t.Errorf("request_bytes_total = %v, want %d", got, 2*tc.ri.ReqBytes)
			}
			if got := series(t, reg, "causeway_proxy_response_bytes_total", want).GetCounter().GetValue(); got != float64(2*tc.ri.RespBytes) {
				t.Errorf("response_bytes_total = %v, want %d", got, 2*tc.ri.RespBytes)
			}
		})
	}
}

func TestObserveRequestGRPCStatus(t *testing.T) {
	m, reg := newTestMetrics(t)
	base := RequestInfo{Direction: DirectionOutbound, Peer: peerWL, Service: "checkout", Code: 200, Protocol: ProtocolGRPC, Duration: time.Millisecond}
	ok, unavailable := base, base
	ok.GRPCStatus = "0"
	unavailable.GRPCStatus = "14"
	m.ObserveRequest(&ok)
	m.ObserveRequest(&unavailable)
	m.ObserveRequest(&unavailable)
	want := reqLabels(DirectionOutbound, selfWL, peerWL, "checkout", "200", ProtocolGRPC)
	if got := series(t, reg, "causeway_proxy_requests_total", with(want, "grpc_status", "14")).GetCounter().GetValue(); got != 2 {
		t.Errorf("requests_total{grpc_status=14} = %v, want 2", got)
	}
	if got := series(t, reg, "causeway_proxy_requests_total", with(want, "grpc_status", "0")).GetCounter().GetValue(); got != 1 {
		t.Errorf("requests_total{grpc_status=0} = %v, want 1", got)
	}
	// The histogram has no grpc_status: both statuses share one series.
	if got := series(t, reg, "causeway_proxy_request_duration_seconds", want).GetHistogram().GetSampleCount(); got != 3 {
		t.Errorf("duration count = %d, want 3", got)
	}
}

func TestObserveRequestInvalidUTF8(t *testing.T) {
	m, reg := newTestMetrics(t)
	peer := Workload{Name: "bad\xffname", Namespace: "ns", Cluster: "c\xc3", Locality: "l"}
	m.ObserveRequest(&RequestInfo{Direction: DirectionInbound, Peer: peer, Service: "svc\xfe", Code: 200, Protocol: ProtocolHTTP1})
	m.Retry("svc\xfe", "5xx")
	want := reqLabels(DirectionInbound, Workload{Name: "bad\uFFFDname", Namespace: "ns", Cluster: "c\uFFFD", Locality: "l"}, selfWL, "svc\uFFFD", "200", ProtocolHTTP1)
	if got := series(t, reg, "causeway_proxy_requests_total", with(want, "grpc_status", "")).GetCounter().GetValue(); got != 1 {
		t.Errorf("requests_total = %v, want 1", got)
	}
}

func TestObserveRequestConcurrent(t *testing.T) {
	m, reg := newTestMetrics(t)
	const workers, perWorker, services = 8, 500, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				m.ObserveRequest(&RequestInfo{
					Direction: DirectionOutbound, Peer: peerWL,
					Service: fmt.Sprintf("svc-%d", (i+w)%services), Code: 200, Protocol: ProtocolHTTP1,
				})
			}
		}()
	}
	wg.Wait()
	if n := m.reqCache.size(); n != services {
		t.Errorf("cache holds %d tuples, want %d", n, services)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() == "causeway_proxy_requests_total" {
			if len(mf.GetMetric()) != services {
				t.Errorf("requests_total has %d series, want %d", len(mf.GetMetric()), services)
			}
			for _, s := range mf.GetMetric() {
				total += s.GetCounter().GetValue()
			}
		}
	}
	if total != workers*perWorker {
		t.Errorf("sum of requests_total = %v, want %d", total, workers*perWorker)
	}
}

func TestObserveRequestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	m, _ := newTestMetrics(t)
	ri := &RequestInfo{Direction: DirectionOutbound, Peer: peerWL, Service: "checkout", Code: 200, Protocol: ProtocolHTTP2, Duration: time.Millisecond, ReqBytes: 1, RespBytes: 2}
	m.ObserveRequest(ri)
	if n := testing.AllocsPerRun(1000, func() { m.ObserveRequest(ri) }); n != 0 {
		t.Errorf("ObserveRequest allocates %v times per call in the steady state, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.ConnOpened("l", DirectionInbound); m.ConnClosed("l", DirectionInbound) }); n != 0 {
		t.Errorf("ConnOpened+ConnClosed allocate %v times, want 0", n)
	}
}

func TestSeriesCacheCollisions(t *testing.T) {
	// Every key hashes to the same value: lookups must still tell them apart.
	var c seriesCache[connKey, int]
	made := 0
	mk := func(_ *Metrics, k connKey) int { made++; return len(k.listener)*10 + len(k.direction) }
	keys := []connKey{{"a", "b"}, {"aa", "b"}, {"a", "bb"}, {"aaa", ""}}
	for range 3 {
		for _, k := range keys {
			if got, want := c.get(42, k, nil, mk), len(k.listener)*10+len(k.direction); got != want {
				t.Fatalf("get(%v) = %d, want %d", k, got, want)
			}
		}
	}
	if made != len(keys) {
		t.Errorf("made %d values, want %d (one per key)", made, len(keys))
	}
}

func TestKeyHashSeparatesFields(t *testing.T) {
	m, _ := newTestMetrics(t)
	a := reqKey{dir: "ab", service: "c"}
	b := reqKey{dir: "a", service: "bc"}
	if a.hash(m.seed) == b.hash(m.seed) {
		t.Errorf("hash(%+v) == hash(%+v): field boundaries are not hashed", a, b)
	}
	long := reqKey{service: strings.Repeat("x", 300), code: 200}
	long2 := reqKey{service: strings.Repeat("x", 300), code: 200}
	if long.hash(m.seed) != long2.hash(m.seed) {
		t.Error("hash of a long key is not deterministic")
	}
}

func TestConnections(t *testing.T) {
	m, reg := newTestMetrics(t)
	m.ConnOpened("inbound_15006", DirectionInbound)
	m.ConnOpened("inbound_15006", DirectionInbound)
	m.ConnOpened("outbound_15001", DirectionOutbound)
	m.ConnClosed("inbound_15006", DirectionInbound)
	if got := series(t, reg, "causeway_proxy_connections_active", map[string]string{"listener": "inbound_15006", "direction": "inbound"}).GetGauge().GetValue(); got != 1 {
		t.Errorf("inbound connections_active = %v, want 1", got)
	}
	if got := series(t, reg, "causeway_proxy_connections_active", map[string]string{"listener": "outbound_15001", "direction": "outbound"}).GetGauge().GetValue(); got != 1 {
		t.Errorf("outbound connections_active = %v, want 1", got)
	}
}

func TestEjections(t *testing.T) {
	m, reg := newTestMetrics(t)
	ep := Endpoint{Service: "checkout", Address: "10.0.0.1:8080", Cluster: "west", Locality: "us-west1/a/"}
	labels := map[string]string{"destination_service": "checkout", "endpoint": "10.0.0.1:8080", "destination_cluster": "west", "destination_locality": "us-west1/a/", "reason": "consecutive_5xx"}
	m.Ejected(ep, "consecutive_5xx")
	m.Ejected(ep, "consecutive_5xx")
	if got := series(t, reg, "causeway_proxy_outlier_ejections_active", labels).GetGauge().GetValue(); got != 2 {
		t.Errorf("ejections_active = %v, want 2", got)
	}
	m.Unejected(ep, "consecutive_5xx")
	if got := series(t, reg, "causeway_proxy_outlier_ejections_active", labels).GetGauge().GetValue(); got != 1 {
		t.Errorf("ejections_active after one unejection = %v, want 1", got)
	}
	m.Unejected(ep, "consecutive_5xx")
	m.Unejected(ep, "consecutive_5xx") // unmatched: ignored
	if got := series(t, reg, "causeway_proxy_outlier_ejections_total", labels).GetCounter().GetValue(); got != 2 {
		t.Errorf("ejections_total = %v, want 2", got)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "causeway_proxy_outlier_ejections_active" {
			t.Errorf("ejections_active still has series after every endpoint returned: %v", mf.GetMetric())
		}
	}
}

func TestPriorityChanged(t *testing.T) {
	m, reg := newTestMetrics(t)
	svc := map[string]string{"destination_service": "checkout"}
	steps := []struct {
		level       uint32
		wantChanges float64
	}{
		{0, 0}, // initial report of the default level: no change
		{1, 1},
		{1, 1},
		{2, 2},
		{0, 3},
	}
	for i, s := range steps {
		m.PriorityChanged("checkout", s.level)
		if got := series(t, reg, "causeway_proxy_failover_level", svc).GetGauge().GetValue(); got != float64(s.level) {
			t.Errorf("step %d: failover_level = %v, want %d", i, got, s.level)
		}
		if s.wantChanges == 0 {
			continue
		}
		if got := series(t, reg, "causeway_proxy_failover_level_changes_total", svc).GetCounter().GetValue(); got != s.wantChanges {
			t.Errorf("step %d: failover_level_changes_total = %v, want %v", i, got, s.wantChanges)
		}
	}
}

func TestConfigVersion(t *testing.T) {
	m, reg := newTestMetrics(t)
	const lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
	m.ConfigAccepted(lds, "v1")
	m.ConfigAccepted(lds, "v2")
	m.ConfigRejected(lds)
	if got := series(t, reg, "causeway_proxy_config_version", map[string]string{"type_url": lds, "version": "v2"}).GetGauge().GetValue(); got != 1 {
		t.Errorf("config_version{v2} = %v, want 1", got)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "causeway_proxy_config_version" && len(mf.GetMetric()) != 1 {
			t.Errorf("config_version has %d series, want only the latest version", len(mf.GetMetric()))
		}
	}
	if got := series(t, reg, "causeway_proxy_config_updates_total", map[string]string{"type_url": lds}).GetCounter().GetValue(); got != 2 {
		t.Errorf("config_updates_total = %v, want 2", got)
	}
	if got := series(t, reg, "causeway_proxy_config_rejections_total", map[string]string{"type_url": lds}).GetCounter().GetValue(); got != 1 {
		t.Errorf("config_rejections_total = %v, want 1", got)
	}
}

func TestSimpleCounters(t *testing.T) {
	m, reg := newTestMetrics(t)
	m.ConnectFailure("checkout", "west", "us-west1/a/")
	m.Retry("checkout", "5xx")
	m.CircuitOpen("checkout", LimitPending)
	m.Mirror("checkout-shadow")
	m.Fault(FaultDelay)
	m.Fault(FaultDelay)
	m.Fault(FaultAbort)
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"causeway_proxy_upstream_connect_failures_total", map[string]string{"destination_service": "checkout", "destination_cluster": "west", "destination_locality": "us-west1/a/"}, 1},
		{"causeway_proxy_retries_total", map[string]string{"destination_service": "checkout", "reason": "5xx"}, 1},
		{"causeway_proxy_circuit_breaker_open_total", map[string]string{"destination_service": "checkout", "limit": "pending"}, 1},
		{"causeway_proxy_mirror_requests_total", map[string]string{"destination_service": "checkout-shadow"}, 1},
		{"causeway_proxy_fault_injected_total", map[string]string{"kind": "delay"}, 2},
		{"causeway_proxy_fault_injected_total", map[string]string{"kind": "abort"}, 1},
	}
	for _, tc := range tests {
		if got := series(t, reg, tc.name, tc.labels).GetCounter().GetValue(); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestNewMetricsErrors(t *testing.T) {
	if _, err := NewMetrics(nil, selfWL); err == nil {
		t.Error("NewMetrics(nil) succeeded, want an error")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg, selfWL); err != nil {
		t.Fatal(err)
	}
	_, err := NewMetrics(reg, selfWL)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second NewMetrics on one registry: err = %v, want a wrapped AlreadyRegisteredError", err)
	}
}

func TestDurationBuckets(t *testing.T) {
	b := DurationBuckets()
	if b[0] != 0.0001 || b[len(b)-1] != 30 || !sort.Float64sAreSorted(b) {
		t.Errorf("buckets %v: want sorted, from 100µs to 30s", b)
	}
}

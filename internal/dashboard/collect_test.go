package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/internal/controlplane"
)

func TestParseModel(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []ModelService
	}{
		{"empty", "", nil},
		{"services and endpoints", `cluster east network flat trust-domain east.local
namespaces shop
service shop/checkout exported
  port - 8080/TCP app=-
  endpoint 127.20.1.1 -=18080 cluster=east network=flat locality=region-1/region-1a ready=true serving=true terminating=false weight=1 identity=- workload=-
  endpoint 127.20.2.1 -=18080 cluster=west network=flat locality=region-1/region-1c ready=false serving=false terminating=false weight=1 identity=- workload=-
service shop/profile
  endpoint 127.20.1.9 -=18080 cluster=east network=flat locality=- ready=true serving=true terminating=false weight=1 identity=- workload=-
service shop/cart imported
`, []ModelService{
			{Namespace: "shop", Name: "checkout", Exported: true, Endpoints: []ModelEndpoint{
				{Address: "127.20.1.1", Cluster: "east", Region: "region-1", Zone: "region-1a", Ready: true},
				{Address: "127.20.2.1", Cluster: "west", Region: "region-1", Zone: "region-1c"},
			}},
			{Namespace: "shop", Name: "profile", Endpoints: []ModelEndpoint{{Address: "127.20.1.9", Cluster: "east", Ready: true}}},
			{Namespace: "shop", Name: "cart", Imported: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := json.Marshal(ParseModel(tt.in))
			want, _ := json.Marshal(tt.want)
			if string(got) != string(want) {
				t.Errorf("ParseModel:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// metricsText is a sidecar's exposition with n outbound 200s to west,
// failed 503s and an inbound series that must be ignored.
func metricsText(n, failed int) string {
	return fmt.Sprintf(`# HELP causeway_proxy_requests_total Requests.
# TYPE causeway_proxy_requests_total counter
causeway_proxy_requests_total{direction="outbound",source_cluster="east",source_locality="region-1/region-1a",destination_cluster="west",destination_locality="region-1/region-1c",response_code="200"} %d
causeway_proxy_requests_total{direction="outbound",source_cluster="east",source_locality="region-1/region-1a",destination_cluster="west",destination_locality="region-1/region-1c",response_code="503"} %d
causeway_proxy_requests_total{direction="inbound",source_cluster="south",source_locality="region-2/region-2a",destination_cluster="east",destination_locality="region-1/region-1a",response_code="200"} 77
`, n, failed)
}

func TestParseRequests(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]float64
		wantErr bool
	}{
		{"none", "", map[string]float64{}, false},
		{"outbound only", metricsText(5, 2), map[string]float64{
			"east\x00west\x00region-1c\x00200": 5,
			"east\x00west\x00region-1c\x00503": 2,
		}, false},
		{"malformed", "causeway_proxy_requests_total{", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequests(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// serve runs h on addr (127.220.0.0/16, this package's block) until the
// test ends.
func serve(t *testing.T, addr string, h http.Handler) func() {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = srv.Close()
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve %s: %v", addr, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type fakeClock struct{ now atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.now.Add(int64(d)) }

// TestCollect runs a control plane's admin endpoints and a sidecar's
// metrics on real sockets, and checks the State: clusters, locations,
// links and trust from /status and /model, rates over the window, a
// counter reset, a sidecar and a control plane that stop answering.
func TestCollect(t *testing.T) {
	seq := uint64(7)
	status := controlplane.StatusReport{Cluster: "east", TrustDomain: "east.local", Ready: true, Services: 1, Endpoints: 2,
		Links: []controlplane.LinkStatus{{Peer: "west", State: "connected", Healthy: true, Revision: 3, Services: 1, Endpoints: 1}},
		Trust: []controlplane.TrustStatus{{TrustDomain: "west.local", Healthy: true, Sequence: &seq}}}
	model := "cluster east network flat trust-domain east.local\nservice shop/checkout exported\n" +
		"  endpoint 127.20.1.1 -=18080 cluster=east network=flat locality=region-1/region-1a ready=true serving=true terminating=false weight=1 identity=- workload=-\n" +
		"  endpoint 127.20.1.2 -=18080 cluster=east network=flat locality=region-1/region-1b ready=false serving=false terminating=false weight=1 identity=- workload=-\n" +
		"  endpoint 127.20.2.1 -=18080 cluster=west network=flat locality=region-1/region-1c ready=true serving=true terminating=false weight=1 identity=- workload=-\n"
	admin := http.NewServeMux()
	admin.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(status) })
	admin.HandleFunc("/model", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, model) })
	stopAdmin := serve(t, "127.220.0.1:18101", admin)
	var reqs, failed atomic.Int64
	stopMetrics := serve(t, "127.220.0.2:18102", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, metricsText(int(reqs.Load()), int(failed.Load())))
	}))

	clock := &fakeClock{}
	clock.now.Store(time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC).UnixNano())
	c, err := New(Options{
		Clusters: []Cluster{{Name: "east", Admin: "http://127.220.0.1:18101"}, {Name: "gone", Region: "r", Zones: []string{"z"}, Admin: "http://127.220.0.3:18103"}},
		Targets: func() []Target {
			return []Target{{Cluster: "east", Zone: "region-1a", Pod: "client", URL: "http://127.220.0.2:18102/stats/prometheus"}}
		},
		Now: clock.Now, Window: 5 * time.Second, MinInterval: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	reqs.Store(100)
	st := c.Collect(ctx)
	if len(st.Clusters) != 2 || !st.Clusters[0].Reachable || st.Clusters[0].Region != "region-1" ||
		fmt.Sprint(st.Clusters[0].Zones) != "[region-1a region-1b]" || st.Clusters[1].Reachable || st.Clusters[1].Error == "" {
		t.Errorf("clusters: %+v", st.Clusters)
	}
	wantLocs := "[{east region-1 region-1a 1 1} {east region-1 region-1b 1 0}]" // west's endpoint is west's to tell
	if len(st.Services) != 1 || !st.Services[0].Exported || fmt.Sprint(st.Services[0].Locations) != wantLocs {
		t.Errorf("services: %+v, want checkout at %s", st.Services, wantLocs)
	}
	if len(st.Links) != 1 || st.Links[0].From != "east" || st.Links[0].To != "west" || !st.Links[0].Healthy {
		t.Errorf("links: %+v", st.Links)
	}
	if len(st.Trust) != 1 || st.Trust[0].Holder != "east" || st.Trust[0].Sequence == nil || *st.Trust[0].Sequence != 7 {
		t.Errorf("trust: %+v", st.Trust)
	}
	if len(st.Pods) != 1 || !st.Pods[0].Up {
		t.Errorf("pods: %+v", st.Pods)
	}

	flow := func(st State) Flow {
		t.Helper()
		if len(st.Flows) != 1 {
			t.Fatalf("flows: %+v, want one east>west/region-1c", st.Flows)
		}
		return st.Flows[0]
	}
	steps := []struct {
		name                            string
		advance                         time.Duration
		reqs, failed                    int64
		stopMetrics                     bool
		wantReq, wantRPS, wantFailedRPS float64
		wantUp                          bool
	}{
		{"cached within MinInterval", 100 * time.Millisecond, 500, 0, false, 100, 0, 0, true},
		{"2s later", 1900 * time.Millisecond, 180, 20, false, 200, 50, 10, true},
		{"counter reset: the new value is the increase", 2 * time.Second, 40, 0, false, 240, 35, 5, true},
		{"window slides: measured from the oldest sample inside it", 4 * time.Second, 80, 0, false, 280, 80.0 / 6, 0, true},
		{"sidecar gone: its last counts stay", 4 * time.Second, 80, 0, true, 280, 40.0 / 8, 0, false},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		reqs.Store(s.reqs)
		failed.Store(s.failed)
		if s.stopMetrics {
			stopMetrics()
		}
		st := c.Collect(ctx)
		f := flow(st)
		if f.Requests != s.wantReq || fmt.Sprintf("%.3f %.3f", f.RPS, f.FailedRPS) != fmt.Sprintf("%.3f %.3f", s.wantRPS, s.wantFailedRPS) {
			t.Errorf("%s: flow %+v (window %.1fs), want requests %v rps %.3f failed/s %.3f", s.name, f, st.Window, s.wantReq, s.wantRPS, s.wantFailedRPS)
		}
		if st.Pods[0].Up != s.wantUp {
			t.Errorf("%s: pod up %v, want %v (%s)", s.name, st.Pods[0].Up, s.wantUp, st.Pods[0].Error)
		}
	}
	stopAdmin()
	clock.Advance(time.Second)
	if st := c.Collect(ctx); st.Clusters[0].Reachable || st.Clusters[0].Error == "" {
		t.Errorf("a control plane that stopped answering: %+v", st.Clusters[0])
	}
}

func TestHandler(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", Handler("/dashboard/", c))
	serve(t, "127.220.0.4:18104", mux)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	tests := []struct {
		method, path string
		code         int
		contains     string
	}{
		{"GET", "/dashboard/", 200, "<title>Causeway dashboard</title>"},
		{"GET", "/dashboard/app.js", 200, "state.json"},
		{"GET", "/dashboard/style.css", 200, ".cluster"},
		{"GET", "/dashboard/state.json", 200, `"clusters":null`},
		{"GET", "/dashboard", 307, ""},
		{"POST", "/dashboard/state.json", 405, "GET only"},
		{"GET", "/dashboard/nope", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://127.220.0.4:18104"+tt.path, nil)
			hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.contains) {
				t.Errorf("%d %q, want %d containing %q", resp.StatusCode, b, tt.code, tt.contains)
			}
		})
	}
}

// BenchmarkParseRequests parses one sidecar's exposition (the request
// series of the walk-through: 3 zones x 2 codes, plus the inbound ones).
func BenchmarkParseRequests(b *testing.B) {
	text := metricsText(1000, 3)
	for _, z := range []string{"region-1a", "region-1b"} {
		text += strings.ReplaceAll(metricsText(500, 1)[strings.Index(metricsText(500, 1), "\ncauseway")+1:], "region-1/region-1c", "region-1/"+z)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequests(strings.NewReader(text)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseModel parses a /model of 20 services with 10 endpoints each.
func BenchmarkParseModel(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("cluster east network flat trust-domain east.local\n")
	for s := range 20 {
		fmt.Fprintf(&sb, "service shop/svc-%d exported\n  port - 8080/TCP app=-\n", s)
		for e := range 10 {
			fmt.Fprintf(&sb, "  endpoint 127.20.1.%d -=18080 cluster=east network=flat locality=region-1/region-1a ready=true serving=true terminating=false weight=1 identity=spiffe://east.local/ns/shop/sa/svc workload=Pod shop/svc-%d\n", e, e)
		}
	}
	text := sb.String()
	b.ReportAllocs()
	for b.Loop() {
		if len(ParseModel(text)) != 20 {
			b.Fatal("want 20 services")
		}
	}
}

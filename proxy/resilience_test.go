package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/telemetry"
)

// ---- helpers shared by resilience, tls, lifecycle and badinput tests ----

// hbackend starts a backend that records each request, names itself in
// x-backend and then answers with h.
func hbackend(t testing.TB, name string, h2c bool, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name, handler: h}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		r2 := r.Clone(context.Background())
		b.mu.Lock()
		b.seen = append(b.seen, r2)
		b.mu.Unlock()
		w.Header().Set("x-backend", name)
		b.handler(w, r)
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	if h2c {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	srv.Start()
	b.srv = srv
	t.Cleanup(srv.Close)
	return b
}

// gate blocks handlers until it is opened. Opening is idempotent and is
// also done at test cleanup (registered by newGate after everything the
// caller created so far, so it runs before those are torn down).
type gate struct {
	ch   chan struct{}
	once sync.Once
	in   atomic.Int64 // handlers currently waiting
}

func newGate(t testing.TB) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// wait blocks until the gate opens or ctx ends; it reports whether the gate
// opened.
func (g *gate) wait(ctx context.Context) bool {
	g.in.Add(1)
	defer g.in.Add(-1)
	select {
	case <-g.ch:
		return true
	case <-ctx.Done():
		return false
	}
}

func withMetrics(t testing.TB) (func(*Options), *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := telemetry.NewMetrics(reg, telemetry.Workload{Name: "self", Namespace: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return func(o *Options) { o.Metrics = m }, reg
}

// metric sums every series of the named metric (without the namespace
// prefix) whose labels include the given name/value pairs.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	full := telemetry.Namespace + "_" + name
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != full {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// logBuf is an access-log sink that decodes its JSON lines.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) entries(t testing.TB) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range bytes.Lines(l.buf.Bytes()) {
		var e map[string]any
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("access log line %q is not JSON: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

func withAccessLog() (func(*Options), *logBuf) {
	lb := &logBuf{}
	al := telemetry.NewAccessLog(lb)
	return func(o *Options) { o.AccessLog = al }, lb
}

// fanout runs fn(i) for i in [0, n) on workers goroutines and returns the
// first error.
func fanout(workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// fetch is get without testing.TB, for use from worker goroutines.
func fetch(c *http.Client, url string, hdr ...string) (result, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return result{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	return result{code: resp.StatusCode, body: string(b), header: resp.Header, proto: resp.Proto,
		flags: resp.Header.Get("x-causeway-flags"), backend: resp.Header.Get("x-backend")}, nil
}

// binomial fails unless got successes out of n is within k standard
// deviations of n*p.
func binomial(t testing.TB, what string, got, n int, p, k float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-mean) > k*sd {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f (%.0f standard deviations)", what, got, n, mean, k*sd, k)
	}
}

func ok200(r result) error {
	if r.code != http.StatusOK {
		return fmt.Errorf("status %d flags %q body %q, want 200", r.code, r.flags, r.body)
	}
	return nil
}

// ---- routing ----

func TestWeightedSplitCanary(t *testing.T) {
	stable := newBackend(t, "stable", false)
	canary := newBackend(t, "canary", false)
	fa := &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: "stable", Weight: 90}, {Name: "canary", Weight: 10}}}
	s := newSnap().
		httpListener("out", prefix("/", fa)).
		cluster(&config.Cluster{Name: "stable"}, loc("r1", "z1", 0, stable.addr())).
		cluster(&config.Cluster{Name: "canary"}, loc("r1", "z1", 0, canary.addr()))
	_, addr := start(t, s)
	c := client(t)

	const n = 2000
	var counts [2]atomic.Int64
	err := fanout(8, n, func(int) error {
		r, err := fetch(c, "http://"+addr("out")+"/")
		if err != nil {
			return err
		}
		if err := ok200(r); err != nil {
			return err
		}
		switch r.backend {
		case "stable":
			counts[0].Add(1)
		case "canary":
			counts[1].Add(1)
		default:
			return fmt.Errorf("answered by %q", r.backend)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Binomial(2000, 0.1): mean 200, sd 13.4; 5 sd is a false alarm once
	// in ~1.7 million runs.
	binomial(t, "canary share", int(counts[1].Load()), n, 0.10, 5)
	if got := counts[0].Load() + counts[1].Load(); got != n {
		t.Errorf("%d answers, want %d", got, n)
	}
}

func TestWeightedClustersAllZeroAnswer500(t *testing.T) {
	// router.PickCluster returns nil when every weight is zero (Gateway API:
	// no backend may be chosen); the engine must answer 500, not panic.
	b := newBackend(t, "b", false)
	fa := &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: "a", Weight: 0}, {Name: "b", Weight: 0}}}
	s := newSnap().
		httpListener("out", prefix("/", fa)).
		cluster(&config.Cluster{Name: "a"}, loc("r1", "z1", 0, b.addr())).
		cluster(&config.Cluster{Name: "b"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	r, err := fetch(client(t), "http://"+addr("out")+"/")
	if err != nil {
		t.Fatalf("request failed (%v); the proxy must answer 500 when every weighted cluster has weight 0", err)
	}
	if r.code != http.StatusInternalServerError {
		t.Errorf("got %d %q, want 500", r.code, r.body)
	}
	if b.hits.Load() != 0 {
		t.Errorf("backend saw %d requests, want none", b.hits.Load())
	}
}

func TestRouteMatchingAndMutations(t *testing.T) {
	stable := newBackend(t, "stable", false)
	canary := newBackend(t, "canary", false)

	canaryRoute := &config.Route{
		Match: config.RouteMatch{PathKind: config.PathPrefix, Path: "/", CaseSensitive: true,
			Headers: []config.HeaderMatch{{Name: "x-canary", Value: config.StringMatch{Kind: config.StringExact, Value: "yes"}}}},
		Forward: to("canary"),
		RequestHeaders: config.HeaderMutation{
			Set:    []config.HeaderValue{{Name: "x-set", Value: "route"}},
			Add:    []config.HeaderValue{{Name: "x-add", Value: "route"}},
			Remove: []string{"x-remove"},
		},
		ResponseHeaders: config.HeaderMutation{
			Set:    []config.HeaderValue{{Name: "x-resp", Value: "route"}},
			Add:    []config.HeaderValue{{Name: "x-resp-add", Value: "1"}},
			Remove: []string{"x-proto"},
		},
	}
	rewrite := prefix("/api/", &config.ForwardAction{Clusters: to("stable").Clusters, PrefixRewrite: "/v2/"})
	hostRW := prefix("/host", &config.ForwardAction{Clusters: to("stable").Clusters, HostRewrite: "internal.svc"})
	redirect := &config.Route{Match: config.RouteMatch{PathKind: config.PathExact, Path: "/old", CaseSensitive: true},
		Redirect: &config.RedirectAction{Host: "new.example", Path: "/moved", StatusCode: http.StatusFound}}
	direct := &config.Route{Match: config.RouteMatch{PathKind: config.PathExact, Path: "/direct", CaseSensitive: true},
		Direct: &config.DirectResponse{Status: http.StatusTeapot, Body: "short and stout"}}

	s := newSnap().
		httpListener("out", canaryRoute, rewrite, hostRW, redirect, direct, prefix("/", to("stable"))).
		cluster(&config.Cluster{Name: "stable"}, loc("r1", "z1", 0, stable.addr())).
		cluster(&config.Cluster{Name: "canary"}, loc("r1", "z1", 0, canary.addr()))
	vh := s.s.Routes["out"].VirtualHosts[0]
	vh.RequestHeaders = config.HeaderMutation{Add: []config.HeaderValue{{Name: "x-vh", Value: "1"}}}
	vh.ResponseHeaders = config.HeaderMutation{Set: []config.HeaderValue{{Name: "x-vh-resp", Value: "1"}}}
	_, addr := start(t, s)
	c := client(t)
	base := "http://" + addr("out")

	t.Run("header match and request/response mutations", func(t *testing.T) {
		r := get(t, c, base+"/x", "x-canary", "yes", "x-set", "client", "x-add", "client", "x-remove", "secret")
		if r.code != 200 || r.backend != "canary" {
			t.Fatalf("got %d from %q, want 200 from canary", r.code, r.backend)
		}
		seen := canary.last()
		if got := seen.Header.Values("X-Set"); len(got) != 1 || got[0] != "route" {
			t.Errorf("backend saw x-set %q, want [route] (set replaces)", got)
		}
		if got := seen.Header.Values("X-Add"); strings.Join(got, ",") != "client,route" {
			t.Errorf("backend saw x-add %q, want [client route] (add appends)", got)
		}
		if got := seen.Header.Get("X-Remove"); got != "" {
			t.Errorf("backend saw x-remove %q, want it removed", got)
		}
		if got := seen.Header.Get("X-Vh"); got != "1" {
			t.Errorf("backend saw x-vh %q, want the virtual host's 1", got)
		}
		if got := r.header.Get("x-resp"); got != "route" {
			t.Errorf("response x-resp %q, want route", got)
		}
		if got := r.header.Get("x-resp-add"); got != "1" {
			t.Errorf("response x-resp-add %q, want 1", got)
		}
		if got := r.header.Get("x-proto"); got != "" {
			t.Errorf("response x-proto %q, want it removed", got)
		}
		if got := r.header.Get("x-vh-resp"); got != "1" {
			t.Errorf("response x-vh-resp %q, want 1", got)
		}
	})
	t.Run("no header falls through to stable", func(t *testing.T) {
		for _, v := range []string{"", "no"} {
			hdr := []string{}
			if v != "" {
				hdr = []string{"x-canary", v}
			}
			r := get(t, c, base+"/x", hdr...)
			if r.code != 200 || r.backend != "stable" {
				t.Errorf("x-canary %q: got %d from %q, want 200 from stable", v, r.code, r.backend)
			}
			if r.header.Get("x-resp") != "" {
				t.Errorf("x-canary %q: the canary route's response headers leaked onto another route", v)
			}
		}
	})
	t.Run("prefix rewrite", func(t *testing.T) {
		r := get(t, c, base+"/api/items?q=1")
		if r.code != 200 || r.body != "stable GET /v2/items?q=1 " {
			t.Errorf("got %d %q, want the backend to see /v2/items?q=1", r.code, r.body)
		}
	})
	t.Run("host rewrite", func(t *testing.T) {
		r := get(t, c, base+"/host", "host", "svc.shop")
		if r.code != 200 {
			t.Fatalf("got %d", r.code)
		}
		if h := stable.last().Host; h != "internal.svc" {
			t.Errorf("backend saw Host %q, want internal.svc", h)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		nc := &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		before := stable.hits.Load() + canary.hits.Load()
		r := get(t, nc, base+"/old", "host", "old.example")
		if r.code != http.StatusFound {
			t.Errorf("status %d, want 302", r.code)
		}
		if loc := r.header.Get("Location"); loc != "http://new.example/moved" {
			t.Errorf("Location %q, want http://new.example/moved", loc)
		}
		if r.header.Get("x-vh-resp") != "1" {
			t.Errorf("redirect lacks the virtual host's response headers")
		}
		if after := stable.hits.Load() + canary.hits.Load(); after != before {
			t.Errorf("a redirect reached a backend")
		}
	})
	t.Run("direct response", func(t *testing.T) {
		r := get(t, c, base+"/direct")
		if r.code != http.StatusTeapot || r.body != "short and stout" {
			t.Errorf("got %d %q, want 418 %q", r.code, r.body, "short and stout")
		}
	})
}

// ---- retries and timeouts ----

func retryRoute(rp *config.RetryPolicy, timeout time.Duration) *config.Route {
	fa := to("svc")
	fa.Retry = rp
	fa.Timeout = timeout
	return prefix("/", fa)
}

func TestRetry503ThenSuccess(t *testing.T) {
	var tries atomic.Int64
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		if tries.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	s := newSnap().
		httpListener("out", retryRoute(&config.RetryPolicy{On: config.Retry5xx, NumRetries: 2, BackoffBase: time.Millisecond}, 5*time.Second)).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	mo, reg := withMetrics(t)
	lo, logs := withAccessLog()
	_, addr := start(t, s, mo, lo)

	r := get(t, client(t), "http://"+addr("out")+"/")
	if r.code != 200 || r.body != "ok" {
		t.Fatalf("got %d %q, want 200 ok after one retry", r.code, r.body)
	}
	if n := b.hits.Load(); n != 2 {
		t.Errorf("backend saw %d tries, want 2", n)
	}
	if v := metric(t, reg, "retries_total", "destination_service", "svc"); v != 1 {
		t.Errorf("retries_total = %v, want 1", v)
	}
	es := logs.entries(t)
	if len(es) != 1 || es[0]["retries"] != float64(1) {
		t.Errorf("access log %v, want one line with retries 1", es)
	}
}

func TestRetryReplaysRequestBody(t *testing.T) {
	var tries atomic.Int64
	bodies := make(chan string, 4)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		bodies <- string(body)
		if tries.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Write(body)
	})
	s := newSnap().
		httpListener("out", retryRoute(&config.RetryPolicy{On: config.RetryGatewayError, NumRetries: 1, BackoffBase: time.Millisecond}, 5*time.Second)).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	payload := strings.Repeat("payload-", 1000)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr("out")+"/upload", strings.NewReader(payload))
	r := do(t, client(t), req)
	if r.code != 200 || r.body != payload {
		t.Fatalf("got %d with %d body bytes, want 200 echoing the %d-byte body", r.code, len(r.body), len(payload))
	}
	for i := range 2 {
		if got := <-bodies; got != payload {
			t.Errorf("try %d carried %d body bytes, want %d", i+1, len(got), len(payload))
		}
	}
}

func TestRetriesNeverExceedNumRetries(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			s := newSnap().
				httpListener("out", retryRoute(&config.RetryPolicy{On: config.Retry5xx | config.RetryConnectFailure, NumRetries: n, BackoffBase: time.Millisecond}, 5*time.Second)).
				cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
			lo, logs := withAccessLog()
			_, addr := start(t, s, lo)
			r := get(t, client(t), "http://"+addr("out")+"/")
			if r.code != http.StatusServiceUnavailable {
				t.Errorf("got %d, want the upstream's 503", r.code)
			}
			if got := b.hits.Load(); got != int64(n+1) {
				t.Errorf("backend saw %d tries, want %d (1 + num_retries)", got, n+1)
			}
			es := logs.entries(t)
			if len(es) != 1 {
				t.Fatalf("%d access log lines, want 1", len(es))
			}
			flags, _ := es[0]["response_flags"].(string)
			if n > 0 && !strings.Contains(flags, "URX") {
				t.Errorf("response_flags %q, want URX (retry limit exceeded)", flags)
			}
			if es[0]["retries"] != float64(n) {
				t.Errorf("access log retries %v, want %d", es[0]["retries"], n)
			}
		})
	}
}

func TestRetryConnectFailureToAnotherLocality(t *testing.T) {
	live := newBackend(t, "live", false)
	s := newSnap().
		httpListener("out", retryRoute(&config.RetryPolicy{On: config.RetryConnectFailure, NumRetries: 1, BackoffBase: time.Millisecond}, 5*time.Second)).
		// max_retries is raised from Envoy's default 3: with 4 concurrent
		// clients and half the first tries failing, 4 retries can be
		// active at once and the 4th would be refused (UF,UO).
		cluster(&config.Cluster{Name: "svc", Circuit: config.CircuitBreakers{MaxRetries: 64}},
			loc("r1", "z1", 0, deadAddr(t)), loc("r2", "z1", 0, live.addr()))
	mo, reg := withMetrics(t)
	_, addr := start(t, s, mo)
	c := client(t)
	const n = 200
	err := fanout(4, n, func(int) error {
		r, err := fetch(c, "http://"+addr("out")+"/")
		if err != nil {
			return err
		}
		if err := ok200(r); err != nil {
			return err
		}
		if r.backend != "live" {
			return fmt.Errorf("answered by %q", r.backend)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a request failed although every connect failure can be retried on the live locality: %v", err)
	}
	if got := live.hits.Load(); got != n {
		t.Errorf("live backend answered %d, want %d", got, n)
	}
	// About half the first tries go to the dead locality.
	if v := metric(t, reg, "upstream_connect_failures_total", "destination_service", "svc"); v < 1 {
		t.Errorf("upstream_connect_failures_total = %v, want the dead endpoint's connect failures counted", v)
	}
	if v := metric(t, reg, "retries_total", "destination_service", "svc"); v < 1 {
		t.Errorf("retries_total = %v, want > 0", v)
	}
}

func TestPerTryTimeoutThenSuccess(t *testing.T) {
	var tries atomic.Int64
	g := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		if tries.Add(1) == 1 {
			g.wait(r.Context()) // hang until the proxy gives up on this try
			return
		}
		io.WriteString(w, "second")
	})
	const perTry = 200 * time.Millisecond
	s := newSnap().
		httpListener("out", retryRoute(&config.RetryPolicy{On: config.RetryReset | config.RetryGatewayError, NumRetries: 1, PerTryTimeout: perTry, BackoffBase: time.Millisecond}, 10*time.Second)).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	t0 := time.Now()
	r := get(t, client(t), "http://"+addr("out")+"/")
	el := time.Since(t0)
	if r.code != 200 || r.body != "second" {
		t.Fatalf("got %d %q, want 200 from the second try", r.code, r.body)
	}
	if el < perTry || el > 5*time.Second {
		t.Errorf("took %s, want at least the per-try timeout %s and far less than the route timeout", el, perTry)
	}
	if got := tries.Load(); got != 2 {
		t.Errorf("backend saw %d tries, want 2", got)
	}
}

func TestRouteTimeoutIs504UT(t *testing.T) {
	g := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) { g.wait(r.Context()) })
	const timeout = 200 * time.Millisecond
	s := newSnap().
		httpListener("out", retryRoute(nil, timeout)).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	t0 := time.Now()
	r := get(t, client(t), "http://"+addr("out")+"/")
	el := time.Since(t0)
	if r.code != http.StatusGatewayTimeout || r.flags != "UT" {
		t.Errorf("got %d flags %q, want 504 UT", r.code, r.flags)
	}
	if el < timeout || el > 5*time.Second {
		t.Errorf("took %s, want about the route timeout %s", el, timeout)
	}
}

// TestRetryBudget checks RetryBudgetPercent: active retries may be at most
// the given share of active requests.
func TestRetryBudget(t *testing.T) {
	const n = 30
	budget := config.CircuitBreakers{RetryBudgetPercent: 20, MinRetryConcurrency: 2}
	limit := int(0.20 * n) // the largest budget possible with n active requests

	// Every first try fails at the same moment (a barrier), so all n
	// retry decisions are made together: the budget must refuse most.
	t.Run("simultaneous failures", func(t *testing.T) {
		var arrived atomic.Int64
		all := newGate(t)
		seen := map[string]int{}
		var mu sync.Mutex
		b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[r.Header.Get("x-id")]++
			first := seen[r.Header.Get("x-id")] == 1
			mu.Unlock()
			if first {
				if arrived.Add(1) == n {
					all.open()
				}
				all.wait(r.Context())
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		})
		// A long backoff keeps admitted retries active while the others
		// decide.
		rp := &config.RetryPolicy{On: config.Retry5xx, NumRetries: 1, BackoffBase: time.Second, BackoffMax: time.Second}
		s := newSnap().
			httpListener("out", retryRoute(rp, 10*time.Second)).
			cluster(&config.Cluster{Name: "svc", Circuit: budget}, loc("r1", "z1", 0, b.addr()))
		mo, reg := withMetrics(t)
		_, addr := start(t, s, mo)
		c := client(t)
		var ok, unavailable atomic.Int64
		err := fanout(n, n, func(i int) error {
			r, err := fetch(c, "http://"+addr("out")+"/", "x-id", strconv.Itoa(i))
			if err != nil {
				return err
			}
			switch r.code {
			case 200:
				ok.Add(1)
			case 503:
				unavailable.Add(1)
			default:
				return fmt.Errorf("status %d", r.code)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		refused := metric(t, reg, "circuit_breaker_open_total", "destination_service", "svc", "limit", "retries")
		t.Logf("%d retried to 200, %d refused a retry (circuit_breaker_open_total{limit=retries} %v)", ok.Load(), unavailable.Load(), refused)
		if refused < 1 || unavailable.Load() < 1 {
			t.Errorf("no retry was refused; a 20%% budget of %d requests allows about %d", n, limit)
		}
		if float64(unavailable.Load()) != refused {
			t.Errorf("%d requests lost their retry but circuit_breaker_open_total{limit=retries} is %v", unavailable.Load(), refused)
		}
		// Generous: the budget is ~6 at once; admitted retries are
		// released after a backoff uniform in [0, 1s).
		if ok.Load() > n/2 {
			t.Errorf("%d of %d requests were retried; the budget allows about %d at once", ok.Load(), n, limit)
		}
	})

	// Retries whose tries hang: a retry in flight is an active retry
	// (Envoy: "concurrent retries"), so at most ~limit retries may be
	// outstanding at the backend at once, however the failures are spread.
	t.Run("retries in flight", func(t *testing.T) {
		hold := newGate(t)
		var retrying atomic.Int64
		seen := map[string]int{}
		var mu sync.Mutex
		b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[r.Header.Get("x-id")]++
			first := seen[r.Header.Get("x-id")] == 1
			mu.Unlock()
			if first {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			retrying.Add(1)
			hold.wait(r.Context())
			io.WriteString(w, "ok")
		})
		rp := &config.RetryPolicy{On: config.Retry5xx, NumRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}
		s := newSnap().
			httpListener("out", retryRoute(rp, 20*time.Second)).
			cluster(&config.Cluster{Name: "svc", Circuit: budget}, loc("r1", "z1", 0, b.addr()))
		_, addr := start(t, s)
		c := client(t)
		var done atomic.Int64
		var wg sync.WaitGroup
		defer wg.Wait()
		defer hold.open()
		for i := range n {
			wg.Go(func() {
				defer done.Add(1)
				r, err := fetch(c, "http://"+addr("out")+"/", "x-id", strconv.Itoa(i))
				if err == nil && r.code != 200 && r.code != 503 {
					t.Errorf("request %d: status %d", i, r.code)
				}
			})
		}
		// Every request either finished (no retry) or has its retry
		// hanging at the backend.
		eventually(t, 10*time.Second, "every request to be answered or retrying", func() bool {
			return done.Load()+retrying.Load() == n
		})
		if got := retrying.Load(); got > int64(limit) {
			t.Errorf("%d retries in flight at once; a 20%% retry budget of %d active requests allows at most %d "+
				"(the engine releases the retry slot after the backoff, before the retried try)", got, n, limit)
		}
	})
}

// TestMaxRetriesCapsRetriesInFlight: CircuitBreakers.MaxRetries bounds
// parallel retries; a retry whose try is still outstanding counts.
func TestMaxRetriesCapsRetriesInFlight(t *testing.T) {
	hold := newGate(t)
	var mu sync.Mutex
	seen := map[string]int{}
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("x-id")]++
		first := seen[r.Header.Get("x-id")] == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		hold.wait(r.Context())
		io.WriteString(w, "ok")
	})
	rp := &config.RetryPolicy{On: config.Retry5xx, NumRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}
	s := newSnap().
		httpListener("out", retryRoute(rp, 20*time.Second)).
		cluster(&config.Cluster{Name: "svc", Circuit: config.CircuitBreakers{MaxRetries: 1}}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	c := client(t)

	aDone := make(chan result, 1)
	go func() {
		r, _ := fetch(c, "http://"+addr("out")+"/", "x-id", "a")
		aDone <- r
	}()
	eventually(t, 5*time.Second, "request a's retry to reach the backend", func() bool { return hold.in.Load() == 1 })

	// b fails while a's retry is outstanding: max_retries 1 is used up.
	bDone := make(chan result, 1)
	go func() {
		r, _ := fetch(c, "http://"+addr("out")+"/", "x-id", "b")
		bDone <- r
	}()
	select {
	case r := <-bDone:
		if r.code != http.StatusServiceUnavailable {
			t.Errorf("request b: got %d, want the upstream 503 without a retry", r.code)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("request b was retried while request a's retry was in flight; max_retries 1 must cap parallel retries " +
			"(the engine releases the retry slot after the backoff, before the retried try)")
		hold.open()
		<-bDone
	}
	hold.open()
	if r := <-aDone; r.code != 200 {
		t.Errorf("request a: got %d, want 200 from its retry", r.code)
	}
}

// ---- locality failover ----

func TestLocalityFailoverWithoutFailedRequests(t *testing.T) {
	p0a, p0b := newBackend(t, "p0a", false), newBackend(t, "p0b", false)
	p1a, p1b := newBackend(t, "p1a", false), newBackend(t, "p1b", false)
	rp := &config.RetryPolicy{On: config.RetryConnectFailure | config.RetryGatewayError, NumRetries: 2, BackoffBase: time.Millisecond}
	cl := &config.Cluster{Name: "svc", Circuit: config.CircuitBreakers{MaxRetries: 64}, Outlier: &config.OutlierDetection{
		Consecutive5xx: 3, ConsecutiveGatewayFailure: 3, BaseEjectionTime: 30 * time.Second,
		MaxEjectionPercent: 100, // let both P0 hosts go (the default 10% ejects only one)
	}}
	s := newSnap().
		httpListener("out", retryRoute(rp, 10*time.Second)).
		cluster(cl, loc("r1", "z1", 0, p0a.addr(), p0b.addr()), loc("r2", "z1", 1, p1a.addr(), p1b.addr()))
	mo, reg := withMetrics(t)
	p, addr := start(t, s, mo)
	c := client(t)

	const n, killAt = 1200, 200
	var done atomic.Int64
	var killOnce sync.Once
	killed := make(chan struct{})
	var after [4]atomic.Int64 // answers by backend for requests started after the kill
	names := map[string]int{"p0a": 0, "p0b": 1, "p1a": 2, "p1b": 3}
	err := fanout(4, n, func(i int) error {
		if i >= killAt {
			killOnce.Do(func() {
				go func() { p0a.srv.Close(); p0b.srv.Close(); close(killed) }()
			})
		}
		startedAfterKill := false
		select {
		case <-killed:
			startedAfterKill = true
		default:
		}
		r, err := fetch(c, "http://"+addr("out")+"/")
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if err := ok200(r); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if startedAfterKill {
			after[names[r.backend]].Add(1)
		}
		done.Add(1)
		return nil
	})
	if err != nil {
		t.Fatalf("a client request failed during failover: %v", err)
	}
	<-killed
	if p0 := after[0].Load() + after[1].Load(); p0 != 0 {
		t.Errorf("%d requests were answered by killed P0 backends", p0)
	}
	if p1 := after[2].Load() + after[3].Load(); p1 == 0 {
		t.Errorf("no traffic moved to P1")
	}
	for _, cd := range p.ClustersStatus().([]clusterDump) {
		if cd.Name != "svc" {
			continue
		}
		for _, h := range cd.Status.Hosts {
			if h.Priority == 0 && !h.Ejected {
				t.Errorf("P0 host %s is not ejected: %+v", h.Address, h)
			}
			if h.Priority == 1 && h.Ejected {
				t.Errorf("P1 host %s is ejected", h.Address)
			}
		}
		if len(cd.Status.Levels) == 2 && cd.Status.Levels[1].LoadPercent != 100 {
			t.Errorf("P1 load %d%%, want 100%%", cd.Status.Levels[1].LoadPercent)
		}
	}
	if v := metric(t, reg, "failover_level", "destination_service", "svc"); v != 1 {
		t.Errorf("failover_level = %v, want 1", v)
	}
	if v := metric(t, reg, "outlier_ejections_active", "destination_service", "svc"); v != 2 {
		t.Errorf("outlier_ejections_active = %v, want 2", v)
	}
}

func TestGradualSpillover(t *testing.T) {
	// P0 has 10 endpoints, 3 unhealthy: its health is 1.4*7/10 = 98%, so
	// 2% of requests spill to P1.
	var p0 []string
	for i := range 7 {
		p0 = append(p0, newBackend(t, "p0-"+strconv.Itoa(i), false).addr())
	}
	bad := loc("r1", "z1", 0)
	for range 3 {
		bad.Endpoints = append(bad.Endpoints, config.Endpoint{Address: deadAddr(t), Health: config.Unhealthy})
	}
	good := loc("r1", "z1", 0, p0...)
	good.Endpoints = append(good.Endpoints, bad.Endpoints...)
	p1 := newBackend(t, "p1", false)
	s := newSnap().
		httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, good, loc("r2", "z1", 1, p1.addr()))
	_, addr := start(t, s)
	c := client(t)
	const n = 3000
	err := fanout(8, n, func(int) error {
		r, err := fetch(c, "http://"+addr("out")+"/")
		if err != nil {
			return err
		}
		return ok200(r)
	})
	if err != nil {
		t.Fatalf("a request failed: %v (unhealthy endpoints must never be picked)", err)
	}
	// Binomial(3000, 0.02): mean 60, sd 7.7.
	binomial(t, "P1 share", int(p1.hits.Load()), n, 0.02, 5)
}

func TestPanicThreshold(t *testing.T) {
	for _, tc := range []struct {
		threshold float64
		wantAll   bool
	}{{threshold: 50, wantAll: true}, {threshold: 0, wantAll: false}} {
		t.Run(fmt.Sprint(tc.threshold), func(t *testing.T) {
			// Four live backends, three of them marked unhealthy by the
			// control plane: 25% usable.
			var bs []*backend
			le := loc("r1", "z1", 0)
			for i := range 4 {
				b := newBackend(t, "b"+strconv.Itoa(i), false)
				bs = append(bs, b)
				h := config.Unhealthy
				if i == 0 {
					h = config.Healthy
				}
				le.Endpoints = append(le.Endpoints, config.Endpoint{Address: b.addr(), Health: h})
			}
			s := newSnap().
				httpListener("out", prefix("/", to("svc"))).
				cluster(&config.Cluster{Name: "svc", PanicThreshold: tc.threshold}, le)
			_, addr := start(t, s)
			c := client(t)
			for range 200 {
				if r := get(t, c, "http://"+addr("out")+"/"); r.code != 200 {
					t.Fatalf("got %d", r.code)
				}
			}
			for i, b := range bs[1:] {
				if got := b.hits.Load(); tc.wantAll && got == 0 {
					t.Errorf("panic threshold %v: unhealthy b%d got no traffic; 25%% usable is below the threshold, so the level must balance over all hosts", tc.threshold, i+1)
				} else if !tc.wantAll && got != 0 {
					t.Errorf("panic disabled: unhealthy b%d got %d requests", i+1, got)
				}
			}
		})
	}
}

// ---- load-balancing policies ----

func TestLeastRequestAvoidsBusyHost(t *testing.T) {
	hold := newGate(t)
	slow := hbackend(t, "slow", false, func(w http.ResponseWriter, r *http.Request) { hold.wait(r.Context()) })
	fast := newBackend(t, "fast", false)
	s := newSnap().
		httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc", LB: config.LeastRequest}, loc("r1", "z1", 0, slow.addr(), fast.addr()))
	_, addr := start(t, s)
	c := client(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer hold.open()

	send := func() {
		wg.Go(func() { fetch(c, "http://"+addr("out")+"/") })
	}
	landed := func() int64 { return slow.hits.Load() + fast.hits.Load() }
	// Pin four requests on the slow host.
	for i := int64(1); slow.hits.Load() < 4 && i < 200; i++ {
		send()
		eventually(t, 5*time.Second, "the request to reach a backend", func() bool { return landed() == i })
	}
	if slow.hits.Load() < 4 {
		t.Fatal("could not pin requests on the slow host")
	}
	// Now send one request at a time: P2C picks the idle host unless both
	// candidates are the busy one (1 in 4); round robin would give 1 in 2.
	const n = 200
	f0, base := fast.hits.Load(), landed()
	for i := range int64(n) {
		send()
		eventually(t, 5*time.Second, "the request to reach a backend", func() bool { return landed() == base+i+1 })
	}
	got := fast.hits.Load() - f0
	binomial(t, "share to the idle host", int(got), n, 0.75, 5)
}

func TestRingHashStickyByHeader(t *testing.T) {
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, newBackend(t, "b"+strconv.Itoa(i), false).addr())
	}
	fa := to("svc")
	fa.HashPolicy = []config.HashPolicy{{Header: "x-user"}}
	s := newSnap().
		httpListener("out", prefix("/", fa)).
		cluster(&config.Cluster{Name: "svc", LB: config.RingHash}, loc("r1", "z1", 0, addrs...))
	_, addr := start(t, s)
	c := client(t)
	owner := map[string]string{}
	used := map[string]bool{}
	for round := range 10 {
		for u := range 20 {
			user := "user-" + strconv.Itoa(u)
			r := get(t, c, "http://"+addr("out")+"/", "x-user", user)
			if r.code != 200 {
				t.Fatalf("got %d", r.code)
			}
			if prev, ok := owner[user]; ok && prev != r.backend {
				t.Fatalf("round %d: %s went to %s, earlier to %s; ring hash must be sticky", round, user, r.backend, prev)
			}
			owner[user] = r.backend
			used[r.backend] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("20 users all hashed to %v; the ring must spread users", used)
	}
}

// ---- mirroring ----

func TestMirror(t *testing.T) {
	t.Run("every request is copied with a -shadow host", func(t *testing.T) {
		primary := newBackend(t, "primary", false)
		shadow := newBackend(t, "shadow", false)
		fa := to("svc")
		fa.Mirrors = []config.Mirror{{Cluster: "shadow", Percent: 100}}
		s := newSnap().
			httpListener("out", prefix("/", fa)).
			cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, primary.addr())).
			cluster(&config.Cluster{Name: "shadow"}, loc("r1", "z1", 0, shadow.addr()))
		mo, reg := withMetrics(t)
		_, addr := start(t, s, mo)
		c := client(t)
		const n = 20
		for i := range n {
			r := get(t, c, "http://"+addr("out")+"/m/"+strconv.Itoa(i), "host", "svc.shop")
			if r.code != 200 || r.backend != "primary" || !strings.HasPrefix(r.body, "primary ") {
				t.Fatalf("got %d from %q body %q, want the primary's answer only", r.code, r.backend, r.body)
			}
		}
		eventually(t, 5*time.Second, "the shadow to see every request", func() bool { return shadow.hits.Load() == n })
		shadow.mu.Lock()
		for _, r := range shadow.seen {
			if r.Host != "svc.shop-shadow" {
				t.Errorf("shadow saw Host %q, want svc.shop-shadow", r.Host)
			}
			if !strings.HasPrefix(r.URL.Path, "/m/") {
				t.Errorf("shadow saw path %q", r.URL.Path)
			}
		}
		shadow.mu.Unlock()
		if got := primary.hits.Load(); got != n {
			t.Errorf("primary saw %d, want %d", got, n)
		}
		if v := metric(t, reg, "mirror_requests_total", "destination_service", "shadow"); v != n {
			t.Errorf("mirror_requests_total = %v, want %d", v, n)
		}
	})
	t.Run("a hanging mirror never delays the primary", func(t *testing.T) {
		primary := newBackend(t, "primary", false)
		hang := make(chan struct{})
		shadow := hbackend(t, "shadow", false, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		})
		fa := to("svc")
		fa.Mirrors = []config.Mirror{{Cluster: "shadow", Percent: 100}}
		s := newSnap().
			httpListener("out", prefix("/", fa)).
			cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, primary.addr())).
			cluster(&config.Cluster{Name: "shadow"}, loc("r1", "z1", 0, shadow.addr()))
		_, addr := start(t, s, func(o *Options) { o.MirrorTimeout = time.Minute })
		t.Cleanup(func() { close(hang) }) // runs before the proxy and backends close
		c := client(t)
		for i := range 10 {
			t0 := time.Now()
			r := get(t, c, "http://"+addr("out")+"/")
			if el := time.Since(t0); el > time.Second {
				t.Errorf("request %d took %s with the mirror hanging; the mirror must not delay the primary", i, el)
			}
			if r.code != 200 || r.backend != "primary" {
				t.Errorf("got %d from %q", r.code, r.backend)
			}
		}
		eventually(t, 5*time.Second, "the shadow to hold every mirrored request", func() bool { return shadow.hits.Load() == 10 })
	})
}

// ---- fault injection ----

func TestFaultInjection(t *testing.T) {
	faultRoute := func(f *config.FaultPolicy) *config.Route {
		r := prefix("/", to("svc"))
		r.Fault = f
		return r
	}
	t.Run("abort 100%", func(t *testing.T) {
		b := newBackend(t, "b", false)
		s := newSnap().httpListener("out", faultRoute(&config.FaultPolicy{AbortPercent: 100, AbortStatus: http.StatusTeapot})).
			cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
		mo, reg := withMetrics(t)
		_, addr := start(t, s, mo)
		c := client(t)
		for range 10 {
			r := get(t, c, "http://"+addr("out")+"/")
			if r.code != http.StatusTeapot || r.flags != "FI" {
				t.Fatalf("got %d flags %q, want 418 FI", r.code, r.flags)
			}
		}
		if b.hits.Load() != 0 {
			t.Errorf("aborted requests reached the backend")
		}
		if v := metric(t, reg, "fault_injected_total", "kind", "abort"); v != 10 {
			t.Errorf("fault_injected_total{kind=abort} = %v, want 10", v)
		}
	})
	t.Run("delay 100%", func(t *testing.T) {
		b := newBackend(t, "b", false)
		const d = 200 * time.Millisecond
		s := newSnap().httpListener("out", faultRoute(&config.FaultPolicy{DelayPercent: 100, Delay: d})).
			cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
		mo, reg := withMetrics(t)
		lo, logs := withAccessLog()
		_, addr := start(t, s, mo, lo)
		t0 := time.Now()
		r := get(t, client(t), "http://"+addr("out")+"/")
		if el := time.Since(t0); el < d {
			t.Errorf("took %s, want at least the injected %s", el, d)
		}
		if r.code != 200 || r.backend != "b" {
			t.Errorf("got %d from %q, want 200 from the backend after the delay", r.code, r.backend)
		}
		if v := metric(t, reg, "fault_injected_total", "kind", "delay"); v != 1 {
			t.Errorf("fault_injected_total{kind=delay} = %v, want 1", v)
		}
		if es := logs.entries(t); len(es) != 1 || !strings.Contains(es[0]["response_flags"].(string), "DI") {
			t.Errorf("access log %v, want response_flags DI", es)
		}
	})
	t.Run("abort 50%", func(t *testing.T) {
		b := newBackend(t, "b", false)
		s := newSnap().httpListener("out", faultRoute(&config.FaultPolicy{AbortPercent: 50, AbortStatus: http.StatusServiceUnavailable})).
			cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
		_, addr := start(t, s)
		c := client(t)
		const n = 400
		var aborted atomic.Int64
		err := fanout(4, n, func(int) error {
			r, err := fetch(c, "http://"+addr("out")+"/")
			if err != nil {
				return err
			}
			switch {
			case r.code == 503 && r.flags == "FI":
				aborted.Add(1)
			case r.code == 200:
			default:
				return fmt.Errorf("got %d %q", r.code, r.flags)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		binomial(t, "aborted", int(aborted.Load()), n, 0.5, 5)
		if got := b.hits.Load() + aborted.Load(); got != n {
			t.Errorf("backend hits + aborts = %d, want %d", got, n)
		}
	})
}

// ---- circuit breaking ----

func TestCircuitBreakerMaxRequests(t *testing.T) {
	hold := newGate(t)
	var blocking atomic.Bool
	blocking.Store(true)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		if blocking.Load() {
			hold.wait(r.Context())
		}
		io.WriteString(w, "ok")
	})
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc", Circuit: config.CircuitBreakers{MaxRequests: 2}}, loc("r1", "z1", 0, b.addr()))
	mo, reg := withMetrics(t)
	_, addr := start(t, s, mo)
	c := client(t)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer hold.open()
	codes := make(chan int, 2)
	for range 2 {
		wg.Go(func() {
			r, err := fetch(c, "http://"+addr("out")+"/")
			if err != nil {
				t.Error(err)
				codes <- 0
				return
			}
			codes <- r.code
		})
	}
	eventually(t, 5*time.Second, "two requests to block at the backend", func() bool { return hold.in.Load() == 2 })

	t0 := time.Now()
	r := get(t, c, "http://"+addr("out")+"/")
	if el := time.Since(t0); el > time.Second {
		t.Errorf("the overflowing request took %s; it must be refused at once", el)
	}
	if r.code != http.StatusServiceUnavailable || r.flags != "UO" {
		t.Errorf("third concurrent request: got %d flags %q, want 503 UO", r.code, r.flags)
	}
	if v := metric(t, reg, "circuit_breaker_open_total", "destination_service", "svc", "limit", "requests"); v != 1 {
		t.Errorf("circuit_breaker_open_total{limit=requests} = %v, want 1", v)
	}

	blocking.Store(false)
	hold.open()
	for range 2 {
		if code := <-codes; code != 200 {
			t.Errorf("a held request ended with %d, want 200", code)
		}
	}
	for i := range 5 {
		if r := get(t, c, "http://"+addr("out")+"/"); r.code != 200 {
			t.Errorf("request %d after release: got %d %q, want 200", i, r.code, r.flags)
		}
	}
}

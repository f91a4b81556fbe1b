package proxy

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"net/http"

	"github.com/causewaymesh/causeway/proxy/config"
)

// TestH2ConnsPerEndpoint: an HTTP/2 cluster keeps h2Conns multiplexed
// connections to an endpoint, used in turn, and no more while each has
// room for streams.
func TestH2ConnsPerEndpoint(t *testing.T) {
	b := newBackend(t, "b", true)
	s := newSnap().
		httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc", Protocol: config.HTTP2}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	c := client(t)
	for i := range 10 * h2Conns {
		if r := get(t, c, "http://"+addr("out")+"/"); r.code != 200 {
			t.Fatalf("request %d: %d %s", i, r.code, r.body)
		}
	}
	if got := b.conns.Load(); got != h2Conns {
		t.Errorf("%d requests one after another opened %d connections to the endpoint, want %d (h2Conns)", 10*h2Conns, got, h2Conns)
	}
	if p := b.last().Proto; p != "HTTP/2.0" {
		t.Errorf("upstream request over %s, want HTTP/2.0", p)
	}
}

// TestConnectionLostRetriedWithoutBudget: when an HTTP/2 connection dies
// under many streams at once (its peer went away), every one of them is
// retried in another locality at once: those retries take no retry-budget
// slot, where stream resets of a live connection do.
func TestConnectionLostRetriedWithoutBudget(t *testing.T) {
	const n = 30
	var arrived atomic.Int64
	all, never := newGate(t), newGate(t)
	a := hbackend(t, "a", true, func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == n {
			all.open()
		}
		never.wait(r.Context()) // until the connection is closed under it
	})
	b := newBackend(t, "b", true)
	// The budget allows 2 retries at once, and a budgeted retry holds its
	// slot through a backoff of up to a second: were the 30 retries
	// budgeted, most would be refused.
	rp := &config.RetryPolicy{On: config.RetryReset, NumRetries: 1, BackoffBase: time.Second, BackoffMax: time.Second}
	s := newSnap().
		httpListener("out", retryRoute(rp, 10*time.Second)).
		cluster(&config.Cluster{Name: "svc", Protocol: config.HTTP2, Circuit: config.CircuitBreakers{RetryBudgetPercent: 20, MinRetryConcurrency: 2}},
			loc("r1", "z1", 0, a.addr()), loc("r1", "z2", 1, b.addr()))
	mo, reg := withMetrics(t)
	_, addr := start(t, s, mo)
	c := client(t)
	codes := make(chan string, n)
	done := make(chan error, 1)
	go func() {
		done <- fanout(n, n, func(i int) error {
			r, err := fetch(c, "http://"+addr("out")+"/", "x-id", strconv.Itoa(i))
			if err != nil {
				return err
			}
			codes <- strconv.Itoa(r.code) + " " + r.body
			return nil
		})
	}()
	select {
	case <-all.ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of %d requests reached endpoint a", arrived.Load(), n)
	}
	a.srv.CloseClientConnections() // a's connections die under all 30 streams
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(codes)
	for got := range codes {
		if !strings.HasPrefix(got, "200 b ") {
			t.Errorf("a request got %q, want 200 from b (retried in the other locality)", got)
		}
	}
	if refused := metric(t, reg, "circuit_breaker_open_total", "destination_service", "svc", "limit", "retries"); refused != 0 {
		t.Errorf("circuit_breaker_open_total{limit=retries} = %v, want 0: a lost connection's retries take no budget", refused)
	}
	if retries := metric(t, reg, "retries_total", "destination_service", "svc", "reason", "reset"); retries != n {
		t.Errorf("retries_total{reason=reset} = %v, want %d", retries, n)
	}
}

// TestPeerProxyFailureRetried: a 503 that another Causeway proxy answered
// itself because it could not reach its application (x-causeway-flags UF:
// connect failure; UR: its connection died) is retried on another endpoint
// like the failure it reports; an application's own 503 is not (no
// 5xx in the policy).
func TestPeerProxyFailureRetried(t *testing.T) {
	for _, tc := range []struct {
		name, flags, want string
	}{
		{"peer could not connect to its app", "UF", "200 b "},
		{"peer's app connection died", "UR", "200 b "},
		{"peer gave up after its retries", "UF,URX", "200 b "},
		{"the application's own 503", "", "503 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := hbackend(t, "a", true, func(w http.ResponseWriter, r *http.Request) {
				if tc.flags != "" {
					w.Header().Set("x-causeway-flags", tc.flags)
				}
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			b := newBackend(t, "b", true)
			rp := &config.RetryPolicy{On: config.RetryConnectFailure | config.RetryReset, NumRetries: 1}
			s := newSnap().
				httpListener("out", retryRoute(rp, 10*time.Second)).
				cluster(&config.Cluster{Name: "svc", Protocol: config.HTTP2}, loc("r1", "z1", 0, a.addr()), loc("r1", "z2", 1, b.addr()))
			_, addr := start(t, s)
			r := get(t, client(t), "http://"+addr("out")+"/")
			if got := strconv.Itoa(r.code) + " " + r.body; !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, want %q...", got, tc.want)
			}
			if a.hits.Load() != 1 {
				t.Errorf("endpoint a got %d requests, want 1", a.hits.Load())
			}
		})
	}
}

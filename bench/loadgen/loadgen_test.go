package main

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBucketsCoverEveryValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 40, 1<<63 - 1, 1<<64 - 1}
	for range 10000 {
		vals = append(vals, rng.Uint64()>>rng.UintN(64))
	}
	for _, v := range vals {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0,%d)", v, i, histBuckets)
		}
		lo, w := bucketRange(i)
		if v < lo || v-lo >= w {
			t.Fatalf("value %d in bucket %d = [%d,%d+%d)", v, i, lo, lo, w)
		}
		if v >= histLinear && float64(w)/float64(lo) > 1.0/64+1e-12 {
			t.Fatalf("bucket %d: width %d over low %d is more than 1/64", i, w, lo)
		}
	}
}

func TestQuantileMatchesSortedSamples(t *testing.T) {
	tests := []struct {
		name string
		gen  func(*rand.Rand) time.Duration
	}{
		{"uniform 50-500us", func(r *rand.Rand) time.Duration { return time.Duration(50_000 + r.IntN(450_000)) }},
		{"exponential mean 200us", func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * 200_000) }},
		{"bimodal with 2% stalls", func(r *rand.Rand) time.Duration {
			if r.IntN(100) < 2 {
				return time.Duration(50+r.IntN(50)) * time.Millisecond
			}
			return time.Duration(100_000 + r.IntN(20_000))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 11))
			samples := make([]time.Duration, 20_000)
			// Spread the samples over several histograms to test Merge too.
			parts := make([]Histogram, 4)
			for i := range samples {
				samples[i] = tc.gen(rng)
				parts[i%len(parts)].Record(samples[i])
			}
			var h Histogram
			for i := range parts {
				h.Merge(&parts[i])
			}
			slices.Sort(samples)
			if h.Count() != uint64(len(samples)) {
				t.Fatalf("Count = %d, want %d", h.Count(), len(samples))
			}
			if h.Max() != samples[len(samples)-1] {
				t.Errorf("Max = %v, want %v", h.Max(), samples[len(samples)-1])
			}
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := int(float64(len(samples))*q+0.999999) - 1
				want := samples[max(rank, 0)]
				got := h.Quantile(q)
				if rel := float64(got-want) / float64(want); rel > 0.01 || rel < -0.01 {
					t.Errorf("q%.3f = %v, exact %v (%.2f%% off, want within 1%%)", q, got, want, rel*100)
				}
			}
		})
	}
}

func TestQuantileEmptyAndNegative(t *testing.T) {
	var h Histogram
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("empty Quantile = %v, want 0", got)
	}
	h.Record(-time.Second)
	if got := h.Quantile(0.99); got != 0 {
		t.Errorf("negative sample recorded as %v, want 0", got)
	}
}

func TestLatencyStart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	tests := []struct {
		name     string
		intended time.Time
		sent     time.Time
		slept    bool
		want     time.Time
	}{
		{"on time", t0, t0, false, t0},
		{"worker busy 5ms past due: charge the wait", t0, t0.Add(5 * ms), false, t0},
		{"slept, woke 1ms late: timer error, not charged", t0, t0.Add(ms), true, t0.Add(ms)},
		{"sent before due (never in practice)", t0, t0.Add(-ms), false, t0.Add(-ms)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := latencyStart(tc.intended, tc.sent, tc.slept); !got.Equal(tc.want) {
				t.Errorf("latencyStart = %v, want %v", got.Sub(t0), tc.want.Sub(t0))
			}
		})
	}
}

// TestOpenLoopChargesStalls is the coordinated-omission check: one request
// of a single-connection 500 req/s run stalls for 100 ms. The requests due
// during the stall wait behind it, and their latency must say so, while the
// plain service time (from the actual send) hides it.
func TestOpenLoopChargesStalls(t *testing.T) {
	const stall = 100 * time.Millisecond
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 50 {
			time.Sleep(stall) // the simulated slow request, not synchronisation
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	cfg := &config{
		Addr: strings.TrimPrefix(srv.URL, "http://"), Host: "test", Path: "/", Client: "raw",
		Rate: 500, Conns: 1, Duration: 500 * time.Millisecond, Timeout: 2 * time.Second, Grace: time.Second,
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed != 250 || res.Errors != 0 {
		t.Fatalf("completed %d errors %d (%s), want 250 and 0", res.Completed, res.Errors, res.FirstError)
	}
	// About 50 requests were due during the stall; they waited from 100 ms
	// down to 0, so a tenth of all requests waited more than ~50 ms.
	if res.P99 < 80_000 {
		t.Errorf("corrected p99 = %.0fus, want >= 80ms: the stall was not charged", res.P99)
	}
	if res.P90 < 30_000 {
		t.Errorf("corrected p90 = %.0fus, want >= 30ms", res.P90)
	}
	if res.SvcP50 >= res.P90 {
		t.Errorf("service p50 %.0fus >= corrected p90 %.0fus", res.SvcP50, res.P90)
	}
}

func TestClosedLoopCountsAndErrors(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	for _, client := range []string{"raw", "nethttp"} {
		t.Run(client, func(t *testing.T) {
			cfg := &config{
				Addr: strings.TrimPrefix(srv.URL, "http://"), Host: "test", Path: "/", Client: client,
				Max: true, Conns: 4, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond, Timeout: time.Second,
			}
			res, err := run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Completed == 0 || res.Errors == 0 {
				t.Fatalf("completed %d errors %d, want both > 0", res.Completed, res.Errors)
			}
			if !strings.Contains(res.FirstError, "503") {
				t.Errorf("first error %q does not name the 503", res.FirstError)
			}
			if frac := float64(res.Errors) / float64(res.Errors+res.Completed); frac < 0.05 || frac > 0.15 {
				t.Errorf("error fraction %.3f, want about 0.1", frac)
			}
		})
	}
}

// TestRawClientResponses serves canned responses on a raw socket and checks
// that the hand-rolled client finds the end of each and keeps or drops the
// connection as the response says.
func TestRawClientResponses(t *testing.T) {
	tests := []struct {
		name      string
		resp      string
		wantErr   error // nil, errStatus, or errAny
		wantAlive bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", nil, true},
		{"mixed-case header", "HTTP/1.1 204 No Content\r\ncOnTeNt-LeNgTh: 0\r\n\r\n", nil, true},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", nil, true},
		{"connection close", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", nil, false},
		{"body to EOF", "HTTP/1.0 200 OK\r\n\r\nuntil the end", nil, false},
		{"503", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", errStatus, true},
		{"garbage", "SSH-2.0-nope\r\n\r\n", errAny, false},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", errAny, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := serveCanned(t, tc.resp)
			c := newRawClient(addr, "test", "/")
			err := c.do(time.Now().Add(2 * time.Second))
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("do: %v", err)
			case tc.wantErr == errAny && err == nil:
				t.Fatal("do succeeded, want an error")
			case tc.wantErr == errStatus && !errors.Is(err, errStatus):
				t.Fatalf("do: %v, want errStatus", err)
			}
			if alive := c.conn != nil; alive != tc.wantAlive {
				t.Errorf("connection kept = %v, want %v", alive, tc.wantAlive)
			}
			c.close()
			<-done
		})
	}
}

var errAny = errors.New("any error")

// serveCanned accepts one connection on 127.0.0.1, reads one request and
// answers with resp; if resp has no Connection: close, it waits for the
// client to hang up.
func serveCanned(t *testing.T, resp string) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		_, _ = conn.Write([]byte(resp))
		if strings.Contains(resp, "close") || strings.HasPrefix(resp, "HTTP/1.0") || !strings.HasPrefix(resp, "HTTP/") {
			return
		}
		_, _ = br.ReadByte() // until the client closes
	}()
	return ln.Addr().String(), done
}

func TestParseProc(t *testing.T) {
	stat := []byte("1234 (weird) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 4 0 0 20 0 3 0 100 1000 200\n")
	if got, err := parseStatTicks(stat); err != nil || got != 21 {
		t.Errorf("parseStatTicks = %d, %v; want 21 (17+4)", got, err)
	}
	if _, err := parseStatTicks([]byte("1234 (x) S 1")); err == nil {
		t.Error("parseStatTicks of a short line: want an error")
	}
	status := []byte("Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t   4321 kB\nVmRSS:\t 1000 kB\nRssAnon:\t 600 kB\nRssFile:\t 400 kB\n")
	want := memory{PeakKB: 4321, AnonKB: 600, FileKB: 400}
	if got, err := parseStatus(status); err != nil || got != want {
		t.Errorf("parseStatus = %+v, %v; want %+v", got, err, want)
	}
	if _, err := parseStatus([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("parseStatus without VmHWM: want an error")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := func() config {
		return config{Addr: "127.0.0.1:1", Client: "raw", Rate: 1000, Conns: 8, Duration: time.Second, Timeout: time.Second}
	}
	tests := []struct {
		name   string
		mutate func(*config)
		want   string // substring of the error; "" for valid
	}{
		{"valid open loop", func(*config) {}, ""},
		{"valid closed loop", func(c *config) { c.Rate, c.Max = 0, true }, ""},
		{"both modes", func(c *config) { c.Max = true }, "-max and -rate"},
		{"no mode", func(c *config) { c.Rate = 0 }, "-rate 0"},
		{"bad client", func(c *config) { c.Client = "curl" }, "-client \"curl\""},
		{"too many requests", func(c *config) { c.Rate, c.Duration = 1e6, time.Minute }, "10,000,000"},
		{"no conns", func(c *config) { c.Conns = 0 }, "-conns 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mutate(&c)
			err := c.validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/telemetry"
)

// Fixed loopback addresses of the hot-path benchmarks (127.60.0.0/16 is
// this file's block, so that they never collide with other tests).
const (
	hotUpstreamAddr = "127.60.1.1:18300"
	hotListenAddr   = "127.60.1.1:18301"
)

// hotUpstream is an HTTP/1.1 server that allocates nothing per request:
// it reads a request head (no body) and answers with a fixed 128-byte
// response, like bench/backend, so that a benchmark's allocs/op are the
// proxy's.
type hotUpstream struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startHotUpstream(tb testing.TB, addr string) *hotUpstream {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("listen on %s: %v", addr, err)
	}
	body := bytes.Repeat([]byte("abcdefghijklmnop"), 8)
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...)
	u := &hotUpstream{ln: ln, conns: map[net.Conn]struct{}{}}
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns[c] = struct{}{}
			u.mu.Unlock()
			u.wg.Go(func() { serveHot(c, resp) })
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		u.mu.Lock()
		for c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	return u
}

func serveHot(c net.Conn, resp []byte) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	for {
		// A request head ends with an empty line; no request here has a body.
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// hotProxy starts a proxy configured like bench/bootstrap/sidecar-http1.yaml
// (one HTTP/1.1 listener, one route to one static HTTP/1.1 endpoint,
// x-request-id generated, metrics on, access log off).
func hotProxy(tb testing.TB) {
	tb.Helper()
	startHotUpstream(tb, hotUpstreamAddr)
	s := newSnap().httpListener("hot", prefix("/", to("backend"))).
		cluster(&config.Cluster{Name: "backend", Protocol: config.HTTP1}, loc("r", "z", 0, hotUpstreamAddr))
	s.s.Listeners[0].Address = hotListenAddr
	m, err := telemetry.NewMetrics(prometheus.NewRegistry(), telemetry.Workload{Name: "bench", Namespace: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	start(tb, s, func(o *Options) { o.Metrics = m })
}

// BenchmarkProxyHTTP1 is one keep-alive GET through the proxy to an
// HTTP/1.1 upstream and back: the path bench/run.sh measures. allocs/op
// are the proxy's (the client and the upstream allocate nothing).
func BenchmarkProxyHTTP1(b *testing.B) {
	hotProxy(b)
	benchKeepAliveGets(b, hotListenAddr, 1) // warms the upstream pool
}

// benchKeepAliveGets times one keep-alive GET per iteration to addr, after
// warm untimed ones.
func benchKeepAliveGets(b *testing.B, addr string, warm int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: loadgen\r\n\r\n")
	buf := make([]byte, 4096)
	get := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readOneResponse(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	for range warm {
		get()
	}
	b.ReportAllocs()
	for b.Loop() {
		get()
	}
}

// TestProxyHTTP1HotPath checks what the benchmark measures: the answer is
// the upstream's, whole, over one keep-alive connection.
func TestProxyHTTP1HotPath(t *testing.T) {
	hotProxy(t)
	c, err := net.Dial("tcp", hotListenAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 3 {
		if _, err := c.Write([]byte("GET /x HTTP/1.1\r\nHost: bench.local\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		status, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if status != "HTTP/1.1 200 OK\r\n" {
			t.Fatalf("request %d: status line %q", i, status)
		}
		clen := -1
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
			if v, ok := bytes.CutPrefix([]byte(line), []byte("Content-Length: ")); ok {
				clen, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if clen != 128 {
			t.Fatalf("request %d: Content-Length %d, want 128", i, clen)
		}
		body := make([]byte, clen)
		if _, err := hotReadFull(br, body); err != nil {
			t.Fatal(err)
		}
	}
}

func hotReadFull(br *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := br.Read(p[n:])
		n += m
		if err != nil {
			if n == len(p) {
				return n, nil
			}
			return n, errors.Join(err, errors.New("short body"))
		}
	}
	return n, nil
}

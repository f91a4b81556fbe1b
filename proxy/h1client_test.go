package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream accepts connections and answers each request read from them
// with answer(n, req), where n counts requests across all connections.
type rawUpstream struct {
	lis   net.Listener
	conns atomic.Int64
	reqs  atomic.Int64
	wg    sync.WaitGroup
}

func newRawUpstream(t *testing.T, answer func(n int64, r *http.Request, c net.Conn) (keep bool)) *rawUpstream {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{lis: lis}
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		u.wg.Wait()
	})
	u.wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			u.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			u.wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, r.Body)
					if !answer(u.reqs.Add(1), r, c) {
						return
					}
				}
			})
		}
	})
	return u
}

func h1req(method, addr, path string) *http.Request {
	return &http.Request{Method: method, URL: &url.URL{Scheme: "http", Host: addr, Path: path}, Header: http.Header{"User-Agent": emptyValue},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "svc"}
}

func plainDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return string(b)
}

func TestH1PoolReusesConnectionsAndReadsTrailers(t *testing.T) {
	u := newRawUpstream(t, func(n int64, r *http.Request, c net.Conn) bool {
		if r.Header.Get("User-Agent") != "" {
			io.WriteString(c, "HTTP/1.1 500 Bad\r\nContent-Length: 0\r\n\r\n")
			return false
		}
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n5\r\nhello\r\n0\r\nGrpc-Status: 0\r\n\r\n")
		case "/empty":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		default:
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		return true
	})
	p := newH1Pool(plainDial)
	defer p.CloseIdleConnections(true)
	ctx := context.Background()
	addr := u.lis.Addr().String()
	for i := range 5 {
		resp, err := p.RoundTrip(ctx, h1req("GET", addr, "/"), addr)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q (a 1xx must be skipped; no User-Agent may be invented)", i, resp.StatusCode, body)
		}
	}
	resp, err := p.RoundTrip(ctx, h1req("GET", addr, "/empty"), addr)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("204: %v %v", resp, err)
	}
	resp, err = p.RoundTrip(ctx, h1req("GET", addr, "/chunked"), addr)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "hello" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("chunked: %q trailer %v", body, resp.Trailer)
	}
	if n := u.conns.Load(); n != 1 {
		t.Errorf("%d connections for 7 sequential requests; want 1 kept alive", n)
	}
}

func TestH1PoolRetriesAStaleConnectionOnce(t *testing.T) {
	// The upstream answers and then closes without saying so: the pooled
	// connection is dead when the next request takes it.
	u := newRawUpstream(t, func(n int64, r *http.Request, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	p := newH1Pool(plainDial)
	defer p.CloseIdleConnections(true)
	addr := u.lis.Addr().String()
	for i := range 3 {
		resp, err := p.RoundTrip(context.Background(), h1req("GET", addr, "/"), addr)
		if err != nil {
			t.Fatalf("request %d on a connection the upstream closed: %v; the pool must resend once on a new one", i, err)
		}
		readAll(t, resp)
	}
}

func TestH1PoolHonoursConnectionCloseAndLimits(t *testing.T) {
	u := newRawUpstream(t, func(n int64, r *http.Request, c net.Conn) bool {
		switch r.URL.Path {
		case "/close":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
			return false
		case "/huge":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\n\r\n")
			return false
		case "/hang":
			io.Copy(io.Discard, c) // never answers; ends when the client hangs up
			return false
		}
		return false
	})
	p := newH1Pool(plainDial)
	defer p.CloseIdleConnections(true)
	addr := u.lis.Addr().String()
	resp, err := p.RoundTrip(context.Background(), h1req("GET", addr, "/close"), addr)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	p.mu.Lock()
	idle := len(p.idle[addr])
	p.mu.Unlock()
	if idle != 0 {
		t.Errorf("a connection the upstream said it would close went back to the pool")
	}
	if _, err := p.RoundTrip(context.Background(), h1req("GET", addr, "/huge"), addr); !errors.Is(err, errResponseHeaderTooLarge) {
		t.Errorf("2 MiB of response headers: got %v, want errResponseHeaderTooLarge", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := p.RoundTrip(ctx, h1req("GET", addr, "/hang"), addr); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging upstream: got %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("cancellation took %v; it must unblock the read at once", d)
	}
}

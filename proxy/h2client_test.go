package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// h2Upstream starts a proxy whose "out" listener sends everything over
// HTTP/2 (h2client.go) to b, an h2c server of net/http's.
func h2Upstream(t *testing.T, b *backend) (*Proxy, string) {
	t.Helper()
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc", Protocol: config.HTTP2}, loc("r1", "z1", 0, b.addr()))
	p, addr := start(t, s)
	return p, addr("out")
}

// TestH2ClientConcurrentStreams: many requests at once, answered out of
// order, each get their own answer, over at most h2Conns connections
// (the streams take turns reading them).
func TestH2ClientConcurrentStreams(t *testing.T) {
	const n = 200
	var arrived atomic.Int64
	all := make(chan struct{})
	b := hbackend(t, "b", true, func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == n {
			close(all)
		}
		select { // every request is in flight before any is answered
		case <-all:
		case <-r.Context().Done():
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.URL.Path, body)
	})
	_, addr := h2Upstream(t, b)
	c := client(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			path := fmt.Sprintf("/s%d", i)
			var body io.Reader
			if i%2 == 1 {
				body = strings.NewReader(fmt.Sprintf("body-%d", i))
			}
			method := http.MethodGet
			if body != nil {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, "http://"+addr+path, body)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			resp, err := c.Do(req.WithContext(ctx))
			if err != nil {
				errs <- fmt.Errorf("%s: %w", path, err)
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := path + " "
			if i%2 == 1 {
				want += fmt.Sprintf("body-%d", i)
			}
			if resp.StatusCode != 200 || string(got) != want {
				errs <- fmt.Errorf("%s: %d %q, want 200 %q", path, resp.StatusCode, got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := b.conns.Load(); c > h2Conns {
		t.Errorf("%d upstream connections, want at most %d", c, h2Conns)
	}
}

// TestH2ClientCancelWhileReading: a request whose caller goes away while
// it waits for its response (its goroutine reading the connection, since
// nothing else is in flight) returns at once, the upstream sees the
// stream cancelled, and the connection serves the next requests: the
// interrupted read lost no frame.
func TestH2ClientCancelWhileReading(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	b := hbackend(t, "b", true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-r.Context().Done()
			cancelled <- struct{}{}
			return
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})
	_, addr := h2Upstream(t, b)
	c := h2cClient(t) // an HTTP/2 downstream reports its cancellation (RST_STREAM)
	for round := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/hold", nil)
		done := make(chan error, 1)
		go func() {
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		eventually(t, 5*time.Second, "the held request reaches the backend", func() bool { return b.hits.Load() >= int64(2*round+1) })
		start := time.Now()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the cancelled request did not return")
		}
		select {
		case <-cancelled:
		case <-time.After(5 * time.Second):
			t.Fatal("the backend's request was not cancelled (no RST_STREAM upstream)")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("cancellation took %v", d)
		}
		if r := get(t, c, "http://"+addr+fmt.Sprintf("/next%d", round)); r.code != 200 || r.body != fmt.Sprintf("ok /next%d", round) {
			t.Fatalf("after a cancelled stream: %+v", r)
		}
	}
	if c := b.conns.Load(); c > h2Conns {
		t.Errorf("%d upstream connections, want at most %d: a cancelled stream must not cost its connection", c, h2Conns)
	}
}

// TestH2ClientUpstreamGoAway: an upstream proxy that drains answers its
// streams in flight and sends GOAWAY; requests after that go to a new
// connection (to the upstream's replacement) without an error.
func TestH2ClientUpstreamGoAway(t *testing.T) {
	app := newBackend(t, "app", false)
	in := newSnap().httpListener("in", prefix("/", to("app"))).
		cluster(&config.Cluster{Name: "app"}, loc("r1", "z1", 0, app.addr()))
	in.s.Listeners[0].Address = "127.0.0.1:0"
	pin, inAddr := start(t, in)
	out := newSnap().httpListener("out", prefix("/", to("peer"))).
		cluster(&config.Cluster{Name: "peer", Protocol: config.HTTP2}, loc("r1", "z1", 0, inAddr("in")))
	_, outAddr := start(t, out)
	c := client(t)
	for i := range 2 * h2Conns { // every slot's connection is open
		if r := get(t, c, fmt.Sprintf("http://%s/a%d", outAddr("out"), i)); r.code != 200 {
			t.Fatalf("before the drain: %+v", r)
		}
	}
	// The inbound proxy's limits change: its HTTP/2 connections get GOAWAY
	// and close, as a draining peer's do; it keeps serving new ones.
	in.s.Listeners[0].HTTP.MaxRequestHeadersBytes = 32 << 10
	in.s.Listeners[0].Address = inAddr("in")
	if err := pin.Apply(in.s); err != nil {
		t.Fatal(err)
	}
	for i := range 4 * h2Conns {
		if r := get(t, c, fmt.Sprintf("http://%s/b%d", outAddr("out"), i)); r.code != 200 {
			t.Fatalf("request %d after the upstream's GOAWAY: %+v", i, r)
		}
	}
}

// TestH2ClientLargeBodiesToHTTP2Upstream: 4 MiB each way through the
// client's flow control (windows returned as the body is read, request
// DATA waiting for the server's WINDOW_UPDATE).
func TestH2ClientLargeBodiesToHTTP2Upstream(t *testing.T) {
	b := hbackend(t, "b", true, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(body)
		w.Write(body)
	})
	_, addr := h2Upstream(t, b)
	up := make([]byte, 2<<20)
	rand.Read(up)
	resp, err := client(t).Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, append(append([]byte{}, up...), up...)) {
		t.Fatalf("echo: status %d, %d bytes (want %d), err %v", resp.StatusCode, len(got), 2*len(up), err)
	}
}

// TestH2ClientIdleConnectionsClosed: nobody reads an idle connection, so
// the pool closes one that had no stream for its idle timeout and forgets
// the endpoint once none of its connections is left; the next request
// dials again.
func TestH2ClientIdleConnectionsClosed(t *testing.T) {
	var opened, closed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	d := &net.Dialer{Timeout: 5 * time.Second}
	p := newH2Pool(d.DialContext, nil)
	p.idle = 50 * time.Millisecond
	t.Cleanup(func() { p.CloseIdleConnections(true) })
	roundTrip := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		resp, err := p.RoundTrip(ctx, req, addr)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok" {
			t.Fatalf("body %q", body)
		}
	}
	roundTrip()
	eventually(t, 5*time.Second, "the idle connection is closed and its endpoint forgotten", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return closed.Load() == 1 && len(p.hosts) == 0
	})
	roundTrip()
	if n := opened.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (one dialled again after the idle close)", n)
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// h1Raw is a raw HTTP/1.x client connection for tests that need control
// over the bytes on the wire.
type h1Raw struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialH1(t testing.TB, addr string) *h1Raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &h1Raw{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *h1Raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// read reads one response to a request of the given method, body included.
func (r *h1Raw) read(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("reading the response to %s: %v", method, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading the body of the response to %s: %v", method, err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection within bound
// (EOF or reset, not a timeout), and how long that took.
func (r *h1Raw) closed(bound time.Duration) (bool, time.Duration) {
	t0 := time.Now()
	r.c.SetReadDeadline(t0.Add(bound))
	b, err := r.br.ReadByte()
	var ne net.Error
	if err == nil {
		rest, _ := r.br.Peek(r.br.Buffered())
		r.t.Logf("unexpected bytes from the server: %q", append([]byte{b}, rest...))
	}
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		return false, time.Since(t0)
	}
	return true, time.Since(t0)
}

func echoSnap(b *backend) *snap {
	return newSnap().httpListener("out",
		&config.Route{Match: config.RouteMatch{PathKind: config.PathPrefix, Path: "/direct", CaseSensitive: true},
			Direct: &config.DirectResponse{Status: 200, Body: "direct"}},
		prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
}

func TestH1KeepAliveAndPipelining(t *testing.T) {
	b := newBackend(t, "b1", false)
	_, addr := start(t, echoSnap(b))
	r := dialH1(t, addr("out"))
	for i := range 3 {
		r.send("GET /seq/" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: svc\r\n\r\n")
		resp, body := r.read("GET")
		if want := "b1 GET /seq/" + strconv.Itoa(i) + " "; resp.StatusCode != 200 || body != want || resp.Close {
			t.Fatalf("request %d: %d %q close=%v, want 200 %q on a kept connection", i, resp.StatusCode, body, resp.Close, want)
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("request %d: no Date header", i)
		}
	}
	// Three requests in one write, one of them with a body; answers
	// come back in order.
	r.send("GET /p1 HTTP/1.1\r\nHost: svc\r\n\r\n" +
		"POST /p2 HTTP/1.1\r\nHost: svc\r\nContent-Length: 7\r\n\r\npayload" +
		"GET /direct HTTP/1.1\r\nHost: svc\r\n\r\n")
	for _, tc := range []struct{ method, want string }{{"GET", "b1 GET /p1 "}, {"POST", "b1 POST /p2 payload"}, {"GET", "direct"}} {
		if resp, body := r.read(tc.method); resp.StatusCode != 200 || body != tc.want {
			t.Errorf("pipelined: got %d %q, want 200 %q", resp.StatusCode, body, tc.want)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections, want 1 (upstream keep-alive)", n)
	}
}

func TestH1ChunkedRequestBody(t *testing.T) {
	b := newBackend(t, "b1", false)
	_, addr := start(t, echoSnap(b))
	r := dialH1(t, addr("out"))
	r.send("POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	if resp, body := r.read("POST"); resp.StatusCode != 200 || body != "b1 POST /up hello world" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	r.send("GET /after HTTP/1.1\r\nHost: svc\r\n\r\n")
	if resp, body := r.read("GET"); resp.StatusCode != 200 || body != "b1 GET /after " {
		t.Fatalf("the request after a chunked body got %d %q", resp.StatusCode, body)
	}
}

func TestH1ChunkedResponseWithTrailers(t *testing.T) {
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		io.WriteString(w, "part1")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Late", "l")
	})
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	resp, err := client(t).Get("http://" + addr("out") + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "part1part2" {
		t.Errorf("body %q", body)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	if got := resp.Trailer.Get("X-Declared"); got != "d" {
		t.Errorf("trailer X-Declared %q, want d", got)
	}
	if got := resp.Trailer.Get("X-Late"); got != "l" {
		t.Errorf("trailer X-Late %q, want l (trailers: %v)", got, resp.Trailer)
	}
}

func TestH1HTTP10Clients(t *testing.T) {
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "streamed-")
		w.(http.Flusher).Flush()
		io.WriteString(w, "end")
	})
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)

	t.Run("unknown length is delimited by close", func(t *testing.T) {
		r := dialH1(t, addr("out"))
		r.send("GET /x HTTP/1.0\r\nHost: svc\r\n\r\n")
		all, err := io.ReadAll(r.br)
		if err != nil {
			t.Fatalf("reading to EOF: %v", err)
		}
		head, body, _ := strings.Cut(string(all), "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.0 200 OK\r\n") || strings.Contains(head, "Transfer-Encoding") || strings.Contains(head, "Content-Length") {
			t.Errorf("head %q: want HTTP/1.0 200 without a length or chunking", head)
		}
		if body != "streamed-end" {
			t.Errorf("body %q", body)
		}
	})
	t.Run("keep-alive with a known length", func(t *testing.T) {
		// A local reply (no route) has no Content-Length from the
		// handler; being small it gets one, so the connection stays.
		s := newSnap().httpListener("lone")
		_, la := start(t, s)
		r := dialH1(t, la("lone"))
		for i := range 2 {
			r.send("GET /nowhere HTTP/1.0\r\nHost: svc\r\nConnection: keep-alive\r\n\r\n")
			resp, body := r.read("GET")
			if resp.StatusCode != 404 || resp.ContentLength != int64(len(body)) || resp.Header.Get("Connection") != "keep-alive" {
				t.Fatalf("request %d: %d length %d body %q Connection %q, want 404 with a length and keep-alive",
					i, resp.StatusCode, resp.ContentLength, body, resp.Header.Get("Connection"))
			}
		}
	})
}

func TestH1BodilessResponses(t *testing.T) {
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}
	})
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	r := dialH1(t, addr("out"))
	for _, tc := range []struct {
		method, path string
		code         int
		wantCL       string // "" for none
	}{
		{"HEAD", "/", 200, "11"},
		{"GET", "/204", 204, ""},
		{"GET", "/304", 304, ""},
		{"GET", "/", 200, "11"},
	} {
		r.send(tc.method + " " + tc.path + " HTTP/1.1\r\nHost: svc\r\n\r\n")
		resp, body := r.read(tc.method)
		if resp.StatusCode != tc.code || body != "" && tc.method == "HEAD" {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Content-Length"); got != tc.wantCL {
			t.Errorf("%s %s: Content-Length %q, want %q", tc.method, tc.path, got, tc.wantCL)
		}
		if len(resp.TransferEncoding) != 0 {
			t.Errorf("%s %s: Transfer-Encoding %v on a response without a body", tc.method, tc.path, resp.TransferEncoding)
		}
	}
	// Had a body been sent after any bodiless response, the next one on
	// the connection would not have parsed.
}

func TestH1ExpectContinue(t *testing.T) {
	b := newBackend(t, "b1", false)
	s := echoSnap(b)
	_, addr := start(t, s)

	t.Run("continue, then the body", func(t *testing.T) {
		// What curl does: headers, wait for 100 (up to 1s), then the body.
		r := dialH1(t, addr("out"))
		r.send("POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n")
		resp, _ := r.read("POST")
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("got %d, want 100 Continue before the body is sent", resp.StatusCode)
		}
		r.send("payload")
		resp, body := r.read("POST")
		if resp.StatusCode != 200 || body != "b1 POST /up payload" || resp.Close {
			t.Fatalf("got %d %q close=%v", resp.StatusCode, body, resp.Close)
		}
		if e := b.last().Header.Get("Expect"); e != "" {
			t.Errorf("Expect %q was forwarded upstream", e)
		}
		r.send("GET /again HTTP/1.1\r\nHost: svc\r\n\r\n")
		if resp, body := r.read("GET"); resp.StatusCode != 200 || body != "b1 GET /again " {
			t.Errorf("next request: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("answered without reading the body", func(t *testing.T) {
		r := dialH1(t, addr("out"))
		r.send("POST /direct HTTP/1.1\r\nHost: svc\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n")
		resp, body := r.read("POST")
		if resp.StatusCode != 200 || body != "direct" || !resp.Close {
			t.Fatalf("got %d %q close=%v, want the final answer with Connection: close and no 100", resp.StatusCode, body, resp.Close)
		}
		if ok, _ := r.closed(5 * time.Second); !ok {
			t.Errorf("connection kept although the client still holds its body")
		}
	})
	t.Run("other expectations fail", func(t *testing.T) {
		r := dialH1(t, addr("out"))
		r.send("POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\nx")
		if resp, _ := r.read("POST"); resp.StatusCode != http.StatusExpectationFailed {
			t.Errorf("got %d, want 417", resp.StatusCode)
		}
	})
}

func TestH1BadRequestLines(t *testing.T) {
	b := newBackend(t, "b", false)
	_, addr := start(t, echoSnap(b))
	for _, tc := range []struct {
		name, req string
		code      int
	}{
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: svc\r\n\r\n", http.StatusHTTPVersionNotSupported},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", http.StatusBadRequest},
		{"unsupported transfer coding", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip\r\n\r\n", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := rawRoundTrip(t, addr("out"), tc.req)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tc.code {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.code)
			}
		})
	}
	if b.hits.Load() != 0 {
		t.Errorf("a bad request reached the backend")
	}
}

// headOfSize is a request whose line and headers take exactly n bytes.
func headOfSize(n int) string {
	const pre, post = "GET / HTTP/1.1\r\nHost: svc\r\nX-Big: ", "\r\n\r\n"
	return pre + strings.Repeat("a", n-len(pre)-len(post)) + post
}

func TestH1HeaderLimitIsExact(t *testing.T) {
	checkHeaderLimit(t, 4096, headLimitCase{"double the read buffer", "", 2 * h1ReadBufSize, 431})
}

// headLimitCase is a head of size bytes, sent after first in the same
// write, and the status it must get.
type headLimitCase struct {
	name  string
	first string // sent in the same write, before the measured request
	size  int
	want  int
}

// checkHeaderLimit starts a proxy with MaxRequestHeadersBytes limit and
// checks that heads at the limit pass and one byte over get 431, alone and
// behind a pipelined request, and the extra cases.
func checkHeaderLimit(t *testing.T, limit int, extra ...headLimitCase) {
	t.Helper()
	b := newBackend(t, "b", false)
	_, addr := start(t, headerLimitSnap(b, limit, 0))
	small := "GET /small HTTP/1.1\r\nHost: svc\r\n\r\n"
	cases := append([]headLimitCase{
		{"at the limit", "", limit, 200},
		{"one byte over", "", limit + 1, 431},
		{"pipelined, at the limit", small, limit, 200},
		{"pipelined, one byte over", small, limit + 1, 431},
	}, extra...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := len(headOfSize(tc.size)); got != tc.size {
				t.Fatalf("built a %d-byte head", got)
			}
			r := dialH1(t, addr("out"))
			go io.WriteString(r.c, tc.first+headOfSize(tc.size)) // the proxy may answer before reading it all
			if tc.first != "" {
				if resp, _ := r.read("GET"); resp.StatusCode != 200 {
					t.Fatalf("first request: %d", resp.StatusCode)
				}
			}
			if resp, _ := r.read("GET"); resp.StatusCode != tc.want {
				t.Errorf("a %d-byte head with MaxRequestHeadersBytes %d got %d, want %d", tc.size, limit, resp.StatusCode, tc.want)
			}
		})
	}
}

func TestH1Timeouts(t *testing.T) {
	b := newBackend(t, "b", false)
	const headerTimeout, idle = 200 * time.Millisecond, 300 * time.Millisecond
	s := headerLimitSnap(b, 0, headerTimeout)
	s.s.Listeners[0].HTTP.IdleTimeout = idle
	_, addr := start(t, s)

	t.Run("idle keep-alive connection closes", func(t *testing.T) {
		r := dialH1(t, addr("out"))
		r.send("GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		r.read("GET")
		ok, el := r.closed(5 * time.Second)
		if !ok {
			t.Fatalf("idle connection still open after 5s; IdleTimeout is %s", idle)
		}
		if el < idle-50*time.Millisecond {
			t.Errorf("closed after %s, before the %s idle timeout", el, idle)
		}
	})
	t.Run("slow second request is cut at the header timeout", func(t *testing.T) {
		r := dialH1(t, addr("out"))
		r.send("GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		r.read("GET")
		r.send("GET / HTTP/1.1\r\nHost: svc\r\n")
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // dribble a header byte every 50ms, past the idle timeout
			defer close(done)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := r.c.Write([]byte("X")); err != nil {
					return
				}
			}
		}()
		ok, el := r.closed(5 * time.Second)
		close(stop)
		<-done
		if !ok {
			t.Fatalf("connection still open after 5s of slow headers")
		}
		if el < headerTimeout-50*time.Millisecond {
			t.Errorf("closed after %s, before the %s header timeout", el, headerTimeout)
		}
		if b.hits.Load() != 2 {
			t.Errorf("backend saw %d requests, want the 2 complete ones", b.hits.Load())
		}
	})
}

func TestH1DrainClosesIdleAndFinishesInFlight(t *testing.T) {
	hold := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			hold.wait(r.Context())
		}
		io.WriteString(w, "done")
	})
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	p, addr := start(t, s, func(o *Options) { o.DrainTimeout = 30 * time.Second })
	idle := dialH1(t, addr("out"))
	idle.send("GET /fast HTTP/1.1\r\nHost: svc\r\n\r\n")
	idle.read("GET")
	busy := dialH1(t, addr("out"))
	busy.send("GET /slow HTTP/1.1\r\nHost: svc\r\n\r\n")
	eventually(t, 5*time.Second, "the request to be in flight", func() bool { return hold.in.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- p.Drain(ctx) }()

	if ok, el := idle.closed(2 * time.Second); !ok {
		t.Errorf("an idle keep-alive connection was not closed by the drain (waited %s)", el)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a request was in flight", err)
	default:
	}
	hold.open()
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || body != "done" || !resp.Close {
		t.Errorf("in-flight request ended with %d %q close=%v, want 200 done with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if ok, _ := busy.closed(5 * time.Second); !ok {
		t.Errorf("the connection stayed open after its last response during drain")
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Drain did not return after the in-flight request completed")
	}
}

func TestH1DrainForcesStuckRequestsAtDeadline(t *testing.T) {
	hold := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) { hold.wait(r.Context()) })
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	p, addr := start(t, s)
	busy := dialH1(t, addr("out"))
	busy.send("GET /stuck HTTP/1.1\r\nHost: svc\r\n\r\n")
	eventually(t, 5*time.Second, "the request to be in flight", func() bool { return hold.in.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.Drain(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain returned %v, want the drain deadline reported", err)
	}
	if ok, _ := busy.closed(5 * time.Second); !ok {
		t.Errorf("the stuck connection survived the drain deadline")
	}
	eventually(t, 5*time.Second, "the upstream request to be cancelled", func() bool { return hold.in.Load() == 0 })
}

func TestH1OverTLS(t *testing.T) {
	ca := newTestCA(t)
	clientCert := ca.leaf(t, clientID, 10)
	be := hbackend(t, "app", false, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app "+r.URL.Path) })
	lo, logs := withAccessLog()
	p, addr := start(t, inboundSnap(ca, ca.leaf(t, serverID, 20), be.addr()), lo)
	// tlsH1Conns counts the TLS connections this package's HTTP/1.1
	// server holds (HTTP/2 ones are handed to net/http's server).
	tlsH1Conns := func() int {
		p.applyMu.Lock()
		ln := p.listeners["in"]
		p.applyMu.Unlock()
		ln.mu.Lock()
		defer ln.mu.Unlock()
		n := 0
		for c := range ln.tcpConns {
			if hc, ok := c.(*h1ServerConn); ok {
				if _, ok := hc.Conn.(*tls.Conn); ok {
					n++
				}
			}
		}
		return n
	}
	cfg := func(protos ...string) *tls.Config {
		return &tls.Config{
			RootCAs: ca.pool, NextProtos: protos, Certificates: []tls.Certificate{*clientCert},
			InsecureSkipVerify: true, // the server's SVID has a URI SAN only; checked below
			VerifyConnection: func(cs tls.ConnectionState) error {
				return verifyPeer(cs.PeerCertificates, &config.Secret{Roots: ca.pool}, exact(serverID), false)
			},
		}
	}
	for _, tc := range []struct {
		name   string
		protos []string
		want   string
	}{
		{"ALPN http/1.1", []string{"http/1.1"}, "HTTP/1.1"},
		{"no ALPN", nil, "HTTP/1.1"},
		{"ALPN h2", []string{"h2", "http/1.1"}, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: cfg(tc.protos...), ForceAttemptHTTP2: tc.want == "HTTP/2.0"}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := range 2 {
				r := get(t, c, "https://"+addr("in")+"/tls")
				if r.code != 200 || r.body != "app /tls" || r.proto != tc.want {
					t.Fatalf("request %d: %d %q over %s, want 200 over %s", i, r.code, r.body, r.proto, tc.want)
				}
			}
			want := 0
			if tc.want == "HTTP/1.1" {
				want = 1 // the kept-alive connection
			}
			// (Connections of the previous case close asynchronously.)
			eventually(t, 5*time.Second, "the HTTP/1.1 server to hold "+strconv.Itoa(want)+" TLS connections",
				func() bool { return tlsH1Conns() == want })
			es := logs.entries(t)
			e := es[len(es)-1]
			if e["source_identity"] != clientID || e["protocol"] != tc.want {
				t.Errorf("access log source_identity %v protocol %v, want %s %s", e["source_identity"], e["protocol"], clientID, tc.want)
			}
		})
	}
}

func TestH1FlushStreamsAndAbortResets(t *testing.T) {
	hold := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		hold.wait(r.Context())
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler) // the upstream dies mid-body
		}
		io.WriteString(w, "second")
	})
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	var logs syncBuf
	_, addr := start(t, s, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })

	r := dialH1(t, addr("out"))
	r.send("GET /stream HTTP/1.1\r\nHost: svc\r\n\r\n")
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("the flushed part did not arrive while the upstream is still sending: %q %v", first, err)
	}
	hold.open()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest %q %v", rest, err)
	}

	r2 := dialH1(t, addr("out"))
	r2.send("GET /abort HTTP/1.1\r\nHost: svc\r\n\r\n")
	resp, err = http.ReadResponse(r2.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("a response whose upstream died mid-body ended cleanly; the client must see it cut")
	}
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("http.ErrAbortHandler was logged: %s", logs.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BenchmarkH1Server measures one keep-alive request with a direct
// response (no upstream), through this server and, for comparison,
// through net/http's server with the same handler. allocs/op counts both
// sides (the client side allocates nothing).
func BenchmarkH1Server(b *testing.B) {
	s := newSnap().httpListener("bench", &config.Route{
		Match:  config.RouteMatch{PathKind: config.PathPrefix, Path: "/", CaseSensitive: true},
		Direct: &config.DirectResponse{Status: 200, Body: "ok"},
	})
	s.s.Listeners[0].HTTP.GenerateRequestID = false
	p, addr := start(b, s)
	nh, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p.applyMu.Lock()
	srv := &http.Server{Handler: &httpHandler{ln: p.listeners["bench"]}}
	p.applyMu.Unlock()
	go srv.Serve(nh)
	b.Cleanup(func() { srv.Close() })
	for _, bc := range []struct{ name, addr string }{{"h1server", addr("bench")}, {"net-http", nh.Addr().String()}} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", bc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			buf := make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if err := readOneResponse(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// readOneResponse reads one response with a Content-Length from c
// (nothing pipelined) without allocating.
func readOneResponse(c net.Conn, buf []byte) error {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
		end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if end < 0 {
			continue
		}
		i := bytes.Index(buf[:end], []byte("Content-Length: "))
		if i < 0 {
			return errors.New("response without Content-Length")
		}
		j := i + len("Content-Length: ")
		cl := 0
		for ; buf[j] >= '0' && buf[j] <= '9'; j++ {
			cl = cl*10 + int(buf[j]-'0')
		}
		if n >= end+4+cl {
			return nil
		}
	}
}

// golang.org/x/net/http2.Transport is deprecated in favour of net/http's, but
// it is the independent reference client these tests are meant to use.
//
//lint:file-ignore SA1019 x/net/http2.Transport is the reference h2c client here

package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/causewaymesh/causeway/proxy/config"
)

// Behavioural tests of the proxy as an HTTP/2 server (h2c with prior
// knowledge). They use only real clients: golang.org/x/net/http2's
// Transport and Framer, and net/http's HTTP/2 client, so they hold for any
// correct HTTP/2 server implementation behind the listener.

// h2Transport is an x/net/http2 client speaking h2c with prior knowledge;
// dials counts the TCP connections it opens.
func h2Transport(t testing.TB, dials *atomic.Int64) *http2.Transport {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// h2Snap routes everything on listener "out" to cluster "svc" at b.
func h2Snap(b *backend, proto config.Protocol) *snap {
	return newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc", Protocol: proto}, loc("r1", "z1", 0, b.addr()))
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestH2ServerLargeBodiesFlowControl: 8 MiB up and 8 MiB down over one h2c
// stream each, byte-exact. Both exceed every default flow-control window
// (64 KiB initial, and the common 1-4 MiB ones), so the proxy must send
// WINDOW_UPDATEs as it consumes an upload and honour the client's
// WINDOW_UPDATEs on a download; one client keeps its receive windows at
// 64 KiB so that the proxy must wait for them.
func TestH2ServerLargeBodiesFlowControl(t *testing.T) {
	const size = 8 << 20
	payload := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(payload)
	want := sha(payload)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/up":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/down":
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.Write(payload)
		case "/down-unsized": // chunked from the backend, flushed as it comes
			for p := payload; len(p) > 0; p = p[min(len(p), 256<<10):] {
				w.Write(p[:min(len(p), 256<<10)])
				w.(http.Flusher).Flush()
			}
		}
	})
	_, addr := start(t, h2Snap(b, config.HTTP1))
	base := "http://" + addr("out")

	small := &http.Transport{Proxy: nil, HTTP2: &http.HTTP2Config{
		MaxReceiveBufferPerConnection: 64 << 10,
		MaxReceiveBufferPerStream:     64 << 10,
	}}
	small.Protocols = new(http.Protocols)
	small.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(small.CloseIdleConnections)

	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"x/net http2 Transport", h2Transport(t, nil)},
		{"net/http h2c with 64 KiB receive windows", small},
	} {
		for _, tc := range []struct {
			name, method, path string
			body               []byte
			want               string // the response body; "" means the payload
		}{
			{"upload 8 MiB", http.MethodPost, "/up", payload, fmt.Sprintf("%d %s", size, want)},
			{"download 8 MiB with Content-Length", http.MethodGet, "/down", nil, ""},
			{"download 8 MiB without Content-Length", http.MethodGet, "/down-unsized", nil, ""},
		} {
			t.Run(c.name+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var body io.Reader
				if tc.body != nil {
					body = bytes.NewReader(tc.body)
				}
				req, _ := http.NewRequestWithContext(ctx, tc.method, base+tc.path, body)
				resp, err := c.rt.RoundTrip(req)
				if err != nil {
					t.Fatalf("%s %s: %v", tc.method, tc.path, err)
				}
				defer resp.Body.Close()
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("%s %s: reading the body after %d bytes: %v", tc.method, tc.path, len(got), err)
				}
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
					t.Fatalf("got %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
				}
				if tc.want != "" {
					if string(got) != tc.want {
						t.Errorf("the backend read %q, want %q (every byte of the upload)", got, tc.want)
					}
					return
				}
				if len(got) != size || sha(got) != want {
					t.Errorf("downloaded %d bytes with sha256 %s, want %d bytes with %s", len(got), sha(got), size, want)
				}
			})
		}
	}
}

// TestH2ServerFullDuplexEcho: an 8 MiB body echoed back while it is still
// being uploaded (the backend answers as it reads, as a bidirectional
// gRPC stream does): both directions' flow control run at once on one
// stream without deadlock, byte-exact.
func TestH2ServerFullDuplexEcho(t *testing.T) {
	const size = 8 << 20
	payload := make([]byte, size)
	rand.NewChaCha8([32]byte{2}).Read(payload)
	for _, tc := range []struct {
		name  string
		proto config.Protocol
	}{
		{"HTTP/1.1 backend", config.HTTP1},
		{"HTTP/2 backend", config.HTTP2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := hbackend(t, "b", tc.proto == config.HTTP2, func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				rc.EnableFullDuplex()
				w.WriteHeader(http.StatusOK)
				rc.Flush()
				buf := make([]byte, 32<<10)
				for {
					n, err := r.Body.Read(buf)
					if n > 0 {
						if _, werr := w.Write(buf[:n]); werr != nil {
							return
						}
						rc.Flush()
					}
					if err != nil {
						return
					}
				}
			})
			_, addr := start(t, h2Snap(b, tc.proto))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pr, pw := io.Pipe()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr("out")+"/echo", pr)
			c := &http.Client{Transport: h2Transport(t, nil)}
			// The upload goes on in the background, a piece at a time,
			// while the test reads the echo; after the first piece it
			// waits for the echo to begin, so a proxy that held the
			// response until the request ended would stall here.
			upload := make(chan error, 1)
			echoing := make(chan struct{})
			go func() {
				const piece = 64 << 10
				_, err := pw.Write(payload[:piece])
				if err == nil {
					select {
					case <-echoing:
					case <-ctx.Done():
						err = fmt.Errorf("the echo of the first %d bytes did not begin while the upload was open: %w", piece, ctx.Err())
					}
				}
				for p := payload[piece:]; len(p) > 0 && err == nil; p = p[min(len(p), piece):] {
					_, err = pw.Write(p[:min(len(p), piece)])
				}
				pw.CloseWithError(err)
				upload <- err
			}()
			resp, err := c.Do(req)
			if err != nil {
				pr.CloseWithError(err)
				<-upload
				t.Fatal(err)
			}
			first := make([]byte, 1)
			_, err = io.ReadFull(resp.Body, first)
			close(echoing)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(resp.Body)
				got = append(first, got...)
			}
			resp.Body.Close()
			pr.Close()
			if uerr := <-upload; uerr != nil && err == nil {
				err = fmt.Errorf("upload: %w", uerr)
			}
			if err != nil {
				t.Fatalf("after %d echoed bytes: %v", len(got), err)
			}
			if len(got) != size || sha(got) != sha(payload) {
				t.Errorf("echoed %d bytes with sha256 %s, want the %d uploaded bytes (%s)", len(got), sha(got), size, sha(payload))
			}
		})
	}
}

// TestH2ServerManyConcurrentStreams: 200 requests at once on ONE h2c
// connection, all held by the backend until every one has arrived (so they
// really are concurrent streams), each answered with its own path.
func TestH2ServerManyConcurrentStreams(t *testing.T) {
	const n = 200
	var arrived atomic.Int64
	all := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/warmup" {
			if arrived.Add(1) == n {
				all.open()
			}
			if !all.wait(r.Context()) {
				return
			}
		}
		io.WriteString(w, r.URL.Path)
	})
	_, addr := start(t, h2Snap(b, config.HTTP1))
	base := "http://" + addr("out")
	var dials atomic.Int64
	c := &http.Client{Transport: h2Transport(t, &dials), Timeout: 20 * time.Second}

	// A first request lets the client learn the server's SETTINGS
	// (MAX_CONCURRENT_STREAMS) before the burst.
	if r, err := fetch(c, base+"/warmup"); err != nil || r.code != 200 {
		t.Fatalf("warm-up request: %+v %v", r, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			path := "/stream/" + strconv.Itoa(i)
			r, err := fetch(c, base+path)
			switch {
			case err != nil:
				errs <- fmt.Errorf("%s: %w", path, err)
			case r.code != 200 || r.body != path || r.proto != "HTTP/2.0":
				errs <- fmt.Errorf("%s: got %d %q over %s, want 200 %q over HTTP/2.0", path, r.code, r.body, r.proto, path)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("the client opened %d connections, want 1: the proxy must allow %d concurrent streams on one connection "+
			"(advertise SETTINGS_MAX_CONCURRENT_STREAMS >= %d)", d, n, n)
	}
}

// TestH2ServerClientCancelPropagates: a client that gives up on a stream
// (context cancelled -> RST_STREAM CANCEL) ends the upstream request: the
// backend's request ends within seconds, whether the client gave up
// waiting for the response headers, in the middle of the response body or
// in the middle of its upload (which must reach the backend as an error,
// never as a complete shorter body); and the connection goes on serving.
func TestH2ServerClientCancelPropagates(t *testing.T) {
	hold := newGate(t)
	ended := make(chan string, 4)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, "ok")
			return
		case "/upload":
			first := make([]byte, len("first"))
			if _, err := io.ReadFull(r.Body, first); err != nil {
				ended <- "/upload: reading the first bytes: " + err.Error()
				return
			}
			hold.in.Add(1) // reading the rest, which never comes
			_, err := io.ReadAll(r.Body)
			hold.in.Add(-1)
			if err == nil {
				ended <- "/upload ended with a clean EOF: a cancelled upload reached the backend as a complete body"
				return
			}
			ended <- r.URL.Path
			return
		case "/body":
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
		}
		if !hold.wait(r.Context()) {
			ended <- r.URL.Path
			return
		}
		io.WriteString(w, "ok")
	})
	_, addr := start(t, h2Snap(b, config.HTTP1))
	base := "http://" + addr("out")
	var dials atomic.Int64
	c := &http.Client{Transport: h2Transport(t, &dials), Timeout: 20 * time.Second}

	for _, tc := range []struct {
		name, path string
	}{
		{"before the response headers", "/headers"},
		{"during the response body", "/body"},
		{"during the request body", "/upload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rctx, rcancel := context.WithCancel(ctx)
			defer rcancel()
			method, body := http.MethodGet, io.Reader(nil)
			var pw *io.PipeWriter
			if tc.path == "/upload" {
				var pr *io.PipeReader
				pr, pw = io.Pipe()
				method, body = http.MethodPost, pr
				defer pw.Close()
			}
			req, _ := http.NewRequestWithContext(rctx, method, base+tc.path, body)
			done := make(chan error, 1)
			gotFirst := make(chan struct{})
			go func() {
				resp, err := c.Do(req)
				if err == nil && tc.path == "/body" {
					buf := make([]byte, len("first"))
					_, err = io.ReadFull(resp.Body, buf)
					if err == nil && string(buf) != "first" {
						err = fmt.Errorf("first bytes %q, want %q", buf, "first")
					}
					if err == nil {
						close(gotFirst)
						_, err = io.ReadAll(resp.Body) // until the cancel
					}
				}
				if resp != nil {
					resp.Body.Close()
				}
				done <- err
			}()
			if pw != nil {
				go io.WriteString(pw, "first") // the rest never comes
			}
			eventually(t, 5*time.Second, "the request to be held by the backend", func() bool { return hold.in.Load() == 1 })
			if tc.path == "/body" {
				select {
				case <-gotFirst: // the response body has begun
				case err := <-done:
					t.Fatalf("the request ended before the cancel: %v", err)
				case <-ctx.Done():
					t.Fatal("the first bytes of the body never arrived")
				}
			}
			rcancel()
			select {
			case err := <-done:
				if err == nil {
					t.Errorf("the cancelled request succeeded")
				}
			case <-ctx.Done():
				t.Fatal("the client's request did not end after its context was cancelled")
			}
			select {
			case got := <-ended:
				if got != tc.path {
					t.Errorf("the backend saw %q end, want %s", got, tc.path)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the backend's request did not end within 5s of the client's RST_STREAM: " +
					"a cancelled downstream stream must cancel its upstream request")
			}
			if r, err := fetch(c, base+"/ok"); err != nil || r.code != 200 || r.body != "ok" {
				t.Fatalf("a new request after the cancel: %+v %v", r, err)
			}
			if d := dials.Load(); d != 1 {
				t.Errorf("the client opened %d connections, want 1: a cancelled stream must not cost the connection", d)
			}
		})
	}
}

// TestH2ServerGracefulDrain: Drain with a request in flight on an h2c
// connection sends GOAWAY at once (the client stops opening streams on
// the connection), lets the in-flight stream finish with 200, then closes
// the connection; new connections are refused, as in TestGracefulDrain.
func TestH2ServerGracefulDrain(t *testing.T) {
	hold := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			hold.wait(r.Context())
		}
		io.WriteString(w, "done")
	})
	p, addr := start(t, h2Snap(b, config.HTTP1), func(o *Options) { o.DrainTimeout = 30 * time.Second })
	a := addr("out")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	conn, err := net.DialTimeout("tcp", a, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http2.Transport{AllowHTTP: true}
	cc, err := tr.NewClientConn(conn) // to watch the connection's state
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	roundTrip := func(path string) (result, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+path, nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			return result{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return result{code: resp.StatusCode, body: string(body), proto: resp.Proto}, err
	}
	if r, err := roundTrip("/first"); err != nil || r.code != 200 {
		t.Fatalf("a request before the drain: %+v %v", r, err)
	}

	inflight := make(chan result, 1)
	go func() {
		r, err := roundTrip("/slow")
		if err != nil {
			r.body = err.Error()
		}
		inflight <- r
	}()
	eventually(t, 5*time.Second, "the request to be in flight", func() bool { return hold.in.Load() == 1 })

	drained := make(chan error, 1)
	go func() { drained <- p.Drain(ctx) }()

	eventually(t, 5*time.Second, "the client to receive GOAWAY while a stream is in flight", func() bool {
		return cc.State().Closing && !cc.CanTakeNewRequest()
	})
	if _, err := roundTrip("/after-goaway"); err == nil {
		t.Errorf("a new stream on the connection after GOAWAY succeeded; the client must be refused (and open a new connection)")
	}
	eventually(t, 5*time.Second, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a stream was in flight", err)
	default:
	}

	hold.open()
	if r := <-inflight; r.code != 200 || r.body != "done" || r.proto != "HTTP/2.0" {
		t.Errorf("in-flight stream ended with %d %q over %s, want 200 \"done\" over HTTP/2.0", r.code, r.body, r.proto)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Drain did not return after the in-flight stream completed")
	}
	eventually(t, 5*time.Second, "the drained connection to be closed by the proxy", func() bool { return cc.State().Closed })
	if got := b.hits.Load(); got != 2 {
		t.Errorf("backend saw %d requests, want 2 (/first and /slow; nothing after GOAWAY)", got)
	}
}

// TestH2ServerTLSALPN: over TLS (an mTLS inbound listener that requires
// the client's SPIFFE ID) the same server is reached by ALPN "h2": 50
// concurrent streams and a 1 MiB body on one connection.
func TestH2ServerTLSALPN(t *testing.T) {
	ca := newTestCA(t)
	clientCert := ca.leaf(t, clientID, 10)
	serverCert := ca.leaf(t, serverID, 20)
	const big = 1 << 20
	payload := bytes.Repeat([]byte("causeway"), big/8)
	b := hbackend(t, "app", false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(payload)
			return
		}
		io.WriteString(w, r.URL.Path)
	})
	_, addr := start(t, inboundSnap(ca, serverCert, b.addr()))
	for _, alpn := range [][]string{{"h2"}, {"h2", "http/1.1"}} {
		t.Run(strings.Join(alpn, ","), func(t *testing.T) {
			var dials atomic.Int64
			tr := &http2.Transport{
				TLSClientConfig: &tls.Config{
					Certificates: []tls.Certificate{*clientCert},
					NextProtos:   alpn,
					// The server's SVID has a URI SAN only; these tests are
					// about HTTP/2, not about verifying it.
					InsecureSkipVerify: true,
				},
				DialTLSContext: func(ctx context.Context, network, a string, cfg *tls.Config) (net.Conn, error) {
					dials.Add(1)
					d := tls.Dialer{Config: cfg}
					c, err := d.DialContext(ctx, network, a)
					if err != nil {
						return nil, err
					}
					if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
						c.Close()
						return nil, fmt.Errorf("ALPN negotiated %q, want h2", p)
					}
					return c, nil
				},
			}
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			base := "https://" + addr("in")
			if r, err := fetch(c, base+"/warmup"); err != nil || r.code != 200 || r.proto != "HTTP/2.0" {
				t.Fatalf("first request: %+v %v", r, err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 51)
			for i := range 50 {
				wg.Go(func() {
					path := "/s/" + strconv.Itoa(i)
					if r, err := fetch(c, base+path); err != nil || r.code != 200 || r.body != path {
						errs <- fmt.Errorf("%s: %d %q %v", path, r.code, r.body, err)
					}
				})
			}
			wg.Go(func() {
				if r, err := fetch(c, base+"/big"); err != nil || r.code != 200 || r.body != string(payload) {
					errs <- fmt.Errorf("/big: %d, %d bytes, %v", r.code, len(r.body), err)
				}
			})
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if d := dials.Load(); d != 1 {
				t.Errorf("the client opened %d TLS connections, want 1", d)
			}
		})
	}
}

// ---- raw frames ----

// h2raw is one h2c connection driven frame by frame with x/net's Framer.
// It is used from the test goroutine only.
type h2raw struct {
	t    testing.TB
	conn net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	// maxFrame is the server's SETTINGS_MAX_FRAME_SIZE.
	maxFrame uint32
}

// dialH2 opens an h2c connection: it sends the preface and an empty
// SETTINGS, and returns once it has the server's SETTINGS (acknowledged)
// and the server's acknowledgement of its own.
func dialH2(t testing.TB, addr string) *h2raw {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	c := &h2raw{t: t, conn: conn, fr: http2.NewFramer(conn, conn), maxFrame: 16 << 10}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var settings, ack bool
	for !settings || !ack {
		switch f := c.read().(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				ack = true
				continue
			}
			settings = true
			if v, ok := f.Value(http2.SettingMaxFrameSize); ok {
				c.maxFrame = v
			}
			if err := c.fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		case *http2.WindowUpdateFrame:
		default:
			t.Fatalf("unexpected %v during the connection preface", f.Header())
		}
	}
	return c
}

// read returns the next frame; it fails the test on a read error.
func (c *h2raw) read() http2.Frame {
	c.t.Helper()
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// headers sends a header block (name, value pairs in order) on stream id,
// split into HEADERS and CONTINUATION frames of at most the server's
// SETTINGS_MAX_FRAME_SIZE.
func (c *h2raw) headers(id uint32, endStream bool, kv ...string) {
	c.t.Helper()
	c.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	block := c.hbuf.Bytes()
	maxFrame := int(c.maxFrame)
	first, rest := block[:min(len(block), maxFrame)], block[min(len(block), maxFrame):]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(rest) == 0})
	for err == nil && len(rest) > 0 {
		n := min(len(rest), maxFrame)
		err = c.fr.WriteContinuation(id, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	if err != nil {
		c.t.Fatalf("writing HEADERS on stream %d: %v", id, err)
	}
}

// request sends a request's header block: method, path and the extra
// fields, on stream id.
func (c *h2raw) request(id uint32, endStream bool, method, path string, extra ...string) {
	c.t.Helper()
	c.headers(id, endStream, append([]string{":method", method, ":scheme", "http", ":authority", "svc", ":path", path}, extra...)...)
}

// h2Answer is what a raw stream got back.
type h2Answer struct {
	status  string
	header  map[string][]string
	body    []byte
	trailer map[string][]string
	reset   bool
	code    http2.ErrCode // when reset
	// lost says why the connection ended before the stream did: a GOAWAY
	// that excludes it, or a read error.
	lost string
}

// response reads frames until stream id ends (END_STREAM or RST_STREAM)
// or the connection does, answering the server's SETTINGS and PINGs and
// giving back flow-control credit for every DATA frame.
func (c *h2raw) response(id uint32) h2Answer {
	c.t.Helper()
	var a h2Answer
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			a.lost = "connection ended: " + err.Error()
			return a
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.WindowUpdateFrame:
		case *http2.GoAwayFrame:
			if f.LastStreamID < id {
				a.lost = fmt.Sprintf("GOAWAY %v, last stream %d", f.ErrCode, f.LastStreamID)
				return a
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				c.t.Fatalf("HEADERS on stream %d while waiting for stream %d", f.StreamID, id)
			}
			fields := map[string][]string{}
			status := ""
			for _, hf := range f.Fields {
				if hf.Name == ":status" {
					status = hf.Value
					continue
				}
				fields[hf.Name] = append(fields[hf.Name], hf.Value)
			}
			switch {
			case a.status == "" && strings.HasPrefix(status, "1"):
				// an interim response
			case a.status == "":
				a.status, a.header = status, fields
			default:
				a.trailer = fields
			}
			if f.StreamEnded() {
				return a
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				c.t.Fatalf("DATA on stream %d while waiting for stream %d", f.StreamID, id)
			}
			a.body = append(a.body, f.Data()...)
			if n := uint32(len(f.Data())); n > 0 {
				c.fr.WriteWindowUpdate(0, n)
				if !f.StreamEnded() {
					c.fr.WriteWindowUpdate(id, n)
				}
			}
			if f.StreamEnded() {
				return a
			}
		case *http2.RSTStreamFrame:
			if f.StreamID != id {
				c.t.Fatalf("RST_STREAM on stream %d (%v) while waiting for stream %d", f.StreamID, f.ErrCode, id)
			}
			a.reset, a.code = true, f.ErrCode
			return a
		default:
			c.t.Fatalf("unexpected %v while waiting for stream %d", f.Header(), id)
		}
	}
}

// bigHeaders returns fields x-h0, x-h1, ... of 1000-byte values whose
// names and values add up to about total bytes.
func bigHeaders(total int) []string {
	var kv []string
	for i := 0; total > 0; i++ {
		name := "x-h" + strconv.Itoa(i)
		n := min(1000, max(total-len(name), 1))
		kv = append(kv, name, strings.Repeat("a", n))
		total -= len(name) + n
	}
	return kv
}

// TestH2ServerRequestHeaderLimit431: an HTTP/2 request whose header block
// exceeds the listener's MaxRequestHeadersBytes never reaches the backend.
// When the block is moderately over the limit (and sent in one HEADERS
// frame) the stream gets a 431 and the connection serves the next stream;
// far over the limit, the server may instead reset the stream or end the
// connection (flood protection), but new connections are served.
func TestH2ServerRequestHeaderLimit431(t *testing.T) {
	b := newBackend(t, "b", false)
	const limit = 16 << 10
	_, addr := start(t, headerLimitSnap(b, limit, 0))
	for _, tc := range []struct {
		name string
		size int // bytes of header names and values beyond the pseudo-headers
		// want is the :status wanted; "refused" accepts a 431, a
		// RST_STREAM or the connection's end.
		want string
	}{
		{"a quarter of the limit", limit / 4, "200"},
		{"just under the limit", limit - 1024, "200"},
		{"just over the limit", limit + 2048, "431"},
		{"eight times the limit", 8 * limit, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := b.hits.Load()
			c := dialH2(t, addr("out"))
			c.request(1, true, http.MethodGet, "/big", bigHeaders(tc.size)...)
			a := c.response(1)
			switch {
			case tc.want == "refused":
				if a.status != "431" && !a.reset && a.lost == "" {
					t.Errorf("a %d-byte header block with MaxRequestHeadersBytes %d got %+v, want 431, RST_STREAM or the connection closed", tc.size, limit, a)
				}
			case a.status != tc.want:
				t.Errorf("a %d-byte header block with MaxRequestHeadersBytes %d got %+v, want :status %s", tc.size, limit, a, tc.want)
			}
			wantHits := hits
			if tc.want == "200" {
				wantHits++
			}
			if got := b.hits.Load(); got != wantHits {
				t.Errorf("backend saw %d new requests, want %d", got-hits, wantHits-hits)
			}
			next := uint32(3)
			if a.lost != "" {
				c, next = dialH2(t, addr("out")), 1
			}
			c.request(next, true, http.MethodGet, "/next")
			if a := c.response(next); a.status != "200" || string(a.body) != "b GET /next " {
				t.Errorf("the next stream got %+v, want 200 from the backend", a)
			}
		})
	}
}

// TestH2ServerMalformedRequestRefused: a request HEADERS that HTTP/2
// forbids (connection-specific fields, RFC 9113 §8.2.2; an upper-case
// field name; a missing pseudo-header) is refused on its stream, with
// RST_STREAM PROTOCOL_ERROR or a 400, never reaches the backend, and the
// connection serves a following good stream.
func TestH2ServerMalformedRequestRefused(t *testing.T) {
	b := newBackend(t, "b", false)
	_, addr := start(t, h2Snap(b, config.HTTP1))
	good := []string{":method", "GET", ":scheme", "http", ":authority", "svc", ":path", "/bad"}
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"connection: keep-alive", append(good[:8:8], "connection", "keep-alive")},
		{"keep-alive", append(good[:8:8], "keep-alive", "timeout=5")},
		{"proxy-connection", append(good[:8:8], "proxy-connection", "keep-alive")},
		{"transfer-encoding: chunked", append(good[:8:8], "transfer-encoding", "chunked")},
		{"upgrade", append(good[:8:8], "upgrade", "websocket")},
		{"te other than trailers", append(good[:8:8], "te", "gzip")},
		{"upper-case field name", append(good[:8:8], "X-Upper", "v")},
		{"no :path", good[:6:6]},
		{"no :method", good[2:8:8]},
		{"pseudo-header after a regular field", append([]string{"x-first", "v"}, good...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := b.hits.Load()
			c := dialH2(t, addr("out"))
			c.headers(1, true, tc.fields...)
			a := c.response(1)
			if !(a.reset && a.code == http2.ErrCodeProtocol) && a.status != "400" {
				t.Errorf("got %+v, want RST_STREAM PROTOCOL_ERROR or :status 400", a)
			}
			if got := b.hits.Load(); got != hits {
				t.Errorf("the malformed request reached the backend")
			}
			c.request(3, true, http.MethodGet, "/next")
			if a := c.response(3); a.status != "200" || string(a.body) != "b GET /next " {
				t.Errorf("the next stream on the connection got %+v, want 200 from the backend", a)
			}
		})
	}
}

// TestH2ServerControlFrames: PING is answered with a PING ACK carrying the
// same 8 bytes, and a SETTINGS frame with a SETTINGS ACK.
func TestH2ServerControlFrames(t *testing.T) {
	b := newBackend(t, "b", false)
	_, addr := start(t, h2Snap(b, config.HTTP1))
	for _, tc := range []struct {
		name string
		send func(*h2raw) error
		ok   func(http2.Frame) bool
	}{
		{"PING gets a PING ACK with the same data",
			func(c *h2raw) error { return c.fr.WritePing(false, [8]byte{'c', 'a', 'u', 's', 'e', 'w', 'a', 'y'}) },
			func(f http2.Frame) bool {
				p, ok := f.(*http2.PingFrame)
				return ok && p.IsAck() && p.Data == [8]byte{'c', 'a', 'u', 's', 'e', 'w', 'a', 'y'}
			}},
		{"SETTINGS gets a SETTINGS ACK",
			func(c *h2raw) error {
				return c.fr.WriteSettings(
					http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20},
					http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15},
					http2.Setting{ID: http2.SettingHeaderTableSize, Val: 8192})
			},
			func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() }},
		{"empty SETTINGS gets a SETTINGS ACK",
			func(c *h2raw) error { return c.fr.WriteSettings() },
			func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH2(t, addr("out"))
			if err := tc.send(c); err != nil {
				t.Fatal(err)
			}
			for {
				f := c.read()
				if tc.ok(f) {
					break
				}
				switch f.(type) {
				case *http2.WindowUpdateFrame, *http2.SettingsFrame, *http2.PingFrame:
				default:
					t.Fatalf("got %v before the acknowledgement", f.Header())
				}
			}
			c.request(1, true, http.MethodGet, "/after")
			if a := c.response(1); a.status != "200" || string(a.body) != "b GET /after " {
				t.Errorf("a stream after the exchange got %+v, want 200", a)
			}
		})
	}
}

// TestH2ServerRequestTrailers: a request whose body is followed by a
// trailer HEADERS frame (END_STREAM after DATA) is served; the backend
// receives the whole body.
func TestH2ServerRequestTrailers(t *testing.T) {
	b := newBackend(t, "b", false)
	_, addr := start(t, h2Snap(b, config.HTTP1))
	for _, tc := range []struct {
		name   string
		chunks []string
	}{
		{"one DATA frame", []string{"hello"}},
		{"several DATA frames", []string{"hel", "lo ", "world"}},
		{"an empty DATA frame last", []string{"hello", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH2(t, addr("out"))
			c.request(1, false, http.MethodPost, "/trailers", "content-type", "text/plain", "te", "trailers")
			for _, s := range tc.chunks {
				if err := c.fr.WriteData(1, false, []byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			c.headers(1, true, "x-checksum", "abc", "grpc-status", "0")
			a := c.response(1)
			if want := "b POST /trailers " + strings.Join(tc.chunks, ""); a.status != "200" || string(a.body) != want {
				t.Errorf("got %+v, want 200 %q", a, want)
			}
		})
	}
}

// TestH2ServerFlowControlWindowRespected: a client that sets
// SETTINGS_INITIAL_WINDOW_SIZE to 1 KiB gets no more than 1 KiB of a
// stream's body until it sends WINDOW_UPDATE, then the rest.
func TestH2ServerFlowControlWindowRespected(t *testing.T) {
	const window, size = 1024, 64 << 10
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) { w.Write(payload) })
	_, addr := start(t, h2Snap(b, config.HTTP1))
	c := dialH2(t, addr("out"))
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}); err != nil {
		t.Fatal(err)
	}
	c.request(1, true, http.MethodGet, "/")
	var got []byte
	pinged, acked, ended := false, false, false
	// Read until the window is used up, then PING: the server answers it
	// after whatever it had queued, and nothing beyond the window may have
	// come.
	for !acked && !ended {
		switch f := c.read().(type) {
		case *http2.DataFrame:
			got = append(got, f.Data()...)
			ended = f.StreamEnded()
		case *http2.PingFrame:
			acked = f.IsAck() && pinged
		case *http2.MetaHeadersFrame, *http2.SettingsFrame, *http2.WindowUpdateFrame:
		default:
			t.Fatalf("unexpected %v", f.Header())
		}
		if len(got) > window {
			t.Fatalf("the server sent %d bytes on a stream whose window is %d", len(got), window)
		}
		if len(got) == window && !pinged {
			pinged = true
			c.fr.WritePing(false, [8]byte{1})
		}
	}
	if ended {
		t.Fatalf("the stream ended after %d bytes, want %d", len(got), size)
	}
	if err := c.fr.WriteWindowUpdate(1, size); err != nil {
		t.Fatal(err)
	}
	a := c.response(1)
	got = append(got, a.body...)
	if !bytes.Equal(got, payload) {
		t.Errorf("got %d bytes (%+v), want the %d-byte body", len(got), a.reset, size)
	}
}

// TestH2ServerStreamingResponseTrailers: a gRPC-style response (body
// flushed in pieces, then trailers) reaches the h2c client progressively:
// the first piece before the backend has sent the second; then the
// trailers, from an HTTP/1.1 (chunked) or an HTTP/2 backend.
func TestH2ServerStreamingResponseTrailers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto config.Protocol
	}{
		{"HTTP/1.1 backend", config.HTTP1},
		{"HTTP/2 backend", config.HTTP2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			second := newGate(t)
			b := hbackend(t, "b", tc.proto == config.HTTP2, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/grpc")
				io.WriteString(w, "chunk-1")
				w.(http.Flusher).Flush()
				if !second.wait(r.Context()) {
					return
				}
				io.WriteString(w, "chunk-2")
				w.(http.Flusher).Flush()
				w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
				w.Header().Set(http.TrailerPrefix+"X-Checksum", "abc")
			})
			_, addr := start(t, h2Snap(b, tc.proto))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr("out")+"/pkg.Svc/Stream", strings.NewReader("req"))
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			c := &http.Client{Transport: h2Transport(t, nil)}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				t.Fatalf("got %d over %s", resp.StatusCode, resp.Proto)
			}
			first := make([]byte, len("chunk-1"))
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "chunk-1" {
				t.Fatalf("first piece: %q %v; it must arrive while the backend holds the second", first, err)
			}
			// The backend flushed the first piece just before it waits.
			eventually(t, 5*time.Second, "the backend holds the second piece", func() bool { return second.in.Load() == 1 })
			second.open()
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "chunk-2" {
				t.Fatalf("rest of the body: %q %v, want \"chunk-2\"", rest, err)
			}
			if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
				t.Errorf("trailer grpc-status %q, want \"0\" (trailers %v)", got, resp.Trailer)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
				t.Errorf("trailer x-checksum %q, want \"abc\" (trailers %v)", got, resp.Trailer)
			}
		})
	}
}

// TestH2ServerResponseHeaders: the backend's end-to-end response fields
// reach the HTTP/2 client, a small fixed body comes with its
// Content-Length, and hop-by-hop fields (Connection, Keep-Alive,
// Transfer-Encoding, and those Connection names) never appear in the
// HTTP/2 response, as seen on the wire and by a real client.
func TestH2ServerResponseHeaders(t *testing.T) {
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "keep-alive, X-Hop")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("X-Hop", "secret")
		h.Set("X-End-To-End", "passes")
		h.Add("X-Multi", "one")
		h.Add("X-Multi", "two")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		switch r.URL.Path {
		case "/fixed":
			io.WriteString(w, "hello")
		case "/chunked":
			h.Set("Transfer-Encoding", "chunked")
			io.WriteString(w, "hel")
			w.(http.Flusher).Flush()
			io.WriteString(w, "lo")
		}
	})
	_, addr := start(t, h2Snap(b, config.HTTP1))
	for _, tc := range []struct {
		path string
		clen string // the Content-Length wanted; "" means none required
	}{
		{"/fixed", "5"},
		{"/chunked", ""},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/")+" on the wire", func(t *testing.T) {
			c := dialH2(t, addr("out"))
			c.request(1, true, http.MethodGet, tc.path)
			a := c.response(1)
			if a.status != "200" || string(a.body) != "hello" {
				t.Fatalf("got %+v, want 200 \"hello\"", a)
			}
			for _, k := range []string{"connection", "keep-alive", "transfer-encoding", "x-hop", "proxy-connection", "upgrade"} {
				if v, ok := a.header[k]; ok {
					t.Errorf("the HTTP/2 response carries hop-by-hop field %s: %q", k, v)
				}
			}
			for k, want := range map[string]string{
				"x-end-to-end": "passes", "x-multi": "one,two", "content-type": "text/plain; charset=utf-8", "x-backend": "b",
			} {
				if got := strings.Join(a.header[k], ","); got != want {
					t.Errorf("response field %s = %q, want %q", k, got, want)
				}
			}
			for k := range a.header {
				if k != strings.ToLower(k) {
					t.Errorf("response field name %q is not lower case (RFC 9113 §8.2.1)", k)
				}
			}
			if tc.clen != "" {
				if got := strings.Join(a.header["content-length"], ","); got != tc.clen {
					t.Errorf("content-length %q, want %q", got, tc.clen)
				}
			}
		})
		t.Run(strings.TrimPrefix(tc.path, "/")+" through a client", func(t *testing.T) {
			c := &http.Client{Transport: h2Transport(t, nil), Timeout: 10 * time.Second}
			r, err := fetch(c, "http://"+addr("out")+tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if r.code != 200 || r.body != "hello" || r.proto != "HTTP/2.0" {
				t.Fatalf("got %d %q over %s", r.code, r.body, r.proto)
			}
			if got := r.header.Get("X-End-To-End"); got != "passes" {
				t.Errorf("X-End-To-End %q, want \"passes\"", got)
			}
			if tc.clen != "" && r.header.Get("Content-Length") != tc.clen {
				t.Errorf("Content-Length %q, want %q", r.header.Get("Content-Length"), tc.clen)
			}
			for _, k := range []string{"Connection", "Keep-Alive", "Transfer-Encoding", "X-Hop"} {
				if v, ok := r.header[k]; ok {
					t.Errorf("hop-by-hop %s reached the client: %q", k, v)
				}
			}
		})
	}
}

// TestH2ServerLimitsChangeDrainsConnections: an HTTP/2 connection takes the
// listener's limits when it opens; when they change, the open connection
// gets GOAWAY (finishing what it has), and the next one is held to the new
// limits.
func TestH2ServerLimitsChangeDrainsConnections(t *testing.T) {
	b := newBackend(t, "b", false)
	p, addr := start(t, headerLimitSnap(b, 0, 0))
	old := dialH2(t, addr("out"))
	old.request(1, true, http.MethodGet, "/big", bigHeaders(16<<10)...)
	if a := old.response(1); a.status != "200" {
		t.Fatalf("a 16 KiB header block under the default 60 KiB limit got %+v", a)
	}
	if err := p.Apply(headerLimitSnap(b, 4096, 0).s); err != nil {
		t.Fatal(err)
	}
	// The old connection is told to go away; a stream it opens after the
	// GOAWAY is not served.
	for {
		f := old.read()
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
				t.Fatalf("GOAWAY %v, last stream %d; want NO_ERROR, 1", g.ErrCode, g.LastStreamID)
			}
			break
		}
	}
	hits := b.hits.Load()
	fresh := dialH2(t, addr("out"))
	fresh.request(1, true, http.MethodGet, "/big", bigHeaders(16<<10)...)
	if a := fresh.response(1); a.status != "431" {
		t.Errorf("after lowering MaxRequestHeadersBytes to 4096, a new connection's 16 KiB header block got %+v, want 431", a)
	}
	fresh.request(3, true, http.MethodGet, "/small")
	if a := fresh.response(3); a.status != "200" {
		t.Errorf("a small request on the new connection got %+v, want 200", a)
	}
	if got := b.hits.Load() - hits; got != 1 {
		t.Errorf("backend saw %d requests after the change, want 1 (the small one)", got)
	}
}

// TestH2ServerIdleTimeout: a connection with no stream open for the
// listener's idle timeout gets GOAWAY and is closed.
func TestH2ServerIdleTimeout(t *testing.T) {
	b := newBackend(t, "b", false)
	s := headerLimitSnap(b, 0, 0)
	s.s.Listeners[0].HTTP.IdleTimeout = 200 * time.Millisecond
	_, addr := start(t, s)
	c := dialH2(t, addr("out"))
	c.request(1, true, http.MethodGet, "/x")
	if a := c.response(1); a.status != "200" {
		t.Fatalf("request got %+v", a)
	}
	start := time.Now()
	goaway := false
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			break // closed by the server
		}
		if g, ok := f.(*http2.GoAwayFrame); ok && g.ErrCode == http2.ErrCodeNo {
			goaway = true
		}
	}
	if !goaway {
		t.Errorf("the idle connection was closed without GOAWAY")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle connection closed after %v; the idle timeout is 200ms", d)
	}
}

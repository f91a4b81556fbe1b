package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// rawRoundTrip writes req on a new connection to addr and reads one HTTP
// response.
func rawRoundTrip(t *testing.T, addr, req string) (*http.Response, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(conn, req) // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

func headerLimitSnap(b *backend, maxBytes int, headerTimeout time.Duration) *snap {
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	h := s.s.Listeners[0].HTTP
	h.MaxRequestHeadersBytes = maxBytes
	h.RequestHeadersTimeout = headerTimeout
	return s
}

func requestWithHeader(size int) string {
	return "GET / HTTP/1.1\r\nHost: svc\r\nX-Big: " + strings.Repeat("a", size) + "\r\n\r\n"
}

func TestOversizedRequestHeadersGet431(t *testing.T) {
	b := newBackend(t, "b", false)
	const limit = 4096
	_, addr := start(t, headerLimitSnap(b, limit, 0))
	for _, tc := range []struct {
		name string
		size int
		want int
	}{
		{"well under the limit", limit / 2, 200},
		{"just over the limit", limit + 1024, 431},
		{"far over the limit", 4 * limit, 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := rawRoundTrip(t, addr("out"), requestWithHeader(tc.size))
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("a %d-byte header with MaxRequestHeadersBytes %d got %d, want %d", tc.size, limit, resp.StatusCode, tc.want)
			}
		})
	}
}

func TestMalformedRequestsGet400(t *testing.T) {
	b := newBackend(t, "b", false)
	_, addr := start(t, headerLimitSnap(b, 0, 200*time.Millisecond))
	for _, tc := range []struct{ name, req string }{
		{"garbage request line", "THIS IS NOT HTTP AT ALL\r\n\r\n"},
		{"malformed header line", "GET / HTTP/1.1\r\nHost: svc\r\nNo colon here\r\n\r\n"},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n"},
		{"bad protocol version", "GET / HTTP/1.x\r\nHost: svc\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := rawRoundTrip(t, addr("out"), tc.req)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("got %d, want 400", resp.StatusCode)
			}
		})
	}
	// net/http peeks 14 bytes for the h2c preface ("PRI * HTTP/2.0")
	// before parsing HTTP/1.1, so garbage shorter than that gets no 400:
	// the header timeout closes the connection instead.
	t.Run("short garbage", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr("out"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "GARBAGE\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after 5s; the 200ms header timeout must close it")
		}
		if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400") {
			t.Errorf("got %q, want a 400 or a closed connection", got)
		}
	})
	if b.hits.Load() != 0 {
		t.Errorf("a malformed request reached the backend")
	}
}

// slowloris sends a request's headers one byte at a time, every 50ms, and
// returns how long the proxy took to end the connection. It fails the test
// if the connection is still open after bound.
func slowloris(t *testing.T, addr string, bound time.Duration) time.Duration {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t0 := time.Now()
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: svc\r\nX-Slow: "); err != nil {
			return
		}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range 400 { // at most 20s of dribbling
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte("a")); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-writerDone }()
	conn.SetReadDeadline(t0.Add(bound))
	got, err := io.ReadAll(conn)
	el := time.Since(t0)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s of slow headers", bound)
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Errorf("the proxy answered %q, want the connection closed (or 408)", got)
	}
	return el
}

func TestSlowlorisConnectionClosed(t *testing.T) {
	b := newBackend(t, "b", false)
	const timeout = 200 * time.Millisecond
	_, addr := start(t, headerLimitSnap(b, 0, timeout))
	el := slowloris(t, addr("out"), 3*time.Second)
	if el < timeout {
		t.Errorf("closed after %s, before the %s header timeout", el, timeout)
	}
	if b.hits.Load() != 0 {
		t.Errorf("the slow request reached the backend")
	}
}

// TestHeaderLimitsFollowConfigUpdates: MaxRequestHeadersBytes and
// RequestHeadersTimeout changed by an update that keeps the listener's
// socket must apply to new connections.
func TestHeaderLimitsFollowConfigUpdates(t *testing.T) {
	b := newBackend(t, "b", false)
	p, addr := start(t, headerLimitSnap(b, 0, 0))
	if resp, err := rawRoundTrip(t, addr("out"), requestWithHeader(16<<10)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a 16 KiB header under the default 60 KiB limit: %v %v", resp, err)
	}
	if err := p.Apply(headerLimitSnap(b, 4096, 200*time.Millisecond).s); err != nil {
		t.Fatal(err)
	}
	t.Run("max request headers bytes", func(t *testing.T) {
		resp, err := rawRoundTrip(t, addr("out"), requestWithHeader(16<<10))
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("after lowering MaxRequestHeadersBytes to 4096 a 16 KiB header got %d, want 431 "+
				"(the http.Server is built once per socket from the first config)", resp.StatusCode)
		}
	})
	t.Run("request headers timeout", func(t *testing.T) {
		slowloris(t, addr("out"), 3*time.Second)
	})
}

func TestHTTP2GarbageFramesDoNotHurtOthers(t *testing.T) {
	b := newBackend(t, "b", true)
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc", Protocol: config.HTTP2}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)
	good := h2cClient(t)
	check := func(when string) {
		t.Helper()
		r, err := fetch(good, "http://"+addr("out")+"/ok")
		if err != nil || r.code != 200 || r.proto != "HTTP/2.0" {
			t.Fatalf("%s: a well-behaved h2c client got %+v, %v", when, r, err)
		}
	}
	check("before")

	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	frame := func(length uint32, typ, flags byte, stream uint32, payload []byte) []byte {
		h := make([]byte, 9, 9+len(payload))
		h[0], h[1], h[2] = byte(length>>16), byte(length>>8), byte(length)
		h[3], h[4] = typ, flags
		binary.BigEndian.PutUint32(h[5:], stream)
		return append(h, payload...)
	}
	junk := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"random bytes after the preface", append([]byte(preface), junk...)},
		{"SETTINGS with a bad length", append([]byte(preface), frame(5, 0x4, 0, 0, []byte{1, 2, 3, 4, 5})...)},
		{"oversized DATA on stream 0", append([]byte(preface), frame(1<<24-1, 0x0, 0, 0, junk[:64])...)},
		{"HEADERS with an HPACK integer overflow", append(append([]byte(preface), frame(0, 0x4, 0, 0, nil)...), frame(16, 0x1, 0x4|0x1, 1, []byte(strings.Repeat("\xff", 16)))...)},
		{"random bytes instead of a preface", junk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", addr("out"), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			go conn.Write(tc.data)
			_, err = io.Copy(io.Discard, conn)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("the proxy kept a connection that sent garbage open for 5s")
			}
			check("after " + tc.name)
		})
	}
	if b.hits.Load() != 5+1 {
		t.Errorf("backend saw %d requests, want only the 6 good ones", b.hits.Load())
	}
}

func TestUnknownClusterAndNoRoute(t *testing.T) {
	b := newBackend(t, "b", false)
	s := newSnap().httpListener("out", prefix("/ghost", to("ghost")), prefix("/known", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	lo, logs := withAccessLog()
	_, addr := start(t, s, lo)
	c := client(t)
	for _, tc := range []struct {
		path  string
		code  int
		flags string
	}{
		{"/ghost", http.StatusServiceUnavailable, "NC"},
		{"/elsewhere", http.StatusNotFound, "NR"},
		{"/known", http.StatusOK, ""},
	} {
		r := get(t, c, "http://"+addr("out")+tc.path)
		if r.code != tc.code || r.flags != tc.flags {
			t.Errorf("%s: got %d flags %q, want %d %q", tc.path, r.code, r.flags, tc.code, tc.flags)
		}
	}
	es := logs.entries(t)
	if len(es) != 3 || es[0]["response_flags"] != "NC" || es[1]["response_flags"] != "NR" || es[2]["response_flags"] != "-" {
		t.Errorf("access log flags %v, want NC, NR, -", es)
	}
	if b.hits.Load() != 1 {
		t.Errorf("backend saw %d, want 1", b.hits.Load())
	}
}

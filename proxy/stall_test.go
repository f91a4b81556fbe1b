package proxy

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/causewaymesh/causeway/proxy/config"
)

// streamingBackend answers every request with up to 256 MiB, written in
// 64 KiB pieces until the write fails (the proxy gave up the request);
// ended is closed when its handler returns.
func streamingBackend(t *testing.T) (*backend, <-chan struct{}) {
	t.Helper()
	ended := make(chan struct{})
	piece := make([]byte, 64<<10)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		defer close(ended)
		rc := http.NewResponseController(w)
		for range 4096 {
			if _, err := w.Write(piece); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	})
	return b, ended
}

func waitEnded(t *testing.T, ended <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: the backend's request is still open after 20 s", what)
	}
}

// TestWriteStallClosesSlowReader: an HTTP/1.1 client that sends a request
// and never reads its response (a "slow read") fills the socket; after
// stream_idle_timeout without progress the proxy closes the connection and
// ends the upstream request, long before the route timeout.
func TestWriteStallClosesSlowReader(t *testing.T) {
	b, ended := streamingBackend(t)
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	s.s.Listeners[0].HTTP.StreamIdleTimeout = 300 * time.Millisecond
	_, addr := start(t, s)

	conn, err := net.Dial("tcp", addr("out"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// (No small SO_RCVBUF: below one loopback MSS, 64 KiB, the receiver
	// never announces an opened window, and draining would crawl on the
	// sender's zero-window probes.)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, ended, "client not reading")

	// The proxy closed the connection: what the socket holds is followed
	// by EOF (or a reset), not by more of the body.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection is still open after %d bytes", n)
	}
	if n >= 256<<20 {
		t.Fatalf("the whole body arrived (%d bytes): nothing stalled", n)
	}
}

// TestH2SendWindowStallResetsStream: an HTTP/2 client that opens no send
// window (initial window 0, no WINDOW_UPDATE) gets RST_STREAM(CANCEL)
// after stream_idle_timeout, and the upstream request ends; the connection
// keeps serving.
func TestH2SendWindowStallResetsStream(t *testing.T) {
	b, ended := streamingBackend(t)
	s := h2Snap(b, config.HTTP1)
	s.s.Listeners[0].HTTP.StreamIdleTimeout = 300 * time.Millisecond
	_, addr := start(t, s)

	c := dialH2(t, addr("out"))
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	c.request(1, true, http.MethodGet, "/")
	t0 := time.Now()
	for {
		f := c.read()
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 1 {
			if rst.ErrCode != http2.ErrCodeCancel {
				t.Errorf("RST_STREAM %v, want CANCEL", rst.ErrCode)
			}
			break
		}
		if d, ok := f.(*http2.DataFrame); ok && len(d.Data()) > 0 {
			t.Fatalf("DATA on a stream whose window is 0")
		}
	}
	if el := time.Since(t0); el < 150*time.Millisecond {
		t.Errorf("reset after %s, before half the 300ms stream_idle_timeout", el)
	}
	waitEnded(t, ended, "no send window")

	// Only the stream was reset: the connection still answers a PING.
	if err := c.fr.WritePing(false, [8]byte{7}); err != nil {
		t.Fatal(err)
	}
	for {
		if p, ok := c.read().(*http2.PingFrame); ok && p.IsAck() && p.Data == [8]byte{7} {
			break
		}
	}
}

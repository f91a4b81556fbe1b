package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/causewaymesh/causeway/proxy/config"
)

// FuzzH2Server feeds arbitrary bytes, after the client preface, to the
// HTTP/2 server through a real listener over an in-memory connection.
// Whatever arrives, the server must not panic, and once the client is gone
// it must release the connection and every goroutine it started.
func FuzzH2Server(f *testing.F) {
	frame := func(typ http2.FrameType, flags http2.Flags, stream uint32, payload []byte) []byte {
		h := make([]byte, 9, 9+len(payload))
		h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		h[3], h[4] = byte(typ), byte(flags)
		binary.BigEndian.PutUint32(h[5:], stream)
		return append(h, payload...)
	}
	block := func(fields ...string) []byte {
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		for i := 0; i+1 < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return buf.Bytes()
	}
	settings := frame(http2.FrameSettings, 0, 0, nil)
	get := block(":method", "GET", ":scheme", "http", ":path", "/a", ":authority", "svc")
	post := block(":method", "POST", ":scheme", "http", ":path", "/b", ":authority", "svc", "content-length", "3", "trailer", "x-t")
	seeds := [][]byte{
		settings,
		append(append([]byte{}, settings...), frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 1, get)...),
		bytes.Join([][]byte{settings,
			frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 3, post),
			frame(http2.FrameData, 0, 3, []byte("abc")),
			frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 3, block("x-t", "1")),
			frame(http2.FrameRSTStream, 0, 3, []byte{0, 0, 0, 8}),
			frame(http2.FramePing, 0, 0, make([]byte, 8)),
			frame(http2.FrameWindowUpdate, 0, 0, []byte{0, 1, 0, 0}),
			frame(http2.FrameGoAway, 0, 0, make([]byte, 8)),
		}, nil),
		bytes.Join([][]byte{settings,
			frame(http2.FrameHeaders, 0, 5, get[:3]),
			frame(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 5, get[3:]),
		}, nil),
		append(append([]byte{}, settings...), frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, []byte(strings.Repeat("\xff", 16)))...),
	}
	for _, s := range seeds {
		f.Add(s)
	}

	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, deadAddr(f)))
	s.s.Listeners[0].HTTP.RequestHeadersTimeout = 5 * time.Second
	p, _ := start(f, s)
	l := s.s.Listeners[0]
	ln := newListener(p, l, newVirtualSocket(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}))
	f.Cleanup(func() { ln.stop(0); ln.wait() })

	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		ln.dispatch(server)
		read := make(chan struct{})
		go func() { // the server's frames, until it closes
			defer close(read)
			io.Copy(io.Discard, client)
		}()
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write([]byte(h2Preface))
		client.Write(data)
		client.Close()
		<-read
		// The listener has no accept loop: its WaitGroup counts this
		// connection's goroutine alone.
		done := make(chan struct{})
		go func() {
			ln.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the server kept the connection 10s after the client closed")
		}
	})
}

package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Wire is what the HTTP/2 server and client share: the sending half of
// a connection, whose frames go out in order under wmu together with the
// HPACK encoder state that must follow that order, and the reading half's
// header-name cache. fr writes only under wmu; its reads belong to the
// connection's reader of the moment.
type h2Wire struct {
	fr    *http2.Framer
	canon map[string]string // wire name -> canonical key; the reader's

	wmu      sync.Mutex
	closer   io.Closer // the connection, closed on a write error
	bw       *bufio.Writer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	lower    map[string]string // canonical key -> wire name
	maxFrame uint32            // the peer's SETTINGS_MAX_FRAME_SIZE
	werr     error             // the first write error: the connection is dead
}

// initWire sets w up on conn's reader and writer.
func (w *h2Wire) initWire(conn io.Closer, r io.Reader, bw *bufio.Writer) {
	w.closer = conn
	w.bw = bw
	w.fr = http2.NewFramer(bw, r)
	w.fr.SetReuseFrames()
	w.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	w.henc = hpack.NewEncoder(&w.hbuf)
	w.canon = map[string]string{}
	w.lower = map[string]string{}
	w.maxFrame = 16384
}

// flushLocked flushes the write buffer. Called with w.wmu held.
func (w *h2Wire) flushLocked() error {
	if w.werr != nil {
		return w.werr
	}
	if err := w.bw.Flush(); err != nil {
		w.werr = err
		w.closer.Close() // the reader ends too
		return err
	}
	return nil
}

// writeHeaderBlock writes w.hbuf as HEADERS and CONTINUATION frames.
// Called with w.wmu held.
func (w *h2Wire) writeHeaderBlock(id uint32, endStream bool) {
	block := w.hbuf.Bytes()
	first := true
	for first || len(block) > 0 {
		n := min(len(block), int(w.maxFrame))
		frag := block[:n]
		block = block[n:]
		if first {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			w.fr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

// writeData writes p as DATA frames of at most the peer's frame size.
// Called with w.wmu held.
func (w *h2Wire) writeData(id uint32, p []byte, end bool) {
	if len(p) == 0 && !end {
		return
	}
	for {
		n := min(len(p), int(w.maxFrame))
		last := n == len(p)
		w.fr.WriteData(id, end && last, p[:n])
		p = p[n:]
		if last {
			return
		}
	}
}

// encodeField adds k's values to the header block, lower-casing the name
// and dropping invalid fields as net/http does. Called with w.wmu held.
func (w *h2Wire) encodeField(k string, vv []string) {
	if !validHeaderName(k) {
		return
	}
	name, ok := w.lower[k]
	if !ok {
		name = strings.ToLower(k)
		if len(w.lower) < h2MaxCanonCache {
			w.lower[k] = name
		}
	}
	never := neverIndexed(name)
	for _, v := range vv {
		if strings.ContainsAny(v, "\r\n\x00") {
			continue
		}
		w.henc.WriteField(hpack.HeaderField{Name: name, Value: v, Sensitive: never})
	}
}

// neverIndexed reports whether a field named name goes out as an HPACK
// never-indexed literal instead of entering the peers' dynamic tables:
// credentials (RFC 7541 section 7.1.3). A connection between two sidecars
// carries many users' requests, and an indexed secret can be guessed from
// compressed sizes by whoever can add requests to it. (Per-request ids
// stay indexed: never-indexing them was measured to cost the decoder two
// allocations per request and save nothing.)
func neverIndexed(name string) bool {
	return name == "authorization" || name == "proxy-authorization"
}

// writeWindowUpdates returns flow-control credit: stream bytes on id,
// conn bytes on the connection (0: none).
func (w *h2Wire) writeWindowUpdates(id uint32, stream, conn uint32) {
	if stream == 0 && conn == 0 {
		return
	}
	w.wmu.Lock()
	if stream > 0 {
		w.fr.WriteWindowUpdate(id, stream)
	}
	if conn > 0 {
		w.fr.WriteWindowUpdate(0, conn)
	}
	w.flushLocked()
	w.wmu.Unlock()
}

func (w *h2Wire) writeRST(id uint32, code http2.ErrCode) {
	w.wmu.Lock()
	w.fr.WriteRSTStream(id, code)
	w.flushLocked()
	w.wmu.Unlock()
}

// canonical is http.CanonicalHeaderKey with a per-connection cache
// (HTTP/2 names are lower case, so every canonical key would be a new
// string). Called by the reader.
func (w *h2Wire) canonical(name string) string {
	if k, ok := w.canon[name]; ok {
		return k
	}
	k := http.CanonicalHeaderKey(name)
	if len(w.canon) < h2MaxCanonCache {
		w.canon[name] = k
	}
	return k
}

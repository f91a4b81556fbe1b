package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The downstream HTTP/2 server (h2 by ALPN, h2c with prior knowledge).
//
// net/http's HTTP/2 server passes every request through four goroutines:
// a frame reader, a serve loop that owns all state, the handler, and the
// serve loop again for every header and data write, each a channel
// hand-off and often a futex wake-up of another thread. Between two
// sidecars that is where most of a hop's CPU went. Here exactly one
// goroutine reads frames at a time. When a stream opens, a spare goroutine
// (or a new one) takes over the reading and the reader runs the stream's
// handler at once, on a stack grown by earlier handlers, then waits as a
// spare (readLoop). The handler writes its frames itself, under the
// connection's write lock, and a small response leaves in one write with
// its headers (HEADERS and DATA are held back until the handler returns,
// flushes, or has written more than maxPendingBody). The connection's
// accept goroutine (which ran the TLS handshake) waits for all of them.
//
// State shared by the reader and the streams (the stream table, flow
// control windows, request bodies) is guarded by h2ServerConn.mu; what
// goes on the wire, and the HPACK encoder whose state must follow the
// order of the frames, by h2ServerConn.wmu. The two are never held
// together.
//
// Flow control: each stream may send h2StreamWindow bytes and the
// connection h2ConnWindow before the handler reads; a quarter of a window
// read is returned with WINDOW_UPDATE. Response DATA waits for the
// client's windows, flushing what is buffered first.
//
// Drain: the listener's shutdown (or a "Connection: close" response)
// sends GOAWAY with the last stream ID seen; later streams are refused
// (the client retries them elsewhere), streams in flight finish, and then
// the connection closes. An idle connection (no streams) closes after the
// listener's idle timeout.

const (
	h2StreamWindow = 1 << 20 // SETTINGS_INITIAL_WINDOW_SIZE advertised
	h2ConnWindow   = 4 << 20 // connection receive window
	h2MaxStreams   = 1000    // SETTINGS_MAX_CONCURRENT_STREAMS advertised
	h2MaxReadFrame = 1 << 20 // SETTINGS_MAX_FRAME_SIZE advertised
	h2ReadBufSize  = 16 << 10
	h2WriteBufSize = 16 << 10
	// h2DefaultWindow is RFC 9113's initial window (streams and connection).
	h2DefaultWindow = 65535
	// h2MaxSpares bounds the goroutines a connection keeps waiting to
	// read (each went back to waiting after running a stream).
	h2MaxSpares = 8
	// h2MaxCanonCache bounds the per-connection header name caches.
	h2MaxCanonCache = 256
)

// h2PendPool holds the buffers of response bodies held back (h2Response.pend).
var h2PendPool = sync.Pool{New: func() any { b := make([]byte, 0, maxPendingBody); return &b }}

var (
	errH2StreamReset = errors.New("http2: stream reset by the client")
	errH2ConnClosed  = errors.New("http2: connection closed")
	errH2SendStalled = errors.New("http2: the client opened no send window within the listener's stream_idle_timeout")
)

// h2ServerConn is one downstream HTTP/2 connection. It embeds the
// connection so that it can stand in listener.tcpConns.
type h2ServerConn struct {
	net.Conn
	ln      *listener
	key     serverKey
	ctx     context.Context // ends with the connection or the listener
	cancel  context.CancelFunc
	handler httpHandler

	remoteAddr string
	tlsState   *tls.ConnectionState
	out        stallGuard // under the wire's writer, guarded by wmu
	br         *bufio.Reader
	handlers   sync.WaitGroup // readers, streams and spares
	wake       chan struct{}  // a spare takes over reading
	spares     atomic.Int32   // goroutines waiting in awaitReading

	h2Wire
	date    []byte // guarded by wmu
	dateSec int64
	dateArr [len(http.TimeFormat)]byte

	mu          sync.Mutex
	sendCond    sync.Cond // a send window grew, or a stream or the connection ended
	streams     map[uint32]*h2Stream
	lastStream  uint32 // highest stream ID the client opened
	sendWindow  int64  // connection send window
	initWindow  int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	recvWindow  int64  // connection receive window left to the client
	recvUnacked int64  // read by handlers, not yet returned
	goingAway   bool   // GOAWAY sent: no new streams
	closed      bool
	idle        *time.Timer
}

// h2Stream is one request. Fields below mu are guarded by c.mu.
type h2Stream struct {
	c      *h2ServerConn
	id     uint32
	ctx    context.Context
	cancel context.CancelFunc
	w      h2Response
	head   bool // HEAD request
	// What to run: req's handler, or a refusal with replyCode.
	req       *http.Request
	replyCode int
	replyMsg  string

	readCond    sync.Cond // body data, end or reset
	sendWindow  int64
	recvWindow  int64
	recvUnacked int64
	body        []byte // received, not yet read
	bodyDone    bool   // END_STREAM received (or the request had no body)
	declLen     int64  // content-length, or -1
	gotLen      int64
	trailer     http.Header // the request's declared trailers, filled at the end
	reset       bool        // RST_STREAM either way, or the connection ended
	done        bool        // the handler finished
	expect      bool        // "Expect: 100-continue": answer the first read
	headersSent bool        // guarded by wmu: the final HEADERS went out
}

// serveH2 serves conn, whose first bytes are the client's preface, as
// HTTP/2, on the calling goroutine (the connection's, counted in ln.wg).
func (ln *listener) serveH2(conn net.Conn, key serverKey, tlsState *tls.ConnectionState) {
	c := &h2ServerConn{
		Conn:       conn,
		ln:         ln,
		key:        key,
		handler:    httpHandler{ln: ln},
		remoteAddr: conn.RemoteAddr().String(),
		tlsState:   tlsState,
		wake:       make(chan struct{}),
		streams:    map[uint32]*h2Stream{},
		sendWindow: h2DefaultWindow,
		initWindow: h2DefaultWindow,
		recvWindow: h2ConnWindow,
	}
	c.sendCond.L = &c.mu
	c.ctx, c.cancel = context.WithCancel(ln.ctx)
	ln.mu.Lock()
	if ln.stopping {
		ln.mu.Unlock()
		c.Close()
		return
	}
	ln.tcpConns[c] = struct{}{}
	ln.mu.Unlock()
	defer func() {
		ln.mu.Lock()
		delete(ln.tcpConns, c)
		ln.mu.Unlock()
	}()
	c.serve()
}

// Close closes the connection and ends every stream's context. Any
// goroutine may call it.
func (c *h2ServerConn) Close() error {
	err := c.Conn.Close()
	c.cancel()
	return err
}

// drain sends GOAWAY; the connection closes when its streams are done.
// Called with ln.mu held.
func (c *h2ServerConn) drain() { go c.goAway(http2.ErrCodeNo) }

func (c *h2ServerConn) serve() {
	c.br = bufio.NewReaderSize(c.Conn, h2ReadBufSize)
	c.out = stallGuard{conn: c.Conn, timeout: c.key.writeStall}
	c.initWire(c.Conn, c.br, bufio.NewWriterSize(&c.out, h2WriteBufSize))
	c.fr.SetMaxReadFrameSize(h2MaxReadFrame)
	c.fr.MaxHeaderListSize = uint32(c.key.maxHeader)
	defer c.end()

	c.Conn.SetDeadline(time.Now().Add(c.key.headerTimeout))
	var preface [len(h2Preface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil || string(preface[:]) != h2Preface {
		return
	}
	c.wmu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: h2MaxReadFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.key.maxHeader)},
	)
	c.fr.WriteWindowUpdate(0, h2ConnWindow-h2DefaultWindow)
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		return
	}
	// The client's preface continues with SETTINGS.
	f, err := c.fr.ReadFrame()
	if err != nil {
		return
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		c.connError(http2.ErrCodeProtocol, "the client preface must continue with SETTINGS")
		return
	}
	if c.processSettings(sf) != nil {
		return
	}
	c.Conn.SetDeadline(time.Time{})
	c.out.forget() // no writer runs yet: the reader writes only from here on
	c.mu.Lock()
	c.idle = time.AfterFunc(c.key.idle, c.onIdle)
	c.mu.Unlock()
	c.handlers.Go(c.readLoop)
	c.handlers.Wait()
}

// readLoop reads frames until a stream needs its handler run. Then a
// spare goroutine (or a new one) takes over the reading and this one runs
// the handler, on a stack already grown by earlier ones, and waits as a
// spare afterwards. The handler starts without waiting for another
// goroutine to be scheduled; the one wake-up per stream, of the next
// reader, is off the request's path.
func (c *h2ServerConn) readLoop() {
	for {
		st := c.readUntilStream()
		if st == nil {
			c.end()
			return
		}
		select {
		case c.wake <- struct{}{}:
		default:
			c.handlers.Go(c.readLoop)
		}
		c.runStream(st)
		if !c.awaitReading() {
			return
		}
	}
}

// awaitReading waits, as a spare, for the turn to read. It reports false
// when the connection ended or enough spares wait already.
func (c *h2ServerConn) awaitReading() bool {
	if c.spares.Add(1) > h2MaxSpares {
		c.spares.Add(-1)
		return false
	}
	defer c.spares.Add(-1)
	select {
	case <-c.wake:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// readUntilStream reads and processes frames until one opens a stream,
// which it returns; nil when the connection is over.
func (c *h2ServerConn) readUntilStream() *h2Stream {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			switch {
			case errors.As(err, &se):
				c.resetStream(se.StreamID, se.Code, true)
				continue
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.connError(http2.ErrCodeFrameSize, "frame too large")
			default:
				var ce http2.ConnectionError
				if errors.As(err, &ce) {
					c.connError(http2.ErrCode(ce), errString(c.fr.ErrorDetail()))
				}
			}
			return nil
		}
		if mh, ok := f.(*http2.MetaHeadersFrame); ok {
			st, ok := c.processHeaders(mh)
			if !ok {
				return nil
			}
			if st != nil {
				return st
			}
			continue
		}
		if !c.process(f) {
			return nil
		}
	}
}

// process handles one frame; false ends the connection.
func (c *h2ServerConn) process(f http2.Frame) bool {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.RSTStreamFrame:
		c.resetStream(f.StreamID, f.ErrCode, false)
	case *http2.SettingsFrame:
		if f.IsAck() {
			return true
		}
		return c.processSettings(f) == nil
	case *http2.PingFrame:
		if f.IsAck() {
			return true
		}
		c.wmu.Lock()
		c.fr.WritePing(true, f.Data)
		err := c.flushLocked()
		c.wmu.Unlock()
		return err == nil
	case *http2.GoAwayFrame:
		// The client opens no more streams; those it has finish.
	case *http2.PushPromiseFrame:
		c.connError(http2.ErrCodeProtocol, "a client must not send PUSH_PROMISE")
		return false
	}
	// PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).
	return true
}

func (c *h2ServerConn) processSettings(f *http2.SettingsFrame) error {
	var maxFrame, tableSize uint32
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta := int64(s.Val) - c.initWindow
			c.initWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > 1<<31-1 {
					c.mu.Unlock()
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.sendCond.Broadcast()
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			maxFrame = s.Val
		case http2.SettingHeaderTableSize:
			tableSize = s.Val + 1 // +1: set
		}
		return nil
	})
	if err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			c.connError(http2.ErrCode(ce), "invalid SETTINGS: "+err.Error())
		}
		return err
	}
	c.wmu.Lock()
	if maxFrame != 0 {
		c.maxFrame = maxFrame
	}
	if tableSize != 0 {
		c.henc.SetMaxDynamicTableSizeLimit(tableSize - 1)
	}
	c.fr.WriteSettingsAck()
	err = c.flushLocked()
	c.wmu.Unlock()
	return err
}

func (c *h2ServerConn) processWindowUpdate(f *http2.WindowUpdateFrame) bool {
	c.mu.Lock()
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > 1<<31-1 {
			c.mu.Unlock()
			c.connError(http2.ErrCodeFlowControl, "connection window above 2^31-1")
			return false
		}
	} else if st := c.streams[f.StreamID]; st != nil {
		st.sendWindow += int64(f.Increment)
		if st.sendWindow > 1<<31-1 {
			c.mu.Unlock()
			c.resetStream(f.StreamID, http2.ErrCodeFlowControl, true)
			return true
		}
	}
	c.sendCond.Broadcast()
	c.mu.Unlock()
	return true
}

// processHeaders opens a stream, returned for its handler (or its
// refusal) to run, or ends one's body with trailers. false ends the
// connection.
func (c *h2ServerConn) processHeaders(f *http2.MetaHeadersFrame) (*h2Stream, bool) {
	id := f.StreamID
	if id%2 == 0 {
		c.connError(http2.ErrCodeProtocol, "client stream IDs are odd")
		return nil, false
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.mu.Unlock()
		return nil, c.processTrailers(st, f)
	}
	if id <= c.lastStream {
		// A closed stream (RFC 9113 §5.1: STREAM_CLOSED as a
		// connection error).
		c.mu.Unlock()
		c.connError(http2.ErrCodeStreamClosed, "HEADERS on closed stream "+strconv.FormatUint(uint64(id), 10))
		return nil, false
	}
	c.lastStream = id
	refuse := c.goingAway || len(c.streams) >= h2MaxStreams
	c.mu.Unlock()
	if refuse {
		c.writeRST(id, http2.ErrCodeRefusedStream)
		return nil, true
	}
	if f.Truncated {
		st := c.openStream(id, f.StreamEnded(), false)
		st.replyCode = http.StatusRequestHeaderFieldsTooLarge
		return st, true
	}
	req, status, msg := c.newRequest(f)
	if req == nil {
		if status == 0 {
			c.writeRST(id, http2.ErrCodeProtocol)
			return nil, true
		}
		st := c.openStream(id, f.StreamEnded(), false)
		st.replyCode, st.replyMsg = status, msg
		return st, true
	}
	st := c.openStream(id, f.StreamEnded(), req.Method == http.MethodHead)
	if !f.StreamEnded() {
		st.declLen = req.ContentLength
		st.trailer = req.Trailer
		if ev, ok := req.Header["Expect"]; ok {
			if len(ev) != 1 || !strings.EqualFold(ev[0], "100-continue") {
				st.replyCode, st.replyMsg = http.StatusExpectationFailed, "unsupported Expect header"
				return st, true
			}
			delete(req.Header, "Expect")
			st.expect = true
		}
		req.Body = &h2Body{st: st}
	}
	st.req = req.WithContext(st.ctx)
	return st, true
}

// openStream registers a new stream. Called by the reader.
func (c *h2ServerConn) openStream(id uint32, bodyDone, head bool) *h2Stream {
	st := &h2Stream{c: c, id: id, head: head, bodyDone: bodyDone, declLen: -1, recvWindow: h2StreamWindow}
	st.readCond.L = &c.mu
	st.ctx, st.cancel = context.WithCancel(c.ctx)
	st.w.st = st
	c.mu.Lock()
	st.sendWindow = c.initWindow
	if len(c.streams) == 0 && c.idle != nil {
		c.idle.Stop()
	}
	c.streams[id] = st
	c.mu.Unlock()
	return st
}

// newRequest builds the request of a HEADERS frame. A malformed one gets
// a status to answer with, or 0 for a stream error.
func (c *h2ServerConn) newRequest(f *http2.MetaHeadersFrame) (_ *http.Request, status int, msg string) {
	method, path := f.PseudoValue("method"), f.PseudoValue("path")
	scheme, authority := f.PseudoValue("scheme"), f.PseudoValue("authority")
	if f.PseudoValue("protocol") != "" {
		return nil, 0, "" // extended CONNECT was not offered
	}
	if method == http.MethodConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, 0, ""
		}
	} else if method == "" || scheme == "" || path == "" {
		return nil, 0, ""
	}
	fields := f.RegularFields()
	header := make(http.Header, len(fields))
	var cookies []string
	for _, hf := range fields {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return nil, 0, "" // connection-specific (RFC 9113 §8.2.2)
		case "te":
			if hf.Value != "trailers" {
				return nil, 0, ""
			}
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		}
		k := c.canonical(hf.Name)
		header[k] = append(header[k], hf.Value)
	}
	if len(cookies) > 0 {
		// RFC 9113 §8.2.3: split crumbs are joined for HTTP/1.1.
		header["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	if authority == "" {
		authority = header.Get("Host")
	}
	delete(header, "Host")
	if !validHost(authority) {
		return nil, http.StatusBadRequest, "malformed :authority"
	}
	var u *url.URL
	var err error
	if method == http.MethodConnect {
		u = &url.URL{Host: authority}
		path = authority
	} else if u, err = url.ParseRequestURI(path); err != nil {
		return nil, http.StatusBadRequest, "malformed :path"
	}
	req := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     header,
		Host:       authority,
		RequestURI: path,
		RemoteAddr: c.remoteAddr,
		TLS:        c.tlsState,
		Body:       http.NoBody,
	}
	if f.StreamEnded() {
		return req, 0, ""
	}
	req.ContentLength = -1
	if cl := header["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if len(cl) > 1 || err != nil || n < 0 {
			return nil, 0, ""
		}
		req.ContentLength = n
	}
	for _, v := range header["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if name == "" || forbiddenTrailer(name) {
				continue
			}
			if req.Trailer == nil {
				req.Trailer = http.Header{}
			}
			req.Trailer[name] = nil
		}
	}
	delete(header, "Trailer")
	return req, 0, ""
}

func (c *h2ServerConn) processTrailers(st *h2Stream, f *http2.MetaHeadersFrame) bool {
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		c.connError(http2.ErrCodeProtocol, "trailers must end the stream and carry no pseudo-header")
		return false
	}
	c.mu.Lock()
	if st.bodyDone || st.reset {
		closed := !st.reset
		c.mu.Unlock()
		if closed {
			c.resetStream(st.id, http2.ErrCodeStreamClosed, true)
		}
		return true
	}
	for _, hf := range f.RegularFields() {
		k := c.canonical(hf.Name)
		if _, declared := st.trailer[k]; declared {
			st.trailer[k] = append(st.trailer[k], hf.Value)
		}
	}
	c.endBody(st)
	c.mu.Unlock()
	return true
}

func (c *h2ServerConn) processData(f *http2.DataFrame) bool {
	n := int64(f.Length) // flow control counts padding too
	data := f.Data()
	c.mu.Lock()
	c.recvWindow -= n
	if c.recvWindow < 0 {
		c.mu.Unlock()
		c.connError(http2.ErrCodeFlowControl, "DATA beyond the connection window")
		return false
	}
	st := c.streams[f.StreamID]
	if st == nil || st.bodyDone || st.reset {
		if f.StreamID > c.lastStream {
			c.mu.Unlock()
			c.connError(http2.ErrCodeProtocol, "DATA on an idle stream")
			return false
		}
		// A stream already closed: the bytes still count against the
		// connection window, so return them.
		c.recvUnacked += n
		update := c.takeConnUpdate()
		halfClosed := st != nil && !st.reset // DATA after END_STREAM
		c.mu.Unlock()
		if halfClosed {
			c.resetStream(f.StreamID, http2.ErrCodeStreamClosed, true)
		}
		c.writeWindowUpdates(0, 0, update)
		return true
	}
	st.recvWindow -= n
	st.gotLen += int64(len(data))
	switch {
	case st.recvWindow < 0:
		c.mu.Unlock()
		c.resetStream(st.id, http2.ErrCodeFlowControl, true)
		return true
	case st.declLen >= 0 && (st.gotLen > st.declLen || f.StreamEnded() && st.gotLen != st.declLen):
		c.mu.Unlock()
		c.resetStream(st.id, http2.ErrCodeProtocol, true)
		return true
	}
	st.body = append(st.body, data...)
	st.readCond.Signal()
	// Padding is returned at once.
	st.recvUnacked += n - int64(len(data))
	c.recvUnacked += n - int64(len(data))
	if f.StreamEnded() {
		c.endBody(st)
	}
	c.mu.Unlock()
	return true
}

// endBody marks st's request body complete. Called with c.mu held.
func (c *h2ServerConn) endBody(st *h2Stream) {
	st.bodyDone = true
	st.readCond.Broadcast()
	if st.done {
		c.forget(st)
	}
}

// takeConnUpdate returns the connection window increment due, if any.
// Called with c.mu held.
func (c *h2ServerConn) takeConnUpdate() uint32 {
	if c.recvUnacked < h2ConnWindow/4 {
		return 0
	}
	n := c.recvUnacked
	c.recvUnacked = 0
	c.recvWindow += n
	return uint32(n)
}

// resetStream ends a stream by RST_STREAM, received or (send) sent.
func (c *h2ServerConn) resetStream(id uint32, code http2.ErrCode, send bool) {
	c.mu.Lock()
	st := c.streams[id]
	if st == nil && id > c.lastStream {
		if !send {
			// RST_STREAM on an idle stream is a connection error; the
			// next frames are read anyway, so just ignore it here.
			c.mu.Unlock()
			return
		}
		c.lastStream = id // a stream error on a new stream closes it
	}
	if st != nil && !st.reset {
		st.reset = true
		st.cancel()
		st.readCond.Broadcast()
		c.sendCond.Broadcast()
		c.recvUnacked += int64(len(st.body))
		st.body = nil
		if st.done {
			c.forget(st)
		}
	}
	c.mu.Unlock()
	if send {
		c.writeRST(id, code)
	}
}

// connError sends GOAWAY with code; the caller then ends the connection.
func (c *h2ServerConn) connError(code http2.ErrCode, detail string) {
	c.mu.Lock()
	last := c.lastStream
	c.goingAway = true
	c.mu.Unlock()
	c.wmu.Lock()
	c.out.fix(time.Now().Add(time.Second))
	c.fr.WriteGoAway(last, code, []byte(detail))
	c.flushLocked()
	c.wmu.Unlock()
	c.ln.p.log.Debug("HTTP/2 connection error", "listener", c.ln.cfg.Load().Name, "remote", c.remoteAddr, "code", code, "detail", detail)
}

// goAway starts a graceful close: GOAWAY now, close when no stream is left.
func (c *h2ServerConn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	last, idle := c.lastStream, len(c.streams) == 0
	c.mu.Unlock()
	c.wmu.Lock()
	c.fr.WriteGoAway(last, code, nil)
	c.flushLocked()
	c.wmu.Unlock()
	if idle {
		c.closeGracefully()
	}
}

// closeGracefully stops sending and lets the reader end at the client's
// close, or after lingerTimeout, so that the client reads what was sent
// before the connection is reset.
func (c *h2ServerConn) closeGracefully() {
	c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
}

func (c *h2ServerConn) onIdle() {
	c.mu.Lock()
	idle := len(c.streams) == 0 && !c.closed
	c.mu.Unlock()
	if idle {
		c.goAway(http2.ErrCodeNo)
	}
}

// end ends the connection and every stream when reading has stopped.
func (c *h2ServerConn) end() {
	c.Close()
	c.mu.Lock()
	c.closed = true
	if c.idle != nil {
		c.idle.Stop()
	}
	for _, st := range c.streams {
		st.reset = true
		st.readCond.Broadcast()
	}
	c.sendCond.Broadcast()
	c.mu.Unlock()
}

// forget drops a finished stream. Called with c.mu held.
func (c *h2ServerConn) forget(st *h2Stream) {
	if c.streams[st.id] != st {
		return
	}
	delete(c.streams, st.id)
	c.recvUnacked += int64(len(st.body))
	st.body = nil
	if len(c.streams) == 0 {
		if c.goingAway {
			c.closeGracefully()
		} else if c.idle != nil && !c.closed {
			c.idle.Reset(c.key.idle)
		}
	}
}

// runStream runs the stream's handler, or its refusal, and completes the
// response.
func (c *h2ServerConn) runStream(st *h2Stream) {
	if st.replyCode != 0 {
		c.reply(st, st.replyCode, st.replyMsg)
		return
	}
	req := st.req
	st.req = nil
	w := &st.w
	w.header = make(http.Header, 8)
	if !runHandler(&c.handler, w, req, "HTTP/2", c.remoteAddr) {
		c.resetStream(st.id, http2.ErrCodeInternal, true)
	} else {
		w.finish()
	}
	c.endStream(st)
	if hasToken(w.header["Connection"], "close") {
		c.goAway(http2.ErrCodeNo)
	}
}

// reply answers a request the server refuses itself.
func (c *h2ServerConn) reply(st *h2Stream, code int, detail string) {
	w := &st.w
	w.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	w.WriteHeader(code)
	text := strconv.Itoa(code) + " " + http.StatusText(code)
	if detail != "" {
		text += ": " + detail
	}
	io.WriteString(w, text+"\n")
	w.finish()
	c.endStream(st)
}

// endStream releases a stream whose response is complete. A request body
// the client is still sending is cut short with RST_STREAM(NO_ERROR)
// (RFC 9113 §8.1).
func (c *h2ServerConn) endStream(st *h2Stream) {
	st.cancel()
	if w := &st.w; w.pendBuf != nil {
		h2PendPool.Put(w.pendBuf)
		w.pendBuf, w.pend = nil, nil
	}
	c.mu.Lock()
	st.done = true
	rst := !st.bodyDone && !st.reset
	if st.bodyDone || st.reset {
		c.forget(st)
	}
	update := c.takeConnUpdate()
	c.mu.Unlock()
	if rst {
		c.resetStream(st.id, http2.ErrCodeNo, true)
	}
	c.writeWindowUpdates(0, 0, update)
}

// h2Body is a request body, fed by the reader.
type h2Body struct{ st *h2Stream }

func (b *h2Body) Read(p []byte) (int, error) {
	st := b.st
	c := st.c
	if st.expect {
		c.sendContinue(st)
	}
	c.mu.Lock()
	for len(st.body) == 0 {
		switch {
		case st.bodyDone:
			c.mu.Unlock()
			return 0, io.EOF
		case st.reset || c.closed:
			c.mu.Unlock()
			return 0, errH2StreamReset
		case st.done:
			c.mu.Unlock()
			return 0, http.ErrBodyReadAfterClose
		}
		st.readCond.Wait()
	}
	n := copy(p, st.body)
	st.body = st.body[n:]
	if len(st.body) == 0 {
		st.body = st.body[:0:0]
	}
	st.recvUnacked += int64(n)
	c.recvUnacked += int64(n)
	var sUpd uint32
	if !st.bodyDone && st.recvUnacked >= h2StreamWindow/4 {
		sUpd = uint32(st.recvUnacked)
		st.recvWindow += st.recvUnacked
		st.recvUnacked = 0
	}
	cUpd := c.takeConnUpdate()
	c.mu.Unlock()
	c.writeWindowUpdates(st.id, sUpd, cUpd)
	return n, nil
}

func (b *h2Body) Close() error { return nil }

// sendContinue answers "Expect: 100-continue" at the first body read,
// unless the response has begun.
func (c *h2ServerConn) sendContinue(st *h2Stream) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !st.expect || st.headersSent {
		return
	}
	st.expect = false
	c.hbuf.Reset()
	c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
	c.writeHeaderBlock(st.id, false)
	c.flushLocked()
}

// h2Response is the http.ResponseWriter (and http.Flusher) of a stream.
// Header changes after WriteHeader are ignored except for trailers
// (http.TrailerPrefix, or declared in "Trailer"): the header map is read
// when the HEADERS frame is written.
type h2Response struct {
	st     *h2Stream
	header http.Header

	status      int
	wroteHeader bool
	committed   bool  // HEADERS is written
	clen        int64 // Content-Length; -1 when unknown
	written     int64
	bodyOK      bool
	pend        []byte  // body held back until the handler returns or flushes
	pendBuf     *[]byte // pend's pooled buffer
	err         error
}

func (w *h2Response) Header() http.Header { return w.header }

func (w *h2Response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("proxy: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		return // 1xx are not forwarded over HTTP/2 (101 does not exist there)
	}
	w.wroteHeader = true
	w.status = code
	w.clen = -1
	w.bodyOK = code != http.StatusNoContent && code != http.StatusNotModified && !w.st.head
	if cl, ok := w.header["Content-Length"]; ok {
		if len(cl) == 1 {
			if n, err := strconv.ParseInt(strings.TrimSpace(cl[0]), 10, 64); err == nil && n >= 0 {
				w.clen = n
			}
		}
		if w.clen < 0 {
			delete(w.header, "Content-Length")
		}
	}
}

func (w *h2Response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case w.err != nil:
		return 0, w.err
	case !w.bodyOK:
		if w.st.head {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	case w.clen >= 0 && w.written+int64(len(p)) > w.clen:
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.committed && len(w.pend)+len(p) <= maxPendingBody {
		if w.pendBuf == nil {
			w.pendBuf = h2PendPool.Get().(*[]byte)
			w.pend = (*w.pendBuf)[:0]
		}
		w.pend = append(w.pend, p...)
		return len(p), nil
	}
	if err := w.send(p, false, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// FlushError sends what is buffered to the client (http.ResponseController
// finds it).
func (w *h2Response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	return w.send(nil, false, true)
}

// Flush implements http.Flusher.
func (w *h2Response) Flush() { _ = w.FlushError() }

// finish completes the response after the handler returned.
func (w *h2Response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return
	}
	if w.clen >= 0 && w.written < w.clen && w.bodyOK {
		// The body is short of its Content-Length: the client must not
		// take it for complete.
		w.err = errH2StreamReset
		w.st.c.resetStream(w.st.id, http2.ErrCodeInternal, true)
		return
	}
	w.send(nil, true, true)
}

// send writes the headers if they are not out yet, the held-back body, p
// and, if end, the trailers or END_STREAM; flush sends it all now.
func (w *h2Response) send(p []byte, end, flush bool) error {
	st, c := w.st, w.st.c
	data := p
	if !w.committed && len(w.pend) > 0 {
		data = append(w.pend, p...)
		w.pend = w.pend[:0]
	}
	trailers := end && hasTrailers(w.header)
	// Take what the send windows allow of the data before the headers
	// go out, so that a small response leaves in one write.
	n, err := c.reserve(st, len(data), false)
	if err != nil {
		w.err = err
		return err
	}
	c.wmu.Lock()
	if !w.committed {
		w.committed = true
		endStream := end && len(data) == 0 && !trailers
		c.writeResponseHeaders(w, endStream, end && !trailers)
		st.headersSent = true
		if endStream {
			end = false // done: no DATA follows
		}
	}
	for {
		last := n == len(data)
		c.writeData(st.id, data[:n], end && last && !trailers)
		data = data[n:]
		if last {
			break
		}
		// The client needs what was written to open its windows.
		c.flushLocked()
		c.wmu.Unlock()
		if n, err = c.reserve(st, len(data), true); err != nil {
			w.err = err
			if err == errH2SendStalled {
				c.resetStream(st.id, http2.ErrCodeCancel, true)
			}
			return err
		}
		c.wmu.Lock()
	}
	if trailers {
		c.writeTrailers(w)
	}
	if flush || end || trailers {
		err = c.flushLocked()
	} else {
		err = c.werr
	}
	c.wmu.Unlock()
	if err != nil {
		w.err = err
	}
	return err
}

// reserve takes up to want bytes of st's and the connection's send
// windows; if wait, it waits for at least one byte, for at most the
// listener's stream_idle_timeout (then errH2SendStalled: a client that
// stops granting window holds the stream as a client that stops reading
// holds the socket, stall.go).
func (c *h2ServerConn) reserve(st *h2Stream, want int, wait bool) (int, error) {
	if want == 0 {
		return 0, nil
	}
	var stall *sendStall // allocated only when the stream has to wait
	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
		if stall != nil {
			stall.t.Stop()
		}
	}()
	for {
		switch {
		case st.reset:
			return 0, errH2StreamReset
		case c.closed:
			return 0, errH2ConnClosed
		}
		if avail := min(st.sendWindow, c.sendWindow); avail > 0 {
			n := int(min(avail, int64(want)))
			st.sendWindow -= int64(n)
			c.sendWindow -= int64(n)
			return n, nil
		}
		if !wait {
			return 0, nil
		}
		switch {
		case stall == nil && c.key.writeStall > 0:
			stall = c.startSendStall()
		case stall != nil && stall.fired.Load():
			return 0, errH2SendStalled
		}
		c.sendCond.Wait()
	}
}

// sendStall times one wait for send window.
type sendStall struct {
	fired atomic.Bool
	t     *time.Timer
}

// startSendStall starts the timer of a wait for send window: when it
// fires, the waiters wake and the stalled one gives up.
func (c *h2ServerConn) startSendStall() *sendStall {
	s := &sendStall{}
	s.t = time.AfterFunc(c.key.writeStall, func() {
		s.fired.Store(true)
		c.mu.Lock()
		c.sendCond.Broadcast()
		c.mu.Unlock()
	})
	return s
}

// writeResponseHeaders encodes and writes the response HEADERS. Called
// with c.wmu held.
func (c *h2ServerConn) writeResponseHeaders(w *h2Response, endStream, final bool) {
	h := w.header
	c.hbuf.Reset()
	var scratch [24]byte
	c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: string(strconv.AppendInt(scratch[:0], int64(w.status), 10))})
	_, declared := h["Trailer"]
	for k, vv := range h {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Trailer":
			continue
		case "Content-Length":
			if !w.bodyOK && w.status != http.StatusNotModified && !w.st.head {
				continue
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || declared && isDeclaredTrailer(h, k) {
			continue
		}
		c.encodeField(k, vv)
	}
	if _, ok := h["Date"]; !ok {
		c.henc.WriteField(hpack.HeaderField{Name: "date", Value: string(c.dateValue())})
	}
	if final && w.clen < 0 && w.bodyOK && !hasTrailers(h) {
		// The whole body is known: tell its length.
		c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: string(strconv.AppendInt(scratch[:0], w.written, 10))})
	}
	c.writeHeaderBlock(w.st.id, endStream)
}

// writeTrailers writes the trailer HEADERS, ending the stream.
func (c *h2ServerConn) writeTrailers(w *h2Response) {
	h := w.header
	c.hbuf.Reset()
	for k, vv := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			c.encodeField(http.CanonicalHeaderKey(name), vv)
		}
	}
	for _, v := range h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if name == "" || forbiddenTrailer(name) {
				continue
			}
			if vv, ok := h[name]; ok {
				c.encodeField(name, vv)
			}
		}
	}
	c.writeHeaderBlock(w.st.id, true)
}

// dateValue is the Date header for now, formatted once per second.
// Called with c.wmu held.
func (c *h2ServerConn) dateValue() []byte {
	now := c.ln.p.opts.Now()
	if s := now.Unix(); s != c.dateSec || len(c.date) == 0 {
		c.dateSec = s
		c.date = now.UTC().AppendFormat(c.dateArr[:0], http.TimeFormat)
	}
	return c.date
}

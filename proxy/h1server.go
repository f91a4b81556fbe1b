package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// The downstream HTTP/1.1 server.
//
// net/http's server starts a background read on the connection for every
// request it serves (to notice a client that goes away), which costs a
// read syscall, two deadline changes, a goroutine wake-up and a condition
// wait per request: more CPU than the proxying itself at a sidecar's rates.
// Every accepted HTTP connection therefore gets one goroutine that runs the
// TLS handshake if there is one, then either hands the connection to the
// HTTP/2 server of h2server.go (h2 negotiated by ALPN, or the h2c prior
// knowledge preface) or serves HTTP/1.1 itself: it reads a request (with
// the fast path of h1wire.go, else http.ReadRequest), calls the listener's
// handler on the same goroutine and writes the response through a buffered
// writer that is flushed once per response (and on Flush).
//
// Without a background read, a client that goes away in the middle of a
// request is noticed when a write to it fails; the request upstream stays
// bounded by the route timeout.
//
// Drain: the listener's shutdown marks every connection draining. An idle
// keep-alive connection is unblocked at once and closes; one in the middle
// of a request finishes it, answers with "Connection: close" and closes.
// Connections are tracked in listener.tcpConns, so shutdown waits for them
// and forces them closed (ending their requests' contexts) when its
// deadline passes.

const (
	h1ReadBufSize  = 4 << 10
	h1WriteBufSize = 4 << 10
	// maxDiscardBody is how much of a request body the handler left unread
	// is read and thrown away to keep the connection (net/http's rule).
	maxDiscardBody = 256 << 10
	// maxPendingBody is how much of a response body of unknown length is
	// held back, so that a small one that ends with the handler gets a
	// Content-Length instead of chunked encoding.
	maxPendingBody = 2 << 10
	// lingerTimeout bounds the wait for the client's unread bytes after
	// the server closed its side, so that the client reads the answer
	// before a reset.
	lingerTimeout = 500 * time.Millisecond
	h2Preface     = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

var (
	h1ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ReadBufSize) }}
	h1WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1WriteBufSize) }}
)

// Connection states, for drain.
const (
	h1Active   int32 = iota // handshaking, reading or serving a request
	h1Idle                  // waiting for the next request
	h1Draining              // the listener stops: close after the current response
)

// h1ServerConn is one downstream HTTP connection. It embeds the accepted
// connection so that it can stand in listener.tcpConns; its Close ends the
// connection's context too.
type h1ServerConn struct {
	net.Conn
	ln      *listener
	key     serverKey
	ctx     context.Context // ends with the connection or the listener
	cancel  context.CancelFunc
	state   atomic.Int32
	handler httpHandler

	remoteAddr string
	tlsState   *tls.ConnectionState
	lr         headerLimitReader
	br         *bufio.Reader
	bw         *bufio.Writer
	out        stallGuard // under bw: bounds writes that make no progress
	w          h1Response
	body       *h1ReqBody // of the current request; nil when it has none
	reqs       reqCtxs    // the current request's context (reqctx.go)

	// continueMu orders a "100 Continue" written by a body read (which
	// may run on another goroutine: net/http's Transport streams bodies
	// upstream from its own) against the response header.
	continueMu   sync.Mutex
	continueSent bool

	date    []byte // Date header value of second dateSec
	dateSec int64
	dateArr [len(http.TimeFormat)]byte
	scratch [24]byte
}

// Close closes the connection and ends its context, which cancels the
// request in flight. Any goroutine may call it.
func (c *h1ServerConn) Close() error {
	err := c.Conn.Close() // first, so that nothing more reaches the client
	c.cancel()
	return err
}

// drain marks c draining; an idle connection is unblocked so that it
// closes at once. Called with ln.mu held.
func (c *h1ServerConn) drain() {
	if c.state.Swap(h1Draining) == h1Idle {
		c.Conn.SetReadDeadline(aLongTimeAgo)
	}
}

// startHTTPConn serves c on a goroutine of its own, tracked like a TCP
// session so that shutdown waits for it.
func (ln *listener) startHTTPConn(l *config.Listener, c net.Conn) {
	hc := &h1ServerConn{Conn: c, ln: ln, key: serverKeyOf(l)}
	hc.handler.ln = ln
	hc.w.c = hc
	hc.ctx, hc.cancel = context.WithCancel(ln.ctx)
	ln.mu.Lock()
	if ln.stopping {
		ln.mu.Unlock()
		hc.Close()
		return
	}
	ln.tcpConns[hc] = struct{}{}
	ln.wg.Add(1)
	ln.mu.Unlock()
	go func() {
		defer ln.wg.Done()
		hc.serve()
	}()
}

func (c *h1ServerConn) untrack() {
	c.ln.mu.Lock()
	delete(c.ln.tcpConns, c)
	c.ln.mu.Unlock()
}

// serveH2 serves the connection as HTTP/2 (h2server.go) on this
// goroutine, in place of c.
func (c *h1ServerConn) serveH2(conn net.Conn, tlsState *tls.ConnectionState) {
	c.untrack()
	c.cancel()
	c.ln.serveH2(conn, c.key, tlsState)
}

func (c *h1ServerConn) serve() {
	handedOff := false
	defer func() {
		if handedOff {
			return
		}
		c.untrack()
		c.Close()
		if b := c.body; b != nil {
			// A body read still running elsewhere fails now that the
			// connection is closed; later ones find the body closed.
			b.mu.Lock()
			b.closed = true
			b.mu.Unlock()
		}
		if c.br != nil {
			c.br.Reset(nil)
			h1ReaderPool.Put(c.br)
			c.bw.Reset(nil)
			h1WriterPool.Put(c.bw)
		}
	}()
	c.Conn.SetReadDeadline(time.Now().Add(c.key.headerTimeout))
	if tc, ok := c.Conn.(*tls.Conn); ok {
		// The header timeout bounds the handshake, as in net/http.
		c.Conn.SetWriteDeadline(time.Now().Add(c.key.headerTimeout))
		if err := tc.Handshake(); err != nil {
			c.ln.p.log.Debug("downstream TLS handshake failed", "listener", c.ln.cfg.Load().Name, "remote", c.Conn.RemoteAddr().String(), "err", err)
			return
		}
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol == "h2" {
			handedOff = true
			c.serveH2(tc, &cs)
			return
		}
		c.tlsState = &cs
		now := time.Now()
		c.Conn.SetWriteDeadline(time.Time{})
		c.Conn.SetReadDeadline(now.Add(c.key.headerTimeout))
	}
	c.lr = headerLimitReader{r: c.Conn, limit: -1, tooLarge: errHeadTooLarge}
	c.br = h1ReaderPool.Get().(*bufio.Reader)
	c.br.Reset(&c.lr)
	c.out = stallGuard{conn: c.Conn, timeout: c.key.writeStall}
	c.bw = h1WriterPool.Get().(*bufio.Writer)
	c.bw.Reset(&c.out)
	c.date = c.dateArr[:0]

	if c.tlsState == nil {
		h2, err := sniffPreface(c.br)
		if err != nil {
			return
		}
		if h2 {
			// The bytes read so far are the HTTP/2 server's first.
			peeked, _ := c.br.Peek(c.br.Buffered())
			buf := bytes.Clone(peeked)
			handedOff = true
			c.br.Reset(nil)
			h1ReaderPool.Put(c.br)
			c.bw.Reset(nil)
			h1WriterPool.Put(c.bw)
			c.serveH2(&prefacedConn{Conn: c.Conn, buf: buf}, nil)
			return
		}
	}
	c.remoteAddr = c.Conn.RemoteAddr().String()
	for first := true; ; first = false {
		if !first && !c.awaitRequest() {
			return
		}
		req, cancel, ok := c.readRequest()
		if !ok {
			return
		}
		keep := c.serveRequest(req)
		cancel()
		if !keep {
			return
		}
	}
}

// sniffPreface reports whether the connection starts with the HTTP/2
// preface. It reads no more than it must to decide.
func sniffPreface(br *bufio.Reader) (bool, error) {
	n := 1
	for {
		b, err := br.Peek(n)
		if h2Preface[:len(b)] != string(b) {
			return false, nil
		}
		if len(b) == len(h2Preface) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		n = min(max(len(b)+1, br.Buffered()), len(h2Preface))
	}
}

// prefacedConn is a connection whose first bytes were already read.
type prefacedConn struct {
	net.Conn
	buf []byte
}

func (c *prefacedConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// awaitRequest waits for the first byte of the next request on a
// keep-alive connection, under the idle timeout; then the rest of the
// headers get the header timeout. It reports whether to go on.
func (c *h1ServerConn) awaitRequest() bool {
	if c.br.Buffered() == 0 {
		// The deadline is set before the connection is marked idle, so
		// that drain's deadline (set after it sees idle) wins.
		c.Conn.SetReadDeadline(time.Now().Add(c.key.idle))
		if !c.state.CompareAndSwap(h1Active, h1Idle) {
			return false
		}
		if _, err := c.br.Peek(1); err != nil {
			return false
		}
		if !c.state.CompareAndSwap(h1Idle, h1Active) {
			return false // drained while the request arrived
		}
		// A request whose headers arrived whole needs no further read
		// and keeps the fresh idle deadline.
		if buf, _ := c.br.Peek(c.br.Buffered()); bytes.Contains(buf, []byte("\r\n\r\n")) {
			return true
		}
	} else if c.state.Load() == h1Draining {
		return false // pipelined, but the listener stops
	}
	c.Conn.SetReadDeadline(time.Now().Add(c.key.headerTimeout))
	return true
}

// readRequest reads the next request's line and headers. Malformed
// requests are answered and end the connection (ok false).
//
// A simple request whose head is already buffered is parsed by
// readRequestFast (h1wire.go) with its context from the start; any other
// goes through http.ReadRequest and gets its context by WithContext.
func (c *h1ServerConn) readRequest() (_ *http.Request, _ context.CancelFunc, ok bool) {
	ctx, cancel := c.newRequestContext()
	defer func() {
		if !ok {
			cancel()
		}
	}()
	limit := c.key.maxHeader
	before := c.br.Buffered()
	c.lr.read, c.lr.err = 0, nil
	c.lr.limit = int64(max(limit-before, 0))
	req, fast := readRequestFast(ctx, c.br)
	var err error
	if !fast {
		req, err = http.ReadRequest(c.br)
	}
	exhausted := c.lr.limit == 0
	c.lr.limit = -1
	if err != nil {
		switch {
		case exhausted:
			c.replyError(http.StatusRequestHeaderFieldsTooLarge, "")
		case c.lr.err != nil:
			// The client closed, timed out or reset (bufio hands a
			// partial last line to the parser as if it were whole, so
			// the parser's error may hide this): nothing to answer.
		default:
			c.replyError(http.StatusBadRequest, err.Error())
		}
		return nil, nil, false
	}
	if head := before + int(c.lr.read) - c.br.Buffered(); head > limit {
		c.replyError(http.StatusRequestHeaderFieldsTooLarge, "")
		return nil, nil, false
	}
	if req.ProtoMajor != 1 {
		c.replyError(http.StatusHTTPVersionNotSupported, "unsupported protocol version")
		return nil, nil, false
	}
	if req.Host == "" && req.ProtoMinor >= 1 && req.Method != http.MethodConnect {
		c.replyError(http.StatusBadRequest, "missing required Host header")
		return nil, nil, false
	}
	if !validHost(req.Host) {
		c.replyError(http.StatusBadRequest, "malformed Host header")
		return nil, nil, false
	}
	expect := false
	if ev, has := req.Header["Expect"]; has {
		switch {
		case len(ev) == 1 && strings.EqualFold(ev[0], "100-continue") && req.ProtoMinor >= 1:
			// Answered by the first read of the body (there may be none).
			delete(req.Header, "Expect")
			expect = req.ContentLength != 0
		default:
			c.replyError(http.StatusExpectationFailed, "unsupported Expect header")
			return nil, nil, false
		}
	}
	req.RemoteAddr = c.remoteAddr
	req.TLS = c.tlsState
	c.body = nil
	c.continueSent = false
	if req.Body != http.NoBody {
		c.body = &h1ReqBody{c: c, rc: req.Body, expect: expect}
		if req.Body == nil {
			// The fast path's body: ContentLength bytes of the connection.
			c.body.cl = clBody{br: c.br, remain: req.ContentLength}
			c.body.rc = &c.body.cl
		}
		req.Body = c.body
		// The handler reads the body as slowly as the upstream takes it.
		c.Conn.SetReadDeadline(time.Time{})
	}
	if !fast {
		req = req.WithContext(ctx)
	}
	return req, cancel, true
}

// serveRequest runs the handler and completes the response. It reports
// whether the connection can serve another request.
func (c *h1ServerConn) serveRequest(req *http.Request) bool {
	w := &c.w
	w.reset(req)
	if !c.runHandler(w, req) || c.ctx.Err() != nil {
		return false // panicked, or the connection was closed under it
	}
	w.finish()
	keep := !w.closeAfter && w.err == nil
	b := c.body
	if b == nil {
		return keep
	}
	if !b.mu.TryLock() {
		// The body is being read elsewhere (a transport still sending it
		// upstream): stop that read and give up the connection.
		c.Conn.SetReadDeadline(aLongTimeAgo)
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		return false
	}
	b.closed = true
	eof := b.eof
	if !eof && keep && (!b.expect || c.continueSent) {
		// Read what is left of the body, up to a bound, to keep the
		// connection; a client that sent "Expect: 100-continue" and was
		// not told to continue may never send it, so that one is closed.
		c.Conn.SetReadDeadline(time.Now().Add(c.key.headerTimeout))
		_, err := io.CopyN(io.Discard, b.rc, maxDiscardBody+1)
		eof = err == io.EOF
	}
	b.mu.Unlock()
	if !eof {
		c.lingerClose()
		return false
	}
	return keep
}

// runHandler calls the handler; a panic ends the connection (and is
// logged unless it is http.ErrAbortHandler, the handler's way to abort).
func (c *h1ServerConn) runHandler(w *h1Response, req *http.Request) bool {
	return runHandler(&c.handler, w, req, "HTTP/1.1", c.remoteAddr)
}

// runHandler calls h, recovering a panic: it reports false after one, which
// it logs unless it is http.ErrAbortHandler (the handler's way to abort).
// Both servers (HTTP/1.1 and HTTP/2) run their handlers through it.
func runHandler(h *httpHandler, w http.ResponseWriter, req *http.Request, proto, remote string) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				h.ln.p.log.Error("panic serving an "+proto+" request", "listener", h.ln.cfg.Load().Name,
					"remote", remote, "panic", v, "stack", string(debug.Stack()))
			}
		}
	}()
	h.ServeHTTP(w, req)
	return true
}

// replyError answers a request that cannot be served and leaves the
// connection to be closed.
func (c *h1ServerConn) replyError(code int, detail string) {
	c.out.fix(time.Now().Add(c.key.headerTimeout))
	text := strconv.Itoa(code) + " " + http.StatusText(code)
	c.bw.WriteString("HTTP/1.1 " + text + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + text)
	if detail != "" {
		c.bw.WriteString(": " + detail)
	}
	c.bw.WriteString("\n")
	if c.bw.Flush() == nil {
		c.lingerClose()
	}
}

// lingerClose shuts the sending side and reads what the client still
// sends, for a while, so that closing with unread input (which makes the
// kernel send a reset) does not destroy the answer before the client has
// read it.
func (c *h1ServerConn) lingerClose() {
	conn := c.Conn
	if mc, ok := conn.(*metricConn); ok {
		conn = mc.Conn
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.Copy(io.Discard, c.Conn)
}

// sendContinue writes "100 Continue" unless the final response has begun.
func (c *h1ServerConn) sendContinue() {
	c.continueMu.Lock()
	defer c.continueMu.Unlock()
	if c.w.committed || c.continueSent {
		return
	}
	c.continueSent = true
	c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	c.bw.Flush()
}

// dateValue is the Date header for now, formatted once per second.
func (c *h1ServerConn) dateValue() []byte {
	now := c.ln.p.opts.Now()
	if s := now.Unix(); s != c.dateSec || len(c.date) == 0 {
		c.dateSec = s
		c.date = now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
	}
	return c.date
}

var errHeadTooLarge = errors.New("request line and headers exceed the listener's max_request_headers_kb")

// h1ReqBody is a request body. It sends "100 Continue" on the first read
// when the client asked for it, remembers whether the end was reached and
// refuses reads once the server has taken the body back after the
// handler. Reads may come from any goroutine.
type h1ReqBody struct {
	c      *h1ServerConn
	mu     sync.Mutex
	rc     io.ReadCloser
	expect bool
	asked  bool
	eof    bool
	closed bool
	cl     clBody // rc when the request was read by readRequestFast
}

func (b *h1ReqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return 0, http.ErrBodyReadAfterClose
	case b.eof:
		return 0, io.EOF
	}
	if b.expect && !b.asked {
		b.asked = true
		b.c.sendContinue()
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close is a no-op: the server decides after the handler what to do with
// what is left of the body.
func (b *h1ReqBody) Close() error { return nil }

// h1Response is the http.ResponseWriter (and http.Flusher) of the HTTP/1.1
// server. It is reused for every request of its connection.
type h1Response struct {
	c      *h1ServerConn
	req    *http.Request
	header http.Header

	status      int
	wroteHeader bool  // WriteHeader called with a final status
	committed   bool  // status line and headers are in the writer
	clen        int64 // Content-Length; -1 when unknown
	written     int64 // body bytes accepted
	bodyOK      bool  // the status allows a body
	head        bool  // HEAD request: the body is not sent
	chunked     bool
	closeAfter  bool
	pend        []byte // body held back before the length is decided
	err         error  // the first write error
}

func (w *h1Response) reset(req *http.Request) {
	if w.header == nil {
		w.header = make(http.Header, 16)
	} else {
		clear(w.header)
	}
	pend := w.pend[:0]
	*w = h1Response{c: w.c, req: req, header: w.header, pend: pend, clen: -1}
}

func (w *h1Response) Header() http.Header { return w.header }

func (w *h1Response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("proxy: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.bodyOK = code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	w.head = w.req.Method == http.MethodHead
	if cl, ok := w.header["Content-Length"]; ok {
		w.clen = -1
		if len(cl) == 1 {
			if n, err := strconv.ParseInt(strings.TrimSpace(cl[0]), 10, 64); err == nil && n >= 0 {
				w.clen = n
			}
		}
		if w.clen < 0 {
			delete(w.header, "Content-Length") // not a length: the body is delimited otherwise
		}
	}
}

func (w *h1Response) Write(p []byte) (int, error) {
	if done, err := w.admit(len(p)); done {
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if !w.committed {
		if w.clen < 0 && len(w.pend)+len(p) <= maxPendingBody {
			w.pend = append(w.pendBuf(), p...)
			return len(p), nil
		}
		w.commitPending()
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteString is Write without converting s (io.WriteString finds it).
func (w *h1Response) WriteString(s string) (int, error) {
	if done, err := w.admit(len(s)); done {
		if err != nil {
			return 0, err
		}
		return len(s), nil
	}
	if !w.committed {
		if w.clen < 0 && len(w.pend)+len(s) <= maxPendingBody {
			w.pend = append(w.pendBuf(), s...)
			return len(s), nil
		}
		w.commitPending()
	}
	bw := w.c.bw
	if w.chunked {
		if len(s) == 0 {
			return 0, w.err
		}
		bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(len(s)), 16))
		bw.WriteString("\r\n")
		bw.WriteString(s)
		if _, err := bw.WriteString("\r\n"); err != nil && w.err == nil {
			w.err = err
		}
	} else if _, err := bw.WriteString(s); err != nil && w.err == nil {
		w.err = err
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(s), nil
}

// admit accounts for a body write of n bytes. done reports that the write
// needs nothing more: it is refused (err) or discarded (HEAD).
func (w *h1Response) admit(n int) (done bool, err error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case w.err != nil:
		return true, w.err
	case !w.bodyOK:
		return true, http.ErrBodyNotAllowed
	case w.head:
		return true, nil
	case w.clen >= 0 && w.written+int64(n) > w.clen:
		return true, http.ErrContentLength
	}
	w.written += int64(n)
	return false, nil
}

func (w *h1Response) pendBuf() []byte {
	if w.pend == nil {
		w.pend = make([]byte, 0, maxPendingBody)
	}
	return w.pend
}

// commitPending writes the header, deciding on chunking, and the body held
// back so far.
func (w *h1Response) commitPending() {
	w.commit(false)
	if len(w.pend) > 0 {
		w.writeBody(w.pend)
		w.pend = w.pend[:0]
	}
}

// FlushError sends what is buffered to the client (http.ResponseController
// finds it).
func (w *h1Response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commitPending()
	}
	if w.err != nil {
		return w.err
	}
	if err := w.c.bw.Flush(); err != nil {
		w.err = err
	}
	return w.err
}

// Flush implements http.Flusher.
func (w *h1Response) Flush() { _ = w.FlushError() }

func (w *h1Response) writeBody(p []byte) error {
	bw := w.c.bw
	if w.chunked {
		if len(p) == 0 {
			return w.err
		}
		bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		if err != nil && w.err == nil {
			w.err = err
		}
		return w.err
	}
	if _, err := bw.Write(p); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// finish completes the response after the handler returned.
func (w *h1Response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true)
		if len(w.pend) > 0 {
			w.writeBody(w.pend)
		}
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		w.writeTrailers()
		bw.WriteString("\r\n")
	}
	if w.bodyOK && !w.head && w.clen >= 0 && w.written < w.clen {
		// The client waits for the rest: only closing tells it.
		w.closeAfter = true
	}
	if err := bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// commit writes the status line and headers, deciding how the body is
// delimited. final means the handler has returned: a body held back is
// complete and gets a Content-Length.
func (w *h1Response) commit(final bool) {
	c := w.c
	if b := c.body; b != nil && b.expect {
		c.continueMu.Lock()
		defer c.continueMu.Unlock()
		if !c.continueSent {
			w.closeAfter = true // the client may be holding its body back
		}
	}
	w.committed = true
	h := w.header
	req := w.req
	is11 := req.ProtoAtLeast(1, 1)
	addCL := false
	switch {
	case !w.bodyOK || w.head:
	case w.clen >= 0:
	case final && !hasTrailers(h):
		w.clen = int64(len(w.pend))
		addCL = true
	case is11:
		w.chunked = true
	default:
		w.closeAfter = true // delimited by the end of the connection
	}
	if req.Close || hasToken(h["Connection"], "close") || c.state.Load() == h1Draining {
		w.closeAfter = true
	}
	_, declared := h["Trailer"]
	suppressCL := !w.bodyOK && w.status != http.StatusNotModified

	bw := c.bw
	if is11 {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	writeStatus(bw, w.status, &c.scratch)
	for k, vv := range h {
		switch {
		case k == "Transfer-Encoding", strings.HasPrefix(k, http.TrailerPrefix):
			continue
		case k == "Connection" && (w.closeAfter || !is11):
			continue // written below
		case k == "Content-Length" && suppressCL:
			continue
		case k == "Content-Type" && w.status == http.StatusNotModified:
			continue
		case declared && isDeclaredTrailer(h, k):
			continue
		}
		writeHeaderLines(bw, k, vv)
	}
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(c.dateValue())
		bw.WriteString("\r\n")
	}
	if addCL {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(c.scratch[:0], w.clen, 10))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case !is11:
		// An HTTP/1.0 client asked for keep-alive (else req.Close).
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

// writeInformational sends a 1xx response with the current headers.
func (w *h1Response) writeInformational(code int) {
	c := w.c
	if w.committed {
		return
	}
	if b := c.body; b != nil && b.expect {
		c.continueMu.Lock()
		defer c.continueMu.Unlock()
	}
	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	writeStatus(bw, code, &c.scratch)
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		writeHeaderLines(bw, k, vv)
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// writeTrailers writes the trailer fields: headers set under
// http.TrailerPrefix, and those declared in the "Trailer" header.
func (w *h1Response) writeTrailers() {
	h, bw := w.header, w.c.bw
	for k, vv := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			writeHeaderLines(bw, http.CanonicalHeaderKey(name), vv)
		}
	}
	for _, v := range h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if name == "" || forbiddenTrailer(name) {
				continue
			}
			if vv, ok := h[name]; ok {
				writeHeaderLines(bw, name, vv)
			}
		}
	}
}

func writeStatus(bw *bufio.Writer, code int, scratch *[24]byte) {
	bw.Write(strconv.AppendInt(scratch[:0], int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(scratch[:0], int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// writeHeaderLines writes k: v for every value, dropping invalid names
// and turning line breaks in values into spaces, as net/http does.
func writeHeaderLines(bw *bufio.Writer, k string, vv []string) {
	if !validHeaderName(k) {
		return
	}
	for _, v := range vv {
		writeHeaderLine(bw, k, v)
	}
}

// writeHeaderLine writes k: v, v sanitised as net/http does (line breaks
// become spaces, then spaces are trimmed); k must be valid.
func writeHeaderLine(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") || (v != "" && (isSpace(v[0]) || isSpace(v[len(v)-1]))) {
		v = strings.TrimFunc(v, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
		for i := 0; i < len(v); i++ {
			b := v[i]
			if b == '\r' || b == '\n' {
				b = ' '
			}
			bw.WriteByte(b)
		}
	} else {
		bw.WriteString(v)
	}
	bw.WriteString("\r\n")
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

func hasTrailers(h http.Header) bool {
	if _, ok := h["Trailer"]; ok {
		return true
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

func isDeclaredTrailer(h http.Header, k string) bool {
	for _, v := range h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(name), k) {
				return true
			}
		}
	}
	return false
}

// forbiddenTrailer reports fields that must not be sent as trailers
// (RFC 9110 §6.5.1; the list of net/http's httpguts.ValidTrailerHeader).
func forbiddenTrailer(k string) bool {
	switch k {
	case "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Range",
		"Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma", "Proxy-Authenticate",
		"Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te", "Trailer", "Transfer-Encoding",
		"Www-Authenticate":
		return true
	}
	return false
}

// hasToken reports whether a comma-separated header value lists token.
func hasToken(vv []string, token string) bool {
	for _, v := range vv {
		for len(v) > 0 {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// validHeaderName reports whether k is an RFC 9110 token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// validHost reports whether a Host header value has only the bytes
// net/http's httpguts.ValidHostHeader allows.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		b := h[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) >= 0:
		default:
			return false
		}
	}
	return true
}

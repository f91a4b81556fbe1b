package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The upstream HTTP/2 client (h2Pool), for HTTP/2 clusters: between two
// sidecars, and to applications that speak h2c or gRPC.
//
// A multiplexed client needs someone to read the connection for every
// stream, and net/http's has a goroutine for it that hands each response
// to the request's goroutine: a wake-up of another goroutine, often of
// another thread, per request. Here the goroutines waiting for the
// connection take turns reading it (leader/follower): a request that waits
// for its response reads frames itself when nobody else does, and hands
// the turn to another waiting stream when it has what it waited for. At
// low concurrency a request reads its own response and nothing is handed
// over; when no request waits, nobody reads, so a GOAWAY or a closed
// connection is noticed by the next request (a stream the server did not
// take is sent again on a new connection).
//
// A request whose context ends while its goroutine is the reader must
// return at once: the read is interrupted with a past read deadline, and a
// frame is consumed only when it has arrived whole (peeked first), so the
// interruption loses nothing. Response header blocks are therefore limited
// to the read buffer (h2ClientReadBuf).
//
// State is guarded by h2ClientConn.mu; frames go out under wmu. A new
// stream takes its ID with both held (wmu first), so that streams open in
// ID order on the wire; nothing takes wmu while holding mu.

const (
	h2ClientReadBuf    = 64 << 10
	h2ClientStreamWin  = 4 << 20
	h2ClientConnWin    = 16 << 20
	h2ClientMaxHeaders = 60 << 10 // as Envoy's max_response_headers_kb
	// h2ClientIdle closes a connection without streams, as net/http's
	// IdleConnTimeout did: nobody reads an idle connection, so this is
	// what lets go of one to an endpoint that went away.
	h2ClientIdle = 90 * time.Second
)

var (
	errH2GoAway   = errors.New("http2: the server is going away and did not take the stream")
	errH2Refused  = errors.New("http2: stream refused by the server (REFUSED_STREAM)")
	errH2BodyDone = errors.New("http2: response body closed")
	// errH2ConnLost wraps what ended a connection under its streams.
	errH2ConnLost = errors.New("http2: connection lost")
)

// h2Pool keeps h2Conns connections per endpoint, used in turn.
type h2Pool struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	tls  *tls.Config // nil: h2c with prior knowledge

	idle time.Duration // h2ClientIdle; tests shorten it

	mu     sync.Mutex
	hosts  map[string]*[h2Conns]h2Slot
	closed bool
	next   atomic.Uint32
}

type h2Slot struct {
	mu sync.Mutex // held while dialling, so that waiters share the dial
	cc *h2ClientConn
}

func newH2Pool(dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsConf *tls.Config) *h2Pool {
	return &h2Pool{dial: dial, tls: tlsConf, idle: h2ClientIdle, hosts: map[string]*[h2Conns]h2Slot{}}
}

// RoundTrip sends req to addr. A stream the server did not process (GOAWAY
// below it, REFUSED_STREAM) is sent again, on another connection, when its
// body can be replayed.
func (p *h2Pool) RoundTrip(ctx context.Context, req *http.Request, addr string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		cc, err := p.conn(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := cc.roundTrip(ctx, req)
		// Every slot's connection may have a GOAWAY not read yet: each
		// try marks one, and a fresh connection follows at the latest
		// after h2Conns.
		if err == nil || attempt >= h2Conns || !(errors.Is(err, errH2GoAway) || errors.Is(err, errH2Refused)) {
			return resp, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

// conn returns the next slot's connection for addr, dialling it if it is
// missing or no longer takes streams.
func (p *h2Pool) conn(ctx context.Context, addr string) (*h2ClientConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("http2: cluster transport closed")
	}
	slots := p.hosts[addr]
	if slots == nil {
		slots = new([h2Conns]h2Slot)
		p.hosts[addr] = slots
	}
	p.mu.Unlock()
	s := &slots[p.next.Add(1)%h2Conns]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cc != nil && s.cc.usable() {
		return s.cc, nil
	}
	if s.cc != nil {
		s.cc.closeIfIdle()
	}
	cc, err := p.dialConn(ctx, addr)
	if err != nil {
		return nil, err
	}
	s.cc = cc
	return cc, nil
}

func (p *h2Pool) dialConn(ctx context.Context, addr string) (*h2ClientConn, error) {
	conn, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if p.tls != nil {
		tc := tls.Client(conn, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		if proto := tc.ConnectionState().NegotiatedProtocol; proto != "h2" {
			conn.Close()
			return nil, fmt.Errorf("http2: %s negotiated ALPN %q, not h2; is the upstream an HTTP/2 server?", addr, proto)
		}
		conn = tc
	}
	cc, err := newH2ClientConn(conn)
	if err != nil {
		return nil, err
	}
	cc.idle = time.AfterFunc(p.idle, func() {
		if cc.closeIdle() {
			p.drop(addr, cc)
		}
	})
	cc.idleAfter = p.idle
	return cc, nil
}

// drop forgets cc, closed for idleness, and addr when none of its
// connections is left.
func (p *h2Pool) drop(addr string, cc *h2ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slots := p.hosts[addr]
	if slots == nil {
		return
	}
	empty := true
	for i := range slots {
		s := &slots[i]
		if !s.mu.TryLock() { // dialling: it has a connection soon
			empty = false
			continue
		}
		if s.cc == cc {
			s.cc = nil
		}
		empty = empty && s.cc == nil
		s.mu.Unlock()
	}
	if empty {
		delete(p.hosts, addr)
	}
}

// CloseIdleConnections closes connections without streams; final: the
// pool is retired, and busy connections close when their streams end.
func (p *h2Pool) CloseIdleConnections(final bool) {
	p.mu.Lock()
	p.closed = p.closed || final
	var conns []*h2ClientConn
	for _, slots := range p.hosts {
		for i := range slots {
			slots[i].mu.Lock()
			if cc := slots[i].cc; cc != nil {
				conns = append(conns, cc)
			}
			slots[i].mu.Unlock()
		}
	}
	p.mu.Unlock()
	for _, cc := range conns {
		if final {
			cc.retire()
		} else {
			cc.closeIfIdle()
		}
	}
}

// h2ClientConn is one upstream HTTP/2 connection.
type h2ClientConn struct {
	conn      net.Conn
	idle      *time.Timer // closes the connection when it has no stream
	idleAfter time.Duration
	br        *bufio.Reader
	h2Wire

	mu          sync.Mutex
	streams     map[uint32]*h2ClientStream
	nextID      uint32
	reading     bool            // a goroutine holds the turn to read
	readerSt    *h2ClientStream // the stream the reader waits for
	interrupted bool            // the reader's read deadline was moved
	waiters     []*h2ClientStream
	sendWindow  int64
	initWindow  int64
	recvUnacked int64
	goAway      bool
	goAwayID    uint32
	retired     bool
	err         error // the connection failed
}

// h2ClientStream is one request. Fields are guarded by cc.mu.
type h2ClientStream struct {
	cc     *h2ClientConn
	id     uint32
	cond   sync.Cond
	ctx    context.Context
	done   bool // ctx ended
	err    error
	resp   *http.Response
	head   bool
	body   []byte
	ended  bool // END_STREAM received
	closed bool // the response body was closed, or the stream reset
	// reqDone: the server reset the stream with NO_ERROR after a whole
	// response; the rest of the request body is not sent.
	reqDone bool
	sendWindow,
	recvUnacked int64
	waiting int // goroutines of this stream waiting in await
}

func newH2ClientConn(conn net.Conn) (*h2ClientConn, error) {
	cc := &h2ClientConn{
		conn:       conn,
		br:         bufio.NewReaderSize(conn, h2ClientReadBuf),
		streams:    map[uint32]*h2ClientStream{},
		nextID:     1,
		sendWindow: h2DefaultWindow,
		initWindow: h2DefaultWindow,
	}
	cc.initWire(conn, cc.br, bufio.NewWriterSize(conn, 16<<10))
	cc.fr.MaxHeaderListSize = h2ClientMaxHeaders
	cc.bw.WriteString(http2.ClientPreface)
	cc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2ClientStreamWin},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2ClientMaxHeaders},
	)
	cc.fr.WriteWindowUpdate(0, h2ClientConnWin-h2DefaultWindow)
	if err := cc.bw.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	return cc, nil
}

// usable reports whether the connection takes new streams.
func (cc *h2ClientConn) usable() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err == nil && !cc.goAway && !cc.retired && cc.nextID < 1<<31-1
}

func (cc *h2ClientConn) closeIfIdle() {
	cc.mu.Lock()
	idle := len(cc.streams) == 0
	if idle && cc.err == nil {
		cc.err = errH2ConnClosed
	}
	cc.mu.Unlock()
	if idle {
		cc.conn.Close()
	}
}

// closeIdle closes the connection if it still has no stream; a request
// that picked it meanwhile is sent again elsewhere (as after a GOAWAY).
func (cc *h2ClientConn) closeIdle() bool {
	cc.mu.Lock()
	idle := len(cc.streams) == 0 && cc.err == nil
	if idle {
		cc.goAway = true
		cc.err = errH2ConnClosed
	}
	cc.mu.Unlock()
	if idle {
		cc.conn.Close()
	}
	return idle
}

func (cc *h2ClientConn) retire() {
	cc.mu.Lock()
	cc.retired = true
	cc.mu.Unlock()
	cc.closeIfIdle()
}

// fail ends the connection and every stream on it. Called with cc.mu held.
func (cc *h2ClientConn) fail(err error) {
	if cc.err == nil {
		cc.err = err
	}
	cc.conn.Close()
	if cc.idle != nil {
		cc.idle.Stop()
	}
	for _, st := range cc.streams {
		if st.err == nil {
			st.err = cc.err
		}
		st.cond.Broadcast()
	}
	cc.streams = map[uint32]*h2ClientStream{}
}

func (cc *h2ClientConn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	st := &h2ClientStream{cc: cc, ctx: ctx, head: req.Method == http.MethodHead}
	st.cond.L = &cc.mu

	cc.wmu.Lock()
	cc.mu.Lock()
	if err := cc.err; err != nil || cc.goAway {
		cc.mu.Unlock()
		cc.wmu.Unlock()
		if err == nil || errors.Is(err, errH2ConnClosed) {
			err = errH2GoAway // nothing was sent: another connection takes it
		}
		return nil, err
	}
	// IDs are taken under wmu, so that streams open in order on the wire.
	st.id = cc.nextID
	cc.nextID += 2
	st.sendWindow = cc.initWindow
	if len(cc.streams) == 0 && cc.idle != nil {
		cc.idle.Stop()
	}
	cc.streams[st.id] = st
	cc.mu.Unlock()
	cc.encodeRequest(req, hasBody)
	cc.writeHeaderBlock(st.id, !hasBody)
	err := cc.flushLocked()
	cc.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: %w", errH2ConnLost, err)
		cc.mu.Lock()
		cc.fail(err)
		cc.mu.Unlock()
		return nil, err
	}
	stop := afterFunc(ctx, func() { cc.cancelStream(st) })
	if hasBody {
		go cc.writeBody(st, req)
	}
	if err := cc.await(st, func() bool { return st.resp != nil }); err != nil {
		stop()
		cc.abort(st, err)
		return nil, err
	}
	resp := st.resp
	resp.Request = req
	if resp.Body == http.NoBody {
		stop()
		cc.mu.Lock()
		cc.forget(st)
		cc.mu.Unlock()
	} else {
		resp.Body.(*h2ClientBody).stop = stop
	}
	return resp, nil
}

// cancelStream runs when a request's context ends.
func (cc *h2ClientConn) cancelStream(st *h2ClientStream) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	st.done = true
	st.cond.Broadcast()
	if cc.readerSt == st && !cc.interrupted {
		cc.interrupted = true
		cc.conn.SetReadDeadline(aLongTimeAgo)
	}
}

// abort ends a stream the caller gives up: RST_STREAM(CANCEL) unless it
// ended already.
func (cc *h2ClientConn) abort(st *h2ClientStream, err error) {
	cc.mu.Lock()
	rst := cc.streams[st.id] == st && cc.err == nil
	st.closed = true
	if st.err == nil {
		st.err = err
	}
	cc.forget(st)
	cc.mu.Unlock()
	if rst {
		cc.wmu.Lock()
		cc.fr.WriteRSTStream(st.id, http2.ErrCodeCancel)
		cc.flushLocked()
		cc.wmu.Unlock()
	}
}

// forget drops a stream. Called with cc.mu held.
func (cc *h2ClientConn) forget(st *h2ClientStream) {
	if cc.streams[st.id] != st {
		return
	}
	delete(cc.streams, st.id)
	cc.recvUnacked += int64(len(st.body))
	st.body = nil
	st.cond.Broadcast() // a body writer stops
	if len(cc.streams) == 0 {
		switch {
		case cc.retired && cc.err == nil:
			cc.err = errH2ConnClosed
			cc.conn.Close()
		case cc.idle != nil && cc.err == nil:
			cc.idle.Reset(cc.idleAfter)
		}
	}
}

// await waits until ready() holds, reading frames when nobody else does.
// Called without cc.mu; ready is called with it held.
func (cc *h2ClientConn) await(st *h2ClientStream, ready func() bool) error {
	cc.mu.Lock()
	defer func() {
		if !cc.reading {
			cc.passTurn() // someone else may need the turn to read
		}
		cc.mu.Unlock()
	}()
	for {
		switch {
		case ready():
			return nil
		case st.err != nil:
			return st.err
		case st.done:
			return st.ctx.Err()
		}
		if !cc.reading {
			cc.reading, cc.readerSt = true, st
			cc.mu.Unlock()
			err := cc.readFrame()
			cc.mu.Lock()
			cc.reading, cc.readerSt = false, nil
			if cc.interrupted {
				cc.interrupted = false
				cc.conn.SetReadDeadline(time.Time{})
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					err = nil // only interrupted: nothing was consumed
				}
			}
			if err != nil && cc.err == nil {
				cc.fail(fmt.Errorf("%w: %w", errH2ConnLost, err))
			}
			continue
		}
		if len(cc.waiters) > 2*len(cc.streams)+16 {
			cc.compactWaiters()
		}
		st.waiting++
		cc.waiters = append(cc.waiters, st)
		st.cond.Wait()
		st.waiting--
	}
}

// passTurn wakes a waiting stream to read next. Called with cc.mu held.
func (cc *h2ClientConn) passTurn() {
	for len(cc.waiters) > 0 {
		w := cc.waiters[len(cc.waiters)-1]
		cc.waiters[len(cc.waiters)-1] = nil
		cc.waiters = cc.waiters[:len(cc.waiters)-1]
		if w.waiting > 0 { // else it left await since it was listed
			w.cond.Broadcast()
			return
		}
	}
}

// compactWaiters drops the entries of streams that no longer wait.
// Called with cc.mu held.
func (cc *h2ClientConn) compactWaiters() {
	kept := cc.waiters[:0]
	for _, w := range cc.waiters {
		if w.waiting > 0 {
			kept = append(kept, w)
		}
	}
	clear(cc.waiters[len(kept):])
	cc.waiters = kept
}

// readFrame reads and handles one frame. It consumes a frame only once it
// has arrived whole, so that an interrupted read loses nothing. Called
// with the turn to read and without cc.mu.
func (cc *h2ClientConn) readFrame() error {
	n := 9
	for {
		b, err := cc.br.Peek(n)
		if err != nil {
			return err
		}
		length := int(b[n-9])<<16 | int(b[n-8])<<8 | int(b[n-7])
		typ, flags := http2.FrameType(b[n-6]), http2.Flags(b[n-5])
		if n+length > h2ClientReadBuf {
			return fmt.Errorf("http2: frame or header block larger than %d bytes", h2ClientReadBuf)
		}
		if _, err := cc.br.Peek(n + length); err != nil {
			return err
		}
		// A header block is read whole, CONTINUATION frames included.
		if (typ == http2.FrameHeaders || typ == http2.FrameContinuation) && !flags.Has(http2.FlagHeadersEndHeaders) {
			n += length + 9
			continue
		}
		break
	}
	f, err := cc.fr.ReadFrame()
	if err != nil {
		var se http2.StreamError
		if errors.As(err, &se) {
			cc.mu.Lock()
			if st := cc.streams[se.StreamID]; st != nil {
				st.err = se
				st.cond.Broadcast()
				cc.forget(st)
			}
			cc.mu.Unlock()
			cc.writeRST(se.StreamID, se.Code)
			return nil
		}
		return err
	}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		cc.onHeaders(f)
	case *http2.DataFrame:
		cc.onData(f)
	case *http2.RSTStreamFrame:
		cc.mu.Lock()
		if st := cc.streams[f.StreamID]; st != nil {
			if f.ErrCode == http2.ErrCodeNo && st.ended {
				// The response is whole; the server only wants no more
				// of the request (RFC 9113 §8.1).
				st.reqDone = true
				st.cond.Broadcast()
				cc.mu.Unlock()
				return nil
			}
			if f.ErrCode == http2.ErrCodeRefusedStream {
				st.err = errH2Refused
			} else {
				st.err = http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode}
			}
			st.cond.Broadcast()
			cc.forget(st)
		}
		cc.mu.Unlock()
	case *http2.SettingsFrame:
		if !f.IsAck() {
			return cc.onSettings(f)
		}
	case *http2.WindowUpdateFrame:
		cc.mu.Lock()
		if f.StreamID == 0 {
			cc.sendWindow += int64(f.Increment)
		} else if st := cc.streams[f.StreamID]; st != nil {
			st.sendWindow += int64(f.Increment)
		}
		for _, st := range cc.streams {
			st.cond.Broadcast() // body writers waiting for window
		}
		cc.mu.Unlock()
	case *http2.PingFrame:
		if !f.IsAck() {
			cc.wmu.Lock()
			cc.fr.WritePing(true, f.Data)
			cc.flushLocked()
			cc.wmu.Unlock()
		}
	case *http2.GoAwayFrame:
		cc.mu.Lock()
		cc.goAway, cc.goAwayID = true, f.LastStreamID
		for id, st := range cc.streams {
			if id > f.LastStreamID {
				st.err = errH2GoAway
				st.cond.Broadcast()
				cc.forget(st)
			}
		}
		if f.ErrCode != http2.ErrCodeNo {
			cc.fail(fmt.Errorf("%w: the server sent GOAWAY %v", errH2ConnLost, f.ErrCode))
		}
		cc.mu.Unlock()
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

func (cc *h2ClientConn) onSettings(f *http2.SettingsFrame) error {
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			cc.mu.Lock()
			delta := int64(s.Val) - cc.initWindow
			cc.initWindow = int64(s.Val)
			for _, st := range cc.streams {
				st.sendWindow += delta
				st.cond.Broadcast()
			}
			cc.mu.Unlock()
		case http2.SettingMaxFrameSize:
			cc.wmu.Lock()
			cc.maxFrame = s.Val
			cc.wmu.Unlock()
		case http2.SettingHeaderTableSize:
			cc.wmu.Lock()
			cc.henc.SetMaxDynamicTableSizeLimit(s.Val)
			cc.wmu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	cc.wmu.Lock()
	cc.fr.WriteSettingsAck()
	err = cc.flushLocked()
	cc.wmu.Unlock()
	return err
}

func (cc *h2ClientConn) onHeaders(f *http2.MetaHeadersFrame) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	st := cc.streams[f.StreamID]
	if st == nil {
		return // a stream given up
	}
	if st.resp != nil {
		// Trailers.
		tr := st.resp.Trailer
		if tr == nil {
			tr = http.Header{}
		}
		for _, hf := range f.RegularFields() {
			k := cc.canonical(hf.Name)
			tr[k] = append(tr[k], hf.Value)
		}
		st.resp.Trailer = tr
		cc.endStream(st)
		return
	}
	status := f.PseudoValue("status")
	code, err := strconv.Atoi(status)
	if err != nil || code < 100 || code > 999 {
		st.err = fmt.Errorf("http2: malformed :status %q", status)
		st.cond.Broadcast()
		return
	}
	if code < 200 {
		return // an interim response
	}
	fields := f.RegularFields()
	h := make(http.Header, len(fields))
	for _, hf := range fields {
		k := cc.canonical(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	resp := &http.Response{
		Status:        status + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		ContentLength: -1,
	}
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	}
	for _, v := range h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = http.CanonicalHeaderKey(strings.TrimSpace(name)); name != "" {
				if resp.Trailer == nil {
					resp.Trailer = http.Header{}
				}
				resp.Trailer[name] = nil
			}
		}
	}
	if f.StreamEnded() {
		resp.Body = http.NoBody
		if resp.ContentLength < 0 || st.head {
			resp.ContentLength = max(resp.ContentLength, 0)
		}
		st.ended = true
	} else {
		resp.Body = &h2ClientBody{st: st}
	}
	st.resp = resp
	st.cond.Broadcast()
}

func (cc *h2ClientConn) onData(f *http2.DataFrame) {
	n := int64(f.Length)
	data := f.Data()
	cc.mu.Lock()
	st := cc.streams[f.StreamID]
	if st == nil || st.resp == nil || st.closed {
		cc.recvUnacked += n
		upd := cc.takeConnUpdate()
		cc.mu.Unlock()
		cc.writeWindowUpdates(0, 0, upd)
		return
	}
	st.body = append(st.body, data...)
	pad := n - int64(len(data))
	st.recvUnacked += pad
	cc.recvUnacked += pad
	if f.StreamEnded() {
		cc.endStream(st)
	}
	st.cond.Broadcast()
	cc.mu.Unlock()
}

// endStream marks the response complete. Called with cc.mu held.
func (cc *h2ClientConn) endStream(st *h2ClientStream) {
	st.ended = true
	st.cond.Broadcast()
}

func (cc *h2ClientConn) takeConnUpdate() uint32 {
	if cc.recvUnacked < h2ClientConnWin/4 {
		return 0
	}
	n := cc.recvUnacked
	cc.recvUnacked = 0
	return uint32(n)
}

// encodeRequest encodes req's header block into cc.hbuf. Called with
// cc.wmu held.
func (cc *h2ClientConn) encodeRequest(req *http.Request, hasBody bool) {
	cc.hbuf.Reset()
	enc := cc.henc
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: req.Method})
	enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: req.URL.Scheme})
	enc.WriteField(hpack.HeaderField{Name: ":authority", Value: host})
	enc.WriteField(hpack.HeaderField{Name: ":path", Value: req.URL.RequestURI()})
	for k, vv := range req.Header {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Host", "Content-Length":
			continue
		case "Te":
			// Only "trailers" may cross HTTP/2 (gRPC sends it).
			if hasToken(vv, "trailers") {
				enc.WriteField(hpack.HeaderField{Name: "te", Value: "trailers"})
			}
			continue
		}
		cc.encodeField(k, vv)
	}
	if hasBody && req.ContentLength > 0 {
		enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
}

// writeBody sends the request body, then its trailers or END_STREAM, on a
// goroutine of its own (the response may start before the body ends).
func (cc *h2ClientConn) writeBody(st *h2ClientStream, req *http.Request) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:16<<10]
	body := req.Body
	defer body.Close()
	for {
		n, rerr := body.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			var take int
			err := cc.await(st, func() bool {
				if st.closed || st.reqDone || cc.streams[st.id] != st {
					return true
				}
				take = int(min(int64(len(data)), st.sendWindow, cc.sendWindow))
				return take > 0
			})
			if err != nil || take == 0 {
				// The stream failed (the response reports it), or the
				// response ended first: stop the request half too.
				if !st.reqDone {
					cc.abort(st, errH2BodyDone)
				}
				return
			}
			cc.mu.Lock()
			st.sendWindow -= int64(take)
			cc.sendWindow -= int64(take)
			cc.mu.Unlock()
			cc.wmu.Lock()
			for p := data[:take]; len(p) > 0; {
				m := min(len(p), int(cc.maxFrame))
				cc.fr.WriteData(st.id, false, p[:m])
				p = p[m:]
			}
			err = cc.flushLocked()
			cc.wmu.Unlock()
			if err != nil {
				return
			}
			data = data[take:]
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			cc.abort(st, rerr)
			return
		}
	}
	cc.wmu.Lock()
	if len(req.Trailer) > 0 {
		cc.hbuf.Reset()
		for k, vv := range req.Trailer {
			cc.encodeField(k, vv)
		}
		cc.writeHeaderBlock(st.id, true)
	} else {
		cc.fr.WriteData(st.id, true, nil)
	}
	cc.flushLocked()
	cc.wmu.Unlock()
}

// h2ClientBody is a response body.
type h2ClientBody struct {
	st   *h2ClientStream
	stop func() bool // the context's AfterFunc
}

func (b *h2ClientBody) Read(p []byte) (int, error) {
	st := b.st
	cc := st.cc
	if err := cc.await(st, func() bool { return len(st.body) > 0 || st.ended || st.closed }); err != nil {
		return 0, err
	}
	cc.mu.Lock()
	if st.closed {
		cc.mu.Unlock()
		return 0, errH2BodyDone
	}
	if len(st.body) == 0 { // ended
		cc.forget(st)
		cc.mu.Unlock()
		b.stop()
		return 0, io.EOF
	}
	n := copy(p, st.body)
	st.body = st.body[n:]
	if len(st.body) == 0 {
		st.body = st.body[:0:0]
	}
	st.recvUnacked += int64(n)
	cc.recvUnacked += int64(n)
	var sUpd uint32
	if !st.ended && st.recvUnacked >= h2ClientStreamWin/4 {
		sUpd = uint32(st.recvUnacked)
		st.recvUnacked = 0
	}
	cUpd := cc.takeConnUpdate()
	cc.mu.Unlock()
	cc.writeWindowUpdates(st.id, sUpd, cUpd)
	return n, nil
}

// Close gives the stream up if the body was not read to its end.
func (b *h2ClientBody) Close() error {
	b.stop()
	b.st.cc.abort(b.st, errH2BodyDone)
	return nil
}

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// listener owns one socket. Its accept loop reads the current config for
// every connection, so config changes apply without rebinding.
type listener struct {
	p   *Proxy
	cfg atomic.Pointer[config.Listener]
	ln  net.Listener
	// http is the server that accepted HTTP connections are handed to. A
	// config change to its connection-level settings (header limits,
	// timeouts) starts a new server; the old one finishes its connections.
	http      atomic.Pointer[httpServing]
	tlsConfig *tls.Config
	// ctx ends when the listener must stop at once (Close).
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	tcpConns map[net.Conn]struct{}
	retired  []*httpServing
	stopping bool

	wg     sync.WaitGroup // accept loop, http servers, tcp sessions, shutdowns
	done   chan struct{}  // closed when stop or drain begins
	exited chan struct{}  // closed when everything stop began has ended
	once   sync.Once
}

// httpServing is one http.Server and the queue that feeds it.
type httpServing struct {
	srv *http.Server
	q   *connQueue
	key serverKey
}

// serverKey is what an http.Server is built from.
type serverKey struct {
	maxHeader     int
	headerTimeout time.Duration
	idle          time.Duration
}

func serverKeyOf(l *config.Listener) serverKey {
	k := serverKey{maxHeader: 60 << 10, headerTimeout: 10 * time.Second, idle: time.Hour}
	if h := l.HTTP; h != nil {
		if h.MaxRequestHeadersBytes > 0 {
			k.maxHeader = h.MaxRequestHeadersBytes
		}
		if h.RequestHeadersTimeout > 0 {
			k.headerTimeout = h.RequestHeadersTimeout
		}
		if h.IdleTimeout > 0 {
			k.idle = h.IdleTimeout
		}
	}
	return k
}

func startListener(p *Proxy, l *config.Listener) (*listener, error) {
	sock, err := net.Listen("tcp", l.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: cannot bind %s: %w; pick a free port or stop what holds it", l.Name, l.Address, err)
	}
	ln := newListener(p, l, sock)
	ln.wg.Go(ln.acceptLoop)
	p.log.Info("listener started", "listener", l.Name, "address", sock.Addr().String())
	return ln, nil
}

// newListener serves connections accepted from sock, by startListener's
// accept loop or, for a virtual listener, by the capture sockets
// (capturemode.go).
func newListener(p *Proxy, l *config.Listener, sock net.Listener) *listener {
	ln := &listener{
		p:        p,
		ln:       sock,
		tcpConns: map[net.Conn]struct{}{},
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	ln.ctx, ln.cancel = context.WithCancel(context.Background())
	ln.cfg.Store(l)
	ln.tlsConfig = ln.serverTLS()
	ln.http.Store(ln.serve(serverKeyOf(l)))
	return ln
}

// sameSocket reports whether l can reuse this listener's socket.
func (ln *listener) sameSocket(l *config.Listener) bool {
	return ln.cfg.Load().Address == l.Address
}

// update makes l the listener's config. New connections and requests see
// it at once; connections already open keep their server's limits.
func (ln *listener) update(l *config.Listener) {
	ln.cfg.Store(l)
	if l.TLS != nil && !l.TLS.Permissive && l.TCP != nil {
		ln.closePlaintextSessions()
	}
	k := serverKeyOf(l)
	cur := ln.http.Load()
	if cur.key == k {
		return
	}
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.stopping {
		return
	}
	ln.http.Store(ln.serve(k))
	ln.retired = append(ln.retired, cur)
	ln.wg.Go(func() {
		ctx, cancel := context.WithTimeout(ln.ctx, ln.p.opts.DrainTimeout)
		defer cancel()
		if err := cur.srv.Shutdown(ctx); err != nil {
			cur.srv.Close()
		}
	})
}

// serve starts an http.Server for k, fed by a new queue.
func (ln *listener) serve(k serverKey) *httpServing {
	name := ln.cfg.Load().Name
	srv := &http.Server{
		Handler:           &httpHandler{ln: ln},
		ReadHeaderTimeout: k.headerTimeout,
		IdleTimeout:       k.idle,
		// net/http allows MaxHeaderBytes plus 4 KiB of slack before it
		// answers 431; take the slack off so the configured limit holds
		// (limits under 4 KiB are raised to 4 KiB).
		MaxHeaderBytes: max(k.maxHeader-4096, 1),
		// net/http reports handshake failures and malformed requests here;
		// they are the client's problem, so they go to the debug level.
		ErrorLog: slog.NewLogLogger(ln.p.log.With("listener", name).Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			MaxReadFrameSize:          1 << 20,
			MaxDecoderHeaderTableSize: 4096,
		},
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	srv.Protocols.SetHTTP2(true)            // h2 over TLS by ALPN
	hs := &httpServing{srv: srv, q: newConnQueue(ln.ln.Addr()), key: k}
	ln.wg.Go(func() {
		if err := srv.Serve(hs.q); err != nil && !errors.Is(err, http.ErrServerClosed) {
			ln.p.log.Error("http server stopped", "listener", name, "err", err)
		}
	})
	return hs
}

func (ln *listener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := ln.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Back off on resource exhaustion (EMFILE) as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			ln.p.log.Warn("accept failed; backing off", "listener", ln.cfg.Load().Name, "err", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ln.done:
				t.Stop()
			}
			continue
		}
		delay = 0
		ln.dispatch(c)
	}
}

func (ln *listener) dispatch(c net.Conn) {
	l := ln.cfg.Load()
	if m := ln.p.opts.Metrics; m != nil {
		m.ConnOpened(l.Name, l.Direction.String())
		c = &metricConn{Conn: c, close: func() { m.ConnClosed(l.Name, l.Direction.String()) }}
	}
	if l.TLS != nil && l.TLS.Permissive {
		ln.sniff(l, c)
		return
	}
	if l.SNI != nil {
		ln.routeSNI(l, c)
		return
	}
	if l.TLS != nil {
		c = tls.Server(c, ln.tlsConfig)
	}
	ln.serveConn(l, c)
}

// serveConn serves an accepted (and, for TLS, wrapped) connection.
func (ln *listener) serveConn(l *config.Listener, c net.Conn) {
	if l.TCP != nil {
		ln.mu.Lock()
		if ln.stopping {
			ln.mu.Unlock()
			c.Close()
			return
		}
		ln.tcpConns[c] = struct{}{}
		ln.wg.Add(1)
		ln.mu.Unlock()
		go func() {
			defer ln.wg.Done()
			ln.p.serveTCP(l, c)
			ln.mu.Lock()
			delete(ln.tcpConns, c)
			ln.mu.Unlock()
		}()
		return
	}
	// HTTP: a goroutine per connection serves HTTP/1.1 itself and hands
	// HTTP/2 (h2 by ALPN, h2c prior knowledge) to the net/http server.
	ln.startHTTPConn(l, c)
}

// sniffingConn is a connection of an mTLS PERMISSIVE listener whose first
// byte has not arrived yet. A stopping listener closes it at once, as an
// idle connection.
type sniffingConn struct{ net.Conn }

// sniff reads a PERMISSIVE listener's connection's first byte off the
// accept loop: a TLS handshake record (0x16) gets TLS, anything else is
// served in plaintext, without a peer identity.
func (ln *listener) sniff(l *config.Listener, c net.Conn) {
	sc, ok := ln.trackPending(c)
	if !ok {
		return
	}
	go func() {
		defer ln.wg.Done()
		timeout := 10 * time.Second // as the default request headers timeout
		if l.HTTP != nil && l.HTTP.RequestHeadersTimeout > 0 {
			timeout = l.HTTP.RequestHeadersTimeout
		}
		c.SetReadDeadline(time.Now().Add(timeout))
		var b [1]byte
		_, err := io.ReadFull(c, b[:])
		c.SetReadDeadline(time.Time{})
		stopping := ln.untrackPending(sc)
		if err != nil || stopping {
			c.Close()
			return
		}
		var conn net.Conn = &prefixConn{Conn: c, prefix: b[:]}
		if b[0] == tlsRecordHandshake {
			conn = tls.Server(conn, ln.tlsConfig)
		} else if now := ln.cfg.Load(); now.TLS != nil && !now.TLS.Permissive {
			c.Close() // the listener turned STRICT while this byte was awaited
			return
		}
		ln.serveConn(l, conn)
	}()
}

// closePlaintextSessions ends the plaintext TCP sessions a PERMISSIVE
// listener accepted, when it turns STRICT: mTLS is required from now on.
// (Plaintext HTTP connections are refused request by request instead.)
func (ln *listener) closePlaintextSessions() {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	for c := range ln.tcpConns {
		if pc, ok := c.(*prefixConn); ok {
			pc.Close()
		}
	}
}

// trackPending registers a connection whose first bytes are being read off
// the accept loop, so a stopping listener closes it; the caller runs a
// goroutine that calls ln.wg.Done and untrackPending. It reports false (and
// closes c) when the listener is stopping.
func (ln *listener) trackPending(c net.Conn) (*sniffingConn, bool) {
	sc := &sniffingConn{c}
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.stopping {
		c.Close()
		return nil, false
	}
	ln.tcpConns[sc] = struct{}{}
	ln.wg.Add(1)
	return sc, true
}

// untrackPending ends trackPending; it reports whether the listener is
// stopping, in which case the caller closes the connection.
func (ln *listener) untrackPending(sc *sniffingConn) bool {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	delete(ln.tcpConns, sc)
	return ln.stopping
}

// tlsRecordHandshake is the content type of the first record a TLS client
// sends (the ClientHello).
const tlsRecordHandshake = 0x16

// prefixConn gives back bytes already read from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// beginStop closes the socket; it reports whether this call did.
func (ln *listener) beginStop() bool {
	first := false
	ln.once.Do(func() {
		first = true
		close(ln.done)
		ln.ln.Close()
		ln.mu.Lock()
		ln.stopping = true
		ln.mu.Unlock()
	})
	return first
}

// stop closes the socket at once and gives open connections grace to
// finish, in the background. abort cuts the grace short; wait blocks until
// everything has ended.
func (ln *listener) stop(grace time.Duration) {
	if !ln.beginStop() {
		return
	}
	ln.wg.Go(func() {
		ctx, cancel := context.WithTimeout(ln.ctx, grace)
		defer cancel()
		_ = ln.shutdown(ctx)
	})
	go func() {
		ln.wg.Wait()
		close(ln.exited)
	}()
}

// finished reports whether a listener stopped with stop has ended all its
// goroutines. It never blocks.
func (ln *listener) finished() bool {
	select {
	case <-ln.exited:
		return true
	default:
		return false
	}
}

func (ln *listener) abort() { ln.cancel() }

func (ln *listener) wait() { ln.wg.Wait() }

// drain stops accepting and waits for in-flight work until ctx ends; then it
// forces what is left closed.
func (ln *listener) drain(ctx context.Context) error {
	ln.beginStop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ln.ctx, cancel)
	defer stop()
	err := ln.shutdown(ctx)
	ln.wait()
	return err
}

func (ln *listener) shutdown(ctx context.Context) error {
	ln.mu.Lock()
	servers := append([]*httpServing{ln.http.Load()}, ln.retired...)
	// HTTP/1.1 connections (in tcpConns too) close now if idle, else
	// after their current response.
	for c := range ln.tcpConns {
		switch c := c.(type) {
		case *h1ServerConn:
			c.drain()
		case *sniffingConn:
			c.Close()
		}
	}
	ln.mu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.srv.Shutdown(ctx); err != nil {
			hs.srv.Close()
			errs = append(errs, err)
		}
	}
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("listener %q: in-flight requests did not finish before the drain deadline: %w", ln.cfg.Load().Name, errors.Join(errs...))
	}
	// TCP sessions and HTTP/1.1 connections get until ctx ends to finish
	// on their own.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ln.mu.Lock()
		n := len(ln.tcpConns)
		if n > 0 && ctx.Err() != nil {
			for c := range ln.tcpConns {
				if _, ok := c.(*h1ServerConn); ok && err == nil {
					err = fmt.Errorf("listener %q: in-flight requests did not finish before the drain deadline: %w", ln.cfg.Load().Name, ctx.Err())
				}
				c.Close()
			}
		}
		ln.mu.Unlock()
		if n == 0 || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// connQueue is a net.Listener fed by the accept loop.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) close() { q.once.Do(func() { close(q.closed) }) }

func (q *connQueue) Close() error { q.close(); return nil }

func (q *connQueue) Addr() net.Addr { return q.addr }

type metricConn struct {
	net.Conn
	once  sync.Once
	close func()
}

func (c *metricConn) Close() error {
	c.once.Do(c.close)
	return c.Conn.Close()
}

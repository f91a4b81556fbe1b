package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
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
	// key is the connection-level settings (header limits, timeouts)
	// that new HTTP connections take; an open connection keeps its own.
	key       atomic.Pointer[serverKey]
	tlsConfig *tls.Config
	// ctx ends when the listener must stop at once (Close).
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	tcpConns map[net.Conn]struct{} // TCP sessions and HTTP connections
	stopping bool

	wg     sync.WaitGroup // accept loop, connections, shutdowns
	done   chan struct{}  // closed when stop or drain begins
	exited chan struct{}  // closed when everything stop began has ended
	once   sync.Once
}

// serverKey is what an HTTP connection takes from its listener when it
// is accepted.
type serverKey struct {
	maxHeader     int
	headerTimeout time.Duration
	idle          time.Duration
	writeStall    time.Duration // 0: writes are not bounded
}

// defaultStreamIdleTimeout is Envoy's stream_idle_timeout default.
const defaultStreamIdleTimeout = 5 * time.Minute

func serverKeyOf(l *config.Listener) serverKey {
	k := serverKey{maxHeader: 60 << 10, headerTimeout: 10 * time.Second, idle: time.Hour, writeStall: defaultStreamIdleTimeout}
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
		switch {
		case h.StreamIdleTimeout > 0:
			k.writeStall = h.StreamIdleTimeout
		case h.StreamIdleTimeout < 0:
			k.writeStall = 0
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
	k := serverKeyOf(l)
	ln.key.Store(&k)
	return ln
}

// sameSocket reports whether l can reuse this listener's socket.
func (ln *listener) sameSocket(l *config.Listener) bool {
	return ln.cfg.Load().Address == l.Address
}

// update makes l the listener's config. New connections and requests see
// it at once; HTTP/1.1 connections already open keep their limits, and
// HTTP/2 connections (long-lived) are drained when the limits change, so
// that their clients reconnect under the new ones.
func (ln *listener) update(l *config.Listener) {
	ln.cfg.Store(l)
	if l.TLS != nil && !l.TLS.Permissive && l.TCP != nil {
		ln.closePlaintextSessions()
	}
	k := serverKeyOf(l)
	if *ln.key.Load() == k {
		return
	}
	ln.key.Store(&k)
	ln.mu.Lock()
	defer ln.mu.Unlock()
	for c := range ln.tcpConns {
		if h2, ok := c.(*h2ServerConn); ok && h2.key != k {
			h2.drain()
		}
	}
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
	// HTTP: a goroutine per connection serves HTTP/1.1, or HTTP/2 (h2 by
	// ALPN, h2c prior knowledge) with the goroutines of h2server.go.
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
	// HTTP/1.1 connections close now if idle, else after their current
	// response; HTTP/2 connections get GOAWAY and close when their
	// streams are done.
	for c := range ln.tcpConns {
		switch c := c.(type) {
		case *h1ServerConn:
			c.drain()
		case *h2ServerConn:
			c.drain()
		case *sniffingConn:
			c.Close()
		}
	}
	ln.mu.Unlock()
	// TCP sessions and HTTP connections get until ctx ends to finish on
	// their own.
	var err error
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ln.mu.Lock()
		n := len(ln.tcpConns)
		if n > 0 && ctx.Err() != nil {
			for c := range ln.tcpConns {
				switch c.(type) {
				case *h1ServerConn, *h2ServerConn:
				default:
					c.Close()
					continue
				}
				if err == nil {
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

// virtualSocket is the socket of a virtual listener (capture mode): the
// capture sockets dispatch its connections, so Accept only waits for Close.
type virtualSocket struct {
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

func newVirtualSocket(addr net.Addr) *virtualSocket {
	return &virtualSocket{addr: addr, closed: make(chan struct{})}
}

func (v *virtualSocket) Accept() (net.Conn, error) {
	<-v.closed
	return nil, net.ErrClosed
}

func (v *virtualSocket) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

func (v *virtualSocket) Addr() net.Addr { return v.addr }

type metricConn struct {
	net.Conn
	once  sync.Once
	close func()
}

func (c *metricConn) Close() error {
	c.once.Do(c.close)
	return c.Conn.Close()
}

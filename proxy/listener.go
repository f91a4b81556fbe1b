package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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
	// httpConns feeds accepted HTTP connections to srv.
	httpConns *connQueue
	srv       *http.Server
	tlsConfig *tls.Config

	mu       sync.Mutex
	tcpConns map[net.Conn]struct{}
	stopping bool

	wg   sync.WaitGroup // accept loop, http server, tcp sessions
	done chan struct{}  // closed when stop or drain begins
	once sync.Once
}

func startListener(p *Proxy, l *config.Listener) (*listener, error) {
	sock, err := net.Listen("tcp", l.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: cannot bind %s: %w; pick a free port or stop what holds it", l.Name, l.Address, err)
	}
	ln := &listener{
		p:         p,
		ln:        sock,
		httpConns: newConnQueue(sock.Addr()),
		tcpConns:  map[net.Conn]struct{}{},
		done:      make(chan struct{}),
	}
	ln.cfg.Store(l)
	ln.tlsConfig = ln.serverTLS()
	ln.srv = ln.newHTTPServer()
	ln.wg.Go(func() {
		if err := ln.srv.Serve(ln.httpConns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("http server stopped", "listener", l.Name, "err", err)
		}
	})
	ln.wg.Go(ln.acceptLoop)
	p.log.Info("listener started", "listener", l.Name, "address", sock.Addr().String())
	return ln, nil
}

// sameSocket reports whether l can reuse this listener's socket.
func (ln *listener) sameSocket(l *config.Listener) bool {
	cur := ln.cfg.Load()
	return cur.Address == l.Address
}

func (ln *listener) newHTTPServer() *http.Server {
	l := ln.cfg.Load()
	h := l.HTTP
	var maxHeader int
	headerTimeout := 10 * time.Second
	idle := time.Hour
	if h != nil {
		if h.MaxRequestHeadersBytes > 0 {
			maxHeader = h.MaxRequestHeadersBytes
		}
		if h.RequestHeadersTimeout > 0 {
			headerTimeout = h.RequestHeadersTimeout
		}
		if h.IdleTimeout > 0 {
			idle = h.IdleTimeout
		}
	}
	if maxHeader == 0 {
		maxHeader = 60 << 10
	}
	srv := &http.Server{
		Handler:           &httpHandler{ln: ln},
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    maxHeader,
		// net/http reports handshake failures and malformed requests here;
		// they are the client's problem, so they go to the debug level.
		ErrorLog: slog.NewLogLogger(ln.p.log.With("listener", l.Name).Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			MaxReadFrameSize: 1 << 20,
			// Bound the decoded header block as for HTTP/1.1.
			MaxDecoderHeaderTableSize: 4096,
		},
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	srv.Protocols.SetHTTP2(true)            // h2 over TLS by ALPN
	return srv
}

func (ln *listener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := ln.ln.Accept()
		if err != nil {
			select {
			case <-ln.done:
				ln.httpConns.close()
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				ln.httpConns.close()
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
	if l.TLS != nil {
		c = tls.Server(c, ln.tlsConfig)
	}
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
	if !ln.httpConns.push(c) {
		c.Close()
	}
}

// stop closes the socket and, after grace, every connection. It returns at
// once; wait blocks until everything has ended.
func (ln *listener) stop(grace time.Duration) {
	ln.once.Do(func() {
		close(ln.done)
		ln.ln.Close()
		ln.mu.Lock()
		ln.stopping = true
		ln.mu.Unlock()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			_ = ln.shutdown(ctx)
		}()
	})
}

func (ln *listener) wait() { ln.wg.Wait() }

// drain stops accepting and waits for in-flight work until ctx ends; then it
// forces what is left closed.
func (ln *listener) drain(ctx context.Context) error {
	ln.once.Do(func() {
		close(ln.done)
		ln.ln.Close()
		ln.mu.Lock()
		ln.stopping = true
		ln.mu.Unlock()
	})
	err := ln.shutdown(ctx)
	ln.wait()
	return err
}

func (ln *listener) shutdown(ctx context.Context) error {
	err := ln.srv.Shutdown(ctx)
	if err != nil {
		ln.srv.Close()
		err = fmt.Errorf("listener %q: in-flight requests did not finish before the drain deadline: %w", ln.cfg.Load().Name, err)
	}
	// TCP sessions get until ctx ends to finish on their own.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ln.mu.Lock()
		n := len(ln.tcpConns)
		if n > 0 && ctx.Err() != nil {
			for c := range ln.tcpConns {
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

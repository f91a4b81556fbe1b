package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// h1Pool is an HTTP/1.1 client for one cluster that writes a request and
// reads its response on the calling goroutine, over a pool of keep-alive
// connections per endpoint.
//
// net/http's Transport hands every request to two goroutines of its
// connection (a writer and a reader) and back; at the rates a sidecar sees,
// those wake-ups cost more CPU than the proxying itself (see
// docs/benchmarks.md for the profile). The pool is used for plaintext
// HTTP/1.1 upstreams when the request body is absent or buffered, so a
// request is written in one go and cannot deadlock against an upstream that
// answers before reading; streaming bodies, Expect: 100-continue and
// upgrades go through the Transport. Simple requests and responses are
// written and read by the fast paths of h1wire.go, the others by
// net/http's codec.
type h1Pool struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int           // idle connections kept per endpoint
	idleTimeout time.Duration // an idle connection older than this is closed

	mu     sync.Mutex
	idle   map[string][]*h1Conn
	closed bool
}

// maxResponseHeaderBytes bounds an upstream's status line and headers.
const maxResponseHeaderBytes = 1 << 20

var errResponseHeaderTooLarge = errors.New("upstream response headers exceed 1 MiB")

type h1Conn struct {
	pool   *h1Pool
	addr   string
	conn   net.Conn
	lr     headerLimitReader
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

// headerLimitReader sits under the bufio.Reader of an HTTP/1.1 connection
// (client and server side). While a message head is read it bounds the
// bytes read (limit >= 0) and fails with tooLarge past it; it counts the
// bytes read and remembers the connection's last read error.
type headerLimitReader struct {
	r        io.Reader
	limit    int64 // < 0: unlimited
	read     int64
	err      error
	tooLarge error
}

func (r *headerLimitReader) Read(p []byte) (int, error) {
	if r.limit == 0 {
		return 0, r.tooLarge
	}
	if r.limit > 0 && int64(len(p)) > r.limit {
		p = p[:r.limit]
	}
	n, err := r.r.Read(p)
	r.read += int64(n)
	if r.limit > 0 {
		r.limit -= int64(n)
	}
	if err != nil {
		r.err = err
	}
	return n, err
}

func newH1Pool(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *h1Pool {
	return &h1Pool{dial: dial, maxIdle: 256, idleTimeout: 90 * time.Second, idle: map[string][]*h1Conn{}}
}

// usable reports whether req can take the pool's path.
func h1Usable(req *http.Request) bool {
	return (req.Body == nil || req.GetBody != nil) && req.Header.Get("Expect") == "" && req.Header.Get("Upgrade") == ""
}

// RoundTrip sends req to addr. A request on a reused connection that the
// upstream had already closed (nothing came back) is sent again once on a
// new connection, as net/http does; its body is replayable by construction.
func (p *h1Pool) RoundTrip(ctx context.Context, req *http.Request, addr string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(ctx, req)
		if err == nil {
			return resp, nil
		}
		stale := reused && c.lr.read == 0 && ctx.Err() == nil
		c.conn.Close()
		if !stale || attempt > 0 {
			return nil, err
		}
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

func (p *h1Pool) get(ctx context.Context, addr string) (*h1Conn, bool, error) {
	now := time.Now()
	p.mu.Lock()
	conns := p.idle[addr]
	for len(conns) > 0 {
		c := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		conns = conns[:len(conns)-1]
		if now.Sub(c.idleAt) > p.idleTimeout {
			c.conn.Close()
			continue
		}
		p.idle[addr] = conns
		p.mu.Unlock()
		return c, true, nil
	}
	p.idle[addr] = conns
	p.mu.Unlock()
	conn, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	c := &h1Conn{pool: p, addr: addr, conn: conn}
	c.lr = headerLimitReader{r: conn, limit: -1, tooLarge: errResponseHeaderTooLarge}
	c.br = bufio.NewReaderSize(&c.lr, 16<<10)
	c.bw = bufio.NewWriterSize(conn, 16<<10)
	return c, false, nil
}

func (p *h1Pool) put(c *h1Conn) {
	c.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle[c.addr]) >= p.maxIdle {
		p.mu.Unlock()
		c.conn.Close()
		return
	}
	p.idle[c.addr] = append(p.idle[c.addr], c)
	p.mu.Unlock()
}

// CloseIdleConnections closes every idle connection; with final set, the
// pool keeps none from now on.
func (p *h1Pool) CloseIdleConnections(final bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*h1Conn{}
	p.closed = p.closed || final
	p.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			c.conn.Close()
		}
	}
}

// aLongTimeAgo is a deadline that has passed, to unblock I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

func (c *h1Conn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	c.lr.read = 0
	// Cancellation (route timeout, per-try timeout, downstream gone)
	// unblocks whatever I/O is in progress.
	stop := afterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })
	handled, err := writeRequestFast(c.bw, req)
	if !handled {
		err = req.Write(c.bw)
	}
	if err != nil {
		stop()
		return nil, c.ioError(ctx, err)
	}
	if err := c.bw.Flush(); err != nil {
		stop()
		return nil, c.ioError(ctx, err)
	}
	c.lr.limit = maxResponseHeaderBytes
	var (
		resp *http.Response
		fast *wireResponse
	)
	for {
		var ok bool
		fast, ok, err = readResponseFast(c.br, req)
		switch {
		case !ok:
			resp, err = http.ReadResponse(c.br, req)
		case fast != nil:
			resp = &fast.Response
		}
		if err != nil {
			stop()
			return nil, c.ioError(ctx, err)
		}
		// 1xx informational responses (other than 101, which we never
		// ask for) precede the real one.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		break
	}
	c.lr.limit = -1
	reusable := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		c.release(stop, reusable)
		return resp, nil
	}
	var b *h1Body
	if resp.Body == nil {
		// The fast path's body: ContentLength bytes of the connection.
		b = &fast.body
		b.cl = clBody{br: c.br, remain: resp.ContentLength}
		b.rc = &b.cl
	} else {
		b = &h1Body{rc: resp.Body}
	}
	b.c, b.stop, b.reusable = c, stop, reusable
	resp.Body = b
	return resp, nil
}

func (c *h1Conn) ioError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// release returns c to the pool if the response ended cleanly and no
// cancellation fired; otherwise it closes c.
func (c *h1Conn) release(stop func() bool, reusable bool) {
	if stop() && reusable {
		c.pool.put(c)
		return
	}
	c.conn.Close()
}

// h1Body is a response body; reading it to the end returns its connection
// to the pool.
type h1Body struct {
	c        *h1Conn
	rc       io.ReadCloser
	stop     func() bool
	reusable bool
	done     bool
	cl       clBody // rc when the response was read by readResponseFast
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done = true
		b.c.release(b.stop, b.reusable)
	} else if err != nil {
		b.done = true
		b.stop()
		b.c.conn.Close()
	}
	return n, err
}

// Close before the end of the body discards the connection: what is left
// of the response cannot be skipped cheaply.
func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.stop()
		b.c.conn.Close()
	}
	return nil
}

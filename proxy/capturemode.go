package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causewaymesh/causeway/proxy/capture"
	"github.com/causewaymesh/causeway/proxy/config"
)

// CaptureOptions turn on capture mode, where the app's traffic reaches the
// sidecar through the nat rules of package capture instead of the app
// dialling the sidecar's listeners. The ports must be those given to
// causeway-init (capture.Config); see docs/capture.md.
type CaptureOptions struct {
	// OutboundAddr receives captured outbound TCP (capture.Config
	// OutboundPort); default "127.0.0.1:15001".
	OutboundAddr string
	// InboundAddr receives captured inbound TCP (capture.Config
	// InboundPort); default ":15006" (REDIRECT in PREROUTING rewrites the
	// destination to the pod IP, so it must not be loopback only).
	InboundAddr string
	// DNSAddr, when set, serves DNS on UDP and TCP (capture.Config DNSPort,
	// e.g. "127.0.0.1:15053"): names under clusterset.local are answered
	// from the configuration (see dnsTable), everything else is forwarded
	// to DNSUpstream.
	DNSAddr string
	// DNSUpstream is the resolver (host:port) that gets every query the
	// sidecar does not answer itself; empty: such queries get SERVFAIL.
	DNSUpstream string
	// Passthrough forwards a captured connection that no listener claims to
	// its original destination, as Envoy's PassthroughCluster (Istio's
	// ALLOW_ANY). False closes it (REGISTRY_ONLY).
	Passthrough bool
	// DialTimeout bounds a passthrough connect (default 5s).
	DialTimeout time.Duration
	// OriginalDst recovers where a captured connection was going; default
	// capture.OriginalDst (SO_ORIGINAL_DST). Tests substitute it.
	OriginalDst func(net.Conn) (netip.AddrPort, error)
}

// Capture is the capture mode of a Proxy: its sockets and the table that
// hands each captured connection to the listener of its original
// destination. Create it with Proxy.StartCapture.
type Capture struct {
	p        *Proxy
	o        CaptureOptions
	out, in  net.Listener
	dns      *dnsServer
	tables   atomic.Pointer[captureTables]
	captured atomic.Int64 // handed to a listener
	passed   atomic.Int64 // passthrough sessions
	refused  atomic.Int64 // closed: no listener, no passthrough, or no original destination

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // passthrough sessions, closed by Close
	closed bool
	wg     sync.WaitGroup
	once   sync.Once
	done   chan struct{} // closed by Close
}

// captureTables is one immutable dispatch table, rebuilt by every Apply.
type captureTables struct {
	out, in destTable
	names   dnsTable
}

// destTable finds the listener of a destination: an exact IP:port first,
// then a listener on the wildcard address with that port.
type destTable struct {
	exact map[netip.AddrPort]*listener
	port  map[uint16]*listener
}

func (t *destTable) lookup(dst netip.AddrPort) *listener {
	if ln := t.exact[dst]; ln != nil {
		return ln
	}
	return t.port[dst.Port()]
}

// CaptureStats counts what the capture sockets did with connections.
type CaptureStats struct {
	Captured    int64 // handed to the listener of their original destination
	Passthrough int64 // forwarded to their original destination unproxied
	Refused     int64 // closed (no listener and no passthrough, or no original destination)
}

// ErrCaptureAfterApply: capture mode must be chosen before the first Apply,
// because it decides whether listeners bind their own sockets.
var ErrCaptureAfterApply = errors.New("proxy: StartCapture after Apply; call StartCapture right after New")

// StartCapture turns on capture mode and binds the capture sockets. From
// then on Apply binds no socket for a listener: each is virtual and serves
// the captured connections whose original destination is its address
// (outbound sockets feed Outbound listeners, the inbound socket Inbound
// ones). It must be called before the first Apply. Proxy.Drain and
// Proxy.Close close the Capture first, so no connection is captured while
// the listeners drain; Capture.Close does it alone.
func (p *Proxy) StartCapture(o CaptureOptions) (*Capture, error) {
	if o.OutboundAddr == "" {
		o.OutboundAddr = "127.0.0.1:15001"
	}
	if o.InboundAddr == "" {
		o.InboundAddr = ":15006"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.OriginalDst == nil {
		o.OriginalDst = capture.OriginalDst
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	switch {
	case p.closed:
		return nil, ErrClosed
	case p.applied.Load() || len(p.listeners) > 0:
		return nil, ErrCaptureAfterApply
	case p.capture != nil:
		return nil, errors.New("proxy: StartCapture called twice")
	}
	c := &Capture{p: p, o: o, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	c.tables.Store(&captureTables{})
	var err error
	if c.out, err = net.Listen("tcp", o.OutboundAddr); err != nil {
		return nil, fmt.Errorf("capture: outbound socket %s: %w; it must match causeway-init --outbound-port and be free", o.OutboundAddr, err)
	}
	if c.in, err = net.Listen("tcp", o.InboundAddr); err != nil {
		c.out.Close()
		return nil, fmt.Errorf("capture: inbound socket %s: %w; it must match causeway-init --inbound-port and be free", o.InboundAddr, err)
	}
	if o.DNSAddr != "" {
		if c.dns, err = startDNS(o.DNSAddr, o.DNSUpstream, c.names, p.log); err != nil {
			c.out.Close()
			c.in.Close()
			return nil, err
		}
	}
	c.wg.Go(func() { c.acceptLoop(c.out, config.Outbound) })
	c.wg.Go(func() { c.acceptLoop(c.in, config.Inbound) })
	p.capture = c
	p.log.Info("capture mode", "outbound", c.out.Addr().String(), "inbound", c.in.Addr().String(), "dns", o.DNSAddr, "passthrough", o.Passthrough)
	return c, nil
}

// OutboundAddr and InboundAddr are the bound capture sockets.
func (c *Capture) OutboundAddr() net.Addr { return c.out.Addr() }

// InboundAddr is the bound inbound capture socket.
func (c *Capture) InboundAddr() net.Addr { return c.in.Addr() }

// DNSAddr is the bound DNS address (UDP and TCP), or nil without DNS.
func (c *Capture) DNSAddr() net.Addr {
	if c.dns == nil {
		return nil
	}
	return c.dns.udp.LocalAddr()
}

// Stats returns the counters.
func (c *Capture) Stats() CaptureStats {
	return CaptureStats{Captured: c.captured.Load(), Passthrough: c.passed.Load(), Refused: c.refused.Load()}
}

// closeCapture closes the capture, if any: Proxy.Drain and Proxy.Close
// call it, so that no connection is captured for listeners that stop.
func (p *Proxy) closeCapture() {
	p.applyMu.Lock()
	c := p.capture
	p.applyMu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Close closes the capture sockets and the DNS responder, ends passthrough
// sessions and waits for every goroutine the Capture started. Connections
// already handed to listeners belong to the Proxy (Drain, Close).
func (c *Capture) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.out.Close()
		c.in.Close()
		if c.dns != nil {
			c.dns.close()
		}
		c.mu.Lock()
		c.closed = true
		for conn := range c.conns {
			conn.Close()
		}
		c.mu.Unlock()
	})
	c.wg.Wait()
	return nil
}

// startListenerFor starts l: bound on its address, or virtual in capture
// mode. Called by Apply with applyMu held.
func (p *Proxy) startListenerFor(l *config.Listener) (*listener, error) {
	if p.capture == nil {
		return startListener(p, l)
	}
	addr, err := listenerAddr(l)
	if err != nil {
		return nil, err
	}
	ln := newListener(p, l, newVirtualSocket(net.TCPAddrFromAddrPort(addr)))
	p.log.Debug("virtual listener", "listener", l.Name, "address", l.Address)
	return ln, nil
}

// listenerAddr parses a listener's address for the dispatch table; IPv4
// is kept as 4 bytes, as OriginalDst reports it.
func listenerAddr(l *config.Listener) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(l.Address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listener %q: address %q: %w; in capture mode a listener's address must be an IP literal and port (the original destination it serves)", l.Name, l.Address, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// publish rebuilds the dispatch table from the proxy's listeners and the
// DNS names from s's routes. Called by Apply with applyMu held.
func (c *Capture) publish(lns map[string]*listener, s *config.Snapshot) {
	t := &captureTables{
		out: destTable{exact: map[netip.AddrPort]*listener{}, port: map[uint16]*listener{}},
		in:  destTable{exact: map[netip.AddrPort]*listener{}, port: map[uint16]*listener{}},
	}
	for _, ln := range lns {
		l := ln.cfg.Load()
		ap, err := listenerAddr(l)
		if err != nil {
			continue // startListenerFor refused it
		}
		dt := &t.out
		if l.Direction == config.Inbound {
			dt = &t.in
		}
		if ap.Addr().IsUnspecified() {
			dt.port[ap.Port()] = ln
		} else {
			dt.exact[ap] = ln
		}
	}
	if c.dns != nil {
		t.names = buildDNSTable(s)
	}
	c.tables.Store(t)
}

// names is the DNS responder's view of the current table.
func (c *Capture) names() dnsTable { return c.tables.Load().names }

func (c *Capture) acceptLoop(sock net.Listener, dir config.Direction) {
	var delay time.Duration
	for {
		conn, err := sock.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			c.p.log.Warn("capture accept failed; backing off", "socket", sock.Addr().String(), "err", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
			}
			continue
		}
		delay = 0
		c.dispatch(conn, dir)
	}
}

// dispatch hands conn to the listener of its original destination, or
// passes it through, or closes it.
func (c *Capture) dispatch(conn net.Conn, dir config.Direction) {
	dst, err := c.o.OriginalDst(conn)
	if err != nil {
		c.refused.Add(1)
		c.p.log.Debug("captured connection has no original destination", "err", err)
		conn.Close()
		return
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	t := c.tables.Load()
	dt := &t.out
	if dir == config.Inbound {
		dt = &t.in
	}
	if ln := dt.lookup(dst); ln != nil {
		c.captured.Add(1)
		ln.dispatch(conn)
		return
	}
	// A connection dialled straight to a capture socket (not redirected)
	// reports its own local address: passing it through would loop.
	if la, ok := conn.LocalAddr().(*net.TCPAddr); !c.o.Passthrough || (ok && la.AddrPort().Port() == dst.Port() && la.AddrPort().Addr().Unmap() == dst.Addr()) {
		c.refused.Add(1)
		c.p.log.Debug("captured connection refused: no listener for its destination", "direction", dir.String(), "destination", dst.String())
		conn.Close()
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return
	}
	c.conns[conn] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	c.passed.Add(1)
	go func() {
		defer c.wg.Done()
		c.passthrough(conn, dst)
		c.mu.Lock()
		delete(c.conns, conn)
		c.mu.Unlock()
	}()
}

// passthrough splices conn to dst. The sidecar's UID is exempt from
// capture, so the dial goes straight out.
func (c *Capture) passthrough(down net.Conn, dst netip.AddrPort) {
	defer down.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.o.DialTimeout)
	up, err := (&net.Dialer{}).DialContext(ctx, "tcp", dst.String())
	cancel()
	if err != nil {
		c.p.log.Debug("passthrough connect failed", "destination", dst.String(), "err", err)
		return
	}
	defer up.Close()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.conns[up] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.conns, up)
		c.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() {
		pipe(up, down, time.Hour)
		closeWrite(up)
		close(done)
	}()
	pipe(down, up, time.Hour)
	closeWrite(down)
	<-done
}

// isClustersetName reports whether name (lower case, with or without the
// final dot) is under clusterset.local.
func isClustersetName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	return name == "clusterset.local" || strings.HasSuffix(name, ".clusterset.local")
}

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"github.com/causewaymesh/causeway/proxy/authz"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/lb"
	"github.com/causewaymesh/causeway/proxy/telemetry"
)

// maxTCPConnectAttempts bounds how many endpoints a TCP session tries.
const maxTCPConnectAttempts = 3

// serveTCP proxies one downstream connection to the listener's cluster. A
// failed connect is retried on another endpoint, preferably in another
// locality; once bytes flow, the session is pinned to its endpoint.
func (p *Proxy) serveTCP(l *config.Listener, down net.Conn) {
	defer down.Close()
	start := p.opts.Now()
	st := p.state.Load()
	info := telemetry.RequestInfo{Direction: l.Direction.String(), Protocol: "tcp", Service: l.TCP.Cluster}
	var entry telemetry.LogEntry
	entry.StartTime = start
	entry.Protocol = "TCP"
	entry.UpstreamCluster = l.TCP.Cluster
	defer func() {
		info.Duration = p.opts.Now().Sub(start)
		entry.Duration = info.Duration
		entry.BytesReceived, entry.BytesSent = info.ReqBytes, info.RespBytes
		if m := p.opts.Metrics; m != nil {
			m.ObserveRequest(&info)
		}
		if a := p.opts.AccessLog; a != nil {
			a.Log(&entry)
		}
	}()

	u := st.upstreams[l.TCP.Cluster]
	if u == nil {
		entry.ResponseFlags = flagNoCluster
		return
	}
	if !u.lb.TryAcquireRequest() {
		entry.ResponseFlags = flagOverflow
		if m := p.opts.Metrics; m != nil {
			m.CircuitOpen(u.name, "requests")
		}
		return
	}
	defer u.lb.ReleaseRequest()

	authenticated := false
	if tc, ok := down.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			entry.ResponseFlags = telemetry.FlagDownstreamProtocolError
			entry.Reason = "downstream TLS handshake: " + err.Error()
			return
		}
		cs := tc.ConnectionState()
		entry.SourceIdentity, authenticated = peerIdentityOf(&cs)
	}
	if la := st.authz[l.Name]; la != nil {
		in := authz.Input{Port: la.port, PeerID: entry.SourceIdentity, Authenticated: authenticated}
		if d := la.engine.Check(&in); !d.Allowed {
			if m := p.opts.Metrics; m != nil {
				m.AuthzDenied(l.Name, d.PolicyLabel())
			}
			entry.ResponseFlags = flagUnauthorized
			entry.Reason = d.Reason()
			return
		}
	}

	var (
		up    net.Conn
		host  *lb.Host
		tried []*lb.Host
	)
	for attempt := 0; attempt < maxTCPConnectAttempts; attempt++ {
		h, err := u.lb.Pick(&lb.PickRequest{Tried: tried})
		if err != nil {
			if host == nil {
				entry.ResponseFlags = flagNoHealthy
			}
			break
		}
		tried = append(tried, h)
		host = h
		h.Begin()
		c, err := p.dialTCP(u, h)
		if err != nil {
			h.End(lb.LocalOriginFailure)
			entry.ResponseFlags = flagConnectFailure
			entry.Reason = err.Error()
			if m := p.opts.Metrics; m != nil {
				m.ConnectFailure(u.name, h.Cluster, h.Locality.String())
			}
			continue
		}
		up = c
		entry.ResponseFlags = 0
		entry.Reason = ""
		break
	}
	if host != nil {
		entry.UpstreamHost = host.Address
		entry.UpstreamLocality = host.Locality.String()
		info.Peer = workloadFromID(host.Identity)
		info.Peer.Cluster = host.Cluster
		info.Peer.Locality = host.Locality.String()
	}
	if up == nil {
		return
	}
	defer up.Close()

	idle := l.TCP.IdleTimeout
	if idle <= 0 {
		idle = time.Hour
	}
	// Copy both ways; when one direction ends, half-close the other side
	// so the peer sees EOF, and wait for the reverse direction.
	done := make(chan int64, 1)
	go func() {
		n := pipe(up, down, idle)
		closeWrite(up)
		done <- n
	}()
	info.RespBytes = pipe(down, up, idle)
	closeWrite(down)
	info.ReqBytes = <-done
	host.End(lb.Success)
}

// pipe copies src to dst until EOF or error, resetting an idle deadline on
// each read.
func pipe(dst, src net.Conn, idle time.Duration) int64 {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				// The other side is gone: unblock the reverse copy.
				_ = src.Close()
				return total
			}
			total += int64(n)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = dst.Close()
			}
			return total
		}
	}
}

func closeWrite(c net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok {
		_ = cw.CloseWrite()
		return
	}
	if mc, ok := c.(*metricConn); ok {
		closeWrite(mc.Conn)
		return
	}
	if cc, ok := c.(*countedConn); ok {
		closeWrite(cc.Conn)
		return
	}
	_ = c.Close()
}

func (p *Proxy) dialTCP(u *upstream, h *lb.Host) (net.Conn, error) {
	c := u.cfg.Load()
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := u.dialer(&net.Dialer{Timeout: timeout})(ctx, "tcp", h.Address)
	if err != nil {
		return nil, err
	}
	if c.TLS != nil {
		tc := tls.Client(conn, p.clientTLS(c))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
	return conn, nil
}

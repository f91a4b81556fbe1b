package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/lb"
)

// upstream is one cluster's live state: its balancer and its connection
// pool. It survives config updates; the transport is rebuilt only when the
// settings it was built from change.
type upstream struct {
	p    *Proxy
	name string
	lb   *lb.Cluster
	cfg  atomic.Pointer[config.Cluster]
	tr   atomic.Pointer[transport]
	// dl fires the route timeouts of the cluster's requests (deadline.go).
	dl deadlines
	// scheme is "http" or "https", matching tr.
}

type transport struct {
	rt     *http.Transport
	h1     *h1Pool // plaintext HTTP/1.1 fast path; nil for other protocols
	scheme string
	key    transportKey
	// h2 is the client of HTTP/2 clusters (h2client.go): h2Conns
	// multiplexed connections per endpoint (h2.go); rt is then unused.
	h2 *h2Pool
}

// roundTrip sends req to addr with the client of the cluster's protocol.
// The pools take the context as an argument: no copy of req with it
// (WithContext allocates a new Request).
func (t *transport) roundTrip(ctx context.Context, req *http.Request, addr string) (*http.Response, error) {
	switch {
	case t.h2 != nil:
		return t.h2.RoundTrip(ctx, req, addr)
	case t.h1 != nil && h1Usable(req):
		return t.h1.RoundTrip(ctx, req, addr)
	}
	return t.rt.RoundTrip(req.WithContext(ctx))
}

// closeIdle closes idle connections; final: the transport is retired.
func (t *transport) closeIdle(final bool) {
	t.rt.CloseIdleConnections()
	if t.h2 != nil {
		t.h2.CloseIdleConnections(final)
	}
	if t.h1 != nil {
		t.h1.CloseIdleConnections(final)
	}
}

// transportKey is what a transport depends on; a change rebuilds the pool.
type transportKey struct {
	protocol       config.Protocol
	tls            bool
	connectTimeout time.Duration
}

func keyOf(c *config.Cluster) transportKey {
	return transportKey{protocol: c.Protocol, tls: c.TLS != nil, connectTimeout: c.ConnectTimeout}
}

func newUpstream(p *Proxy, c *config.Cluster, la *config.LoadAssignment) *upstream {
	u := &upstream{p: p, name: c.Name}
	u.cfg.Store(c)
	u.lb = lb.NewCluster(c, orEmpty(c, la), lb.Options{Now: p.opts.Now, Observer: p.obs})
	u.tr.Store(u.newTransport(c))
	return u
}

func orEmpty(c *config.Cluster, la *config.LoadAssignment) *config.LoadAssignment {
	if la == nil {
		return &config.LoadAssignment{Cluster: c.EndpointsName()}
	}
	return la
}

func (u *upstream) update(c *config.Cluster, la *config.LoadAssignment) {
	old := u.cfg.Swap(c)
	u.lb.Update(c, orEmpty(c, la))
	if keyOf(old) != keyOf(c) {
		prev := u.tr.Swap(u.newTransport(c))
		prev.closeIdle(true)
	}
}

func (u *upstream) close() {
	u.dl.close()
	u.lb.Close()
	u.tr.Load().closeIdle(true)
}

func (u *upstream) newTransport(c *config.Cluster) *transport {
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	rt := &http.Transport{
		Proxy:               nil, // never honour $HTTP_PROXY inside the mesh
		DialContext:         u.dialer(d),
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // pass Accept-Encoding through untouched
		// Response header size is bounded like the downstream side.
		MaxResponseHeaderBytes: 1 << 20,
		ExpectContinueTimeout:  0,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
	t := &transport{rt: rt, scheme: "http", key: keyOf(c)}
	rt.Protocols = new(http.Protocols)
	switch {
	case c.TLS != nil:
		t.scheme = "https"
		rt.TLSClientConfig = u.p.upstreamTLS(c.Name)
		rt.TLSClientConfig.ServerName = c.TLS.SNI
		rt.ForceAttemptHTTP2 = c.Protocol == config.HTTP2
		if c.Protocol == config.HTTP2 {
			rt.Protocols.SetHTTP2(true)
		} else {
			rt.Protocols.SetHTTP1(true)
		}
	case c.Protocol == config.HTTP2:
		// HTTP/2 with prior knowledge: a few long-lived multiplexed
		// connections between proxies.
		rt.Protocols.SetUnencryptedHTTP2(true)
	default:
		rt.Protocols.SetHTTP1(true)
		t.h1 = newH1Pool(rt.DialContext)
	}
	if c.Protocol == config.HTTP2 {
		var tlsConf *tls.Config
		if rt.TLSClientConfig != nil {
			tlsConf = rt.TLSClientConfig.Clone()
			tlsConf.NextProtos = []string{"h2"}
		}
		t.h2 = newH2Pool(rt.DialContext, tlsConf)
	}
	return t
}

// dialer counts connections against the cluster's circuit breaker.
func (u *upstream) dialer(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !u.lb.TryAcquireConnection() {
			if m := u.p.opts.Metrics; m != nil {
				m.CircuitOpen(u.name, "connections")
			}
			return nil, errConnOverflow
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			u.lb.ReleaseConnection()
			return nil, err
		}
		return &countedConn{Conn: c, release: u.lb.ReleaseConnection}, nil
	}
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// upstreamTLS returns a client TLS config that reads the cluster's secrets
// at handshake time, so SDS rotation takes effect on the next connection.
func (p *Proxy) upstreamTLS(cluster string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done by VerifyConnection against the SDS roots
		// and the expected SANs; Go's hostname check does not apply to
		// SPIFFE identities.
		InsecureSkipVerify: true,
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		st := p.state.Load()
		u := st.upstreams[cluster]
		if u == nil {
			return &tls.Certificate{}, nil
		}
		c := u.cfg.Load()
		if c.TLS == nil || c.TLS.CertSecret == "" {
			return &tls.Certificate{}, nil
		}
		if s := st.secrets[c.TLS.CertSecret]; s != nil && s.Cert != nil {
			return s.Cert, nil
		}
		return nil, &missingSecretError{name: c.TLS.CertSecret, cluster: cluster}
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		st := p.state.Load()
		u := st.upstreams[cluster]
		if u == nil {
			return &missingSecretError{cluster: cluster}
		}
		c := u.cfg.Load()
		if c.TLS == nil {
			return nil
		}
		roots := st.secrets[c.TLS.ValidationSecret]
		if !roots.HasRoots() {
			return &missingSecretError{name: c.TLS.ValidationSecret, cluster: cluster}
		}
		return verifyPeer(cs.PeerCertificates, roots, c.TLS.MatchSANs, false)
	}
	return cfg
}

// clientTLS is the TLS config the TCP proxy uses towards c's endpoints.
func (p *Proxy) clientTLS(c *config.Cluster) *tls.Config {
	cfg := p.upstreamTLS(c.Name)
	cfg.ServerName = c.TLS.SNI
	cfg.NextProtos = c.TLS.ALPN
	return cfg
}

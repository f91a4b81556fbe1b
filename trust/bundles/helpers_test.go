package bundles

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/trust"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	tdLocal = spiffeid.RequireTrustDomainFromString("local.test")
	tdPeer  = spiffeid.RequireTrustDomainFromString("peer.test")
	tdOther = spiffeid.RequireTrustDomainFromString("other.test")
	t0      = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
)

// manualNow is a settable clock for the Authority and CAs.
type manualNow struct {
	mu sync.Mutex
	t  time.Time
}

func (m *manualNow) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t
}

func (m *manualNow) Advance(d time.Duration) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t = m.t.Add(d)
	return m.t
}

// fakeClock is a Clock whose timers fire only on Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clk *fakeClock
	c   chan time.Time
	at  time.Time
	d   time.Duration
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, c: make(chan time.Time, 1), at: c.now.Add(d), d: d}
	if d <= 0 {
		t.c <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clk
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
}

// pending is the durations of the timers not yet fired.
func (c *fakeClock) pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, t := range c.timers {
		out = append(out, t.d)
	}
	return out
}

// waitFor polls cond every 5ms until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func mustCA(t testing.TB, td spiffeid.TrustDomain, now func() time.Time) *trust.CA {
	t.Helper()
	ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{Now: now})
	if err != nil {
		t.Fatalf("NewSelfSignedCA(%s): %v", td, err)
	}
	return ca
}

func mustAuthority(t testing.TB, ca *trust.CA, opts AuthorityOptions) *Authority {
	t.Helper()
	a, err := NewAuthority(ca, opts)
	if err != nil {
		t.Fatalf("NewAuthority: %v", err)
	}
	return a
}

func mustSet(t testing.TB, a *Authority) *Set {
	t.Helper()
	s, err := NewSet(a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSVID(t testing.TB, ca *trust.CA, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	s, err := ca.IssueSVID(id, time.Hour)
	if err != nil {
		t.Fatalf("IssueSVID(%s): %v", id, err)
	}
	return s
}

func svidCert(s *x509svid.SVID) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
	for _, x := range s.Certificates {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// webCert is a self-signed certificate for 127.0.0.1 and the pool that
// trusts it.
func webCert(t testing.TB) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "bundle endpoint"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// docServer is a TLS server on 127.0.0.1 whose certificate, document and
// status can be swapped between requests.
type docServer struct {
	srv    *httptest.Server
	cert   atomic.Pointer[tls.Certificate]
	doc    atomic.Pointer[[]byte]
	status atomic.Int32
	hits   atomic.Int64
}

func newDocServer(t testing.TB, cert *tls.Certificate, handler http.Handler) *docServer {
	t.Helper()
	d := &docServer{}
	d.cert.Store(cert)
	d.status.Store(http.StatusOK)
	if handler == nil {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d.hits.Add(1)
			if s := int(d.status.Load()); s != http.StatusOK {
				http.Error(w, "nope", s)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(*d.doc.Load())
		})
	}
	// httptest's StartTLS would put its own certificate first; wrap the
	// listener instead so that GetCertificate decides every handshake.
	d.srv = httptest.NewUnstartedServer(handler)
	d.srv.Listener = tls.NewListener(d.srv.Listener, &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return d.cert.Load(), nil },
	})
	d.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	d.srv.Start()
	t.Cleanup(d.srv.Close)
	return d
}

func (d *docServer) setDoc(b []byte) { d.doc.Store(&b) }

func (d *docServer) URL() string { return "https://" + d.srv.Listener.Addr().String() + "/bundle" }

func marshalBundle(t testing.TB, td spiffeid.TrustDomain, roots []*x509.Certificate, seq uint64, hint time.Duration) []byte {
	t.Helper()
	b := spiffebundle.FromX509Authorities(td, roots)
	if seq != 0 {
		b.SetSequenceNumber(seq)
	}
	if hint != 0 {
		b.SetRefreshHint(hint)
	}
	doc, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// hangingListener accepts connections on 127.0.0.1 and never answers. It
// returns the URL and the number of connections accepted so far.
func hangingListener(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		n     = new(atomic.Int64)
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			n.Add(1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "https://" + ln.Addr().String() + "/bundle", n
}

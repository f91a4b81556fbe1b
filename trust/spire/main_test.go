package spire_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/causewaymesh/causeway/trust/spire"
	"github.com/causewaymesh/causeway/trust/spire/internal/fakespire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	tdSPIRE  = spiffeid.RequireTrustDomainFromString("spire.test")
	idCW     = spiffeid.RequireFromPath(tdSPIRE, "/causeway/control-plane")
	idAdmin  = spiffeid.RequireFromPath(tdSPIRE, "/causeway/admin")
	idNobody = spiffeid.RequireFromPath(tdSPIRE, "/someone/else")
	idWL     = spiffeid.RequireFromPath(tdSPIRE, "/ns/shop/sa/cart")
)

// fakeClock is an injected clock whose timers fire only when Advance passes
// their deadline. armed receives the duration of every new timer.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
	armed  chan time.Duration
}

type fakeTimer struct {
	clk *fakeClock
	at  time.Time
	c   chan time.Time
}

func newFakeClock() *fakeClock {
	// Near the real time, so that the TLS certificates of the fake (checked
	// by crypto/tls against the real clock) and the signing clock agree.
	return &fakeClock{now: time.Now().Truncate(time.Second), timers: map[*fakeTimer]bool{}, armed: make(chan time.Duration, 64)}
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) NewTimer(d time.Duration) spire.Timer {
	c.mu.Lock()
	t := &fakeTimer{clk: c, at: c.now.Add(d), c: make(chan time.Time, 1)}
	c.timers[t] = true
	c.mu.Unlock()
	c.armed <- d
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
			delete(c.timers, t)
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	ok := t.clk.timers[t]
	delete(t.clk.timers, t)
	return ok
}

// waitArmed waits for the renewal loop to arm a timer and returns its
// duration.
func (c *fakeClock) waitArmed(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.armed:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the renewal loop to arm a timer")
		return 0
	}
}

type env struct {
	clk  *fakeClock
	srv  *fakespire.Server
	conn *grpc.ClientConn
}

// newEnv starts a fake SPIRE server and dials it as id (zero: no SVID).
// Causeway's ID is registered as downstream and the admin ID as admin.
func newEnv(t *testing.T, as spiffeid.ID) *env { t.Helper(); return newEnvTB(t, as) }

func newEnvTB(t testing.TB, as spiffeid.ID) *env {
	t.Helper()
	clk := newFakeClock()
	srv, err := fakespire.Start(fakespire.Config{TrustDomain: tdSPIRE, Now: clk.Now, RefreshHint: 5 * time.Minute})
	if err != nil {
		t.Fatalf("fakespire.Start: %v", err)
	}
	t.Cleanup(srv.Stop)
	srv.AddDownstream(idCW)
	srv.AddAdmin(idAdmin)
	return &env{clk: clk, srv: srv, conn: dialAs(t, srv, as)}
}

func dialAs(t testing.TB, srv *fakespire.Server, as spiffeid.ID) *grpc.ClientConn {
	t.Helper()
	var src x509svid.Source
	if !as.IsZero() {
		svid, err := srv.IssueSVID(as)
		if err != nil {
			t.Fatalf("IssueSVID(%s): %v", as, err)
		}
		src = svid
	}
	conn, err := spire.Dial(srv.Addr(), src, srv.Bundle(), srv.ServerID())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newCSR(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

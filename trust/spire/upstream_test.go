package spire_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/spire"
	"github.com/causewaymesh/causeway/trust/spire/internal/fakespire"
)

func newUpstream(t *testing.T, e *env, mod func(*spire.UpstreamOptions)) *spire.UpstreamCA {
	t.Helper()
	o := spire.UpstreamOptions{TrustDomain: tdSPIRE, Conn: e.conn, PreferredTTL: 2 * time.Hour, Now: e.clk.Now, NewTimer: e.clk.NewTimer}
	if mod != nil {
		mod(&o)
	}
	u, err := spire.NewUpstreamCA(testCtx(t), o)
	if err != nil {
		t.Fatalf("NewUpstreamCA: %v", err)
	}
	return u
}

// mustSignAndVerify signs a leaf through u and verifies it against SPIRE's
// own root bundle (not u's copy of it).
func mustSignAndVerify(t *testing.T, e *env, u *spire.UpstreamCA) []*x509.Certificate {
	t.Helper()
	chain, err := u.SignSVID(newCSR(t), idWL, time.Hour)
	if err != nil {
		t.Fatalf("SignSVID: %v", err)
	}
	id, _, err := x509svid.Verify(chain, e.srv.Bundle(), x509svid.WithTime(e.clk.Now()))
	if err != nil {
		t.Fatalf("x509svid.Verify against SPIRE's bundle: %v", err)
	}
	if id != idWL {
		t.Fatalf("verified ID = %s, want %s", id, idWL)
	}
	return chain
}

func TestLeafSignedThroughAdapterVerifiesAgainstSPIREBundle(t *testing.T) {
	e := newEnv(t, idCW)
	u := newUpstream(t, e, nil)

	chain := mustSignAndVerify(t, e, u)
	if len(chain) != 3 {
		t.Fatalf("chain has %d certificates, want 3 (leaf, downstream CA, SPIRE server CA)", len(chain))
	}
	if chain[1] != u.Certificate() || !chain[2].Equal(e.srv.ServerCA()) {
		t.Errorf("chain[1:] is not SPIRE's ca_cert_chain")
	}
	root, _ := e.srv.Root()
	if got := u.Roots(); len(got) != 1 || !got[0].Equal(root) {
		t.Errorf("Roots() = %d certs, want SPIRE's root", len(got))
	}
	if _, _, err := x509svid.Verify(chain, u.Bundle(), x509svid.WithTime(e.clk.Now())); err != nil {
		t.Errorf("verify against u.Bundle(): %v", err)
	}
	ca := u.Certificate()
	if got := ca.NotAfter.Sub(ca.NotBefore); got < 2*time.Hour || got > 2*time.Hour+time.Minute {
		t.Errorf("downstream CA lifetime = %v, want the preferred TTL 2h (plus backdating)", got)
	}
	if len(ca.URIs) != 1 || ca.URIs[0].String() != "spiffe://spire.test" {
		t.Errorf("downstream CA URIs = %v, want [spiffe://spire.test]", ca.URIs)
	}
	// A leaf never outlives the CA.
	long, err := u.SignSVID(newCSR(t), idWL, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !long[0].NotAfter.Equal(ca.NotAfter) {
		t.Errorf("48h leaf NotAfter = %v, want clamped to CA NotAfter %v", long[0].NotAfter, ca.NotAfter)
	}
	if s := fmt.Sprintf("%v %#v %s", u, u, u); strings.Contains(s, "PRIVATE") || !strings.Contains(s, trust.Fingerprint(ca)) {
		t.Errorf("String() = %q: want fingerprints and no key", s)
	}
}

func TestSignSVIDRules(t *testing.T) {
	e := newEnv(t, idCW)
	u := newUpstream(t, e, nil)
	for _, tc := range []struct {
		name string
		csr  []byte
		id   spiffeid.ID
		ttl  time.Duration
		want error
		msg  string
	}{
		{name: "foreign trust domain", csr: newCSR(t), id: spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString("other.test"), "/x"), ttl: time.Hour, want: trust.ErrForeignTrustDomain, msg: `"other.test"`},
		{name: "ttl too short", csr: newCSR(t), id: idWL, ttl: time.Second, want: trust.ErrTTLTooShort, msg: "ttl 1s"},
		{name: "garbage CSR", csr: []byte("junk"), id: idWL, ttl: time.Hour, want: trust.ErrBadCSR},
		{name: "no path", csr: newCSR(t), id: tdSPIRE.ID(), ttl: time.Hour, msg: "has no path"},
		{name: "empty ID", csr: newCSR(t), ttl: time.Hour, msg: "SPIFFE ID is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := u.SignSVID(tc.csr, tc.id, tc.ttl)
			if err == nil {
				t.Fatal("SignSVID succeeded, want error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to contain %q", err, tc.msg)
			}
		})
	}
	chain, err := u.SignSVID(newCSR(t), idWL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := chain[0].NotAfter; !got.Equal(u.Certificate().NotAfter) {
		t.Errorf("ttl 0 (24h default) leaf NotAfter = %v, want clamped to the 2h CA's %v", got, u.Certificate().NotAfter)
	}
}

func TestUpstreamOptionsValidation(t *testing.T) {
	e := newEnv(t, idCW)
	for _, tc := range []struct {
		name string
		mod  func(*spire.UpstreamOptions)
		msg  string
	}{
		{"no trust domain", func(o *spire.UpstreamOptions) { o.TrustDomain = spiffeid.TrustDomain{} }, "UpstreamOptions.TrustDomain is empty"},
		{"no conn", func(o *spire.UpstreamOptions) { o.Conn = nil }, "UpstreamOptions.Conn is nil"},
		{"short TTL", func(o *spire.UpstreamOptions) { o.PreferredTTL = time.Minute }, "PreferredTTL is 1m0s"},
		{"huge TTL", func(o *spire.UpstreamOptions) { o.PreferredTTL = 1 << 62 }, "at most 2147483647 seconds"},
		{"negative retry", func(o *spire.UpstreamOptions) { o.RetryInterval = -time.Second }, "RetryInterval is -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := spire.UpstreamOptions{TrustDomain: tdSPIRE, Conn: e.conn, Now: e.clk.Now}
			tc.mod(&o)
			_, err := spire.NewUpstreamCA(testCtx(t), o)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.msg)
			}
		})
	}
	if n := e.srv.DownstreamCalls(); n != 0 {
		t.Errorf("invalid options reached SPIRE %d times", n)
	}
}

// signLoop signs and verifies leaves on another goroutine until stop is
// called. sawOld and sawNew are closed after the first success with a chain
// through first, and through any other CA.
type signer struct {
	sawOld, sawNew chan struct{}
	stop           func() (ok, failed int64, first error)
}

func signLoop(t *testing.T, e *env, u *spire.UpstreamCA, first *x509.Certificate) *signer {
	var (
		okN, failN atomic.Int64
		firstErr   atomic.Pointer[error]
		done       = make(chan struct{})
		wg         sync.WaitGroup
		s          = &signer{sawOld: make(chan struct{}), sawNew: make(chan struct{})}
		oldOnce    sync.Once
		newOnce    sync.Once
	)
	csr := newCSR(t)
	bundle := e.srv.Bundle()
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			chain, err := u.SignSVID(csr, idWL, time.Hour)
			if err == nil {
				_, _, err = x509svid.Verify(chain, bundle, x509svid.WithTime(e.clk.Now()))
			}
			if err != nil {
				failN.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				continue
			}
			okN.Add(1)
			if chain[1] == first {
				oldOnce.Do(func() { close(s.sawOld) })
			} else {
				newOnce.Do(func() { close(s.sawNew) })
			}
		}
	})
	s.stop = func() (int64, int64, error) {
		close(done)
		wg.Wait()
		var err error
		if p := firstErr.Load(); p != nil {
			err = *p
		}
		return okN.Load(), failN.Load(), err
	}
	return s
}

func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func startRun(t *testing.T, u *spire.UpstreamCA) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	errc := make(chan error, 1)
	go func() { errc <- u.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run returned %v, want nil after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
}

func waitRotation(t *testing.T, c <-chan spire.Rotation) spire.Rotation {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a rotation")
		return spire.Rotation{}
	}
}

func TestRunRenewsAtHalfLifeWithoutFailingSigning(t *testing.T) {
	e := newEnv(t, idCW)
	rot := make(chan spire.Rotation, 4)
	u := newUpstream(t, e, func(o *spire.UpstreamOptions) { o.OnRotate = func(r spire.Rotation) { rot <- r } })
	first := u.Certificate()
	if r := waitRotation(t, rot); r.Old != nil || r.New != first || r.Reason != "initial" {
		t.Fatalf("first rotation = %+v, want the initial CA with Old nil", r)
	}
	wantAt, reason := trust.RenewAt(first, e.clk.Now())
	if reason != trust.RenewReasonHalfLife {
		t.Fatalf("RenewAt reason = %q", reason)
	}

	stopRun := startRun(t, u)
	defer stopRun()
	wait := e.clk.waitArmed(t)
	if got := e.clk.Now().Add(wait); !got.Equal(wantAt) {
		t.Fatalf("renewal armed for %v, want the half-life %v", got, wantAt)
	}
	if st := u.Status(); !st.RenewAt.Equal(wantAt) || st.Renewals != 0 || st.LastError != nil {
		t.Errorf("Status before renewal = %+v", st)
	}

	sg := signLoop(t, e, u, first)
	waitClosed(t, sg.sawOld, "a signing with the first CA")
	e.clk.Advance(wait - time.Second)
	select {
	case r := <-rot:
		t.Fatalf("rotated before half-life: %+v", r)
	default:
	}
	e.clk.Advance(time.Second)
	r := waitRotation(t, rot)
	waitClosed(t, sg.sawNew, "a signing with the renewed CA")
	okN, failN, firstErr := sg.stop()
	if failN != 0 {
		t.Fatalf("%d of %d signings failed during rotation; first: %v", failN, okN+failN, firstErr)
	}
	if r.Old != first || r.New != u.Certificate() || r.New.Equal(first) || r.Reason != trust.RenewReasonHalfLife {
		t.Errorf("rotation = old %s new %s reason %q; want the first CA replaced at half-life", trust.Fingerprint(r.Old), trust.Fingerprint(r.New), r.Reason)
	}
	if r.New.PublicKey.(*ecdsa.PublicKey).Equal(first.PublicKey) {
		t.Error("renewal reused the old key; each renewal must use a fresh key")
	}
	mustSignAndVerify(t, e, u)
	if st := u.Status(); st.Renewals != 1 || st.LastError != nil || !st.Certificate.Equal(r.New) {
		t.Errorf("Status after renewal = %+v", st)
	}
	// The loop re-arms for the new CA's half-life.
	next := e.clk.waitArmed(t)
	if want, _ := trust.RenewAt(r.New, e.clk.Now()); !e.clk.Now().Add(next).Equal(want) {
		t.Errorf("re-armed for %v, want %v", e.clk.Now().Add(next), want)
	}
}

func TestRunRetriesFailedRenewalAndKeepsLastGoodCA(t *testing.T) {
	e := newEnv(t, idCW)
	rot := make(chan spire.Rotation, 4)
	u := newUpstream(t, e, func(o *spire.UpstreamOptions) {
		o.RetryInterval = time.Minute
		o.OnRotate = func(r spire.Rotation) { rot <- r }
	})
	first := u.Certificate()
	<-rot // the initial CA
	e.srv.SetDownstreamHook(func(crypto.PublicKey, *svidv1.NewDownstreamX509CAResponse) (*svidv1.NewDownstreamX509CAResponse, error) {
		return nil, status.Error(codes.Internal, "datastore is down")
	})
	stopRun := startRun(t, u)
	defer stopRun()
	e.clk.Advance(e.clk.waitArmed(t))
	if d := e.clk.waitArmed(t); d != time.Minute {
		t.Fatalf("after a failed renewal the loop waits %v, want RetryInterval 1m", d)
	}
	st := u.Status()
	if st.LastError == nil || status.Code(st.LastError) != codes.Internal || !strings.Contains(st.LastError.Error(), "datastore is down") {
		t.Errorf("Status.LastError = %v, want SPIRE's Internal error", st.LastError)
	}
	if u.Certificate() != first {
		t.Fatal("a failed renewal replaced the CA")
	}
	mustSignAndVerify(t, e, u)

	e.srv.SetDownstreamHook(nil)
	e.clk.Advance(time.Minute)
	r := waitRotation(t, rot)
	if r.Old != first || r.Reason != "retry after failed renewal" {
		t.Errorf("rotation after retry = %+v", r)
	}
	if st := u.Status(); st.LastError != nil || st.Renewals != 1 {
		t.Errorf("Status after successful retry = %+v", st)
	}
}

func TestRenewErrorsKeepLastGoodCA(t *testing.T) {
	otherTD := spiffeid.RequireTrustDomainFromString("other.test")
	forge := func(f func(s *fakespire.Server, pub crypto.PublicKey, resp *svidv1.NewDownstreamX509CAResponse) error) func(*env) {
		return func(e *env) {
			e.srv.SetDownstreamHook(func(pub crypto.PublicKey, resp *svidv1.NewDownstreamX509CAResponse) (*svidv1.NewDownstreamX509CAResponse, error) {
				if err := f(e.srv, pub, resp); err != nil {
					return nil, err
				}
				return resp, nil
			})
		}
	}
	replaceCA := func(uri *url.URL, ttl time.Duration, isCA bool, wrongKey bool) func(*env) {
		return forge(func(s *fakespire.Server, pub crypto.PublicKey, resp *svidv1.NewDownstreamX509CAResponse) error {
			if wrongKey {
				k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				pub = k.Public()
			}
			c, err := s.SignCA(pub, uri, ttl, isCA)
			if err != nil {
				return err
			}
			resp.CaCertChain[0] = c.Raw
			return nil
		})
	}
	tdURI := tdSPIRE.ID().URL()
	for _, tc := range []struct {
		name    string
		breakIt func(*env)
		is      []error
		code    codes.Code
		msg     string
	}{
		{name: "SPIRE unavailable", breakIt: func(e *env) { e.srv.Stop() }, is: []error{spire.ErrUnavailable}, code: codes.Unavailable, msg: "check the SPIRE server address"},
		{name: "permission denied", breakIt: func(e *env) { e.srv.RemoveDownstream(idCW) }, is: []error{spire.ErrPermissionDenied}, code: codes.PermissionDenied, msg: "caller is not a downstream workload"},
		{name: "cert is not a CA", breakIt: replaceCA(tdURI, 2*time.Hour, false, false), is: []error{spire.ErrMalformedCA}, msg: "is not a CA certificate"},
		{name: "wrong trust domain", breakIt: replaceCA(otherTD.ID().URL(), 2*time.Hour, true, false), is: []error{spire.ErrMalformedCA, trust.ErrForeignTrustDomain}, msg: `is for trust domain "other.test"`},
		{name: "SPIFFE ID with a path", breakIt: replaceCA(spiffeid.RequireFromPath(tdSPIRE, "/x").URL(), 2*time.Hour, true, false), is: []error{spire.ErrMalformedCA}, msg: "with no path"},
		{name: "no SPIFFE ID", breakIt: replaceCA(nil, 2*time.Hour, true, false), is: []error{spire.ErrMalformedCA}, msg: "has 0 URI SANs"},
		{name: "another public key", breakIt: replaceCA(tdURI, 2*time.Hour, true, true), is: []error{spire.ErrMalformedCA}, msg: "another public key"},
		{name: "about to expire", breakIt: replaceCA(tdURI, 30*time.Second, true, false), is: []error{spire.ErrMalformedCA, trust.ErrCAExpired}, msg: "valid for at least 1m0s more"},
		{name: "empty chain", breakIt: forge(func(_ *fakespire.Server, _ crypto.PublicKey, r *svidv1.NewDownstreamX509CAResponse) error {
			r.CaCertChain = nil
			return nil
		}), is: []error{spire.ErrMalformedCA}, msg: "ca_cert_chain is empty"},
		{name: "no authorities", breakIt: forge(func(_ *fakespire.Server, _ crypto.PublicKey, r *svidv1.NewDownstreamX509CAResponse) error {
			r.X509Authorities = nil
			return nil
		}), is: []error{spire.ErrMalformedCA}, msg: "x509_authorities is empty"},
		{name: "garbage DER", breakIt: forge(func(_ *fakespire.Server, _ crypto.PublicKey, r *svidv1.NewDownstreamX509CAResponse) error {
			r.CaCertChain[1] = []byte("junk")
			return nil
		}), is: []error{spire.ErrMalformedCA}, msg: "ca_cert_chain[1] is not a DER X.509 certificate"},
		{name: "does not chain to authorities", breakIt: forge(func(_ *fakespire.Server, _ crypto.PublicKey, r *svidv1.NewDownstreamX509CAResponse) error {
			other, err := trust.NewSelfSignedCA(tdSPIRE, trust.CAOptions{})
			if err != nil {
				return err
			}
			r.X509Authorities = [][]byte{other.Certificate().Raw}
			return nil
		}), is: []error{spire.ErrMalformedCA}, msg: "does not chain to x509_authorities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, idCW)
			u := newUpstream(t, e, nil)
			good := u.Certificate()
			tc.breakIt(e)

			err := u.Renew(testCtx(t))
			if err == nil {
				t.Fatal("Renew succeeded, want error")
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("err = %v; want errors.Is %v", err, want)
				}
			}
			if tc.code != codes.OK && status.Code(err) != tc.code {
				t.Errorf("status.Code(err) = %v, want %v", status.Code(err), tc.code)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "NewDownstreamX509CA") {
				t.Errorf("err = %q; want it to name the RPC and contain %q", err, tc.msg)
			}
			if u.Certificate() != good {
				t.Fatal("the failed renewal replaced the last good CA")
			}
			if st := u.Status(); st.LastError == nil {
				t.Error("Status.LastError is nil after a failed renewal")
			}
			mustSignAndVerify(t, e, u)
		})
	}
}

func TestNewUpstreamCAFailsWithoutLastGoodCA(t *testing.T) {
	e := newEnv(t, idNobody)
	_, err := spire.NewUpstreamCA(testCtx(t), spire.UpstreamOptions{TrustDomain: tdSPIRE, Conn: e.conn, Now: e.clk.Now})
	if !errors.Is(err, spire.ErrPermissionDenied) || !strings.Contains(err.Error(), "entry create -downstream") {
		t.Fatalf("err = %v, want ErrPermissionDenied with the fix", err)
	}

	// Nothing listens on a port that was just closed.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	conn, err := spire.Dial(addr, nil, e.srv.Bundle(), e.srv.ServerID())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = spire.NewUpstreamCA(testCtx(t), spire.UpstreamOptions{TrustDomain: tdSPIRE, Conn: conn})
	if !errors.Is(err, spire.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("err = %v, want ErrUnavailable naming %s", err, addr)
	}
}

func TestConcurrentRenewAndSign(t *testing.T) {
	e := newEnv(t, idCW)
	u := newUpstream(t, e, nil)
	sg := signLoop(t, e, u, u.Certificate())
	waitClosed(t, sg.sawOld, "a signing with the first CA")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := u.Renew(testCtx(t)); err != nil {
				t.Errorf("Renew: %v", err)
			}
		})
	}
	wg.Wait()
	waitClosed(t, sg.sawNew, "a signing with a renewed CA")
	if okN, failN, err := sg.stop(); failN != 0 {
		t.Fatalf("%d of %d signings failed during concurrent renewals: %v", failN, okN+failN, err)
	}
	if st := u.Status(); st.Renewals != 4 {
		t.Errorf("Renewals = %d, want 4", st.Renewals)
	}
}

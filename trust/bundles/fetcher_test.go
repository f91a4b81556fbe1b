package bundles

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/trust"
)

// peerFixture is one peer trust domain with a bundle endpoint on 127.0.0.1,
// and a local control plane whose Fetcher federates with it.
type peerFixture struct {
	ca      *trust.CA
	srv     *docServer
	set     *Set
	f       *Fetcher
	reg     *prometheus.Registry
	clk     *fakeClock
	webPool *x509.CertPool
	cfg     PeerConfig
}

type fixtureOpts struct {
	ca      *trust.CA    // nil: a new CA for tdPeer
	handler http.Handler // nil: serve docServer.doc
	fetcher FetcherOptions
}

func newPeerFixture(t testing.TB, profile Profile, o fixtureOpts) *peerFixture {
	t.Helper()
	fx := &peerFixture{ca: o.ca, reg: prometheus.NewRegistry(), clk: newFakeClock(time.Now())}
	if fx.ca == nil {
		fx.ca = mustCA(t, tdPeer, nil)
	}
	var cert *tls.Certificate
	fx.cfg = PeerConfig{TrustDomain: tdPeer, Profile: profile}
	switch profile {
	case ProfileHTTPSSPIFFE:
		cert = svidCert(mustSVID(t, fx.ca, ControlPlaneID(tdPeer)))
		fx.cfg.EndpointID = ControlPlaneID(tdPeer)
		fx.cfg.Bootstrap = spiffebundle.FromX509Authorities(tdPeer, fx.ca.Bundle().X509Authorities())
	case ProfileHTTPSWeb:
		cert, fx.webPool = webCert(t)
		fx.cfg.WebRoots = fx.webPool
	}
	fx.srv = newDocServer(t, cert, o.handler)
	fx.srv.setDoc(marshalBundle(t, tdPeer, fx.ca.Bundle().X509Authorities(), 10, 2*time.Minute))
	fx.cfg.URL = fx.srv.URL()
	fx.set = mustSet(t, mustAuthority(t, mustCA(t, tdLocal, nil), AuthorityOptions{}))
	opts := o.fetcher
	opts.Clock, opts.Registerer = fx.clk, fx.reg
	f, err := NewFetcher(fx.set, []PeerConfig{fx.cfg}, opts)
	if err != nil {
		t.Fatalf("NewFetcher: %v", err)
	}
	fx.f = f
	return fx
}

func (fx *peerFixture) fetch(t *testing.T) (Status, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return fx.f.FetchOnce(ctx, tdPeer)
}

func (fx *peerFixture) refused(r Reason) float64 {
	return testutil.ToFloat64(fx.f.refusedTotal.WithLabelValues(tdPeer.Name(), string(r)))
}

// run starts the fetcher and returns a function that stops it and waits.
func (fx *peerFixture) run(t *testing.T) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan error, 1)
	go func() { done <- fx.f.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// TestFetcherInterop: a bundle served by go-spiffe's federation.NewHandler is
// accepted with both profiles, lands in the Set, and the status says so.
func TestFetcherInterop(t *testing.T) {
	for _, profile := range []Profile{ProfileHTTPSSPIFFE, ProfileHTTPSWeb} {
		t.Run(string(profile), func(t *testing.T) {
			ca := mustCA(t, tdPeer, nil)
			served := spiffebundle.FromX509Authorities(tdPeer, ca.Bundle().X509Authorities())
			served.SetSequenceNumber(3)
			served.SetRefreshHint(2 * time.Minute)
			h, err := federation.NewHandler(tdPeer, served)
			if err != nil {
				t.Fatal(err)
			}
			fx := newPeerFixture(t, profile, fixtureOpts{ca: ca, handler: h})
			wake, unsubscribe := fx.set.Subscribe()
			defer unsubscribe()
			st, err := fx.fetch(t)
			if err != nil {
				t.Fatalf("FetchOnce: %v", err)
			}
			got, err := fx.set.GetBundleForTrustDomain(tdPeer)
			if err != nil || !got.Equal(served) {
				t.Fatalf("set holds %v (err %v), want the served bundle", got, err)
			}
			select {
			case <-wake:
			default:
				t.Fatal("accepting the bundle did not wake the set's subscriber")
			}
			now := fx.clk.Now()
			want := Status{
				TrustDomain: tdPeer, URL: fx.cfg.URL, Profile: profile, EndpointID: fx.cfg.EndpointID,
				LastRefresh: now, LastAttempt: now, Sequence: 3, HasSequence: true, RefreshHint: 2 * time.Minute,
				Expiry: ca.Certificate().NotAfter, Refreshes: 1, Healthy: true,
			}
			ps, _ := fx.f.PeerStatus(tdPeer)
			st.Healthy = ps.Healthy
			if st != want || ps != want {
				t.Fatalf("status\n got %+v\nwant %+v", ps, want)
			}
			// The same bundle again changes nothing in the set.
			if _, err := fx.fetch(t); err != nil {
				t.Fatal(err)
			}
			select {
			case <-wake:
				t.Fatal("an unchanged bundle woke the set's subscriber")
			default:
			}
			if got := testutil.ToFloat64(fx.f.refreshedTotal.WithLabelValues(tdPeer.Name())); got != 2 {
				t.Fatalf("refreshes counter %v, want 2", got)
			}
		})
	}
}

// TestFetcherRefusals: each bad document or endpoint is refused with a
// precise error, counted by reason, and the last good bundle stays in use.
func TestFetcherRefusals(t *testing.T) {
	type env struct {
		t  *testing.T
		fx *peerFixture
	}
	doc := func(e env, roots []*x509.Certificate, seq uint64) []byte {
		return marshalBundle(e.t, tdPeer, roots, seq, time.Minute)
	}
	expired := func() time.Time { return time.Now().Add(-2 * 366 * 24 * time.Hour) }
	tests := []struct {
		name      string
		profile   Profile
		maxBytes  int64
		change    func(e env)
		want      Reason
		wantField string
		wantText  string
	}{
		{name: "not a document", change: func(e env) { e.fx.srv.setDoc([]byte("<html>hello</html>")) }, want: ReasonParse, wantField: "document", wantText: "unable to parse JWKS"},
		{name: "no x509 authorities", change: func(e env) { e.fx.srv.setDoc([]byte(`{"keys":[]}`)) }, want: ReasonNoAuthorities, wantField: "keys"},
		{name: "wrong trust domain", change: func(e env) {
			e.fx.srv.setDoc(doc(e, mustCA(e.t, tdOther, nil).Bundle().X509Authorities(), 11))
		}, want: ReasonTrustDomain, wantField: "URI SAN", wantText: `names trust domain "other.test", not "peer.test"`},
		{name: "leaf certificate as authority", change: func(e env) {
			leaf := mustSVID(e.t, e.fx.ca, spiffeid.RequireFromPath(tdPeer, "/ns/a/sa/b")).Certificates[0]
			e.fx.srv.setDoc(doc(e, []*x509.Certificate{leaf}, 11))
		}, want: ReasonNotCA, wantField: "x509-svid authority 0", wantText: "CA:TRUE"},
		{name: "every authority expired", change: func(e env) {
			e.fx.srv.setDoc(doc(e, mustCA(e.t, tdPeer, expired).Bundle().X509Authorities(), 11))
		}, want: ReasonExpired, wantField: "x509-svid authorities"},
		{name: "sequence goes backwards", change: func(e env) {
			e.fx.srv.setDoc(doc(e, e.fx.ca.Bundle().X509Authorities(), 9))
		}, want: ReasonSequenceBackwards, wantField: "spiffe_sequence", wantText: "served 9 after 10"},
		{name: "sequence reused for other roots", change: func(e env) {
			roots := append(e.fx.ca.Bundle().X509Authorities(), mustCA(e.t, tdPeer, nil).Certificate())
			e.fx.srv.setDoc(doc(e, roots, 10))
		}, want: ReasonSequenceReused, wantField: "spiffe_sequence"},
		{name: "http status", change: func(e env) { e.fx.srv.status.Store(http.StatusNotFound) }, want: ReasonHTTPStatus, wantText: "404"},
		{name: "too large", maxBytes: 2048, change: func(e env) {
			e.fx.srv.setDoc([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", 4096) + `"}`))
		}, want: ReasonTooLarge, wantText: "2048 bytes"},
		{name: "tampered: other root, endpoint SVID from it", change: func(e env) {
			impostor := mustCA(e.t, tdPeer, nil)
			e.fx.srv.cert.Store(svidCert(mustSVID(e.t, impostor, ControlPlaneID(tdPeer))))
			e.fx.srv.setDoc(doc(e, impostor.Bundle().X509Authorities(), 11))
		}, want: ReasonAuth, wantField: "endpoint SVID", wantText: "certificate signed by unknown authority"},
		{name: "endpoint SVID with the wrong ID", change: func(e env) {
			e.fx.srv.cert.Store(svidCert(mustSVID(e.t, e.fx.ca, spiffeid.RequireFromPath(tdPeer, "/ns/x/sa/y"))))
		}, want: ReasonAuth, wantField: "endpoint SVID", wantText: "want spiffe://peer.test/causeway/control-plane"},
		{name: "web certificate not trusted", profile: ProfileHTTPSWeb, change: func(e env) {
			other, _ := webCert(e.t)
			e.fx.srv.cert.Store(other)
		}, want: ReasonAuth, wantField: "endpoint certificate"},
		{name: "endpoint down", change: func(e env) { e.fx.srv.srv.Close() }, want: ReasonTransport, wantField: "endpoint URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.profile == "" {
				tc.profile = ProfileHTTPSSPIFFE
			}
			var logs bytes.Buffer
			var logMu sync.Mutex
			logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
			fx := newPeerFixture(t, tc.profile, fixtureOpts{fetcher: FetcherOptions{MaxDocumentBytes: tc.maxBytes, Logger: logger}})
			if _, err := fx.fetch(t); err != nil {
				t.Fatalf("first fetch: %v", err)
			}
			good, _ := fx.set.Federated(tdPeer)
			tc.change(env{t, fx})
			st, err := fx.fetch(t)
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("FetchOnce = %v, want a *RefusedError", err)
			}
			if re.Reason != tc.want || !strings.Contains(re.Field, tc.wantField) || re.Fix == "" {
				t.Fatalf("refused with reason %q field %q fix %q; want reason %q field ~%q and a fix", re.Reason, re.Field, re.Fix, tc.want, tc.wantField)
			}
			for _, s := range []string{"peer.test", fx.cfg.URL, tc.wantText} {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not mention %q", err, s)
				}
			}
			logMu.Lock()
			logged := logs.String()
			logMu.Unlock()
			if !strings.Contains(logged, "refused a peer's bundle") || !strings.Contains(logged, "reason="+string(tc.want)) || !strings.Contains(logged, "trust_domain=peer.test") {
				t.Fatalf("the refusal was not logged with peer and reason:\n%s", logged)
			}
			if got := fx.refused(tc.want); got != 1 {
				t.Fatalf("causeway_trust_bundle_refused_total{reason=%q} = %v, want 1", tc.want, got)
			}
			if n, err := testutil.GatherAndCount(fx.reg, "causeway_trust_bundle_refused_total"); err != nil || n != 1 {
				t.Fatalf("registry has %d refused series (err %v), want 1", n, err)
			}
			if cur, _ := fx.set.Federated(tdPeer); !cur.Equal(good) {
				t.Fatal("the set no longer holds the last good bundle")
			}
			ps, _ := fx.f.PeerStatus(tdPeer)
			if ps.Healthy || ps.LastError == nil || st.ConsecutiveFailures != 1 || ps.Sequence != 10 || ps.Refreshes != 1 {
				t.Fatalf("status after refusal: %+v", ps)
			}
		})
	}
}

// TestFetcherRefreshHint: with a fake clock, the next fetch is scheduled at
// the served refresh hint, and happens exactly when it has elapsed.
func TestFetcherRefreshHint(t *testing.T) {
	fx := newPeerFixture(t, ProfileHTTPSSPIFFE, fixtureOpts{})
	stop := fx.run(t)
	defer stop()
	refreshes := func(n uint64) func() bool {
		return func() bool { s, _ := fx.f.PeerStatus(tdPeer); return s.Refreshes == n && len(fx.clk.pending()) == 1 }
	}
	waitFor(t, "first refresh", refreshes(1))
	if p := fx.clk.pending(); p[0] != 2*time.Minute {
		t.Fatalf("next fetch scheduled in %v, want the 2m refresh hint", p[0])
	}
	st, _ := fx.f.PeerStatus(tdPeer)
	if want := fx.clk.Now().Add(2 * time.Minute); !st.NextAttempt.Equal(want) {
		t.Fatalf("NextAttempt %v, want %v", st.NextAttempt, want)
	}
	fx.srv.setDoc(marshalBundle(t, tdPeer, fx.ca.Bundle().X509Authorities(), 11, 45*time.Second))
	fx.clk.Advance(2*time.Minute - time.Second)
	if hits := fx.srv.hits.Load(); hits != 1 {
		t.Fatalf("%d fetches before the hint elapsed, want 1", hits)
	}
	fx.clk.Advance(time.Second)
	waitFor(t, "second refresh", refreshes(2))
	if p := fx.clk.pending(); p[0] != 45*time.Second {
		t.Fatalf("next fetch scheduled in %v, want the new 45s hint", p[0])
	}
	if st, _ := fx.f.PeerStatus(tdPeer); st.Sequence != 11 || !st.Healthy {
		t.Fatalf("status after second refresh: %+v", st)
	}
	// RefreshNow fetches without waiting for the timer.
	if err := fx.f.RefreshNow(tdPeer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refresh on demand", refreshes(3))
}

func TestNextDelay(t *testing.T) {
	opts := FetcherOptions{MinRefresh: 30 * time.Second, MaxRefresh: 10 * time.Minute, DefaultRefresh: 4 * time.Minute, RetryInitial: time.Second, RetryMax: 16 * time.Second}
	tests := []struct {
		name     string
		hint     time.Duration // 0: none
		failures int
		rand     float64
		want     time.Duration
	}{
		{name: "hint honoured", hint: 2 * time.Minute, want: 2 * time.Minute},
		{name: "hint below min", hint: time.Second, want: 30 * time.Second},
		{name: "hint above max", hint: 5 * time.Hour, want: 10 * time.Minute},
		{name: "no hint", want: 4 * time.Minute},
		{name: "first retry, low jitter", hint: time.Hour, failures: 1, rand: 0, want: 500 * time.Millisecond},
		{name: "first retry, high jitter", hint: time.Hour, failures: 1, rand: 0.5, want: 750 * time.Millisecond},
		{name: "third retry", hint: time.Hour, failures: 3, rand: 0, want: 2 * time.Second},
		{name: "retry capped", hint: time.Hour, failures: 40, rand: 0, want: 8 * time.Second},
		{name: "retry never beyond refresh", hint: 30 * time.Second, failures: 40, rand: 0.99, want: 30*time.Second - 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.Rand = func() float64 { return tc.rand }
			o, err := o.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			f := &Fetcher{opts: o}
			p := &peer{}
			if tc.hint != 0 {
				b := spiffebundle.New(tdPeer)
				b.SetRefreshHint(tc.hint)
				p.current.Store(b)
			}
			var err2 error
			if tc.failures > 0 {
				err2 = errors.New("x")
			}
			got := f.nextDelay(p, &Status{ConsecutiveFailures: tc.failures}, err2)
			if tc.name == "retry never beyond refresh" {
				if got > tc.want {
					t.Fatalf("delay %v above the refresh interval %v", got, tc.want)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("delay %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFetcherHangingPeer: a peer that accepts and never answers does not
// delay another peer's refreshes.
func TestFetcherHangingPeer(t *testing.T) {
	good := newPeerFixture(t, ProfileHTTPSWeb, fixtureOpts{})
	hangURL, accepted := hangingListener(t)
	hang := PeerConfig{TrustDomain: tdOther, URL: hangURL, Profile: ProfileHTTPSWeb, WebRoots: good.webPool}
	clk := newFakeClock(time.Now())
	set := mustSet(t, mustAuthority(t, mustCA(t, tdLocal, nil), AuthorityOptions{}))
	f, err := NewFetcher(set, []PeerConfig{good.cfg, hang}, FetcherOptions{Clock: clk, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitFor(t, "the hanging peer to be connected to", func() bool { return accepted.Load() >= 1 })
	for i := uint64(1); i <= 3; i++ {
		waitFor(t, "good peer refresh", func() bool {
			s, _ := f.PeerStatus(tdPeer)
			return s.Refreshes == i && len(clk.pending()) == 1
		})
		clk.Advance(2 * time.Minute)
	}
	hs, _ := f.PeerStatus(tdOther)
	if !hs.LastAttempt.IsZero() || hs.Healthy {
		t.Fatalf("hanging peer finished a fetch: %+v", hs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	all := f.Status()
	if len(all) != 2 || all[0].TrustDomain != tdOther || all[1].TrustDomain != tdPeer {
		t.Fatalf("Status() not sorted by trust domain: %+v", all)
	}
}

// TestFetcherBackoff: a failing peer is retried with growing, jittered delays.
func TestFetcherBackoff(t *testing.T) {
	fx := newPeerFixture(t, ProfileHTTPSSPIFFE, fixtureOpts{fetcher: FetcherOptions{RetryInitial: time.Second, RetryMax: time.Minute, Rand: func() float64 { return 0 }}})
	fx.srv.status.Store(http.StatusServiceUnavailable)
	stop := fx.run(t)
	defer stop()
	for i, want := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second} {
		waitFor(t, "a retry timer", func() bool {
			s, _ := fx.f.PeerStatus(tdPeer)
			return s.ConsecutiveFailures == i+1 && len(fx.clk.pending()) == 1
		})
		if p := fx.clk.pending(); p[0] != want {
			t.Fatalf("retry %d scheduled in %v, want %v", i+1, p[0], want)
		}
		fx.clk.Advance(want)
	}
	fx.srv.status.Store(http.StatusOK)
	waitFor(t, "recovery", func() bool { s, _ := fx.f.PeerStatus(tdPeer); return s.Healthy && s.ConsecutiveFailures == 0 })
	if got := fx.refused(ReasonHTTPStatus); got != 4 {
		t.Fatalf("refused{http_status} = %v, want 4", got)
	}
}

func TestNewFetcherErrors(t *testing.T) {
	ca := mustCA(t, tdPeer, nil)
	boot := spiffebundle.FromX509Authorities(tdPeer, ca.Bundle().X509Authorities())
	ok := PeerConfig{TrustDomain: tdPeer, URL: "https://127.0.0.1:1/b", Profile: ProfileHTTPSSPIFFE, EndpointID: ControlPlaneID(tdPeer), Bootstrap: boot}
	mod := func(fn func(*PeerConfig)) []PeerConfig { p := ok; fn(&p); return []PeerConfig{p} }
	tests := []struct {
		name    string
		peers   []PeerConfig
		opts    FetcherOptions
		wantErr string
	}{
		{name: "no endpoint ID", peers: mod(func(p *PeerConfig) { p.EndpointID = spiffeid.ID{} }), wantErr: "EndpointID is empty"},
		{name: "endpoint ID of another trust domain", peers: mod(func(p *PeerConfig) { p.EndpointID = ControlPlaneID(tdOther) }), wantErr: "not in the peer's trust domain"},
		{name: "no bootstrap", peers: mod(func(p *PeerConfig) { p.Bootstrap = nil }), wantErr: "Bootstrap is nil"},
		{name: "bootstrap of another trust domain", peers: mod(func(p *PeerConfig) {
			p.Bootstrap = spiffebundle.FromX509Authorities(tdOther, ca.Bundle().X509Authorities())
		}), wantErr: `bundle of trust domain "other.test"`},
		{name: "http URL", peers: mod(func(p *PeerConfig) { p.URL = "http://127.0.0.1/b" }), wantErr: "not an https:// URL"},
		{name: "bad profile", peers: mod(func(p *PeerConfig) { p.Profile = "spiffe" }), wantErr: `Profile is "spiffe"`},
		{name: "local trust domain", peers: mod(func(p *PeerConfig) { p.TrustDomain = tdLocal }), wantErr: "local trust domain"},
		{name: "twice", peers: []PeerConfig{ok, ok}, wantErr: "configured twice"},
		{name: "bad refresh bounds", peers: []PeerConfig{ok}, opts: FetcherOptions{MinRefresh: time.Hour, MaxRefresh: time.Minute}, wantErr: "MinRefresh"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := mustSet(t, mustAuthority(t, mustCA(t, tdLocal, nil), AuthorityOptions{}))
			_, err := NewFetcher(set, tc.peers, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if _, ok := set.Federated(tdPeer); ok {
				t.Fatal("a refused config changed the set")
			}
		})
	}
	t.Run("registry shared", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		set := mustSet(t, mustAuthority(t, mustCA(t, tdLocal, nil), AuthorityOptions{}))
		if _, err := NewFetcher(set, nil, FetcherOptions{Registerer: reg}); err != nil {
			t.Fatal(err)
		}
		if _, err := NewFetcher(set, nil, FetcherOptions{Registerer: reg}); err == nil || !strings.Contains(err.Error(), "own registry") {
			t.Fatalf("second fetcher on one registry: %v", err)
		}
	})
}

// TestSetSources: the Set answers for the local and federated trust domains
// and refuses others.
func TestSetSources(t *testing.T) {
	a := mustAuthority(t, mustCA(t, tdLocal, nil), AuthorityOptions{})
	s := mustSet(t, a)
	peer := spiffebundle.FromX509Authorities(tdPeer, mustCA(t, tdPeer, nil).Bundle().X509Authorities())
	if changed, err := s.SetFederated(peer); !changed || err != nil {
		t.Fatalf("SetFederated = %v, %v", changed, err)
	}
	if _, err := s.SetFederated(a.Bundle()); err == nil {
		t.Fatal("SetFederated accepted the local trust domain")
	}
	if _, err := s.SetFederated(spiffebundle.New(tdOther)); err == nil {
		t.Fatal("SetFederated accepted an empty bundle")
	}
	for _, td := range []spiffeid.TrustDomain{tdLocal, tdPeer} {
		if _, err := s.GetX509BundleForTrustDomain(td); err != nil {
			t.Fatalf("GetX509BundleForTrustDomain(%s): %v", td, err)
		}
		if _, err := s.GetBundleForTrustDomain(td); err != nil {
			t.Fatalf("GetBundleForTrustDomain(%s): %v", td, err)
		}
	}
	if _, err := s.GetX509BundleForTrustDomain(tdOther); !errors.Is(err, ErrUnknownTrustDomain) {
		t.Fatalf("unknown trust domain: %v", err)
	}
	snap := s.Snapshot()
	if len(snap.Federated) != 1 || snap.Local == nil || snap.X509Bundles().Len() != 2 {
		t.Fatalf("snapshot %+v", snap)
	}
	v := s.Version()
	if !s.RemoveFederated(tdPeer) || s.RemoveFederated(tdPeer) || s.Version() != v+1 {
		t.Fatal("RemoveFederated did not remove exactly once")
	}
	ch, cancel := s.Subscribe()
	cancel()
	cancel()
	if _, open := <-ch; open {
		t.Fatal("subscription channel still open after cancel")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

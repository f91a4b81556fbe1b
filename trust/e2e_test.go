package trust_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/causewaymesh/causeway/proxy"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/telemetry"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/bundles"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// This file is issue 5's end-to-end acceptance test, on loopback: two trust
// domains, each with its own CA (trust.CA under bundles.Authority), bundle
// endpoint and fetcher (SPIFFE federation, https_spiffe), SVID issuer
// (trust/issuer over gRPC with TLS) and a workload whose proxy gets its SVID
// from a Rotator. A request from east's client through its outbound proxy
// reaches west's inbound proxy over mutual TLS; then east's root is rotated
// under constant load and not one request may fail.

var (
	east = spiffeid.RequireTrustDomainFromString("east.test")
	west = spiffeid.RequireTrustDomainFromString("west.test")

	clientID = spiffeid.RequireFromString("spiffe://east.test/ns/shop/sa/web")
	serverID = spiffeid.RequireFromString("spiffe://west.test/ns/shop/sa/cart")
)

// wallClock is the wall clock shifted by an offset the test may set, so a
// CA can be made to sign an SVID that has already expired.
type wallClock struct{ offset atomic.Int64 }

func (c *wallClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// fakeClock drives a Rotator's renewals: its timers fire only when the test
// advances it. Its time starts at the wall clock.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       chan time.Time
	at      time.Time
	stopped bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	was := !t.stopped
	t.stopped = true
	return was
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) NewTimer(d time.Duration) issuer.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), at: c.now.Add(d)}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock and fires every timer that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.stopped = true
			t.c <- c.now
		default:
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// swapSVID is an x509svid.Source whose SVID the test can replace (the
// control plane's own SVID, rotated with its root).
type swapSVID struct{ p atomic.Pointer[x509svid.SVID] }

func (s *swapSVID) GetX509SVID() (*x509svid.SVID, error) { return s.p.Load(), nil }

// domain is one cluster's trust machinery.
type domain struct {
	td       spiffeid.TrustDomain
	clock    *wallClock
	auth     *bundles.Authority
	set      *bundles.Set
	cpSVID   *swapSVID
	endpoint string // bundle endpoint URL
	issuer   string // SVID issuer address
	fetcher  *bundles.Fetcher
}

func newCA(t *testing.T, td spiffeid.TrustDomain, clock *wallClock) *trust.CA {
	t.Helper()
	ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newDomain(t *testing.T, ctx context.Context, wg *sync.WaitGroup, td spiffeid.TrustDomain, tokens map[string]spiffeid.ID) *domain {
	t.Helper()
	d := &domain{td: td, clock: &wallClock{}, cpSVID: &swapSVID{}}
	// The CA was made two hours ago, so it can sign an SVID that has
	// already expired (see "an expired SVID is refused").
	d.clock.offset.Store(int64(-2 * time.Hour))
	ca := newCA(t, td, d.clock)
	d.clock.offset.Store(0)
	var err error
	d.auth, err = bundles.NewAuthority(ca, bundles.AuthorityOptions{PublishLead: 1500 * time.Millisecond, RefreshHint: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d.set, err = bundles.NewSet(d.auth); err != nil {
		t.Fatal(err)
	}
	d.issueControlPlaneSVID(t)

	// The SPIFFE bundle endpoint.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.endpoint = "https://" + ln.Addr().String() + "/"
	wg.Go(func() {
		if err := bundles.ServeEndpoint(ctx, ln, d.auth, bundles.EndpointConfig{Profile: bundles.ProfileHTTPSSPIFFE, SVID: d.cpSVID}); err != nil {
			t.Errorf("bundle endpoint of %s: %v", td, err)
		}
	})

	// The SVID issuer, over TLS with the control plane's SVID.
	srv, err := issuer.NewServer(issuer.ServerOptions{
		Signer: issuer.SignerFuncs{SignFunc: d.auth.Sign, BundleFunc: d.auth.X509Bundle},
		Authenticator: issuer.AuthenticatorFunc(func(_ context.Context, token string) (spiffeid.ID, error) {
			if id, ok := tokens[token]; ok {
				return id, nil
			}
			return spiffeid.ID{}, issuer.ErrInvalidToken
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsconfig.TLSServerConfig(d.cpSVID))))
	srv.Register(gs)
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.issuer = iln.Addr().String()
	wg.Go(func() { _ = gs.Serve(iln) })
	context.AfterFunc(ctx, gs.Stop)
	return d
}

// issueControlPlaneSVID (re)issues the control plane's own SVID from the
// active CA: it serves the bundle endpoint and the issuer.
func (d *domain) issueControlPlaneSVID(t *testing.T) {
	t.Helper()
	s, err := d.auth.IssueSVID(bundles.ControlPlaneID(d.td), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d.cpSVID.p.Store(s)
}

// federate makes d fetch peer's bundle.
func (d *domain) federate(t *testing.T, ctx context.Context, wg *sync.WaitGroup, peer *domain) {
	t.Helper()
	f, err := bundles.NewFetcher(d.set, []bundles.PeerConfig{{
		TrustDomain: peer.td, URL: peer.endpoint, Profile: bundles.ProfileHTTPSSPIFFE,
		EndpointID: bundles.ControlPlaneID(peer.td), Bootstrap: peer.auth.Bundle(),
	}}, bundles.FetcherOptions{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	d.fetcher = f
	wg.Go(func() {
		if err := f.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("fetcher of %s: %v", d.td, err)
		}
	})
}

// refresh fetches peer's bundle now and waits until d's set holds exactly
// want as the peer's roots.
func (d *domain) refresh(t *testing.T, ctx context.Context, peer spiffeid.TrustDomain, want []*x509.Certificate) {
	t.Helper()
	if _, err := d.fetcher.FetchOnce(ctx, peer); err != nil {
		t.Fatalf("%s fetching %s's bundle: %v", d.td, peer, err)
	}
	b, ok := d.set.Federated(peer)
	if !ok || !sameCerts(b.X509Authorities(), want) {
		t.Fatalf("%s holds %d roots of %s after a refresh, want %d", d.td, len(b.X509Authorities()), peer, len(want))
	}
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			found = found || x.Equal(y)
		}
		if !found {
			return false
		}
	}
	return true
}

// workload runs an issuer client and rotator for one workload.
func (d *domain) workload(t *testing.T, ctx context.Context, wg *sync.WaitGroup, token string, clock *fakeClock) *issuer.Rotator {
	t.Helper()
	c, err := issuer.NewClient(issuer.ClientConfig{Target: d.issuer, Bundle: d.set, ServerID: bundles.ControlPlaneID(d.td),
		Token: issuer.StaticToken(token), TTL: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r, err := issuer.NewRotator(issuer.RotatorOptions{Fetcher: c, Clock: clock, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = r.Run(ctx) })
	select {
	case <-r.Ready():
	case <-ctx.Done():
		t.Fatalf("no SVID for token %q: %v", token, ctx.Err())
	}
	return r
}

// secrets is what an in-process SDS hands the proxy: the workload's SVID
// ("svid") and the SPIFFE bundle set ("bundles"), one pool per trust domain.
func secrets(r *issuer.Rotator, set *bundles.Set) map[string]*config.Secret {
	tds := map[string]*x509.CertPool{}
	for _, b := range set.Snapshot().X509Bundles().Bundles() {
		p := x509.NewCertPool()
		for _, c := range b.X509Authorities() {
			p.AddCert(c)
		}
		tds[b.TrustDomain().Name()] = p
	}
	return map[string]*config.Secret{
		"svid":    {Name: "svid", Cert: r.Current().TLSCertificate()},
		"bundles": {Name: "bundles", TrustDomains: tds},
	}
}

// serveSDS applies build(secrets) to p now and after every change of the
// SVID or the bundle set, until ctx ends. applied counts the applies.
func serveSDS(ctx context.Context, wg *sync.WaitGroup, p *proxy.Proxy, r *issuer.Rotator, set *bundles.Set, build func(map[string]*config.Secret) *config.Snapshot, applied *atomic.Int64) error {
	if err := p.Apply(build(secrets(r, set))); err != nil {
		return err
	}
	applied.Add(1)
	svids, stopSVID := r.Subscribe()
	sets, stopSet := set.Subscribe()
	wg.Go(func() {
		defer stopSVID()
		defer stopSet()
		for {
			select {
			case <-ctx.Done():
				return
			case <-svids:
			case <-sets:
			}
			if err := p.Apply(build(secrets(r, set))); err == nil {
				applied.Add(1)
			}
		}
	})
	return nil
}

func TestFederatedMTLSAndRootRotationUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	eastD := newDomain(t, ctx, &wg, east, map[string]spiffeid.ID{"tok-web": clientID})
	westD := newDomain(t, ctx, &wg, west, map[string]spiffeid.ID{"tok-cart": serverID})
	eastD.federate(t, ctx, &wg, westD)
	westD.federate(t, ctx, &wg, eastD)
	westD.refresh(t, ctx, east, eastD.auth.Bundle().X509Authorities())
	eastD.refresh(t, ctx, west, westD.auth.Bundle().X509Authorities())

	clientClock := &fakeClock{now: time.Now()}
	clientSVIDs := eastD.workload(t, ctx, &wg, "tok-web", clientClock)
	serverSVIDs := westD.workload(t, ctx, &wg, "tok-cart", &fakeClock{now: time.Now()})

	// West: the app behind an inbound proxy that requires mTLS and admits
	// only east's shop namespace.
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "cart") }))
	t.Cleanup(app.Close)
	westLog := &syncBuf{}
	pw := proxy.New(proxy.Options{DrainTimeout: time.Second, AccessLog: telemetry.NewAccessLog(westLog), Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { pw.Close() })
	var westApplied atomic.Int64
	eastShop := config.Principal{Authenticated: &config.PrincipalName{Name: &config.StringMatch{Kind: config.StringPrefix, Value: "spiffe://east.test/ns/shop/"}}}
	allowEastShop := &config.RBAC{Name: "allow", Action: config.RBACAllow, Policies: []config.RBACPolicy{{
		Name: "shop/east-shop", Permissions: []config.Permission{{Any: true}}, Principals: []config.Principal{eastShop}}}}
	inbound := func(s map[string]*config.Secret) *config.Snapshot {
		return &config.Snapshot{
			Listeners: []*config.Listener{{Name: "inbound", Address: "127.0.0.1:0", Direction: config.Inbound,
				TLS: &config.DownstreamTLS{CertSecret: "svid", ValidationSecret: "bundles", RequireClientCert: true},
				HTTP: &config.HTTPListener{StatPrefix: "inbound", GenerateRequestID: true, Routes: route("app"),
					RBAC: []*config.RBAC{allowEastShop}}}},
			Clusters: map[string]*config.Cluster{"app": {Name: "app", Static: endpoints(app.Listener.Addr().String(), "")}},
			Secrets:  s,
		}
	}
	if err := serveSDS(ctx, &wg, pw, serverSVIDs, westD.set, inbound, &westApplied); err != nil {
		t.Fatal(err)
	}
	westAddr := pw.ListenerAddr("inbound").String()

	// East: the client's outbound proxy, mTLS (HTTP/2) to west, expecting
	// the cart identity.
	eastLog := &syncBuf{}
	pe := proxy.New(proxy.Options{DrainTimeout: time.Second, AccessLog: telemetry.NewAccessLog(eastLog), Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { pe.Close() })
	var eastApplied atomic.Int64
	outbound := func(s map[string]*config.Secret) *config.Snapshot {
		return &config.Snapshot{
			Listeners: []*config.Listener{{Name: "outbound", Address: "127.0.0.1:0",
				HTTP: &config.HTTPListener{StatPrefix: "outbound", GenerateRequestID: true, Routes: route("cart")}}},
			Clusters: map[string]*config.Cluster{"cart": {Name: "cart", Protocol: config.HTTP2,
				TLS: &config.UpstreamTLS{CertSecret: "svid", ValidationSecret: "bundles",
					MatchSANs: []config.StringMatch{{Kind: config.StringExact, Value: serverID.String()}}},
				Static: endpoints(westAddr, serverID.String())}},
			Secrets: s,
		}
	}
	if err := serveSDS(ctx, &wg, pe, clientSVIDs, eastD.set, outbound, &eastApplied); err != nil {
		t.Fatal(err)
	}
	url := "http://" + pe.ListenerAddr("outbound").String() + "/cart"
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	t.Cleanup(hc.CloseIdleConnections)

	t.Run("east calls west over mTLS with the right peer IDs", func(t *testing.T) {
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "cart" {
			t.Fatalf("got %d %q, want 200 cart", resp.StatusCode, body)
		}
		if e := westLog.last(t); e["source_identity"] != clientID.String() {
			t.Errorf("west saw source identity %v, want %s", e["source_identity"], clientID)
		}
		if e := eastLog.last(t); e["destination_identity"] != serverID.String() {
			t.Errorf("east saw destination identity %v, want %s", e["destination_identity"], serverID)
		}
	})

	// dialWest is a workload outside the proxies that presents svid to
	// west's inbound listener directly.
	dialWest := func(svid *x509svid.SVID) error {
		cfg := tlsconfig.MTLSClientConfig(svid, westD.set, tlsconfig.AuthorizeID(serverID))
		cfg.NextProtos = []string{"http/1.1"}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: cfg}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + westAddr + "/cart")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	}
	t.Run("a direct caller with east's SVID is admitted", func(t *testing.T) {
		if err := dialWest(clientSVIDs.Current().X509SVID()); err != nil {
			t.Fatalf("east's own SVID refused: %v", err)
		}
	})
	t.Run("an unknown trust domain is refused", func(t *testing.T) {
		evil := newCA(t, spiffeid.RequireTrustDomainFromString("evil.test"), &wallClock{})
		s, err := evil.IssueSVID(spiffeid.RequireFromString("spiffe://evil.test/ns/shop/sa/web"), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := dialWest(s); err == nil {
			t.Fatal("west admitted an SVID of a trust domain it does not federate with")
		}
	})
	t.Run("a rogue CA claiming east's trust domain is refused", func(t *testing.T) {
		rogue := newCA(t, east, &wallClock{})
		s, err := rogue.IssueSVID(clientID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := dialWest(s); err == nil {
			t.Fatal("west admitted east's identity signed by a CA outside east's bundle")
		}
	})
	t.Run("an expired SVID is refused", func(t *testing.T) {
		eastD.clock.offset.Store(int64(-time.Hour))
		s, err := eastD.auth.IssueSVID(clientID, 2*time.Minute) // valid from -61m to -58m
		eastD.clock.offset.Store(0)
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().Before(s.Certificates[0].NotAfter) {
			t.Fatalf("the SVID is not expired: NotAfter %v", s.Certificates[0].NotAfter)
		}
		if err := dialWest(s); err == nil {
			t.Fatal("west admitted an expired SVID")
		}
	})

	t.Run("rotating east's root under constant load loses no request", func(t *testing.T) {
		oldRoots := eastD.auth.Bundle().X509Authorities()
		oldSVID := clientSVIDs.Current()

		// Constant load: one request every 2ms until told to stop, bounded
		// in count and time; every outcome is counted.
		var ok, failed atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		loadDone := make(chan struct{})
		go func() {
			defer close(loadDone)
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < 30000; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				resp, err := hc.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = errors.New(resp.Status)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
		waitFor(t, ctx, "load running", func() bool { return ok.Load() >= 50 })

		// 1. Prepare: the new root is published, not yet signing. West
		// fetches it, and its proxy gets a bundle with both roots.
		newCA := newCA(t, east, eastD.clock)
		if err := eastD.auth.Prepare(newCA); err != nil {
			t.Fatal(err)
		}
		both := append(append([]*x509.Certificate(nil), oldRoots...), newCA.Certificate())
		applied := westApplied.Load()
		westD.refresh(t, ctx, east, both)
		waitFor(t, ctx, "west's proxy has both roots", func() bool { return westApplied.Load() > applied })

		// 2. Activate once the publish lead has passed; the control plane
		// re-issues its own SVID from the new root.
		waitFor(t, ctx, "publish lead passed", func() bool { return eastD.auth.Activate() == nil })
		eastD.issueControlPlaneSVID(t)

		// 3. The client's SVID renews at its half-life (the rotator's clock
		// is advanced to it) and comes from the new root.
		clientClock.Advance(2 * time.Minute)
		waitFor(t, ctx, "the client's SVID is signed by the new root", func() bool {
			s := clientSVIDs.Current()
			return s != oldSVID && s.Certificates[0].CheckSignatureFrom(newCA.Certificate()) == nil
		})
		waitFor(t, ctx, "more requests with the new SVID", func() bool { return ok.Load() >= 300 })

		// 4. Prune once every SVID of the old root has expired (the test
		// asks for that moment rather than waiting for it); west drops the
		// old root.
		if pruned := eastD.auth.Prune(time.Now().Add(time.Hour)); len(pruned) != 1 {
			t.Fatalf("pruned %d CAs, want the old one", len(pruned))
		}
		applied = westApplied.Load()
		westD.refresh(t, ctx, east, []*x509.Certificate{newCA.Certificate()})
		waitFor(t, ctx, "west's proxy has only the new root", func() bool { return westApplied.Load() > applied })
		done := ok.Load()
		waitFor(t, ctx, "requests after the old root is gone", func() bool { return ok.Load() >= done+200 })
		close(stop)
		<-loadDone

		if n := failed.Load(); n != 0 {
			t.Fatalf("%d of %d requests failed during the rotation; first: %v", n, n+ok.Load(), firstErr.Load())
		}
		t.Logf("rotation under load: %d requests, 0 failed", ok.Load())

		// The old root no longer vouches for anything; the new SVID does.
		if err := dialWest(oldSVID.X509SVID()); err == nil {
			t.Error("west still admits an SVID of the pruned root")
		}
		if err := dialWest(clientSVIDs.Current().X509SVID()); err != nil {
			t.Errorf("west refuses the SVID of the new root: %v", err)
		}
	})
}

func route(cluster string) *config.RouteConfig {
	return &config.RouteConfig{Name: "inline", VirtualHosts: []*config.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*config.Route{{Match: config.RouteMatch{PathKind: config.PathPrefix, Path: "/", CaseSensitive: true},
			Forward: &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: cluster, Weight: 1}}}}}}}}
}

func endpoints(addr, identity string) *config.LoadAssignment {
	return &config.LoadAssignment{Localities: []*config.LocalityEndpoints{{
		Endpoints: []config.Endpoint{{Address: addr, Health: config.Healthy, Identity: identity}}}}}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// syncBuf collects access-log lines.
type syncBuf struct {
	mu  sync.Mutex
	buf []byte
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	return len(p), nil
}

// last returns the last JSON access-log entry.
func (s *syncBuf) last(t *testing.T) map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := bytes.Split(bytes.TrimSpace(s.buf), []byte("\n"))
	var e map[string]any
	if err := json.Unmarshal(lines[len(lines)-1], &e); err != nil {
		t.Fatalf("access log %q: %v", s.buf, err)
	}
	return e
}

package bundles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Defaults for FetcherOptions.
const (
	DefaultMinRefresh       = 10 * time.Second
	DefaultMaxRefresh       = time.Hour
	DefaultRefresh          = 5 * time.Minute // when a peer serves no refresh hint
	DefaultRetryInitial     = time.Second
	DefaultRetryMax         = 5 * time.Minute
	DefaultFetchTimeout     = 30 * time.Second
	DefaultMaxDocumentBytes = 1 << 20
)

// PeerConfig is one federated trust domain and its bundle endpoint.
type PeerConfig struct {
	TrustDomain spiffeid.TrustDomain
	// URL is the bundle endpoint, https://...
	URL     string
	Profile Profile
	// EndpointID is the SPIFFE ID the endpoint must present (https_spiffe
	// only); for a Causeway peer, ControlPlaneID(TrustDomain). It must be in
	// TrustDomain.
	EndpointID spiffeid.ID
	// Bootstrap is the peer's bundle obtained out of band (for example from
	// `causeway link`). https_spiffe needs it to authenticate the first fetch
	// unless the Set already holds a bundle for TrustDomain; https_web may use
	// it to trust the peer before the first fetch. It is put in the Set.
	Bootstrap *spiffebundle.Bundle
	// WebRoots authenticate an https_web endpoint; nil means the system roots.
	WebRoots *x509.CertPool
}

// FetcherOptions tunes a Fetcher. The zero value is valid.
type FetcherOptions struct {
	// MinRefresh and MaxRefresh bound the peer's refresh hint; a peer
	// without a hint is refreshed every DefaultRefresh (clamped likewise).
	MinRefresh, MaxRefresh, DefaultRefresh time.Duration
	// RetryInitial and RetryMax bound the exponential backoff after a failed
	// fetch; each delay is drawn uniformly from [d/2, d] and never exceeds
	// the refresh interval.
	RetryInitial, RetryMax time.Duration
	// Timeout bounds one fetch (connect, TLS, request, body).
	Timeout time.Duration
	// MaxDocumentBytes bounds the document size.
	MaxDocumentBytes int64
	// Clock drives timers and timestamps; nil means SystemClock().
	Clock Clock
	// Rand returns a float in [0, 1) for jitter; it is called from several
	// goroutines. nil means math/rand/v2.Float64.
	Rand func() float64
	// Registerer receives the fetcher's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives one warning per refused document (peer, URL, reason,
	// field, fix) and one info line per accepted change; nil discards.
	Logger *slog.Logger
}

func (o FetcherOptions) withDefaults() (FetcherOptions, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.MinRefresh, DefaultMinRefresh)
	def(&o.MaxRefresh, DefaultMaxRefresh)
	def(&o.DefaultRefresh, DefaultRefresh)
	def(&o.RetryInitial, DefaultRetryInitial)
	def(&o.RetryMax, DefaultRetryMax)
	def(&o.Timeout, DefaultFetchTimeout)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxDocumentBytes == 0 {
		o.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	switch {
	case o.MinRefresh < 0 || o.MaxRefresh < o.MinRefresh:
		return o, fmt.Errorf("bundles: FetcherOptions.MinRefresh %v and MaxRefresh %v: need 0 <= MinRefresh <= MaxRefresh", o.MinRefresh, o.MaxRefresh)
	case o.RetryInitial <= 0 || o.RetryMax < o.RetryInitial:
		return o, fmt.Errorf("bundles: FetcherOptions.RetryInitial %v and RetryMax %v: need 0 < RetryInitial <= RetryMax", o.RetryInitial, o.RetryMax)
	case o.DefaultRefresh < 0 || o.Timeout < 0 || o.MaxDocumentBytes < 0:
		return o, errors.New("bundles: FetcherOptions.DefaultRefresh, Timeout and MaxDocumentBytes must not be negative (0 means the default)")
	}
	if o.Clock == nil {
		o.Clock = SystemClock()
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return o, nil
}

// Status is the state of the trust relationship with one peer.
type Status struct {
	TrustDomain spiffeid.TrustDomain
	URL         string
	Profile     Profile
	EndpointID  spiffeid.ID // https_spiffe only
	// LastRefresh is when a bundle was last accepted; zero if never.
	LastRefresh time.Time
	// LastAttempt is when the last fetch ended; zero if none yet.
	LastAttempt time.Time
	// NextAttempt is when the next fetch is scheduled; zero if not running.
	NextAttempt time.Time
	// Sequence is the spiffe_sequence of the bundle in use (HasSequence
	// false if it carries none, or there is no bundle).
	Sequence    uint64
	HasSequence bool
	// RefreshHint is the bundle's spiffe_refresh_hint; 0 if it has none.
	RefreshHint time.Duration
	// Expiry is the earliest NotAfter of the bundle's roots; zero if there is
	// no bundle.
	Expiry time.Time
	// LastError is why the last attempt failed (a *RefusedError), or nil.
	LastError           error
	ConsecutiveFailures int
	Refreshes           uint64 // bundles accepted
	// Healthy: the last attempt succeeded and the bundle in use has not
	// expired (as of the Status call).
	Healthy bool
}

// authError marks a TLS peer verification failure of an https_spiffe fetch.
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

type peer struct {
	cfg    PeerConfig
	client *http.Client
	kick   chan struct{}

	fetchMu sync.Mutex                          // one fetch at a time per peer
	current atomic.Pointer[spiffebundle.Bundle] // last good (or bootstrap) bundle
	status  atomic.Pointer[Status]              // replaced, never modified
}

// Fetcher keeps the bundle of each peer fresh in a Set: one goroutine per
// peer, so an unreachable or hanging peer never delays another.
type Fetcher struct {
	set     *Set
	opts    FetcherOptions
	peers   []*peer // sorted by trust domain name
	byTD    map[spiffeid.TrustDomain]*peer
	running atomic.Bool

	refusedTotal   *prometheus.CounterVec
	refreshedTotal *prometheus.CounterVec
}

// NewFetcher validates peers, puts their bootstrap bundles in set (where set
// does not hold one already) and registers the metrics. Call Run to start.
func NewFetcher(set *Set, peers []PeerConfig, opts FetcherOptions) (*Fetcher, error) {
	if set == nil {
		return nil, errors.New("bundles: NewFetcher: set is nil")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	f := &Fetcher{
		set: set, opts: opts, byTD: map[spiffeid.TrustDomain]*peer{},
		refusedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_trust_bundle_refused_total",
			Help: "Fetches of a peer's SPIFFE bundle that failed or were refused, by peer trust domain and reason; the last good bundle stays in use.",
		}, []string{"trust_domain", "reason"}),
		refreshedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_trust_bundle_refreshes_total",
			Help: "Bundles fetched from a peer's SPIFFE bundle endpoint and accepted, by peer trust domain.",
		}, []string{"trust_domain"}),
	}
	now := opts.Clock.Now()
	for i, pc := range peers {
		p, err := f.newPeer(pc, now)
		if err != nil {
			return nil, fmt.Errorf("bundles: NewFetcher: peers[%d]: %w", i, err)
		}
		if _, dup := f.byTD[pc.TrustDomain]; dup {
			return nil, fmt.Errorf("bundles: NewFetcher: peers[%d]: trust domain %q is configured twice; keep one bundle endpoint per trust domain", i, pc.TrustDomain)
		}
		f.byTD[pc.TrustDomain] = p
		f.peers = append(f.peers, p)
	}
	sort.Slice(f.peers, func(i, j int) bool { return f.peers[i].cfg.TrustDomain.Name() < f.peers[j].cfg.TrustDomain.Name() })
	// Bootstrap only once every peer is valid, so a refused config leaves the
	// set untouched.
	for _, p := range f.peers {
		if b, ok := set.Federated(p.cfg.TrustDomain); ok {
			p.current.Store(b)
		} else if p.cfg.Bootstrap != nil {
			b := p.cfg.Bootstrap.Clone()
			if _, err := set.SetFederated(b); err != nil {
				return nil, fmt.Errorf("bundles: NewFetcher: peer %q bootstrap: %w", p.cfg.TrustDomain, err)
			}
			p.current.Store(b)
		}
		p.status.Store(p.baseStatus())
	}
	if r := opts.Registerer; r != nil {
		if err := r.Register(f.refusedTotal); err != nil {
			return nil, fmt.Errorf("bundles: NewFetcher: registering causeway_trust_bundle_refused_total: %w; give each Fetcher its own registry (or a prometheus.WrapRegistererWith label)", err)
		}
		if err := r.Register(f.refreshedTotal); err != nil {
			r.Unregister(f.refusedTotal)
			return nil, fmt.Errorf("bundles: NewFetcher: registering causeway_trust_bundle_refreshes_total: %w", err)
		}
	}
	return f, nil
}

func (f *Fetcher) newPeer(pc PeerConfig, now time.Time) (*peer, error) {
	if pc.TrustDomain.IsZero() {
		return nil, errors.New("TrustDomain is empty; set it to the peer's trust domain")
	}
	if pc.TrustDomain == f.set.Local().TrustDomain() {
		return nil, fmt.Errorf("TrustDomain %q is the local trust domain; a control plane does not federate with itself", pc.TrustDomain)
	}
	u, err := url.Parse(pc.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("peer %q: URL %q is not an https:// URL with a host; set it to the peer's bundle endpoint", pc.TrustDomain, pc.URL)
	}
	p := &peer{cfg: pc, kick: make(chan struct{}, 1)}
	tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch pc.Profile {
	case ProfileHTTPSSPIFFE:
		if pc.EndpointID.IsZero() {
			return nil, fmt.Errorf("peer %q: EndpointID is empty; https_spiffe needs the SPIFFE ID the endpoint serves with, for a Causeway peer %s", pc.TrustDomain, ControlPlaneID(pc.TrustDomain))
		}
		if !pc.EndpointID.MemberOf(pc.TrustDomain) {
			return nil, fmt.Errorf("peer %q: EndpointID %s is not in the peer's trust domain; it is authenticated with the peer's own bundle", pc.TrustDomain, pc.EndpointID)
		}
		if _, ok := f.set.Federated(pc.TrustDomain); !ok && pc.Bootstrap == nil {
			return nil, fmt.Errorf("peer %q: Bootstrap is nil; https_spiffe authenticates the endpoint with the peer's bundle, so the first one must come out of band (causeway link)", pc.TrustDomain)
		}
		// Verification is done by VerifyPeerCertificate against the peer's
		// current bundle; the Web PKI check does not apply to SVIDs.
		tcfg.InsecureSkipVerify = true
		tcfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			b := p.current.Load()
			if b == nil {
				return &authError{errors.New("no bundle to authenticate the endpoint with")}
			}
			id, _, err := x509svid.ParseAndVerify(raw, b, x509svid.WithTime(f.opts.Clock.Now()))
			if err != nil {
				return &authError{err}
			}
			if id != pc.EndpointID {
				return &authError{fmt.Errorf("endpoint presented SPIFFE ID %s, want %s", id, pc.EndpointID)}
			}
			return nil
		}
	case ProfileHTTPSWeb:
		tcfg.RootCAs = pc.WebRoots
	default:
		return nil, fmt.Errorf("peer %q: Profile is %q; use %q or %q", pc.TrustDomain, pc.Profile, ProfileHTTPSSPIFFE, ProfileHTTPSWeb)
	}
	if pc.Bootstrap != nil {
		if pc.Bootstrap.TrustDomain() != pc.TrustDomain {
			return nil, fmt.Errorf("peer %q: Bootstrap is a bundle of trust domain %q; pass the peer's own bundle", pc.TrustDomain, pc.Bootstrap.TrustDomain())
		}
		if err := checkAuthorities(pc.TrustDomain, pc.Bootstrap.X509Authorities(), now); err != nil {
			return nil, fmt.Errorf("peer %q: bootstrap bundle: %w", pc.TrustDomain, err)
		}
	}
	p.client = &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:        tcfg,
			DialContext:            (&net.Dialer{Timeout: f.opts.Timeout}).DialContext,
			TLSHandshakeTimeout:    f.opts.Timeout,
			DisableKeepAlives:      true, // every fetch re-authenticates the endpoint with the current bundle
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p, nil
}

func (p *peer) baseStatus() *Status {
	s := &Status{TrustDomain: p.cfg.TrustDomain, URL: p.cfg.URL, Profile: p.cfg.Profile, EndpointID: p.cfg.EndpointID}
	if b := p.current.Load(); b != nil {
		s.Sequence, s.HasSequence = b.SequenceNumber()
		s.RefreshHint, _ = b.RefreshHint()
		s.Expiry = earliestNotAfter(b.X509Authorities())
	}
	return s
}

// Run fetches every peer's bundle, each in its own goroutine, until ctx is
// done; it returns nil once they have all stopped. A Fetcher runs once.
func (f *Fetcher) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("bundles: Fetcher.Run called twice; a Fetcher runs once")
	}
	var wg sync.WaitGroup
	for _, p := range f.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.loop(ctx, p)
		}()
	}
	wg.Wait()
	<-ctx.Done() // also without peers, Run lasts as long as ctx
	for _, p := range f.peers {
		p.client.CloseIdleConnections()
	}
	return nil
}

func (f *Fetcher) loop(ctx context.Context, p *peer) {
	for {
		st, err := f.fetch(ctx, p)
		if ctx.Err() != nil {
			return
		}
		d := f.nextDelay(p, st, err)
		next := *st
		next.NextAttempt = f.opts.Clock.Now().Add(d)
		p.status.Store(&next)
		t := f.opts.Clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-p.kick:
			t.Stop()
		}
	}
}

// refreshInterval is how long after a success the next fetch happens.
func (f *Fetcher) refreshInterval(p *peer) time.Duration {
	d := f.opts.DefaultRefresh
	if b := p.current.Load(); b != nil {
		if h, ok := b.RefreshHint(); ok {
			d = h
		}
	}
	return min(max(d, f.opts.MinRefresh), f.opts.MaxRefresh)
}

func (f *Fetcher) nextDelay(p *peer, st *Status, err error) time.Duration {
	interval := f.refreshInterval(p)
	if err == nil {
		return interval
	}
	n := min(st.ConsecutiveFailures, 32)
	d := f.opts.RetryInitial
	for i := 1; i < n && d < f.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, f.opts.RetryMax)
	d = d/2 + time.Duration(f.opts.Rand()*float64(d/2))
	return min(d, interval)
}

// RefreshNow wakes the goroutine of the peer of td to fetch at once. It does
// not wait for the fetch; see FetchOnce for that.
func (f *Fetcher) RefreshNow(td spiffeid.TrustDomain) error {
	p, ok := f.byTD[td]
	if !ok {
		return fmt.Errorf("bundles: RefreshNow: no peer with trust domain %q is configured", td)
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

// FetchOnce fetches the bundle of the peer of td now, in the caller's
// goroutine, and returns the resulting status and the fetch's error (a
// *RefusedError). It is serialised with the peer's own fetches.
func (f *Fetcher) FetchOnce(ctx context.Context, td spiffeid.TrustDomain) (Status, error) {
	p, ok := f.byTD[td]
	if !ok {
		return Status{}, fmt.Errorf("bundles: FetchOnce: no peer with trust domain %q is configured", td)
	}
	st, err := f.fetch(ctx, p)
	return *st, err
}

// fetch runs one fetch and records its outcome in the peer's status. A
// fetch cut short by ctx is not recorded.
func (f *Fetcher) fetch(ctx context.Context, p *peer) (*Status, error) {
	p.fetchMu.Lock()
	defer p.fetchMu.Unlock()
	b, rerr := f.get(ctx, p)
	prev := p.status.Load()
	if rerr != nil && ctx.Err() != nil {
		return prev, rerr
	}
	now := f.opts.Clock.Now()
	st := p.baseStatus()
	st.LastRefresh, st.Refreshes, st.NextAttempt = prev.LastRefresh, prev.Refreshes, prev.NextAttempt
	st.LastAttempt = now
	if rerr != nil {
		rerr.URL = p.cfg.URL
		f.refusedTotal.WithLabelValues(p.cfg.TrustDomain.Name(), string(rerr.Reason)).Inc()
		f.opts.Logger.Warn("bundles: refused a peer's bundle; keeping the last good one",
			"trust_domain", p.cfg.TrustDomain.Name(), "url", p.cfg.URL, "reason", string(rerr.Reason), "err", rerr)
		st.LastError, st.ConsecutiveFailures = rerr, prev.ConsecutiveFailures+1
		p.status.Store(st)
		return st, rerr
	}
	p.current.Store(b)
	changed, err := f.set.SetFederated(b)
	if changed {
		seq, _ := b.SequenceNumber()
		f.opts.Logger.Info("bundles: peer bundle changed", "trust_domain", p.cfg.TrustDomain.Name(), "sequence", seq, "roots", len(b.X509Authorities()))
	}
	if err != nil {
		// checkAuthorities already ensured what SetFederated checks.
		rerr := refused(p.cfg.TrustDomain, ReasonNoAuthorities, "keys", "", err)
		rerr.URL = p.cfg.URL
		st.LastError, st.ConsecutiveFailures = rerr, prev.ConsecutiveFailures+1
		p.status.Store(st)
		return st, rerr
	}
	f.refreshedTotal.WithLabelValues(p.cfg.TrustDomain.Name()).Inc()
	st = p.baseStatus()
	st.LastAttempt, st.LastRefresh, st.Refreshes, st.NextAttempt = now, now, prev.Refreshes+1, prev.NextAttempt
	p.status.Store(st)
	return st, nil
}

// get fetches and validates one document; it does not touch the peer's
// state.
func (f *Fetcher) get(ctx context.Context, p *peer) (*spiffebundle.Bundle, *RefusedError) {
	td := p.cfg.TrustDomain
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.URL, http.NoBody)
	if err != nil {
		return nil, refused(td, ReasonTransport, "endpoint URL", "set the peer's URL to its bundle endpoint", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, classifyTransport(p.cfg, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, refused(td, ReasonHTTPStatus, "HTTP status", "the URL must answer 200 with the bundle document; check the path of the peer's bundle endpoint",
			fmt.Errorf("got %s", resp.Status))
	}
	doc, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxDocumentBytes+1))
	if err != nil {
		return nil, refused(td, ReasonTransport, "response body", "check the network path to the peer", err)
	}
	if int64(len(doc)) > f.opts.MaxDocumentBytes {
		return nil, refused(td, ReasonTooLarge, "document", fmt.Sprintf("the document exceeds %d bytes; raise FetcherOptions.MaxDocumentBytes if the peer really publishes that many roots", f.opts.MaxDocumentBytes), nil)
	}
	b, err := ParseDocument(td, doc, f.opts.Clock.Now())
	if err != nil {
		var re *RefusedError
		errors.As(err, &re)
		return nil, re
	}
	if re := checkSequence(p.current.Load(), b); re != nil {
		return nil, re
	}
	return b, nil
}

func classifyTransport(pc PeerConfig, err error) *RefusedError {
	var ae *authError
	if errors.As(err, &ae) {
		return refused(pc.TrustDomain, ReasonAuth, "endpoint SVID",
			fmt.Sprintf("the endpoint must serve an X.509-SVID for %s that chains to the peer's bundle in use; if the peer replaced its roots without overlap, re-bootstrap it (causeway link)", pc.EndpointID), ae.err)
	}
	var cve *tls.CertificateVerificationError
	var hne x509.HostnameError
	var uae x509.UnknownAuthorityError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &hne) || errors.As(err, &uae) || errors.As(err, &cie) {
		return refused(pc.TrustDomain, ReasonAuth, "endpoint certificate",
			"the endpoint's certificate must chain to the Web PKI roots configured for the peer and name the URL's host", err)
	}
	return refused(pc.TrustDomain, ReasonTransport, "endpoint URL", "check that the peer's bundle endpoint is up and reachable from this control plane", err)
}

// Status is the status of every peer, sorted by trust domain name.
func (f *Fetcher) Status() []Status {
	out := make([]Status, 0, len(f.peers))
	now := f.opts.Clock.Now()
	for _, p := range f.peers {
		out = append(out, p.snapshot(now))
	}
	return out
}

// PeerStatus is the status of the peer of td.
func (f *Fetcher) PeerStatus(td spiffeid.TrustDomain) (Status, bool) {
	p, ok := f.byTD[td]
	if !ok {
		return Status{}, false
	}
	return p.snapshot(f.opts.Clock.Now()), true
}

func (p *peer) snapshot(now time.Time) Status {
	s := *p.status.Load()
	s.Healthy = !s.LastRefresh.IsZero() && s.LastError == nil && !s.Expiry.IsZero() && now.Before(s.Expiry)
	return s
}

package bundles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/causewaymesh/causeway/trust"
)

// Defaults for AuthorityOptions.
const (
	// DefaultPublishLead is how long a prepared CA must have been published
	// in the bundle before Activate lets it sign.
	DefaultPublishLead = time.Hour
	// DefaultRefreshHint is the spiffe_refresh_hint served to peers.
	DefaultRefreshHint = 5 * time.Minute
)

// Sentinel errors of the Authority, for errors.Is.
var (
	ErrNothingPrepared  = errors.New("no CA is prepared")
	ErrAlreadyPrepared  = errors.New("a CA is already prepared")
	ErrPublishLead      = errors.New("prepared CA has not been published for the publish lead yet")
	ErrWrongTrustDomain = errors.New("CA is for another trust domain")
	ErrDuplicateCA      = errors.New("CA is already held by the authority")
)

// AuthorityOptions configures an Authority. The zero value is valid.
type AuthorityOptions struct {
	// PublishLead is the least time a prepared CA must be in the published
	// bundle before Activate accepts it, so that every peer has fetched the
	// new root before the first SVID it signs reaches them. Zero means
	// DefaultPublishLead. It must exceed RefreshHint.
	PublishLead time.Duration
	// RefreshHint is the spiffe_refresh_hint served to peers. Zero means
	// DefaultRefreshHint; it is rounded up to whole seconds on the wire.
	RefreshHint time.Duration
	// InitialSequence is the spiffe_sequence of the first published bundle.
	// Zero means the Unix time in seconds at construction. Every change of the
	// published bundle sets the sequence to max(previous+1, Unix seconds now),
	// so that a restarted control plane without persisted state still serves
	// a sequence above the one it served before (while its clock moves
	// forward). Persist Sequence() and pass it here to be strict.
	InitialSequence uint64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// CAState is where a CA is in its lifecycle inside an Authority.
type CAState uint8

// CA lifecycle states. A removed CA is no longer held and has no state.
const (
	// CAPrepared: published in the bundle, does not sign yet.
	CAPrepared CAState = iota + 1
	// CAActive: signs every new SVID; exactly one CA is active.
	CAActive
	// CARetired: no longer signs; stays in the bundle until the last SVID it
	// signed has expired, then Prune removes it.
	CARetired
)

func (s CAState) String() string {
	switch s {
	case CAPrepared:
		return "prepared"
	case CAActive:
		return "active"
	case CARetired:
		return "retired"
	}
	return fmt.Sprintf("CAState(%d)", uint8(s))
}

// CAInfo is one CA of an Authority as seen in a snapshot.
type CAInfo struct {
	CA          *trust.CA
	State       CAState
	PublishedAt time.Time // when it entered the bundle (Prepare or NewAuthority)
	ActivatedAt time.Time // zero while prepared
	RetiredAt   time.Time // zero unless retired
	// LastNotAfter is the latest NotAfter of the SVIDs it signed through
	// Authority.Sign; zero if it signed none.
	LastNotAfter time.Time
}

// AuthoritySnapshot is a consistent copy of an Authority's state.
type AuthoritySnapshot struct {
	TrustDomain spiffeid.TrustDomain
	Sequence    uint64
	RefreshHint time.Duration
	CAs         []CAInfo            // in the order they were added
	Roots       []*x509.Certificate // the published trust anchors; do not modify
}

// caEntry is one CA. Its fields other than lastNotAfter change only under
// Authority.mu held for writing, by replacing the entry; lastNotAfter is
// raised under Authority.mu held for reading (Sign).
type caEntry struct {
	ca           *trust.CA
	roots        []*x509.Certificate
	state        CAState
	publishedAt  time.Time
	activatedAt  time.Time
	retiredAt    time.Time
	lastNotAfter *atomic.Int64 // Unix nanoseconds; 0 = none; shared by copies of the entry
}

// authState is an immutable published state of an Authority.
type authState struct {
	seq     uint64
	cas     []*caEntry
	roots   []*x509.Certificate
	x509    *x509bundle.Bundle   // shared; never modified
	spiffe  *spiffebundle.Bundle // shared; never modified
	doc     []byte               // the marshalled SPIFFE bundle document
	docLen  []string             // the Content-Length header value of doc
	active  *caEntry
	pending *caEntry // the prepared CA, if any
}

// Authority holds the CAs of the local trust domain through their lifecycle:
// prepared, active, retired, removed. See the package documentation for the
// concurrency contract.
type Authority struct {
	td          spiffeid.TrustDomain
	publishLead time.Duration
	refreshHint time.Duration
	now         func() time.Time

	// mu orders changes: Prepare, Activate and Prune hold it for writing;
	// Sign holds it for reading, so that a CA cannot be retired or pruned
	// while an SVID it signs is being recorded.
	mu        sync.RWMutex
	state     atomic.Pointer[authState]
	listeners []func() // called with mu held for writing after a bundle change
}

// NewAuthority returns an Authority whose active CA is initial.
func NewAuthority(initial *trust.CA, opts AuthorityOptions) (*Authority, error) {
	if initial == nil {
		return nil, errors.New("bundles: NewAuthority: initial CA is nil; pass the CA from trust.NewSelfSignedCA or trust.NewIntermediateCA")
	}
	if opts.PublishLead == 0 {
		opts.PublishLead = DefaultPublishLead
	}
	if opts.RefreshHint == 0 {
		opts.RefreshHint = DefaultRefreshHint
	}
	if opts.RefreshHint < time.Second {
		return nil, fmt.Errorf("bundles: AuthorityOptions.RefreshHint is %v; it must be at least 1s (or 0 for %v)", opts.RefreshHint, DefaultRefreshHint)
	}
	if opts.PublishLead <= opts.RefreshHint {
		return nil, fmt.Errorf("bundles: AuthorityOptions.PublishLead %v must exceed RefreshHint %v, or peers may not have fetched a new root before it signs; raise PublishLead or lower RefreshHint", opts.PublishLead, opts.RefreshHint)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Authority{td: initial.TrustDomain(), publishLead: opts.PublishLead, refreshHint: opts.RefreshHint, now: opts.Now}
	now := a.now()
	seq := opts.InitialSequence
	if seq == 0 {
		seq = unixSeq(now)
	}
	e := newEntry(initial, CAActive, now)
	e.activatedAt = now
	st, err := a.build(seq, []*caEntry{e})
	if err != nil {
		return nil, err
	}
	a.state.Store(st)
	return a, nil
}

func newEntry(ca *trust.CA, state CAState, now time.Time) *caEntry {
	return &caEntry{
		ca:           ca,
		roots:        ca.Bundle().X509Authorities(),
		state:        state,
		publishedAt:  now,
		lastNotAfter: new(atomic.Int64),
	}
}

func unixSeq(t time.Time) uint64 {
	if s := t.Unix(); s > 0 {
		return uint64(s)
	}
	return 1
}

// build makes a state from entries; seq is the sequence to publish.
func (a *Authority) build(seq uint64, cas []*caEntry) (*authState, error) {
	st := &authState{seq: seq, cas: cas}
	for _, e := range cas {
		switch e.state {
		case CAActive:
			st.active = e
		case CAPrepared:
			st.pending = e
		}
		for _, r := range e.roots {
			if !containsCert(st.roots, r) {
				st.roots = append(st.roots, r)
			}
		}
	}
	st.x509 = x509bundle.FromX509Authorities(a.td, st.roots)
	sb := spiffebundle.FromX509Authorities(a.td, st.roots)
	sb.SetSequenceNumber(seq)
	sb.SetRefreshHint(a.refreshHint)
	doc, err := sb.Marshal()
	if err != nil {
		return nil, fmt.Errorf("bundles: marshalling the bundle of trust domain %q: %w", a.td, err)
	}
	st.spiffe, st.doc, st.docLen = sb, doc, []string{strconv.Itoa(len(doc))}
	return st, nil
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

func sameRoots(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		if !containsCert(b, c) {
			return false
		}
	}
	return true
}

// commit publishes cas; the sequence moves only if the roots changed. Callers
// hold a.mu for writing.
func (a *Authority) commit(cas []*caEntry, now time.Time) error {
	old := a.state.Load()
	seq := old.seq
	var roots []*x509.Certificate
	for _, e := range cas {
		for _, r := range e.roots {
			if !containsCert(roots, r) {
				roots = append(roots, r)
			}
		}
	}
	changed := !sameRoots(roots, old.roots)
	if changed {
		seq = max(seq+1, unixSeq(now))
	}
	st, err := a.build(seq, cas)
	if err != nil {
		return err
	}
	a.state.Store(st)
	if changed {
		for _, fn := range a.listeners {
			fn()
		}
	}
	return nil
}

// onChange registers fn, called after every change of the published bundle
// with the Authority's write lock held; fn must not call back into the
// Authority's mutating methods.
func (a *Authority) onChange(fn func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.listeners = append(a.listeners, fn)
}

// TrustDomain is the trust domain of the Authority.
func (a *Authority) TrustDomain() spiffeid.TrustDomain { return a.td }

// Sequence is the spiffe_sequence of the published bundle.
func (a *Authority) Sequence() uint64 { return a.state.Load().seq }

// RefreshHint is the spiffe_refresh_hint served to peers.
func (a *Authority) RefreshHint() time.Duration { return a.refreshHint }

// PublishLead is the configured publish lead.
func (a *Authority) PublishLead() time.Duration { return a.publishLead }

// Prepare publishes ca in the bundle without letting it sign. It refuses a CA
// of another trust domain, a CA that is not valid now, one already held, and
// a second prepared CA.
func (a *Authority) Prepare(ca *trust.CA) error {
	if ca == nil {
		return errors.New("bundles: Prepare: CA is nil")
	}
	if ca.TrustDomain() != a.td {
		return fmt.Errorf("bundles: Prepare: %w: CA %s is for %q, this authority holds %q; create the CA with trust domain %q",
			ErrWrongTrustDomain, trust.Fingerprint(ca.Certificate()), ca.TrustDomain(), a.td, a.td)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	st := a.state.Load()
	if st.pending != nil {
		return fmt.Errorf("bundles: Prepare: %w: CA %s (prepared at %s); Activate it before preparing another",
			ErrAlreadyPrepared, trust.Fingerprint(st.pending.ca.Certificate()), st.pending.publishedAt.UTC().Format(time.RFC3339))
	}
	cert := ca.Certificate()
	for _, e := range st.cas {
		if e.ca.Certificate().Equal(cert) {
			return fmt.Errorf("bundles: Prepare: %w: CA %s is %s; prepare a new CA", ErrDuplicateCA, trust.Fingerprint(cert), e.state)
		}
	}
	if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return fmt.Errorf("bundles: Prepare: %w: CA %s is valid from %s to %s, not at %s", trust.ErrCAExpired, trust.Fingerprint(cert),
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	cas := append(append(make([]*caEntry, 0, len(st.cas)+1), st.cas...), newEntry(ca, CAPrepared, now))
	return a.commit(cas, now)
}

// Activate makes the prepared CA the signing CA and retires the active one.
// It refuses while the prepared CA has been published for less than the
// publish lead; ForceActivate skips that check.
func (a *Authority) Activate() error { return a.activate(false) }

// ForceActivate is Activate without the publish-lead check: peers that have
// not refreshed their copy of the bundle since Prepare will refuse SVIDs
// signed by the new CA until they do.
func (a *Authority) ForceActivate() error { return a.activate(true) }

func (a *Authority) activate(force bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	st := a.state.Load()
	p := st.pending
	if p == nil {
		return fmt.Errorf("bundles: Activate: %w in trust domain %q; call Prepare first", ErrNothingPrepared, a.td)
	}
	cert := p.ca.Certificate()
	if ready := p.publishedAt.Add(a.publishLead); !force && now.Before(ready) {
		return fmt.Errorf("bundles: Activate: %w: CA %s was published at %s, %v ago; PublishLead is %v, so it can be activated at %s; wait, or call ForceActivate (peers that have not refreshed will refuse its SVIDs)",
			ErrPublishLead, trust.Fingerprint(cert), p.publishedAt.UTC().Format(time.RFC3339), now.Sub(p.publishedAt), a.publishLead, ready.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return fmt.Errorf("bundles: Activate: %w: CA %s is valid from %s to %s, not at %s; prepare a new CA", trust.ErrCAExpired, trust.Fingerprint(cert),
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	cas := make([]*caEntry, 0, len(st.cas))
	for _, e := range st.cas {
		c := *e
		switch e {
		case p:
			c.state, c.activatedAt = CAActive, now
		case st.active:
			c.state, c.retiredAt = CARetired, now
		}
		cas = append(cas, &c)
	}
	return a.commit(cas, now)
}

// Prune removes the retired CAs whose last SVID has expired at now (or that
// signed none), and returns them. Their roots leave the bundle unless another
// held CA shares them.
func (a *Authority) Prune(now time.Time) []CAInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.state.Load()
	var removed []CAInfo
	cas := make([]*caEntry, 0, len(st.cas))
	for _, e := range st.cas {
		if e.state == CARetired && !now.Before(e.lastNotAfterTime()) {
			removed = append(removed, e.info())
			continue
		}
		cas = append(cas, e)
	}
	if len(removed) == 0 {
		return nil
	}
	if err := a.commit(cas, now); err != nil {
		// Marshalling a bundle of certificates that marshalled before cannot
		// fail; keep the old state if it ever does.
		return nil
	}
	return removed
}

func (e *caEntry) lastNotAfterTime() time.Time {
	n := e.lastNotAfter.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (e *caEntry) info() CAInfo {
	return CAInfo{CA: e.ca, State: e.state, PublishedAt: e.publishedAt, ActivatedAt: e.activatedAt, RetiredAt: e.retiredAt, LastNotAfter: e.lastNotAfterTime()}
}

// Sign issues an X.509-SVID for id from the CSR with the active CA (see
// trust.CA.SignSVID) and records its NotAfter, which keeps the CA's root in
// the bundle after retirement until that SVID expires. All signing must go
// through Sign for that guarantee to hold.
func (a *Authority) Sign(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	e := a.state.Load().active
	chain, err := e.ca.SignSVID(csrDER, id, ttl)
	if err != nil {
		return nil, fmt.Errorf("bundles: Sign with the active CA of %q: %w", a.td, err)
	}
	na := chain[0].NotAfter.UnixNano()
	for {
		cur := e.lastNotAfter.Load()
		if na <= cur || e.lastNotAfter.CompareAndSwap(cur, na) {
			break
		}
	}
	return chain, nil
}

// IssueSVID generates an ECDSA P-256 key and signs an SVID for it with Sign.
// It is for SVIDs of the control plane itself (see ControlPlaneID) and tests.
func (a *Authority) IssueSVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bundles: IssueSVID for %q: generating key: %w", id, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("bundles: IssueSVID for %q: creating CSR: %w", id, err)
	}
	chain, err := a.Sign(csr, id, ttl)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, nil
}

// Active is the signing CA.
func (a *Authority) Active() *trust.CA { return a.state.Load().active.ca }

// Snapshot is a copy of the current state.
func (a *Authority) Snapshot() AuthoritySnapshot {
	st := a.state.Load()
	s := AuthoritySnapshot{TrustDomain: a.td, Sequence: st.seq, RefreshHint: a.refreshHint, Roots: st.roots}
	for _, e := range st.cas {
		s.CAs = append(s.CAs, e.info())
	}
	return s
}

// Bundle is a copy of the published bundle: the union of the roots of every
// held CA, with the sequence number and refresh hint. The caller owns it.
func (a *Authority) Bundle() *spiffebundle.Bundle { return a.state.Load().spiffe.Clone() }

// X509Bundle is a copy of the published roots as an X.509 bundle.
func (a *Authority) X509Bundle() *x509bundle.Bundle { return a.state.Load().x509.Clone() }

// Document is the published SPIFFE bundle document (JWKS with spiffe_sequence
// and spiffe_refresh_hint). The bytes are shared: do not modify them.
func (a *Authority) Document() []byte { return a.state.Load().doc }

// GetX509BundleForTrustDomain implements x509bundle.Source for the local
// trust domain. The returned bundle is shared: do not modify it.
func (a *Authority) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != a.td {
		return nil, fmt.Errorf("bundles: no X.509 bundle for trust domain %q: %w; this authority holds %q", td, ErrUnknownTrustDomain, a.td)
	}
	return a.state.Load().x509, nil
}

// GetBundleForTrustDomain implements spiffebundle.Source for the local trust
// domain. The returned bundle is shared: do not modify it.
func (a *Authority) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td != a.td {
		return nil, fmt.Errorf("bundles: no SPIFFE bundle for trust domain %q: %w; this authority holds %q", td, ErrUnknownTrustDomain, a.td)
	}
	return a.state.Load().spiffe, nil
}

// ControlPlaneID is the SPIFFE ID of the Causeway control plane of td:
// spiffe://<td>/causeway/control-plane. It serves the https_spiffe bundle
// endpoint (and the federation stream) with an SVID for this ID, and peers
// configure it as the endpoint's SPIFFE ID. Workload IDs start with /ns/, so
// no workload can hold it.
func ControlPlaneID(td spiffeid.TrustDomain) spiffeid.ID {
	// The segments are constant and valid, so only a zero td fails; it
	// yields the zero ID.
	id, _ := spiffeid.FromSegments(td, "causeway", "control-plane")
	return id
}

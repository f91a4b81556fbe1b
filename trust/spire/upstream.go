package spire

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"

	"github.com/causewaymesh/causeway/trust"
)

// DefaultRetryInterval is UpstreamOptions.RetryInterval when zero.
const DefaultRetryInterval = 30 * time.Second

// Timer is the part of *time.Timer the renewal loop uses.
type Timer = trust.Timer

type stdTimer struct{ t *time.Timer }

func (s stdTimer) C() <-chan time.Time { return s.t.C }
func (s stdTimer) Stop() bool          { return s.t.Stop() }

// UpstreamOptions configures an UpstreamCA.
type UpstreamOptions struct {
	// TrustDomain is the SPIRE server's trust domain; Causeway's downstream CA
	// signs SVIDs in it. Required.
	TrustDomain spiffeid.TrustDomain
	// Conn is a connection to the SPIRE server API that presents Causeway's
	// downstream X509-SVID (see Dial). Required.
	Conn grpc.ClientConnInterface
	// PreferredTTL is sent as NewDownstreamX509CARequest.preferred_ttl. Zero
	// lets SPIRE choose (its ca_ttl); SPIRE may shorten it to its own CA's
	// lifetime. If set it must be at least trust.MinCAValidity.
	PreferredTTL time.Duration
	// RetryInterval is the wait between failed renewals. Zero means
	// DefaultRetryInterval.
	RetryInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NewTimer makes the renewal loop's timers; nil means time.NewTimer.
	NewTimer func(time.Duration) Timer
	// Rand is the randomness for keys and serial numbers; nil means
	// crypto/rand.Reader. It must be safe for concurrent use.
	Rand io.Reader
	// Logger receives renewal events; nil discards them.
	Logger *slog.Logger
	// OnRotate, if set, is called after each successful swap of the
	// downstream CA (and for the first CA, with Old nil, reason "initial"),
	// on the goroutine that renewed. It must not block long.
	OnRotate func(Rotation)
}

// Rotation describes one swap of the downstream CA.
type Rotation struct {
	Old, New *x509.Certificate // Old is nil for the first CA
	Reason   string            // "initial", "requested", "retry after failed renewal" or a trust.RenewReason*
}

// Status is a point-in-time view of an UpstreamCA, for `causeway status`.
type Status struct {
	Certificate *x509.Certificate // the downstream CA in use
	RenewAt     time.Time         // when the loop renews it (half-life)
	RenewReason string            // trust.RenewAt's reason
	LastAttempt time.Time         // zero before the first renewal attempt after construction
	LastError   error             // error of the last attempt; nil if it succeeded
	Renewals    uint64            // successful renewals after construction
}

// UpstreamCA is a Signer whose signing CA is an intermediate that a SPIRE
// server signs through SVID.NewDownstreamX509CA. It holds the last good CA in
// an atomic snapshot: SignSVID never blocks on renewal, and a failed renewal
// leaves the last good CA in use.
type UpstreamCA struct {
	o      UpstreamOptions
	client svidv1.SVIDClient
	cur    atomic.Pointer[trust.CA]

	renewMu sync.Mutex // serialises Renew

	statusMu    sync.Mutex
	lastAttempt time.Time
	lastErr     error
	renewals    uint64
}

var _ Signer = (*UpstreamCA)(nil)

// NewUpstreamCA validates o and obtains the first downstream CA from SPIRE. It
// fails if that first request fails, since there is no last good CA to fall
// back on; call Run afterwards to renew at half-life.
func NewUpstreamCA(ctx context.Context, o UpstreamOptions) (*UpstreamCA, error) {
	if o.TrustDomain.IsZero() {
		return nil, errors.New("spire: UpstreamOptions.TrustDomain is empty; set it to the SPIRE server's trust domain (its trust_domain setting)")
	}
	if o.Conn == nil {
		return nil, errors.New("spire: UpstreamOptions.Conn is nil; pass a connection from spire.Dial that presents Causeway's downstream X509-SVID")
	}
	if o.PreferredTTL != 0 && o.PreferredTTL < trust.MinCAValidity {
		return nil, fmt.Errorf("spire: UpstreamOptions.PreferredTTL is %v; it must be 0 (SPIRE's default) or at least %v", o.PreferredTTL, trust.MinCAValidity)
	}
	if o.PreferredTTL/time.Second > math.MaxInt32 {
		return nil, fmt.Errorf("spire: UpstreamOptions.PreferredTTL is %v; SPIRE takes at most %d seconds", o.PreferredTTL, math.MaxInt32)
	}
	if o.RetryInterval < 0 {
		return nil, fmt.Errorf("spire: UpstreamOptions.RetryInterval is %v; it must be positive, or 0 for %v", o.RetryInterval, DefaultRetryInterval)
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewTimer == nil {
		o.NewTimer = func(d time.Duration) Timer { return stdTimer{time.NewTimer(d)} }
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	u := &UpstreamCA{o: o, client: svidv1.NewSVIDClient(o.Conn)}
	if err := u.renew(ctx, "initial"); err != nil {
		return nil, err
	}
	u.statusMu.Lock()
	u.renewals, u.lastAttempt = 0, time.Time{}
	u.statusMu.Unlock()
	return u, nil
}

// SignSVID issues an X.509-SVID for id with the current downstream CA, with
// the rules of (*trust.CA).SignSVID: id must be in the trust domain and have a
// path; ttl 0 means trust.DefaultSVIDTTL, below trust.MinSVIDTTL is refused;
// NotAfter is clamped to the CA's. It returns the leaf followed by SPIRE's
// ca_cert_chain (the downstream CA first); the roots are in Roots.
func (u *UpstreamCA) SignSVID(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	return u.cur.Load().SignSVID(csrDER, id, ttl)
}

// Roots are SPIRE's X.509 authorities as returned with the current downstream
// CA. Callers must not modify the slice.
func (u *UpstreamCA) Roots() []*x509.Certificate { return u.cur.Load().Roots() }

// Bundle returns a new X.509 bundle of Roots for the trust domain.
func (u *UpstreamCA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(u.o.TrustDomain, u.cur.Load().Roots())
}

// TrustDomain is the SPIRE trust domain the CA signs for.
func (u *UpstreamCA) TrustDomain() spiffeid.TrustDomain { return u.o.TrustDomain }

// Certificate is the downstream CA certificate in use. Callers must not
// modify it.
func (u *UpstreamCA) Certificate() *x509.Certificate { return u.cur.Load().Certificate() }

// Chain is SPIRE's ca_cert_chain of the CA in use: the downstream CA first,
// then any intermediates up to (not including) the roots.
func (u *UpstreamCA) Chain() []*x509.Certificate { return u.cur.Load().Chain() }

// Status reports the CA in use and the outcome of the last renewal.
func (u *UpstreamCA) Status() Status {
	cert := u.cur.Load().Certificate()
	at, reason := trust.RenewAt(cert, u.o.Now())
	u.statusMu.Lock()
	defer u.statusMu.Unlock()
	return Status{Certificate: cert, RenewAt: at, RenewReason: reason, LastAttempt: u.lastAttempt, LastError: u.lastErr, Renewals: u.renewals}
}

// String shows the trust domain and fingerprints only; never the key.
func (u *UpstreamCA) String() string {
	a := u.cur.Load()
	return fmt.Sprintf("spire.UpstreamCA{trust_domain=%s cert_sha256=%s not_after=%s}",
		u.o.TrustDomain.Name(), trust.Fingerprint(a.Certificate()), a.Certificate().NotAfter.UTC().Format(time.RFC3339))
}

// GoString is String, so that %#v cannot print the key either.
func (u *UpstreamCA) GoString() string { return u.String() }

// Renew asks SPIRE for a new downstream CA now, for a fresh ECDSA P-256 key,
// and swaps it in if it is valid. On error the last good CA stays in use.
// Concurrent calls are serialised.
func (u *UpstreamCA) Renew(ctx context.Context) error { return u.renew(ctx, "requested") }

func (u *UpstreamCA) renew(ctx context.Context, reason string) error {
	u.renewMu.Lock()
	defer u.renewMu.Unlock()
	a, err := u.fetch(ctx)
	u.statusMu.Lock()
	u.lastAttempt, u.lastErr = u.o.Now(), err
	if err == nil {
		u.renewals++
	}
	u.statusMu.Unlock()
	if err != nil {
		return err
	}
	old := u.cur.Swap(a)
	var oldCert *x509.Certificate
	if old != nil {
		oldCert = old.Certificate()
	}
	u.o.Logger.Info("SPIRE downstream CA rotated", "trust_domain", u.o.TrustDomain.Name(), "reason", reason,
		"cert_sha256", trust.Fingerprint(a.Certificate()), "not_after", a.Certificate().NotAfter.UTC().Format(time.RFC3339))
	if u.o.OnRotate != nil {
		u.o.OnRotate(Rotation{Old: oldCert, New: a.Certificate(), Reason: reason})
	}
	return nil
}

func (u *UpstreamCA) fetch(ctx context.Context) (*trust.CA, error) {
	const rpc = "SVID.NewDownstreamX509CA"
	key, err := ecdsa.GenerateKey(elliptic.P256(), u.o.Rand)
	if err != nil {
		return nil, fmt.Errorf("spire: generating the downstream CA key for trust domain %q: %w", u.o.TrustDomain.Name(), err)
	}
	// SPIRE uses the CSR only to convey the public key.
	csr, err := x509.CreateCertificateRequest(u.o.Rand, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("spire: creating the downstream CA CSR for trust domain %q: %w", u.o.TrustDomain.Name(), err)
	}
	resp, err := u.client.NewDownstreamX509CA(ctx, &svidv1.NewDownstreamX509CARequest{
		Csr:          csr,
		PreferredTtl: int32(u.o.PreferredTTL / time.Second),
	})
	if err != nil {
		return nil, rpcError(rpc, u.o.Conn, hintDownstream, err)
	}
	a, err := parseDownstreamCA(u.o.TrustDomain, key, resp, u.o.Now(), trust.CAOptions{Now: u.o.Now, Rand: u.o.Rand})
	if err != nil {
		return nil, fmt.Errorf("spire: %s: %w", rpc, err)
	}
	return a, nil
}

// parseDownstreamCA validates SPIRE's answer once, where it enters: the first
// certificate must be a CA for td's trust domain ID holding key's public key,
// valid now for at least trust.MinSVIDTTL, chaining through the rest of
// ca_cert_chain to one of x509_authorities.
func parseDownstreamCA(td spiffeid.TrustDomain, key crypto.Signer, resp *svidv1.NewDownstreamX509CAResponse, now time.Time, caOpts trust.CAOptions) (*trust.CA, error) {
	if len(resp.GetCaCertChain()) == 0 {
		return nil, fmt.Errorf("%w: ca_cert_chain is empty; SPIRE must return the signed CA certificate first", ErrMalformedCA)
	}
	if len(resp.GetX509Authorities()) == 0 {
		return nil, fmt.Errorf("%w: x509_authorities is empty; SPIRE must return the roots of trust domain %q", ErrMalformedCA, td.Name())
	}
	chain, err := parseCerts("ca_cert_chain", resp.GetCaCertChain())
	if err != nil {
		return nil, err
	}
	roots, err := parseCerts("x509_authorities", resp.GetX509Authorities())
	if err != nil {
		return nil, err
	}
	ca := chain[0]
	fp := trust.Fingerprint(ca)
	switch {
	case !ca.BasicConstraintsValid || !ca.IsCA:
		return nil, fmt.Errorf("%w: ca_cert_chain[0] %s is not a CA certificate (basicConstraints CA:TRUE missing)", ErrMalformedCA, fp)
	case ca.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("%w: ca_cert_chain[0] %s lacks key usage keyCertSign", ErrMalformedCA, fp)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("spire: encoding the downstream CA public key: %w", err)
	}
	if !bytes.Equal(pub, ca.RawSubjectPublicKeyInfo) {
		return nil, fmt.Errorf("%w: ca_cert_chain[0] %s certifies another public key than the one in Causeway's CSR", ErrMalformedCA, fp)
	}
	if err := checkCAID(td, ca); err != nil {
		return nil, err
	}
	if now.Before(ca.NotBefore) || !now.Add(trust.MinSVIDTTL).Before(ca.NotAfter) {
		return nil, fmt.Errorf("%w: %w: ca_cert_chain[0] %s is valid from %s to %s; at %s it must be valid for at least %v more",
			ErrMalformedCA, trust.ErrCAExpired, fp, ca.NotBefore.UTC().Format(time.RFC3339), ca.NotAfter.UTC().Format(time.RFC3339),
			now.UTC().Format(time.RFC3339), trust.MinSVIDTTL)
	}
	for i, r := range roots {
		if !r.BasicConstraintsValid || !r.IsCA {
			return nil, fmt.Errorf("%w: x509_authorities[%d] %s is not a CA certificate", ErrMalformedCA, i, trust.Fingerprint(r))
		}
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := ca.Verify(opts); err != nil {
		return nil, fmt.Errorf("%w: ca_cert_chain[0] %s does not chain to x509_authorities of trust domain %q at %s: %w",
			ErrMalformedCA, fp, td.Name(), now.UTC().Format(time.RFC3339), err)
	}
	signer, err := trust.NewCAFromChain(td, chain, key, roots, caOpts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedCA, err)
	}
	return signer, nil
}

// checkCAID requires the SPIFFE ID SPIRE gives downstream CAs: exactly the
// trust domain ID, spiffe://<td>.
func checkCAID(td spiffeid.TrustDomain, ca *x509.Certificate) error {
	fp := trust.Fingerprint(ca)
	if len(ca.URIs) != 1 {
		return fmt.Errorf("%w: ca_cert_chain[0] %s has %d URI SANs; SPIRE gives a downstream CA exactly one, %q", ErrMalformedCA, fp, len(ca.URIs), td.IDString())
	}
	id, err := spiffeid.FromURI(ca.URIs[0])
	if err != nil {
		return fmt.Errorf("%w: ca_cert_chain[0] %s URI SAN %q is not a SPIFFE ID: %w", ErrMalformedCA, fp, ca.URIs[0].String(), err)
	}
	if id.TrustDomain() != td {
		return fmt.Errorf("%w: %w: ca_cert_chain[0] %s is for trust domain %q, Causeway asked SPIRE of %q; check UpstreamOptions.TrustDomain and which SPIRE server Conn reaches",
			ErrMalformedCA, trust.ErrForeignTrustDomain, fp, id.TrustDomain().Name(), td.Name())
	}
	if id.Path() != "" {
		return fmt.Errorf("%w: ca_cert_chain[0] %s carries %q; a downstream CA carries the trust domain ID %q with no path", ErrMalformedCA, fp, id.String(), td.IDString())
	}
	return nil
}

func parseCerts(field string, ders [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %s[%d] is not a DER X.509 certificate: %w", ErrMalformedCA, field, i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Run renews the downstream CA at half of its lifetime (trust.RenewAt) until
// ctx is done, then returns nil. A failed renewal is retried every
// RetryInterval; meanwhile the last good CA stays in use. Run must be called
// at most once at a time.
func (u *UpstreamCA) Run(ctx context.Context) error {
	failed, renewed := false, false
	for {
		now := u.o.Now()
		wait := u.o.RetryInterval
		reason := "retry after failed renewal"
		if !failed {
			var at time.Time
			at, reason = trust.RenewAt(u.cur.Load().Certificate(), now)
			wait = at.Sub(now)
			if wait <= 0 && renewed {
				// A CA already past half-life right after renewal: do not spin.
				wait = u.o.RetryInterval
			}
		}
		if wait > 0 {
			t := u.o.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C():
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		err := u.renew(ctx, reason)
		if ctx.Err() != nil {
			return nil
		}
		failed, renewed = err != nil, err == nil
		if err != nil {
			cert := u.cur.Load().Certificate()
			u.o.Logger.Warn("SPIRE downstream CA renewal failed; the last good CA stays in use",
				"trust_domain", u.o.TrustDomain.Name(), "cert_sha256", trust.Fingerprint(cert),
				"not_after", cert.NotAfter.UTC().Format(time.RFC3339), "retry_in", u.o.RetryInterval, "error", err)
		}
	}
}

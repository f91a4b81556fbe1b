package spire

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/trust"
)

// Signer is what Causeway's SVID issuance needs from a certificate authority:
// sign a workload CSR for a SPIFFE ID, and name the trust anchors that verify
// what it signs. *UpstreamCA implements it. (*trust.CA has the same SignSVID;
// it would need a Roots method to satisfy Signer.)
type Signer interface {
	// SignSVID issues an X.509-SVID for id from a PKCS#10 CSR and returns the
	// leaf followed by the intermediates (never the roots).
	SignSVID(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error)
	// Roots are the trust anchors that verify every chain SignSVID returns.
	Roots() []*x509.Certificate
}

// svidOrg is the leaf Subject O, the same as the built-in CA's.
const svidOrg = "Causeway SVID"

// authority is one downstream CA obtained from SPIRE: an immutable snapshot.
// The issuance rules of signSVID are those of (*trust.CA).SignSVID; when
// package trust gains a constructor for an externally signed CA (see doc.go)
// this type becomes a *trust.CA.
type authority struct {
	td    spiffeid.TrustDomain
	cert  *x509.Certificate   // the downstream CA certificate (chain[0])
	key   crypto.Signer       // its private key; never printed
	chain []*x509.Certificate // ca_cert_chain: cert first, then SPIRE's intermediates
	roots []*x509.Certificate // SPIRE's x509_authorities
}

func (a *authority) signSVID(csrDER []byte, id spiffeid.ID, ttl time.Duration, now time.Time, r io.Reader) ([]*x509.Certificate, error) {
	if id.IsZero() {
		return nil, errors.New("spire: SignSVID: SPIFFE ID is empty")
	}
	if !id.MemberOf(a.td) {
		return nil, fmt.Errorf("spire: SignSVID: %w: %q is in trust domain %q, the SPIRE downstream CA signs only for %q",
			trust.ErrForeignTrustDomain, id.String(), id.TrustDomain().Name(), a.td.Name())
	}
	if id.Path() == "" {
		return nil, fmt.Errorf("spire: SignSVID: SPIFFE ID %q has no path; a workload SVID needs one (see trust.WorkloadID)", id.String())
	}
	switch {
	case ttl == 0:
		ttl = trust.DefaultSVIDTTL
	case ttl < trust.MinSVIDTTL:
		return nil, fmt.Errorf("spire: SignSVID for %q: %w: ttl %v is less than %v; pass at least %v, or 0 for %v",
			id.String(), trust.ErrTTLTooShort, ttl, trust.MinSVIDTTL, trust.MinSVIDTTL, trust.DefaultSVIDTTL)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("spire: SignSVID for %q: %w: %w", id.String(), trust.ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("spire: SignSVID for %q: %w: signature does not verify with the CSR's public key: %w", id.String(), trust.ErrBadCSR, err)
	}
	if now.Before(a.cert.NotBefore) || !now.Before(a.cert.NotAfter) {
		return nil, fmt.Errorf("spire: SignSVID for %q: %w: SPIRE downstream CA %s is valid from %s to %s, now is %s; is the renewal loop (UpstreamCA.Run) running and SPIRE reachable?",
			id.String(), trust.ErrCAExpired, trust.Fingerprint(a.cert),
			a.cert.NotBefore.UTC().Format(time.RFC3339), a.cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-trust.ClockSkew)
	if notBefore.Before(a.cert.NotBefore) {
		notBefore = a.cert.NotBefore
	}
	notAfter := now.Add(ttl)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	serial, err := newSerial(r)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{svidOrg}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		URIs:                  []*url.URL{id.URL()},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(r, tmpl, a.cert, csr.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("spire: SignSVID for %q: signing with SPIRE downstream CA %s: %w", id.String(), trust.Fingerprint(a.cert), err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("spire: SignSVID for %q: parsing the issued leaf: %w", id.String(), err)
	}
	out := make([]*x509.Certificate, 0, 1+len(a.chain))
	out = append(out, leaf)
	return append(out, a.chain...), nil
}

func newSerial(r io.Reader) (*big.Int, error) {
	serial, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("spire: generating certificate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

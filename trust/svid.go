package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SVID lifetime rules.
const (
	DefaultSVIDTTL = 24 * time.Hour  // used when SignSVID gets ttl 0
	MinSVIDTTL     = time.Minute     // shorter TTLs are refused
	ClockSkew      = time.Minute     // NotBefore is backdated by this much
	maxSVIDURILen  = 2048            // SPIFFE IDs longer than this are refused
	maxNameLen     = 253             // Kubernetes object name limit
	maxNSLen       = 63              // Kubernetes namespace (DNS label) limit
	svidOrg        = "Causeway SVID" // leaf Subject O
)

// SignSVID verifies the CSR's signature and issues an X.509-SVID for id, which
// must be in the CA's trust domain. The leaf has exactly one URI SAN (id), key
// usage digitalSignature+keyEncipherment, extended key usage
// serverAuth+clientAuth, NotBefore now-ClockSkew and NotAfter
// min(now+ttl, CA NotAfter). ttl 0 means DefaultSVIDTTL; ttl below MinSVIDTTL
// is refused. Only the CSR's public key is used: its subject and SANs are
// ignored. It returns the chain: the leaf followed by the CA's intermediates
// (the root is not included; it is in the bundle).
func (c *CA) SignSVID(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	if id.IsZero() {
		return nil, errors.New("trust: SignSVID: SPIFFE ID is empty")
	}
	if !id.MemberOf(c.td) {
		return nil, fmt.Errorf("trust: SignSVID: %w: %q is in trust domain %q, this CA signs only for %q",
			ErrForeignTrustDomain, id.String(), id.TrustDomain().Name(), c.td.Name())
	}
	if id.Path() == "" {
		return nil, fmt.Errorf("trust: SignSVID: SPIFFE ID %q has no path; a workload SVID needs one (see WorkloadID)", id.String())
	}
	if len(id.String()) > maxSVIDURILen {
		return nil, fmt.Errorf("trust: SignSVID: SPIFFE ID is %d bytes long; the limit is %d", len(id.String()), maxSVIDURILen)
	}
	switch {
	case ttl == 0:
		ttl = DefaultSVIDTTL
	case ttl < MinSVIDTTL:
		return nil, fmt.Errorf("trust: SignSVID for %q: %w: ttl %v is less than %v; pass at least %v, or 0 for %v",
			id.String(), ErrTTLTooShort, ttl, MinSVIDTTL, MinSVIDTTL, DefaultSVIDTTL)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("trust: SignSVID for %q: %w: %w", id.String(), ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("trust: SignSVID for %q: %w: signature does not verify with the CSR's public key: %w", id.String(), ErrBadCSR, err)
	}

	now := c.now()
	if now.Before(c.cert.NotBefore) || !now.Before(c.cert.NotAfter) {
		return nil, fmt.Errorf("trust: SignSVID for %q: %w: CA %s is valid from %s to %s, now is %s", id.String(), ErrCAExpired,
			Fingerprint(c.cert), c.cert.NotBefore.UTC().Format(time.RFC3339), c.cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-ClockSkew)
	if notBefore.Before(c.cert.NotBefore) {
		notBefore = c.cert.NotBefore
	}
	notAfter := now.Add(ttl)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	serial, err := newSerial(c.rand)
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
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(c.rand, tmpl, c.cert, csr.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("trust: SignSVID for %q: signing with CA %s: %w", id.String(), Fingerprint(c.cert), err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("trust: SignSVID for %q: parsing the issued leaf: %w", id.String(), err)
	}
	chain := make([]*x509.Certificate, 0, 1+len(c.chain))
	chain = append(chain, leaf)
	return append(chain, c.chain...), nil
}

// IssueSVID generates an ECDSA P-256 key, a CSR for it, and signs it with
// SignSVID. It is for callers that hold the CA in process (local mode, tests);
// workloads should send a CSR instead, so that their key never leaves them.
func (c *CA) IssueSVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), c.rand)
	if err != nil {
		return nil, fmt.Errorf("trust: IssueSVID for %q: generating key: %w", id.String(), err)
	}
	csr, err := x509.CreateCertificateRequest(c.rand, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("trust: IssueSVID for %q: creating CSR: %w", id.String(), err)
	}
	chain, err := c.SignSVID(csr, id, ttl)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, nil
}

// WorkloadID returns spiffe://<td>/ns/<namespace>/sa/<serviceAccount>. The
// namespace must be a DNS-1123 label and the service account a DNS-1123
// subdomain, as Kubernetes requires.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	if td.IsZero() {
		return spiffeid.ID{}, errors.New("trust: WorkloadID: trust domain is empty")
	}
	if err := checkDNSName(namespace, maxNSLen, false); err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust: WorkloadID: namespace %q: %w", namespace, err)
	}
	if err := checkDNSName(serviceAccount, maxNameLen, true); err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust: WorkloadID: service account %q: %w", serviceAccount, err)
	}
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust: WorkloadID: %w", err)
	}
	return id, nil
}

// checkDNSName checks a DNS-1123 label (dots false) or subdomain (dots true).
func checkDNSName(s string, maxLen int, dots bool) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > maxLen {
		return fmt.Errorf("is %d characters long; the limit is %d", len(s), maxLen)
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= '0' && b <= '9':
		case b == '-' && i > 0 && i < len(s)-1 && (!dots || (s[i-1] != '.' && s[i+1] != '.')):
		case b == '.' && dots && i > 0 && i < len(s)-1 && s[i-1] != '.' && s[i-1] != '-':
		default:
			allowed := "lowercase letters, digits and '-'"
			if dots {
				allowed = "lowercase letters, digits, '-' and '.'"
			}
			return fmt.Errorf("character %q at offset %d is not allowed: use %s, starting and ending with a letter or digit", b, i, allowed)
		}
	}
	return nil
}

// Renewal reasons returned by RenewAt.
const (
	RenewReasonHalfLife = "renew at half of the certificate lifetime"
	RenewReasonPastHalf = "certificate is past half of its lifetime; renew now"
	RenewReasonExpired  = "certificate has expired; renew now"
	RenewReasonNoCert   = "no certificate; issue now"
)

// RenewAt is the rotation rule: a certificate should be renewed at half of its
// lifetime, NotBefore + (NotAfter-NotBefore)/2. If now is already past that
// point (or the certificate expired, or is nil) it returns now. The reason
// says which case applied.
func RenewAt(cert *x509.Certificate, now time.Time) (time.Time, string) {
	if cert == nil {
		return now, RenewReasonNoCert
	}
	if !now.Before(cert.NotAfter) {
		return now, RenewReasonExpired
	}
	half := cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
	if !now.Before(half) {
		return now, RenewReasonPastHalf
	}
	return half, RenewReasonHalfLife
}

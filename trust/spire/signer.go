package spire

import (
	"crypto/x509"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/trust"
)

// Signer is what Causeway's SVID issuance needs from a certificate authority:
// sign a workload CSR for a SPIFFE ID, and name the trust anchors that verify
// what it signs. *UpstreamCA and *trust.CA implement it.
type Signer interface {
	// SignSVID issues an X.509-SVID for id from a PKCS#10 CSR and returns the
	// leaf followed by the intermediates (never the roots).
	SignSVID(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error)
	// Roots are the trust anchors that verify every chain SignSVID returns.
	Roots() []*x509.Certificate
}

var (
	_ Signer = (*UpstreamCA)(nil)
	_ Signer = (*trust.CA)(nil)
)

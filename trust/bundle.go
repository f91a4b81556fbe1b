package trust

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// Bundle returns a new X.509 bundle holding the CA's trust anchors (the root).
// The caller owns the returned bundle.
func (c *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.td, c.roots)
}

// BundlePEM is the CA's trust anchors, PEM encoded.
func (c *CA) BundlePEM() []byte { return CertsPEM(c.roots) }

// CertsPEM encodes certificates as concatenated PEM CERTIFICATE blocks, in
// order.
func CertsPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Fingerprint is the lowercase hex SHA-256 of the certificate's DER.
func Fingerprint(cert *x509.Certificate) string {
	if cert == nil {
		return "<nil>"
	}
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Names of the SDS secrets every Causeway proxy uses for mesh mTLS: its own
// X.509-SVID (made by the proxy process itself from its own key and the SVID
// issuer, never sent by the control plane) and the SPIFFE bundle set of the
// trust domains it trusts (sent by the control plane over SDS).
const (
	SVIDSecretName   = "causeway/svid"
	BundleSecretName = "causeway/bundles"
)

package xdsclient

import (
	"crypto/tls"
	"crypto/x509"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/causewaymesh/causeway/proxy/config"
)

// TranslateSecret validates s and translates it: a certificate with its
// key, or a set of trusted roots. Errors never contain key material.
func TranslateSecret(s *tlsv3.Secret) (*config.Secret, error) {
	c := newCollector("secret", s.GetName())
	if s == nil {
		c.addf("", "send a Secret", "nil resource")
		return nil, c.err()
	}
	if !c.validate("", s) {
		// Proto validation messages can quote field values; a private key
		// must never reach a NACK or a log, so only the field is named.
		c.errs = c.errs[:0]
		c.addf("", "fix the secret so that it passes Envoy's own proto validation", "invalid secret (details withheld: it may contain key material)")
		return nil, c.err()
	}
	c.only("", s, "name", "tls_certificate", "validation_context")
	out := &config.Secret{Name: s.GetName()}
	if s.GetName() == "" {
		c.addf("name", "name the secret", "empty name")
	}
	switch t := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		tc := t.TlsCertificate
		c.only("tls_certificate", tc, "certificate_chain", "private_key")
		chain := c.inline("tls_certificate.certificate_chain", tc.GetCertificateChain())
		key := c.inline("tls_certificate.private_key", tc.GetPrivateKey())
		if chain != nil && key != nil {
			cert, err := tls.X509KeyPair(chain, key)
			if err != nil {
				// crypto/tls errors describe the PEM structure, never the key bytes.
				c.wrap("tls_certificate", "send a PEM certificate chain and its matching PEM private key", err, "bad key pair")
			} else {
				out.Cert = &cert
			}
		}
	case *tlsv3.Secret_ValidationContext:
		vc := t.ValidationContext
		c.only("validation_context", vc, "trusted_ca")
		pem := c.inline("validation_context.trusted_ca", vc.GetTrustedCa())
		if pem != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				c.addf("validation_context.trusted_ca", "send one or more PEM CERTIFICATE blocks", "no certificates found")
			}
			out.Roots, out.RootsPEM = pool, pem
		}
	case nil:
		c.addf("", "set tls_certificate or validation_context", "empty secret")
	}
	if c.failed() {
		return nil, c.err()
	}
	return out, nil
}

// inline reads a DataSource given inline.
func (c *collector) inline(path string, d *corev3.DataSource) []byte {
	if d == nil {
		c.addf(path, "give inline_bytes or inline_string", "missing")
		return nil
	}
	switch s := d.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString)
	}
	c.unsupported(path, "only inline data sources", "give inline_bytes or inline_string")
	return nil
}

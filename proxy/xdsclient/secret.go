package xdsclient

import (
	"crypto/tls"
	"crypto/x509"

	"google.golang.org/protobuf/proto"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/leanxds"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
	tlsv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/transport_sockets/tls/v3"
)

// TranslateSecret validates s and translates it: a certificate with its
// key, or a set of trusted roots. Errors never contain key material.
//
// m is Envoy's Secret: the sidecar's lean copy (package leanxds) or
// any other Go type of it, such as go-control-plane's.
func TranslateSecret(m proto.Message) (*config.Secret, error) {
	return translateAs(m, "secret", translateSecret)
}

func translateSecret(s *tlsv3.Secret) (*config.Secret, error) {
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
		c.only("validation_context", vc, "trusted_ca", "custom_validator_config")
		switch {
		case vc.GetCustomValidatorConfig() != nil && vc.GetTrustedCa() != nil:
			c.addf("validation_context", "set trusted_ca or custom_validator_config, not both", "both set")
		case vc.GetCustomValidatorConfig() != nil:
			c.spiffeValidator("validation_context.custom_validator_config", vc.GetCustomValidatorConfig(), out)
		default:
			out.Roots, out.RootsPEM = c.pemPool("validation_context.trusted_ca", vc.GetTrustedCa())
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

// pemPool reads PEM certificates from an inline data source.
func (c *collector) pemPool(path string, d *corev3.DataSource) (*x509.CertPool, []byte) {
	pem := c.inline(path, d)
	if pem == nil {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		c.addf(path, "send one or more PEM CERTIFICATE blocks", "no certificates found")
	}
	return pool, pem
}

// spiffeValidator translates envoy.tls.cert_validator.spiffe: one bundle
// per trust domain.
func (c *collector) spiffeValidator(path string, tc *corev3.TypedExtensionConfig, out *config.Secret) {
	var v tlsv3.SPIFFECertValidatorConfig
	if tc.GetTypedConfig() == nil || !leanxds.Is(tc.GetTypedConfig(), &v) {
		c.unsupported(path, tc.GetName(), "use envoy.tls.cert_validator.spiffe with a SPIFFECertValidatorConfig")
		return
	}
	if !c.unpack(join(path, "typed_config"), tc.GetTypedConfig(), &v) {
		return
	}
	p := join(path, "typed_config")
	c.only(p, &v, "trust_domains")
	if len(v.GetTrustDomains()) == 0 {
		c.addf(join(p, "trust_domains"), "list at least one trust domain with its bundle", "empty")
	}
	out.TrustDomains = map[string]*x509.CertPool{}
	out.TrustDomainsPEM = map[string][]byte{}
	for i, td := range v.GetTrustDomains() {
		tp := named(join(p, "trust_domains"), i, td.GetName())
		c.only(tp, td, "name", "trust_bundle")
		if _, dup := out.TrustDomains[td.GetName()]; dup {
			c.addf(join(tp, "name"), "list each trust domain once", "duplicate trust domain %q", td.GetName())
		}
		pool, pem := c.pemPool(join(tp, "trust_bundle"), td.GetTrustBundle())
		if pool != nil {
			out.TrustDomains[td.GetName()], out.TrustDomainsPEM[td.GetName()] = pool, pem
		}
	}
}

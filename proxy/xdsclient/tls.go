package xdsclient

import (
	"github.com/causewaymesh/causeway/proxy/config"
	tlsv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/transport_sockets/tls/v3"
)

// tlsSocketName is the transport socket Causeway understands.
const tlsSocketName = "envoy.transport_sockets.tls"

// commonTLS is what CommonTlsContext translates into, shared by the
// downstream and upstream contexts.
type commonTLS struct {
	certSecret, validationSecret string
	matchSANs                    []config.StringMatch
	alpn                         []string
}

func (c *collector) commonTLSContext(path string, ctx *tlsv3.CommonTlsContext) commonTLS {
	var out commonTLS
	if ctx == nil {
		return out
	}
	c.only(path, ctx, "tls_certificate_sds_secret_configs", "validation_context_sds_secret_config",
		"combined_validation_context", "alpn_protocols", "tls_params")
	sds := ctx.GetTlsCertificateSdsSecretConfigs()
	if len(sds) > 1 {
		c.unsupported(idx(join(path, "tls_certificate_sds_secret_configs"), 1), "more than one certificate", "send one certificate secret")
	}
	if len(sds) > 0 {
		out.certSecret = c.sdsName(idx(join(path, "tls_certificate_sds_secret_configs"), 0), sds[0])
	}
	switch v := ctx.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		out.validationSecret = c.sdsName(join(path, "validation_context_sds_secret_config"), v.ValidationContextSdsSecretConfig)
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		p := join(path, "combined_validation_context")
		cv := v.CombinedValidationContext
		c.only(p, cv, "default_validation_context", "validation_context_sds_secret_config")
		out.validationSecret = c.sdsName(join(p, "validation_context_sds_secret_config"), cv.GetValidationContextSdsSecretConfig())
		if dv := cv.GetDefaultValidationContext(); dv != nil {
			q := join(p, "default_validation_context")
			c.only(q, dv, "match_typed_subject_alt_names")
			for i, m := range dv.GetMatchTypedSubjectAltNames() {
				r := idx(join(q, "match_typed_subject_alt_names"), i)
				c.only(r, m, "san_type", "matcher")
				switch m.GetSanType() {
				case tlsv3.SubjectAltNameMatcher_URI, tlsv3.SubjectAltNameMatcher_DNS:
				default:
					c.unsupported(join(r, "san_type"), m.GetSanType().String(), "match URI (SPIFFE ID) or DNS SANs")
				}
				out.matchSANs = append(out.matchSANs, c.stringMatch(join(r, "matcher"), m.GetMatcher()))
			}
		}
	}
	out.alpn = append(out.alpn, ctx.GetAlpnProtocols()...)
	return out
}

func (c *collector) sdsName(path string, s *tlsv3.SdsSecretConfig) string {
	if s == nil {
		c.addf(path, "name the SDS secret", "missing SDS secret config")
		return ""
	}
	// sds_config is ignored: every secret comes over the ADS stream.
	c.only(path, s, "name", "sds_config")
	if s.GetName() == "" {
		c.addf(join(path, "name"), "name the SDS secret", "empty secret name")
	}
	return s.GetName()
}

func (c *collector) downstreamTLS(path string, d *tlsv3.DownstreamTlsContext) *config.DownstreamTLS {
	c.only(path, d, "common_tls_context", "require_client_certificate")
	ct := c.commonTLSContext(join(path, "common_tls_context"), d.GetCommonTlsContext())
	out := &config.DownstreamTLS{
		CertSecret:        ct.certSecret,
		ValidationSecret:  ct.validationSecret,
		RequireClientCert: d.GetRequireClientCertificate().GetValue(),
		MatchSANs:         ct.matchSANs,
		ALPN:              ct.alpn,
	}
	if out.CertSecret == "" {
		c.addf(join(path, "common_tls_context.tls_certificate_sds_secret_configs"), "name the certificate secret delivered by SDS", "a server needs a certificate")
	}
	if out.RequireClientCert && out.ValidationSecret == "" {
		c.addf(join(path, "require_client_certificate"), "add validation_context_sds_secret_config with the trusted roots", "client certificates required but no validation context")
	}
	if len(out.ALPN) == 0 {
		out.ALPN = []string{"h2", "http/1.1"}
	}
	return out
}

func (c *collector) upstreamTLS(path string, u *tlsv3.UpstreamTlsContext) *config.UpstreamTLS {
	c.only(path, u, "common_tls_context", "sni", "allow_renegotiation", "max_session_keys")
	ct := c.commonTLSContext(join(path, "common_tls_context"), u.GetCommonTlsContext())
	out := &config.UpstreamTLS{
		CertSecret:       ct.certSecret,
		ValidationSecret: ct.validationSecret,
		SNI:              u.GetSni(),
		MatchSANs:        ct.matchSANs,
		ALPN:             ct.alpn,
	}
	if out.ValidationSecret == "" {
		c.addf(join(path, "common_tls_context"), "add validation_context_sds_secret_config (or combined_validation_context) naming the trusted roots", "upstream TLS without a validation context would trust any server")
	}
	return out
}

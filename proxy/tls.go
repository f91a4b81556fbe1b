package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/router"
)

var errConnOverflow = errors.New("cluster connection limit reached (circuit breaker max_connections)")

type missingSecretError struct{ name, cluster, listener string }

func (e *missingSecretError) Error() string {
	switch {
	case e.listener != "":
		return fmt.Sprintf("listener %q: SDS secret %q has not arrived; the listener cannot terminate TLS until the control plane sends it", e.listener, e.name)
	case e.name == "":
		return fmt.Sprintf("cluster %q is no longer configured", e.cluster)
	}
	return fmt.Sprintf("cluster %q: SDS secret %q has not arrived; TLS to its endpoints fails until the control plane sends it", e.cluster, e.name)
}

// verifyPeer checks a peer's chain against roots and, when sans is not
// empty, that the leaf carries one of the expected SANs (URI SANs such as
// SPIFFE IDs, or DNS names).
func verifyPeer(chain []*x509.Certificate, trust *config.Secret, sans []config.StringMatch, client bool) error {
	if len(chain) == 0 {
		return errors.New("peer presented no certificate")
	}
	roots := trust.Roots
	if trust.TrustDomains != nil {
		td, err := spiffeTrustDomain(chain[0])
		if err != nil {
			return err
		}
		if roots = trust.TrustDomains[td]; roots == nil {
			return fmt.Errorf("peer trust domain %q is not trusted (no bundle for it in %q)", td, trust.Name)
		}
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage, x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("peer certificate not trusted: %w", err)
	}
	if len(sans) == 0 {
		return nil
	}
	leaf := chain[0]
	for _, m := range sans {
		for _, u := range leaf.URIs {
			if matchString(m, u.String()) {
				return nil
			}
		}
		for _, d := range leaf.DNSNames {
			if matchString(m, d) {
				return nil
			}
		}
	}
	return fmt.Errorf("peer identity %s is not one of the expected %s", peerIDs(leaf), describeMatches(sans))
}

func peerIDs(c *x509.Certificate) string {
	var ids []string
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, c.DNSNames...)
	if len(ids) == 0 {
		return "(no SAN)"
	}
	return strings.Join(ids, ",")
}

func describeMatches(ms []config.StringMatch) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Value
		if m.Regex != nil {
			parts[i] = "~" + m.Regex.String()
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// matchString matches one SAN with the router's StringMatcher semantics
// (a regex must match the whole SAN). It runs once per handshake.
func matchString(m config.StringMatch, v string) bool {
	sm := router.CompileString(m)
	return sm.Match(v)
}

// serverTLS returns the TLS config of a listener; it reads the listener's
// current config and secrets at each handshake.
func (ln *listener) serverTLS() *tls.Config {
	p := ln.p
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			l := ln.cfg.Load()
			if l.TLS == nil {
				return nil, fmt.Errorf("listener %q no longer terminates TLS", l.Name)
			}
			st := p.state.Load()
			cert := st.secrets[l.TLS.CertSecret]
			if cert == nil || cert.Cert == nil {
				return nil, &missingSecretError{listener: l.Name, name: l.TLS.CertSecret}
			}
			alpn := l.TLS.ALPN
			if len(alpn) == 0 {
				if l.HTTP != nil {
					alpn = []string{"h2", "http/1.1"}
				}
			}
			cfg := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert.Cert},
				NextProtos:   alpn,
			}
			if l.TLS.ValidationSecret != "" {
				roots := st.secrets[l.TLS.ValidationSecret]
				if !roots.HasRoots() {
					return nil, &missingSecretError{listener: l.Name, name: l.TLS.ValidationSecret}
				}
				cfg.ClientAuth = tls.RequestClientCert
				if l.TLS.RequireClientCert {
					cfg.ClientAuth = tls.RequireAnyClientCert
				}
				sans := l.TLS.MatchSANs
				cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
					if len(raw) == 0 {
						return nil // only reachable when client certs are optional
					}
					chain := make([]*x509.Certificate, 0, len(raw))
					for _, r := range raw {
						c, err := x509.ParseCertificate(r)
						if err != nil {
							return fmt.Errorf("client certificate: %w", err)
						}
						chain = append(chain, c)
					}
					return verifyPeer(chain, roots, sans, true)
				}
			}
			return cfg, nil
		},
	}
}

// peerIdentity returns the first URI SAN of the verified client certificate.
func peerIdentity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	if u := cs.PeerCertificates[0].URIs; len(u) > 0 {
		return u[0].String()
	}
	return ""
}

// peerIdentityOf returns the peer's identity and whether it presented a
// certificate. Client certificates are only requested when the listener
// has a validation context, and then always verified (serverTLS), so a
// certificate here is a verified one.
func peerIdentityOf(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	return peerIdentity(cs), true
}

// spiffeTrustDomain returns the trust domain of the leaf's SPIFFE ID, which
// must be its only URI SAN.
func spiffeTrustDomain(leaf *x509.Certificate) (string, error) {
	if len(leaf.URIs) != 1 || leaf.URIs[0].Scheme != "spiffe" || leaf.URIs[0].Host == "" {
		return "", fmt.Errorf("peer certificate is not an X.509-SVID: it needs exactly one spiffe:// URI SAN, has %s", peerIDs(leaf))
	}
	return leaf.URIs[0].Host, nil
}

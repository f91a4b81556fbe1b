package bundles

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/trust"
)

// Reason classifies why a peer's bundle was not accepted. It is the reason
// label of causeway_trust_bundle_refused_total.
type Reason string

// Reasons a fetch is refused.
const (
	ReasonTransport         Reason = "transport"           // connect, timeout, TLS protocol failure
	ReasonAuth              Reason = "auth"                // the endpoint did not authenticate as configured
	ReasonHTTPStatus        Reason = "http_status"         // answer other than 200
	ReasonTooLarge          Reason = "too_large"           // document above FetcherOptions.MaxDocumentBytes
	ReasonParse             Reason = "parse"               // not a SPIFFE bundle document
	ReasonNoAuthorities     Reason = "no_x509_authorities" // no x509-svid key
	ReasonNotCA             Reason = "not_ca"              // an authority is not a CA certificate, or has no key Go can use
	ReasonTrustDomain       Reason = "trust_domain"        // an authority names another trust domain
	ReasonExpired           Reason = "expired"             // every authority has expired
	ReasonSequenceBackwards Reason = "sequence_backwards"  // spiffe_sequence below the last accepted one
	ReasonSequenceReused    Reason = "sequence_reused"     // same spiffe_sequence, different roots
)

// RefusedError is why a peer's bundle was refused. The last good bundle of
// the peer stays in use.
type RefusedError struct {
	TrustDomain spiffeid.TrustDomain
	URL         string // empty when the document did not come from a fetch
	Reason      Reason
	Field       string // the part of the exchange or document at fault
	Fix         string // what an operator should do
	Err         error
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	b.WriteString("bundles: peer ")
	b.WriteString(e.TrustDomain.Name())
	if e.URL != "" {
		b.WriteString(" (")
		b.WriteString(e.URL)
		b.WriteString(")")
	}
	b.WriteString(": bundle refused (")
	b.WriteString(string(e.Reason))
	b.WriteString("): ")
	b.WriteString(e.Field)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Fix != "" {
		b.WriteString("; fix: ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

func (e *RefusedError) Unwrap() error { return e.Err }

func refused(td spiffeid.TrustDomain, r Reason, field, fix string, err error) *RefusedError {
	return &RefusedError{TrustDomain: td, Reason: r, Field: field, Fix: fix, Err: err}
}

// ParseDocument parses a SPIFFE bundle document served for trust domain td
// and checks its X.509 authorities at now: there must be at least one, each
// must be a CA certificate (basicConstraints CA:TRUE, keyCertSign if key usage
// is present), none may carry a SPIFFE ID of another trust domain, and at
// least one must not have expired. Errors are *RefusedError.
func ParseDocument(td spiffeid.TrustDomain, doc []byte, now time.Time) (*spiffebundle.Bundle, error) {
	b, err := spiffebundle.Parse(td, doc)
	if err != nil {
		return nil, refused(td, ReasonParse, "document", "the endpoint must serve a SPIFFE bundle (JWKS) document; check the URL points at the peer's bundle endpoint", err)
	}
	if err := checkAuthorities(td, b.X509Authorities(), now); err != nil {
		return nil, err
	}
	return b, nil
}

func checkAuthorities(td spiffeid.TrustDomain, roots []*x509.Certificate, now time.Time) *RefusedError {
	if len(roots) == 0 {
		return refused(td, ReasonNoAuthorities, "keys", `the document has no key with "use": "x509-svid"; the peer must publish its X.509 roots`, nil)
	}
	live := 0
	for i, c := range roots {
		field := fmt.Sprintf("x509-svid authority %d (sha256 %s)", i, trust.Fingerprint(c))
		if !c.BasicConstraintsValid || !c.IsCA {
			return refused(td, ReasonNotCA, field, "an X.509 authority must be a CA certificate (basicConstraints CA:TRUE); the document is tampered with or the peer publishes leaves as roots", nil)
		}
		if c.PublicKey == nil || c.PublicKeyAlgorithm == x509.UnknownPublicKeyAlgorithm {
			// x509 parses a certificate whose key algorithm it does not
			// know, with no key: such a root verifies nothing, and the
			// bundle could not be served again.
			return refused(td, ReasonNotCA, field+" public key", "an X.509 authority must carry an RSA, ECDSA or Ed25519 public key; the document is tampered with or the peer uses a key type Go cannot verify with", nil)
		}
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return refused(td, ReasonNotCA, field, "an X.509 authority must have key usage keyCertSign; the document is tampered with or the peer publishes the wrong certificate", nil)
		}
		for _, u := range c.URIs {
			if u.Scheme == "spiffe" && u.Host != td.Name() {
				return refused(td, ReasonTrustDomain, field+" URI SAN",
					fmt.Sprintf("the authority names trust domain %q, not %q; check the peer's trust domain and endpoint URL in the federation config", u.Host, td.Name()), nil)
			}
		}
		if now.Before(c.NotAfter) {
			live++
		}
	}
	if live == 0 {
		return refused(td, ReasonExpired, "x509-svid authorities",
			fmt.Sprintf("every authority expired, the latest at %s; the peer must rotate its roots", latestNotAfter(roots).UTC().Format(time.RFC3339)), nil)
	}
	return nil
}

func latestNotAfter(certs []*x509.Certificate) time.Time {
	var t time.Time
	for _, c := range certs {
		if c.NotAfter.After(t) {
			t = c.NotAfter
		}
	}
	return t
}

// earliestNotAfter is the bundle's expiry: the first root to expire.
func earliestNotAfter(certs []*x509.Certificate) time.Time {
	var t time.Time
	for i, c := range certs {
		if i == 0 || c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// checkSequence refuses next if its spiffe_sequence goes below prev's, or
// equals it while the roots differ. Bundles without a sequence are not
// compared.
func checkSequence(prev, next *spiffebundle.Bundle) *RefusedError {
	if prev == nil {
		return nil
	}
	ps, pok := prev.SequenceNumber()
	ns, nok := next.SequenceNumber()
	if !pok || !nok {
		return nil
	}
	td := next.TrustDomain()
	switch {
	case ns < ps:
		return refused(td, ReasonSequenceBackwards, "spiffe_sequence",
			fmt.Sprintf("served %d after %d was accepted; a peer's sequence must not go backwards (a replayed or rolled-back document); if the peer really reset its bundle, re-bootstrap it", ns, ps), nil)
	case ns == ps && !sameRoots(prev.X509Authorities(), next.X509Authorities()):
		return refused(td, ReasonSequenceReused, "spiffe_sequence",
			fmt.Sprintf("the roots changed but the sequence stayed %d; the peer must increase spiffe_sequence on every change", ns), nil)
	}
	return nil
}

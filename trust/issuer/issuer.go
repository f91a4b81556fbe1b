package issuer

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Signer signs X.509-SVIDs and knows the trust anchors of its trust domain.
// *trust.CA satisfies it; so can a CA with root rotation or an adapter to an
// upstream authority such as SPIRE. Implementations must be safe for
// concurrent use.
type Signer interface {
	// SignSVID issues an SVID for id from a DER PKCS#10 CSR, with lifetime
	// ttl, and returns the chain: leaf first, then intermediates, without
	// the root.
	SignSVID(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error)
	// Bundle returns the current trust anchors of the signer's trust
	// domain. The server does not modify it.
	Bundle() *x509bundle.Bundle
}

// SignerFuncs adapts two functions to Signer, for signers whose methods
// have other names, e.g. a root-rotating bundles.Authority:
//
//	issuer.SignerFuncs{SignFunc: a.Sign, BundleFunc: a.X509Bundle}
type SignerFuncs struct {
	SignFunc   func(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error)
	BundleFunc func() *x509bundle.Bundle
}

// SignSVID calls SignFunc.
func (s SignerFuncs) SignSVID(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	return s.SignFunc(csrDER, id, ttl)
}

// Bundle calls BundleFunc.
func (s SignerFuncs) Bundle() *x509bundle.Bundle { return s.BundleFunc() }

// Authenticator turns the bearer token of a Sign call into the one SPIFFE ID
// the token proves. Implementations must be safe for concurrent use and must
// never put the token (or any part of it) in an error or a log line.
//
// Errors: wrap ErrInvalidToken when the token does not authenticate (the
// caller gets Unauthenticated); any other error means the authenticator
// could not decide (the caller gets Unavailable and retries).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (spiffeid.ID, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, token string) (spiffeid.ID, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, token string) (spiffeid.ID, error) {
	return f(ctx, token)
}

// Sentinel errors, for errors.Is.
var (
	// ErrInvalidToken: the token does not prove any identity (unknown,
	// expired, wrong audience, revoked). Maps to codes.Unauthenticated.
	ErrInvalidToken = errors.New("token does not authenticate")
	// ErrAuthenticatorUnavailable: the authenticator could not check the
	// token (apiserver unreachable, forbidden, timed out). Maps to
	// codes.Unavailable.
	ErrAuthenticatorUnavailable = errors.New("authenticator unavailable")
	// ErrInsecureTarget: ClientConfig.Insecure was set for a target that
	// is not a loopback IP address.
	ErrInsecureTarget = errors.New("plaintext is allowed only to a loopback IP address")
)

// Metadata used by Sign calls.
const (
	// AuthorizationHeader is the gRPC metadata key that carries the token,
	// as "Bearer <token>".
	AuthorizationHeader = "authorization"
	bearerScheme        = "Bearer"
	// MaxTokenLen bounds the token a server accepts, in bytes.
	MaxTokenLen = 16 << 10
	// MaxCSRLen bounds the CSR a server accepts, in bytes.
	MaxCSRLen = 16 << 10
)

// DefaultServerID is the SPIFFE ID clients expect the issuer to present:
// spiffe://<td>/causeway/control-plane, the control plane's own SVID (the
// same ID as bundles.ControlPlaneID; the issuer is served by the control
// plane). Workload IDs start with /ns/, so no workload can hold it.
func DefaultServerID(td spiffeid.TrustDomain) spiffeid.ID {
	// The segments are constant and valid, so only a zero td fails; it
	// yields the zero ID.
	id, _ := spiffeid.FromSegments(td, "causeway", "control-plane")
	return id
}

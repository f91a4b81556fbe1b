package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/metadata"

	"github.com/causewaymesh/causeway/internal/h2grpc"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/trustpb"
)

// SVID is an X.509-SVID fetched from the issuer, with the trust bundle that
// came with it. It is immutable once returned: share it, never modify it.
// String and GoString never print the private key.
type SVID struct {
	// ID is the SPIFFE ID in the leaf's URI SAN.
	ID spiffeid.ID
	// Certificates is the chain, leaf first.
	Certificates []*x509.Certificate
	// PrivateKey is the leaf's key (ECDSA P-256), generated in this process.
	PrivateKey crypto.Signer
	// Bundle holds the trust anchors of ID's trust domain.
	Bundle *x509bundle.Bundle
	// NotAfter is the leaf's expiry.
	NotAfter time.Time
	// RenewAt is when to fetch a new SVID (half of the lifetime).
	RenewAt time.Time
}

// X509SVID returns the SVID in go-spiffe's form (sharing certificates and
// key).
func (s *SVID) X509SVID() *x509svid.SVID {
	return &x509svid.SVID{ID: s.ID, Certificates: s.Certificates, PrivateKey: s.PrivateKey}
}

// TLSCertificate returns the chain and key as a tls.Certificate.
func (s *SVID) TLSCertificate() *tls.Certificate {
	c := &tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
	c.Certificate = make([][]byte, len(s.Certificates))
	for i, cert := range s.Certificates {
		c.Certificate[i] = cert.Raw
	}
	return c
}

// String shows the ID, serial and times; never the key.
func (s *SVID) String() string {
	if s == nil || len(s.Certificates) == 0 {
		return "issuer.SVID{}"
	}
	return fmt.Sprintf("issuer.SVID{id=%s serial=%s not_after=%s renew_at=%s}", s.ID,
		s.Certificates[0].SerialNumber.Text(16), s.NotAfter.UTC().Format(time.RFC3339), s.RenewAt.UTC().Format(time.RFC3339))
}

// GoString is String, so that %#v cannot print the key either.
func (s *SVID) GoString() string { return s.String() }

// TokenSource returns the bearer token for one Sign call. It is called once
// per call, so a token file rotated on disk (a projected service-account
// token) is picked up. Errors must not contain the token.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken returns a TokenSource that always returns token.
func StaticToken(token string) TokenSource {
	return func(context.Context) (string, error) { return token, nil }
}

// FileToken returns a TokenSource that reads the token from path on every
// call, trimming surrounding whitespace (a projected service-account token,
// or a bootstrap token file holding only the token).
func FileToken(path string) TokenSource {
	return func(context.Context) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("issuer: reading the token: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		clear(b)
		if tok == "" {
			return "", fmt.Errorf("issuer: token file %s is empty", path)
		}
		return tok, nil
	}
}

// ClientConfig configures a Client. Target and Token are required, and
// exactly one of Bundle or Insecure.
type ClientConfig struct {
	// Target is the issuer's address, host:port (any gRPC target).
	Target string
	// Bundle authenticates the issuer: its serving certificate must be an
	// X.509-SVID that chains to Bundle and carries ServerID. TLS 1.3 only.
	Bundle x509bundle.Source
	// ServerID is the issuer's SPIFFE ID; required with Bundle. By
	// convention DefaultServerID(td).
	ServerID spiffeid.ID
	// Insecure uses plaintext. It is refused unless Target is a loopback IP
	// literal (127.0.0.0/8 or ::1): for tests and same-host local mode.
	Insecure bool
	// Token supplies the bearer token for each call.
	Token TokenSource
	// ID is the SPIFFE ID to ask for; zero means the one the token proves.
	ID spiffeid.ID
	// TTL is the lifetime to ask for; zero means the server's default.
	TTL time.Duration
	// Rand is the randomness for keys and CSRs; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock used to verify the SVID; nil means time.Now.
	Now func() time.Time
}

// Client fetches X.509-SVIDs from an issuer. For each Fetch it generates a
// fresh ECDSA P-256 key that never leaves the process and sends only a CSR.
// It is safe for concurrent use.
type Client struct {
	conn   *h2grpc.ClientConn
	svid   trustpb.SVIDClient
	target string
	token  TokenSource
	id     spiffeid.ID
	ttlSec int64
	rand   io.Reader
	now    func() time.Time
}

// NewClient validates cfg and creates a Client. No connection is made until
// the first Fetch. Close releases it.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Target == "" {
		return nil, errors.New("issuer: ClientConfig.Target is empty; set the issuer's host:port")
	}
	if cfg.Token == nil {
		return nil, errors.New("issuer: ClientConfig.Token is nil; use issuer.FileToken(path) or issuer.StaticToken")
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("issuer: ClientConfig.TTL is %v; use 0 for the server's default", cfg.TTL)
	}
	var tc *tls.Config // nil: plaintext
	switch {
	case cfg.Insecure && cfg.Bundle != nil:
		return nil, errors.New("issuer: ClientConfig sets both Bundle and Insecure; choose one")
	case cfg.Insecure:
		if err := checkLoopback(cfg.Target); err != nil {
			return nil, err
		}
	case cfg.Bundle != nil:
		if cfg.ServerID.IsZero() {
			return nil, errors.New("issuer: ClientConfig.ServerID is empty; set the issuer's SPIFFE ID, e.g. issuer.DefaultServerID(td)")
		}
		tc = tlsconfig.TLSClientConfig(cfg.Bundle, tlsconfig.AuthorizeID(cfg.ServerID))
		tc.MinVersion = tls.VersionTLS13
	default:
		return nil, errors.New("issuer: ClientConfig has no Bundle; set the trust bundle that authenticates the issuer (or Insecure for loopback tests)")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	conn, err := h2grpc.Dial(cfg.Target, h2grpc.Options{TLS: tc})
	if err != nil {
		return nil, fmt.Errorf("issuer: client for %s: %w", cfg.Target, err)
	}
	ttlSec := int64(cfg.TTL / time.Second)
	if cfg.TTL%time.Second != 0 {
		ttlSec++
	}
	return &Client{
		conn: conn, svid: trustpb.NewSVIDClient(conn), target: cfg.Target, token: cfg.Token,
		id: cfg.ID, ttlSec: ttlSec, rand: cfg.Rand, now: cfg.Now,
	}, nil
}

func checkLoopback(target string) error {
	host, _, err := net.SplitHostPort(strings.TrimPrefix(target, "dns:///"))
	if err != nil {
		return fmt.Errorf("issuer: ClientConfig.Target %q: %w: %w", target, ErrInsecureTarget, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("issuer: ClientConfig.Target %q: %w; use Bundle for anything else", target, ErrInsecureTarget)
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Fetch generates a key, sends a CSR and returns the verified SVID. Errors
// from the server wrap its gRPC status (status.Code works on them).
func (c *Client) Fetch(ctx context.Context) (*SVID, error) {
	tok, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), c.rand)
	if err != nil {
		return nil, fmt.Errorf("issuer: generating an SVID key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(c.rand, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("issuer: creating a CSR: %w", err)
	}
	req := &trustpb.SignRequest{Csr: csr, TtlSeconds: c.ttlSec}
	if !c.id.IsZero() {
		req.SpiffeId = c.id.String()
	}
	ctx = metadata.AppendToOutgoingContext(ctx, AuthorizationHeader, bearerScheme+" "+tok)
	resp, err := c.svid.Sign(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("issuer: Sign at %s: %w", c.target, err)
	}
	s, err := c.verify(resp, key)
	if err != nil {
		return nil, fmt.Errorf("issuer: the SVID from %s is unusable: %w", c.target, err)
	}
	return s, nil
}

// verify checks the response: the chain parses and verifies against the
// returned bundle now, the leaf carries our key, and its ID is the one we
// asked for (if any).
func (c *Client) verify(resp *trustpb.SignResponse, key *ecdsa.PrivateKey) (*SVID, error) {
	if len(resp.GetCertChain()) == 0 {
		return nil, errors.New("cert_chain is empty")
	}
	chain := make([]*x509.Certificate, len(resp.GetCertChain()))
	for i, der := range resp.GetCertChain() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("cert_chain[%d]: %w", i, err)
		}
		chain[i] = cert
	}
	if !key.PublicKey.Equal(chain[0].PublicKey) {
		return nil, errors.New("cert_chain[0] does not carry the key of our CSR")
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, fmt.Errorf("cert_chain[0]: %w", err)
	}
	if resp.GetSpiffeId() != id.String() {
		return nil, fmt.Errorf("spiffe_id %q differs from the leaf's %q", resp.GetSpiffeId(), id)
	}
	if !c.id.IsZero() && c.id != id {
		return nil, fmt.Errorf("the leaf is for %q, not the requested %q", id, c.id)
	}
	if len(resp.GetBundle()) == 0 {
		return nil, errors.New("bundle is empty")
	}
	roots := make([]*x509.Certificate, len(resp.GetBundle()))
	for i, der := range resp.GetBundle() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("bundle[%d]: %w", i, err)
		}
		roots[i] = cert
	}
	bundle := x509bundle.FromX509Authorities(id.TrustDomain(), roots)
	now := c.now()
	if _, _, err := x509svid.Verify(chain, bundle, x509svid.WithTime(now)); err != nil {
		return nil, fmt.Errorf("verifying the chain against the returned bundle: %w", err)
	}
	renewAt := time.Unix(resp.GetRenewAtUnix(), 0)
	if resp.GetRenewAtUnix() == 0 || renewAt.After(chain[0].NotAfter) {
		renewAt, _ = trust.RenewAt(chain[0], now)
	}
	return &SVID{ID: id, Certificates: chain, PrivateKey: key, Bundle: bundle, NotAfter: chain[0].NotAfter, RenewAt: renewAt}, nil
}

package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/trustpb"
)

// ServerOptions configures a Server. Signer and Authenticator are required.
type ServerOptions struct {
	// Signer signs the SVIDs; *trust.CA satisfies it.
	Signer Signer
	// Authenticator proves the caller's identity from its bearer token.
	Authenticator Authenticator
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives one line per Sign call; nil discards. Tokens are
	// never logged.
	Logger *slog.Logger
	// Now is the clock used for latency and renewal times; nil means
	// time.Now.
	Now func() time.Time
	// DefaultTTL is the SVID lifetime when a request asks for 0. Zero
	// means trust.DefaultSVIDTTL.
	DefaultTTL time.Duration
	// MinTTL is the shortest lifetime a request may ask for; shorter
	// requests are refused with InvalidArgument. Zero means
	// trust.MinSVIDTTL.
	MinTTL time.Duration
	// MaxTTL caps the lifetime; longer requests are shortened to it. Zero
	// means DefaultTTL.
	MaxTTL time.Duration
}

// Server implements trustpb.SVIDServer. It is safe for concurrent use.
type Server struct {
	trustpb.UnimplementedSVIDServer

	signer  Signer
	auth    Authenticator
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	defTTL  time.Duration
	minTTL  time.Duration
	maxTTL  time.Duration
}

// NewServer validates opts, registers the metrics and returns a Server.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Signer == nil {
		return nil, errors.New("issuer: ServerOptions.Signer is nil; pass a *trust.CA or another Signer")
	}
	if opts.Authenticator == nil {
		return nil, errors.New("issuer: ServerOptions.Authenticator is nil; pass a k8sauth.Authenticator or a TokenFileAuthenticator")
	}
	if opts.DefaultTTL == 0 {
		opts.DefaultTTL = trust.DefaultSVIDTTL
	}
	if opts.MinTTL == 0 {
		opts.MinTTL = trust.MinSVIDTTL
	}
	if opts.MaxTTL == 0 {
		opts.MaxTTL = opts.DefaultTTL
	}
	switch {
	case opts.MinTTL < 0 || opts.DefaultTTL < 0 || opts.MaxTTL < 0:
		return nil, fmt.Errorf("issuer: ServerOptions TTLs must not be negative (MinTTL %v, DefaultTTL %v, MaxTTL %v)", opts.MinTTL, opts.DefaultTTL, opts.MaxTTL)
	case opts.DefaultTTL < opts.MinTTL || opts.DefaultTTL > opts.MaxTTL:
		return nil, fmt.Errorf("issuer: ServerOptions.DefaultTTL %v is outside [MinTTL %v, MaxTTL %v]; change one of them", opts.DefaultTTL, opts.MinTTL, opts.MaxTTL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := NewMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{
		signer: opts.Signer, auth: opts.Authenticator, log: opts.Logger, metrics: m,
		now: opts.Now, defTTL: opts.DefaultTTL, minTTL: opts.MinTTL, maxTTL: opts.MaxTTL,
	}, nil
}

// Register registers the SVID service on a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) { trustpb.RegisterSVIDServer(r, s) }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Sign implements trustpb.SVIDServer: authenticate, validate the request,
// check that the requested identity is the proven one, sign. Every outcome
// is logged and counted; refusals carry the status codes documented in
// svid.proto.
func (s *Server) Sign(ctx context.Context, req *trustpb.SignRequest) (*trustpb.SignResponse, error) {
	start := s.now()

	token, msg := bearerToken(ctx)
	if msg != "" {
		return nil, s.refuse(ctx, start, codes.Unauthenticated, ReasonMissingToken, spiffeid.ID{}, msg)
	}
	proven, err := s.auth.Authenticate(ctx, token)
	if err != nil {
		switch {
		case errors.Is(err, ErrInvalidToken):
			return nil, s.refuse(ctx, start, codes.Unauthenticated, ReasonInvalidToken, spiffeid.ID{},
				"the bearer token does not authenticate: "+err.Error())
		case ctx.Err() != nil:
			return nil, s.refuse(ctx, start, status.FromContextError(ctx.Err()).Code(), ReasonCanceled, spiffeid.ID{},
				"the call ended while authenticating the token: "+ctx.Err().Error())
		default:
			return nil, s.refuse(ctx, start, codes.Unavailable, ReasonAuthenticatorUnavailable, spiffeid.ID{},
				"the token could not be checked now, retry later: "+err.Error())
		}
	}

	id := proven
	if req.GetSpiffeId() != "" {
		asked, err := spiffeid.FromString(req.GetSpiffeId())
		if err != nil {
			return nil, s.refuse(ctx, start, codes.InvalidArgument, ReasonInvalidSPIFFEID, proven,
				fmt.Sprintf("spiffe_id %q is not a SPIFFE ID (%v); send spiffe://<trust-domain>/<path>, or leave it empty for %q",
					truncate(req.GetSpiffeId(), 256), err, proven.String()))
		}
		if asked != proven {
			return nil, s.refuse(ctx, start, codes.PermissionDenied, ReasonIdentityMismatch, proven,
				fmt.Sprintf("spiffe_id %q is not the identity the token proves, %q; ask for %q or leave spiffe_id empty",
					asked.String(), proven.String(), proven.String()))
		}
	}

	ttl, msg := s.ttl(req.GetTtlSeconds())
	if msg != "" {
		return nil, s.refuse(ctx, start, codes.InvalidArgument, ReasonInvalidTTL, id, msg)
	}
	if msg := CheckCSR(req.GetCsr()); msg != "" {
		return nil, s.refuse(ctx, start, codes.InvalidArgument, ReasonInvalidCSR, id, msg)
	}

	chain, err := s.signer.SignSVID(req.GetCsr(), id, ttl)
	if err == nil && len(chain) == 0 {
		err = errors.New("the signer returned an empty chain")
	}
	if err != nil {
		if errors.Is(err, trust.ErrBadCSR) {
			return nil, s.refuse(ctx, start, codes.InvalidArgument, ReasonInvalidCSR, id, "csr: "+err.Error())
		}
		return nil, s.refuse(ctx, start, codes.Internal, ReasonSignFailed, id,
			fmt.Sprintf("signing an SVID for %q failed: %v", id.String(), err))
	}

	leaf := chain[0]
	now := s.now()
	renewAt, _ := trust.RenewAt(leaf, now)
	resp := &trustpb.SignResponse{
		CertChain:     make([][]byte, len(chain)),
		SpiffeId:      id.String(),
		ExpiresAtUnix: leaf.NotAfter.Unix(),
		RenewAtUnix:   renewAt.Unix(),
	}
	for i, c := range chain {
		resp.CertChain[i] = c.Raw
	}
	if b := s.signer.Bundle(); b != nil {
		roots := b.X509Authorities()
		resp.Bundle = make([][]byte, len(roots))
		for i, c := range roots {
			resp.Bundle[i] = c.Raw
		}
	}

	elapsed := now.Sub(start)
	s.metrics.Requests.WithLabelValues(ResultIssued, ReasonOK).Inc()
	s.metrics.Issued.Inc()
	s.metrics.Duration.WithLabelValues(ResultIssued).Observe(elapsed.Seconds())
	s.log.LogAttrs(ctx, slog.LevelInfo, "issued SVID",
		slog.String("spiffe_id", id.String()),
		slog.String("serial", leaf.SerialNumber.Text(16)),
		slog.Time("not_after", leaf.NotAfter),
		slog.Time("renew_at", renewAt),
		slog.String("peer", peerAddr(ctx)),
		slog.Duration("elapsed", elapsed))
	return resp, nil
}

// refuse logs and counts a refused or failed call and returns its status.
// msg must never contain the token.
func (s *Server) refuse(ctx context.Context, start time.Time, code codes.Code, reason string, id spiffeid.ID, msg string) error {
	result := ResultRefused
	level := slog.LevelWarn
	switch code {
	case codes.Unavailable, codes.Internal, codes.Canceled, codes.DeadlineExceeded:
		result, level = ResultFailed, slog.LevelError
		if code == codes.Canceled || code == codes.DeadlineExceeded {
			level = slog.LevelInfo
		}
	}
	elapsed := s.now().Sub(start)
	s.metrics.Requests.WithLabelValues(result, reason).Inc()
	s.metrics.Duration.WithLabelValues(result).Observe(elapsed.Seconds())
	attrs := []slog.Attr{
		slog.String("code", code.String()),
		slog.String("reason", reason),
		slog.String("error", msg),
		slog.String("peer", peerAddr(ctx)),
		slog.Duration("elapsed", elapsed),
	}
	if !id.IsZero() {
		attrs = append(attrs, slog.String("spiffe_id", id.String()))
	}
	s.log.LogAttrs(ctx, level, "refused SVID request", attrs...)
	return status.Error(code, msg)
}

// ttl turns the requested ttl_seconds into a lifetime, or a message naming
// the field.
func (s *Server) ttl(secs int64) (time.Duration, string) {
	switch {
	case secs == 0:
		return s.defTTL, ""
	case secs < 0:
		return 0, fmt.Sprintf("ttl_seconds is %d; it must be 0 (the default, %d) or at least %d",
			secs, int64(s.defTTL/time.Second), int64(s.minTTL/time.Second))
	case secs > int64(math.MaxInt64/time.Second) || time.Duration(secs)*time.Second > s.maxTTL:
		return s.maxTTL, ""
	case time.Duration(secs)*time.Second < s.minTTL:
		return 0, fmt.Sprintf("ttl_seconds is %d; the minimum is %d (or 0 for the default, %d)",
			secs, int64(s.minTTL/time.Second), int64(s.defTTL/time.Second))
	}
	return time.Duration(secs) * time.Second, ""
}

// CheckCSR validates a DER PKCS#10 request the way the server does and
// returns "" or a message naming the field "csr" and the fix. It accepts
// ECDSA P-256 and P-384, RSA of at least 2048 bits and Ed25519 keys.
func CheckCSR(der []byte) string {
	switch {
	case len(der) == 0:
		return "csr is empty; send a DER-encoded PKCS#10 certificate signing request"
	case len(der) > MaxCSRLen:
		return fmt.Sprintf("csr is %d bytes; the limit is %d", len(der), MaxCSRLen)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		hint := ""
		if strings.HasPrefix(string(der[:min(len(der), 10)]), "-----BEGIN") {
			hint = " (it looks like PEM; send the DER bytes inside it)"
		}
		return fmt.Sprintf("csr is not a DER-encoded PKCS#10 request%s: %v", hint, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Sprintf("csr public key is ECDSA on %s; use P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Sprintf("csr public key is RSA with %d bits; use at least 2048 (or ECDSA P-256)", k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Sprintf("csr public key has unsupported type %T; use ECDSA P-256", csr.PublicKey)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Sprintf("csr signature does not verify with the request's own public key: %v", err)
	}
	return ""
}

// bearerToken extracts the token from "authorization: Bearer <token>", or
// returns a message saying what is wrong. The message never contains the
// token.
func bearerToken(ctx context.Context) (token, msg string) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(AuthorizationHeader)
	switch len(vals) {
	case 0:
		return "", "missing gRPC metadata \"authorization: Bearer <token>\"; send the workload's token"
	case 1:
	default:
		return "", fmt.Sprintf("gRPC metadata %q appears %d times; send it once", AuthorizationHeader, len(vals))
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	switch {
	case !ok || !strings.EqualFold(scheme, bearerScheme):
		return "", "gRPC metadata \"authorization\" is not \"Bearer <token>\""
	case tok == "" || strings.TrimSpace(tok) != tok || strings.ContainsAny(tok, " \t\r\n"):
		return "", "the bearer token in gRPC metadata \"authorization\" is empty or contains whitespace"
	case len(tok) > MaxTokenLen:
		return "", fmt.Sprintf("the bearer token is %d bytes; the limit is %d", len(tok), MaxTokenLen)
	}
	return tok, ""
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

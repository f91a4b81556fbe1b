// Package fakespire is an in-process stand-in for a SPIRE server, for tests
// of package spire. It is NOT SPIRE: it serves the SVID and Bundle services
// of github.com/spiffe/spire-api-sdk over real gRPC with mTLS on 127.0.0.1 and
// implements the behaviour those services document (and that SPIRE's
// pkg/server/api implements) for the RPCs Causeway uses:
//
//   - SVID.NewDownstreamX509CA: the caller must present an X509-SVID whose ID
//     is registered as a downstream entry (AddDownstream), else
//     PermissionDenied "caller is not a downstream workload". The CSR conveys
//     only the public key. The CA certificate has the trust domain ID as its
//     only URI SAN, honours preferred_ttl (0: Config.DefaultCATTL), is clamped
//     to the server's own CA, and is signed by the server CA (an intermediate
//     under the root), so ca_cert_chain is [downstream CA, server CA] and
//     x509_authorities is [root].
//   - Bundle.GetBundle: no authentication; the server's own bundle.
//   - Bundle.ListFederatedBundles, BatchCreate/Update/SetFederatedBundle: the
//     caller must present an admin X509-SVID (AddAdmin), else
//     PermissionDenied. Federated bundles never include the server's own trust
//     domain. List pages at Config.PageSize when the request gives no size.
//     Batch RPCs answer one result per bundle, in order: InvalidArgument for
//     an invalid or the server's own trust domain or an authority that does
//     not parse; Create fails AlreadyExists and Update NotFound; Set upserts.
//     Output masks are honoured (nil: every field).
//
// SPIRE's "local caller" (Unix socket) authorization is not modelled.
// Concurrency: a *Server is safe for concurrent use.
package fakespire

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Config configures a fake server.
type Config struct {
	TrustDomain  spiffeid.TrustDomain
	Now          func() time.Time // signing clock for downstream CAs; nil: time.Now
	DefaultCATTL time.Duration    // 0: 24h
	PageSize     int              // ListFederatedBundles page size when the request has none; 0: 2
	RefreshHint  time.Duration    // of the server's own bundle
}

// DownstreamHook may replace a NewDownstreamX509CA answer. It gets the
// caller's public key and the answer the server would give.
type DownstreamHook func(pub crypto.PublicKey, resp *svidv1.NewDownstreamX509CAResponse) (*svidv1.NewDownstreamX509CAResponse, error)

// Server is a running fake SPIRE server.
type Server struct {
	svidv1.UnimplementedSVIDServer
	bundlev1.UnimplementedBundleServer

	cfg      Config
	root     *x509.Certificate
	rootKey  crypto.Signer
	caCert   *x509.Certificate // the server's X509 CA, under root
	caKey    crypto.Signer
	serverID spiffeid.ID
	lis      net.Listener
	srv      *grpc.Server
	done     chan struct{}

	mu          sync.Mutex
	downstream  map[spiffeid.ID]bool
	admins      map[spiffeid.ID]bool
	federated   map[string]*types.Bundle
	hook        DownstreamHook
	dsCalls     int
	sequence    uint64
	forceStatus map[string]*types.Status // trust domain -> batch status
}

// Start listens on 127.0.0.1:0 and serves until Stop.
func Start(cfg Config) (*Server, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("fakespire: Config.TrustDomain is empty")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DefaultCATTL == 0 {
		cfg.DefaultCATTL = 24 * time.Hour
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 2
	}
	s := &Server{
		cfg: cfg, downstream: map[spiffeid.ID]bool{}, admins: map[spiffeid.ID]bool{},
		federated: map[string]*types.Bundle{}, forceStatus: map[string]*types.Status{}, sequence: 1,
		done: make(chan struct{}),
	}
	// The PKI is valid for years around both the real clock (TLS) and the
	// signing clock.
	start := cfg.Now()
	if real := time.Now(); real.Before(start) {
		start = real
	}
	var err error
	s.rootKey, s.root, err = newCA(cfg.TrustDomain, "fake SPIRE root", nil, nil, start.Add(-time.Hour), start.Add(20*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	s.caKey, s.caCert, err = newCA(cfg.TrustDomain, "fake SPIRE server CA", s.root, s.rootKey, start.Add(-time.Hour), start.Add(10*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	if s.serverID, err = spiffeid.FromSegments(cfg.TrustDomain, "spire", "server"); err != nil {
		return nil, err
	}
	serverSVID, err := s.IssueSVID(s.serverID)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{tlsCert(serverSVID)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    x509.NewCertPool(),
	}
	tc.ClientCAs.AddCert(s.root)
	s.lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)), grpc.UnaryInterceptor(s.authorize))
	svidv1.RegisterSVIDServer(s.srv, s)
	bundlev1.RegisterBundleServer(s.srv, s)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(s.lis)
	}()
	return s, nil
}

// Addr is the server's host:port on 127.0.0.1.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ServerID is spiffe://<td>/spire/server, the ID of the server's own SVID.
func (s *Server) ServerID() spiffeid.ID { return s.serverID }

// Stop closes the listener and every connection, and waits for Serve to end.
func (s *Server) Stop() {
	s.srv.Stop()
	<-s.done
}

// Root is the server's root CA certificate and key, for tests that forge
// answers.
func (s *Server) Root() (*x509.Certificate, crypto.Signer) { return s.root, s.rootKey }

// Bundle is the server's X.509 bundle (its x509_authorities).
func (s *Server) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(s.cfg.TrustDomain, []*x509.Certificate{s.root})
}

// AddDownstream registers id as a downstream workload entry.
func (s *Server) AddDownstream(id spiffeid.ID) { s.mu.Lock(); s.downstream[id] = true; s.mu.Unlock() }

// RemoveDownstream deletes the downstream entry of id.
func (s *Server) RemoveDownstream(id spiffeid.ID) {
	s.mu.Lock()
	delete(s.downstream, id)
	s.mu.Unlock()
}

// AddAdmin registers id as an admin workload entry.
func (s *Server) AddAdmin(id spiffeid.ID) { s.mu.Lock(); s.admins[id] = true; s.mu.Unlock() }

// SetDownstreamHook installs (or, with nil, removes) a hook on
// NewDownstreamX509CA answers.
func (s *Server) SetDownstreamHook(h DownstreamHook) { s.mu.Lock(); s.hook = h; s.mu.Unlock() }

// ForceStatus makes batch RPCs answer st for the bundle of trust domain td
// (nil: normal behaviour again).
func (s *Server) ForceStatus(td string, st *types.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == nil {
		delete(s.forceStatus, td)
		return
	}
	s.forceStatus[td] = st
}

// DownstreamCalls counts NewDownstreamX509CA calls that reached the handler.
func (s *Server) DownstreamCalls() int { s.mu.Lock(); defer s.mu.Unlock(); return s.dsCalls }

// Federated returns a copy of the stored federated bundle of td.
func (s *Server) Federated(td string) (*types.Bundle, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.federated[td]
	if !ok {
		return nil, false
	}
	return proto.Clone(b).(*types.Bundle), true
}

// IssueSVID issues an X509-SVID for id under the server CA, valid for a year
// on the real clock (it is used for TLS).
func (s *Server) IssueSVID(id spiffeid.ID) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		URIs:                  []*url.URL{id.URL()},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, key.Public(), s.caKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf, s.caCert}, PrivateKey: key}, nil
}

// SignCA signs pub as a CA certificate with the server CA, with the given
// URI SAN and lifetime on the signing clock; isCA false makes a leaf. For
// tests that forge answers.
func (s *Server) SignCA(pub crypto.PublicKey, uri *url.URL, ttl time.Duration, isCA bool) (*x509.Certificate, error) {
	now := s.cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"fake SPIRE downstream"}},
		NotBefore:             now.Add(-10 * time.Second),
		NotAfter:              now.Add(ttl),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	if uri != nil {
		tmpl.URIs = []*url.URL{uri}
	}
	if tmpl.NotAfter.After(s.caCert.NotAfter) {
		tmpl.NotAfter = s.caCert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, pub, s.caKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// ServerCA is the server's own X509 CA certificate (ca_cert_chain[1]).
func (s *Server) ServerCA() *x509.Certificate { return s.caCert }

func (s *Server) authorize(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	switch info.FullMethod {
	case bundlev1.Bundle_GetBundle_FullMethodName:
		return handler(ctx, req)
	case svidv1.SVID_NewDownstreamX509CA_FullMethodName:
		id, ok := callerID(ctx)
		s.mu.Lock()
		allowed := ok && s.downstream[id]
		s.mu.Unlock()
		if !allowed {
			return nil, status.Error(codes.PermissionDenied, "caller is not a downstream workload")
		}
		return handler(ctx, req)
	default:
		id, ok := callerID(ctx)
		s.mu.Lock()
		allowed := ok && s.admins[id]
		s.mu.Unlock()
		if !allowed {
			return nil, status.Error(codes.PermissionDenied, "authorization denied for method "+info.FullMethod)
		}
		return handler(ctx, req)
	}
}

func callerID(ctx context.Context) (spiffeid.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return spiffeid.ID{}, false
	}
	id, err := x509svid.IDFromCert(ti.State.VerifiedChains[0][0])
	return id, err == nil
}

// NewDownstreamX509CA implements the SVID service RPC.
func (s *Server) NewDownstreamX509CA(_ context.Context, req *svidv1.NewDownstreamX509CARequest) (*svidv1.NewDownstreamX509CAResponse, error) {
	s.mu.Lock()
	s.dsCalls++
	hook := s.hook
	s.mu.Unlock()
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "malformed CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid CSR signature: %v", err)
	}
	ttl := time.Duration(req.GetPreferredTtl()) * time.Second
	if ttl <= 0 {
		ttl = s.cfg.DefaultCATTL
	}
	ca, err := s.SignCA(csr.PublicKey, s.cfg.TrustDomain.ID().URL(), ttl, true)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to sign downstream X.509 CA: %v", err)
	}
	resp := &svidv1.NewDownstreamX509CAResponse{
		CaCertChain:     [][]byte{ca.Raw, s.caCert.Raw},
		X509Authorities: [][]byte{s.root.Raw},
	}
	if hook != nil {
		return hook(csr.PublicKey, resp)
	}
	return resp, nil
}

// GetBundle implements the Bundle service RPC.
func (s *Server) GetBundle(_ context.Context, req *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	s.mu.Lock()
	seq := s.sequence
	s.mu.Unlock()
	b := &types.Bundle{
		TrustDomain:     s.cfg.TrustDomain.Name(),
		X509Authorities: []*types.X509Certificate{{Asn1: s.root.Raw}},
		RefreshHint:     int64(s.cfg.RefreshHint / time.Second),
		SequenceNumber:  seq,
	}
	applyMask(b, req.GetOutputMask())
	return b, nil
}

// ListFederatedBundles implements the Bundle service RPC.
func (s *Server) ListFederatedBundles(_ context.Context, req *bundlev1.ListFederatedBundlesRequest) (*bundlev1.ListFederatedBundlesResponse, error) {
	size := int(req.GetPageSize())
	if size <= 0 {
		size = s.cfg.PageSize
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "could not parse token %q", tok)
		}
		start = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tds := make([]string, 0, len(s.federated))
	for td := range s.federated {
		tds = append(tds, td)
	}
	slices.Sort(tds)
	resp := &bundlev1.ListFederatedBundlesResponse{}
	end := min(start+size, len(tds))
	for _, td := range tds[min(start, len(tds)):end] {
		b := proto.Clone(s.federated[td]).(*types.Bundle)
		applyMask(b, req.GetOutputMask())
		resp.Bundles = append(resp.Bundles, b)
	}
	if end < len(tds) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

type batchOp int

const (
	opCreate batchOp = iota
	opUpdate
	opSet
)

// batch applies one bundle of a batch RPC and returns its status and stored
// bundle.
func (s *Server) batch(op batchOp, b *types.Bundle, mask *types.BundleMask) (*types.Status, *types.Bundle) {
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return st(codes.InvalidArgument, fmt.Sprintf("trust domain argument is not valid: %q", b.GetTrustDomain())), nil
	}
	if td == s.cfg.TrustDomain {
		return st(codes.InvalidArgument, fmt.Sprintf("a federated bundle for the server's own trust domain (%s) is not allowed", td)), nil
	}
	for i, xa := range b.GetX509Authorities() {
		if _, err := x509.ParseCertificate(xa.GetAsn1()); err != nil {
			return st(codes.InvalidArgument, fmt.Sprintf("failed to convert bundle: x509_authorities[%d]: %v", i, err)), nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.forceStatus[td.Name()]; ok {
		return proto.Clone(f).(*types.Status), nil
	}
	_, exists := s.federated[td.Name()]
	switch {
	case op == opCreate && exists:
		return st(codes.AlreadyExists, "bundle already exists"), nil
	case op == opUpdate && !exists:
		return st(codes.NotFound, "bundle not found"), nil
	}
	stored := proto.Clone(b).(*types.Bundle)
	stored.TrustDomain = td.Name()
	s.federated[td.Name()] = stored
	out := proto.Clone(stored).(*types.Bundle)
	applyMask(out, mask)
	return st(codes.OK, ""), out
}

// BatchSetFederatedBundle implements the Bundle service RPC (upsert).
func (s *Server) BatchSetFederatedBundle(_ context.Context, req *bundlev1.BatchSetFederatedBundleRequest) (*bundlev1.BatchSetFederatedBundleResponse, error) {
	resp := &bundlev1.BatchSetFederatedBundleResponse{}
	for _, b := range req.GetBundle() {
		stt, out := s.batch(opSet, b, req.GetOutputMask())
		resp.Results = append(resp.Results, &bundlev1.BatchSetFederatedBundleResponse_Result{Status: stt, Bundle: out})
	}
	return resp, nil
}

// BatchCreateFederatedBundle implements the Bundle service RPC.
func (s *Server) BatchCreateFederatedBundle(_ context.Context, req *bundlev1.BatchCreateFederatedBundleRequest) (*bundlev1.BatchCreateFederatedBundleResponse, error) {
	resp := &bundlev1.BatchCreateFederatedBundleResponse{}
	for _, b := range req.GetBundle() {
		stt, out := s.batch(opCreate, b, req.GetOutputMask())
		resp.Results = append(resp.Results, &bundlev1.BatchCreateFederatedBundleResponse_Result{Status: stt, Bundle: out})
	}
	return resp, nil
}

// BatchUpdateFederatedBundle implements the Bundle service RPC. The input
// mask is not modelled: every field is replaced.
func (s *Server) BatchUpdateFederatedBundle(_ context.Context, req *bundlev1.BatchUpdateFederatedBundleRequest) (*bundlev1.BatchUpdateFederatedBundleResponse, error) {
	resp := &bundlev1.BatchUpdateFederatedBundleResponse{}
	for _, b := range req.GetBundle() {
		stt, out := s.batch(opUpdate, b, req.GetOutputMask())
		resp.Results = append(resp.Results, &bundlev1.BatchUpdateFederatedBundleResponse_Result{Status: stt, Bundle: out})
	}
	return resp, nil
}

func st(c codes.Code, msg string) *types.Status { return &types.Status{Code: int32(c), Message: msg} }

// applyMask clears the fields a non-nil mask leaves out, as SPIRE does.
func applyMask(b *types.Bundle, m *types.BundleMask) {
	if m == nil {
		return
	}
	if !m.X509Authorities {
		b.X509Authorities = nil
	}
	if !m.JwtAuthorities {
		b.JwtAuthorities = nil
	}
	if !m.WitAuthorities {
		b.WitAuthorities = nil
	}
	if !m.RefreshHint {
		b.RefreshHint = 0
	}
	if !m.SequenceNumber {
		b.SequenceNumber = 0
	}
}

func newCA(td spiffeid.TrustDomain, cn string, parent *x509.Certificate, parentKey crypto.Signer, notBefore, notAfter time.Time) (crypto.Signer, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

func tlsCert(s *x509svid.SVID) tls.Certificate {
	c := tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
	for _, cert := range s.Certificates {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

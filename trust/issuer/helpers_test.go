package issuer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/causewaymesh/causeway/trust"
)

var testTD = spiffeid.RequireTrustDomainFromString("example.org")

// Tokens of the test token file. They are long enough and unique.
const (
	tokWeb = "web-token-0123456789abcdef"
	tokDB  = "db-token-0123456789abcdef"
)

var (
	idWeb = spiffeid.RequireFromString("spiffe://example.org/ns/demo/sa/web")
	idDB  = spiffeid.RequireFromString("spiffe://example.org/ns/demo/sa/db")
)

// testCtx returns a context that ends with the test or after 30 s.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestCA(t testing.TB, now func() time.Time) *trust.CA {
	t.Helper()
	ca, err := trust.NewSelfSignedCA(testTD, trust.CAOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func writeTestTokenFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	data := "# test tokens\n\ndemo/web " + tokWeb + "\nspiffe://example.org/ns/demo/sa/db\t" + tokDB + "\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newTokenAuth(t testing.TB) *TokenFileAuthenticator {
	t.Helper()
	a, err := NewTokenFileAuthenticator(writeTestTokenFile(t), testTD)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (slog handlers
// are called from gRPC goroutines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv is an issuer server on 127.0.0.1 over TLS with an SVID of its
// own (DefaultServerID) from the same CA.
type testEnv struct {
	ca     *trust.CA
	srv    *Server
	reg    *prometheus.Registry
	logs   *syncBuffer
	addr   string
	server *grpc.Server
}

type envOptions struct {
	now    func() time.Time
	auth   Authenticator
	signer Signer
	opts   ServerOptions
}

func startEnv(t testing.TB, eo envOptions) *testEnv {
	t.Helper()
	if eo.now == nil {
		eo.now = time.Now
	}
	e := &testEnv{ca: newTestCA(t, eo.now), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	opts := eo.opts
	opts.Signer = eo.signer
	if opts.Signer == nil {
		opts.Signer = e.ca
	}
	opts.Authenticator = eo.auth
	if opts.Authenticator == nil {
		opts.Authenticator = newTokenAuth(t)
	}
	opts.Registerer = e.reg
	opts.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Now = eo.now
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv

	serving, err := e.ca.IssueSVID(DefaultServerID(testTD), 0)
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsconfig.TLSServerConfig(serving)
	tc.MinVersion = tls.VersionTLS13
	e.server = grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	srv.Register(e.server)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.server.Serve(lis)
	}()
	t.Cleanup(func() {
		e.server.Stop()
		<-done
	})
	return e
}

// client returns a Client for the env over TLS, closed with the test.
func (e *testEnv) client(t testing.TB, cfg ClientConfig) *Client {
	t.Helper()
	cfg.Target = e.addr
	cfg.Bundle = e.ca.Bundle()
	cfg.ServerID = DefaultServerID(testTD)
	if cfg.Token == nil {
		cfg.Token = StaticToken(tokWeb)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newCSR(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, AuthorizationHeader, "Bearer "+token)
}

func csrFor(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

package k8sauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/internal/testcluster"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// serviceAccountIssuer is the --service-account-issuer of testcluster's
// kube-apiserver.
const serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

func createSA(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string) *corev1.ServiceAccount {
	t.Helper()
	sa, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service account %s/%s: %v", ns, name, err)
	}
	return sa
}

func requestToken(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, sa string, audiences ...string) string {
	t.Helper()
	exp := int64(600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// mintToken signs a service-account JWT with the cluster's own signing key
// (testcluster writes it to <Dir>/pki/sa.key), so that a token can be
// genuinely expired: the TokenRequest API refuses lifetimes under 10 minutes.
func mintToken(t *testing.T, dir string, sa *corev1.ServiceAccount, audience string, iat, exp time.Time) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pki", "sa.key"))
	if err != nil {
		t.Fatalf("reading the cluster's service-account signing key: %v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("sa.key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// kube-apiserver's key ID: base64url(sha256(PKIX DER)).
	kid := sha256.Sum256(pubDER)
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": base64.RawURLEncoding.EncodeToString(kid[:])})
	claims, _ := json.Marshal(map[string]any{
		"iss": serviceAccountIssuer,
		"sub": "system:serviceaccount:" + sa.Namespace + ":" + sa.Name,
		"aud": []string{audience},
		"iat": iat.Unix(), "nbf": iat.Unix(), "exp": exp.Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      sa.Namespace,
			"serviceaccount": map[string]string{"name": sa.Name, "uid": string(sa.UID)},
		},
	})
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestAuthenticateAgainstRealAPIServer(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	c := testcluster.Start(t, testcluster.Options{SkipCRDs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := c.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web := createSA(t, ctx, cs, "demo", "web")
	createSA(t, ctx, cs, "demo", "db")
	gone := createSA(t, ctx, cs, "demo", "gone")

	webTok := requestToken(t, ctx, cs, "demo", "web", DefaultAudience)
	goneTok := requestToken(t, ctx, cs, "demo", "gone", DefaultAudience)
	if err := cs.CoreV1().ServiceAccounts("demo").Delete(ctx, gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mintedFresh := mintToken(t, c.Dir, web, DefaultAudience, now.Add(-time.Minute), now.Add(time.Hour))
	mintedExpired := mintToken(t, c.Dir, web, DefaultAudience, now.Add(-2*time.Hour), now.Add(-time.Hour))

	auth, err := New(cs.AuthenticationV1(), td, Options{})
	if err != nil {
		t.Fatal(err)
	}
	webID := spiffeid.RequireFromString("spiffe://cluster.local/ns/demo/sa/web")

	t.Run("authenticate", func(t *testing.T) {
		tests := []struct {
			name  string
			token string
			want  spiffeid.ID
			err   error
			msg   string
		}{
			{name: "projected token", token: webTok, want: webID},
			// Proves that the minted tokens are well-formed, so that
			// the expired one below fails for its expiry alone.
			{name: "minted fresh token", token: mintedFresh, want: webID},
			{name: "minted expired token", token: mintedExpired, err: issuer.ErrInvalidToken, msg: "expired"},
			{name: "wrong audience", token: requestToken(t, ctx, cs, "demo", "web", "someone-else"), err: issuer.ErrInvalidToken, msg: `audience "causeway"`},
			{name: "default audience (apiserver)", token: requestToken(t, ctx, cs, "demo", "web"), err: issuer.ErrInvalidToken},
			{name: "deleted service account", token: goneTok, err: issuer.ErrInvalidToken},
			{name: "bogus", token: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", err: issuer.ErrInvalidToken},
			{name: "not a service account (admin static token)", token: c.Config.BearerToken, err: issuer.ErrInvalidToken},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				id, err := auth.Authenticate(ctx, tt.token)
				if tt.err == nil {
					if err != nil || id != tt.want {
						t.Fatalf("Authenticate = %v, %v; want %v", id, err, tt.want)
					}
					return
				}
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				t.Logf("refused: %v", err)
				if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("err = %v, want it to mention %q", err, tt.msg)
				}
				if strings.Contains(err.Error(), tt.token) {
					t.Error("the error contains the token")
				}
			})
		}
	})

	t.Run("issuer end to end", func(t *testing.T) {
		ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{})
		if err != nil {
			t.Fatal(err)
		}
		addr := serveIssuer(t, ca, auth)
		dbID := spiffeid.RequireFromString("spiffe://cluster.local/ns/demo/sa/db")
		tests := []struct {
			name  string
			token string
			id    spiffeid.ID
			code  codes.Code
			msg   string
		}{
			{name: "web signs for itself", token: webTok, id: webID},
			{name: "web token asking for db", token: webTok, id: dbID, code: codes.PermissionDenied, msg: `"spiffe://cluster.local/ns/demo/sa/db" is not the identity the token proves, "spiffe://cluster.local/ns/demo/sa/web"`},
			{name: "expired token", token: mintedExpired, code: codes.Unauthenticated, msg: "expired"},
			{name: "wrong audience", token: requestToken(t, ctx, cs, "demo", "web", "other"), code: codes.Unauthenticated},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cl, err := issuer.NewClient(issuer.ClientConfig{
					Target: addr, Bundle: ca.Bundle(), ServerID: issuer.DefaultServerID(td),
					Token: issuer.StaticToken(tt.token), ID: tt.id,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				s, err := cl.Fetch(ctx)
				if tt.code != codes.OK {
					if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
						t.Fatalf("err = %v, want %v containing %q", err, tt.code, tt.msg)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if s.ID != webID {
					t.Fatalf("SVID for %v, want %v", s.ID, webID)
				}
			})
		}
	})

	t.Run("apiserver unreachable", func(t *testing.T) {
		cfg := *c.Config
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Host = "https://" + l.Addr().String()
		l.Close() // nothing listens there now
		dead, err := kubernetes.NewForConfig(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		a, err := New(dead.AuthenticationV1(), td, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(ctx, webTok); !errors.Is(err, issuer.ErrAuthenticatorUnavailable) {
			t.Fatalf("err = %v, want ErrAuthenticatorUnavailable", err)
		}
	})
}

// serveIssuer runs an issuer.Server on 127.0.0.1 over TLS and returns its
// address.
func serveIssuer(t *testing.T, ca *trust.CA, auth issuer.Authenticator) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := issuer.NewServer(issuer.ServerOptions{Signer: ca, Authenticator: auth, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.IssueSVID(issuer.DefaultServerID(td), 0)
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsconfig.TLSServerConfig(serving)
	tc.MinVersion = tls.VersionTLS13
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		<-done
		if n := testutil.ToFloat64(srv.Metrics().Issued); n != 1 {
			t.Errorf("issued %v SVIDs, want 1", n)
		}
	})
	return lis.Addr().String()
}

func TestParseServiceAccount(t *testing.T) {
	tests := []struct {
		user, ns, sa string
		ok           bool
	}{
		{"system:serviceaccount:demo:web", "demo", "web", true},
		{"system:serviceaccount:demo", "", "", false},
		{"system:serviceaccount::web", "", "", false},
		{"system:serviceaccount:demo:", "", "", false},
		{"system:serviceaccount:a:b:c", "", "", false},
		{"admin", "", "", false},
		{"system:node:n1", "", "", false},
	}
	for _, tt := range tests {
		ns, sa, err := parseServiceAccount(tt.user)
		if (err == nil) != tt.ok || ns != tt.ns || sa != tt.sa {
			t.Errorf("parseServiceAccount(%q) = %q, %q, %v", tt.user, ns, sa, err)
		}
	}
}

func TestNewValidation(t *testing.T) {
	if _, err := New(nil, td, Options{}); err == nil {
		t.Error("New(nil client) succeeded")
	}
	if _, err := New(fakeGetter{}, spiffeid.TrustDomain{}, Options{}); err == nil {
		t.Error("New(empty trust domain) succeeded")
	}
	a, err := New(fakeGetter{}, td, Options{})
	if err != nil || a.Audience() != DefaultAudience {
		t.Errorf("New: %v, audience %q", err, a.Audience())
	}
}

// fakeGetter only satisfies the constructor; nothing calls it.
type fakeGetter struct {
	authnv1client.TokenReviewsGetter
}

func (fakeGetter) TokenReviews() authnv1client.TokenReviewInterface { return nil }

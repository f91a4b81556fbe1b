package trustplane

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/causewaymesh/causeway/internal/testcluster"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/bundles"
	"github.com/causewaymesh/causeway/trust/issuer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

func TestPlaneIssuesAndServesItsBundle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td := spiffeid.RequireTrustDomainFromString("east.local")
	dir, files := t.TempDir(), t.TempDir()
	web := spiffeid.RequireFromString("spiffe://east.local/ns/shop/sa/web")
	tok, err := issuer.GenerateToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(files, "tokens")
	if err := issuer.WriteTokenFile(tokens, []issuer.TokenEntry{{ID: web, Token: tok}}); err != nil {
		t.Fatal(err)
	}
	auth, err := issuer.NewTokenFileAuthenticator(tokens, td)
	if err != nil {
		t.Fatal(err)
	}
	start := func() *Plane {
		p, err := Start(Options{TrustDomain: td, CADir: dir, IssuerAddress: "127.0.0.1:0", BundleAddress: "127.0.0.1:0", Authenticator: auth})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := start()
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key file: %v %v, want mode 0600", fi, err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	changed := make(chan struct{}, 1)
	wg.Go(func() {
		p.Run(runCtx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	})
	defer func() { stop(); wg.Wait() }()

	// A workload gets its SVID with its bootstrap token, authenticating the
	// issuer with the roots the plane hands out.
	roots, err := x509bundle.Parse(td, p.RootsPEM())
	if err != nil {
		t.Fatal(err)
	}
	c, err := issuer.NewClient(issuer.ClientConfig{Target: p.IssuerAddr(), Bundle: roots, ServerID: bundles.ControlPlaneID(td), Token: issuer.StaticToken(tok)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	svid, err := c.Fetch(ctx)
	if err != nil || svid.ID != web {
		t.Fatalf("Fetch: %v, %v; want an SVID for %s", svid, err, web)
	}

	// go-spiffe's own federation client reads the bundle endpoint.
	b, err := federation.FetchBundle(ctx, td, p.BundleURL(), federation.WithSPIFFEAuth(roots, bundles.ControlPlaneID(td)))
	if err != nil {
		t.Fatalf("federation.FetchBundle: %v", err)
	}
	if len(b.X509Authorities()) != 1 || !b.X509Authorities()[0].Equal(roots.X509Authorities()[0]) {
		t.Fatalf("bundle endpoint serves %d roots, want the plane's root", len(b.X509Authorities()))
	}

	// A bundle change reaches onChange (the control plane's Republish).
	other := spiffeid.RequireTrustDomainFromString("west.local")
	peer, err := Start(Options{TrustDomain: other, CADir: t.TempDir(), IssuerAddress: "127.0.0.1:0", Authenticator: auth})
	if err != nil {
		t.Fatal(err)
	}
	peer.issLn.Close()
	if _, err := p.Set.SetFederated(peer.Authority.Bundle()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("onChange was not called after the bundle set changed")
	}
	if got := p.Bundles(); len(got) != 2 || len(got["west.local"]) != 1 {
		t.Fatalf("Bundles() = %v, want east.local and west.local", got)
	}

	// A restart keeps the root: sidecars' --trust-bundle stays valid.
	stop()
	wg.Wait()
	p2 := start()
	defer p2.issLn.Close()
	defer p2.bndLn.Close()
	if string(p2.RootsPEM()) != string(p.RootsPEM()) {
		t.Fatal("the root changed across a restart")
	}
}

// TestRootFromASecret: a root the user keeps in a Kubernetes Secret on a
// real apiserver signs through an intermediate; bad Secrets are refused
// with the reason.
func TestRootFromASecret(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	c := testcluster.Start(t, testcluster.Options{Name: "trustplane", GatewayAPIChannel: testcluster.ChannelNone})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	td := spiffeid.RequireTrustDomainFromString("east.local")
	root, err := trust.NewSelfSignedCA(td, trust.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := root.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(filepath.Join(dir, trust.CACertFile))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, trust.CAKeyFile))
	secrets := c.Clientset.CoreV1()
	for name, data := range map[string]map[string][]byte{
		"root":      {"tls.crt": certPEM, "tls.key": keyPEM},
		"no-key":    {"ca.crt": certPEM},
		"wrong-key": {"ca.crt": certPEM, "ca.key": []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
	} {
		if _, err := secrets.Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Start(Options{TrustDomain: td, Root: SecretRoot(ctx, secrets, "default/root"), IssuerAddress: "127.0.0.1:0",
		Authenticator: issuer.AuthenticatorFunc(func(context.Context, string) (spiffeid.ID, error) { return spiffeid.ID{}, issuer.ErrInvalidToken })})
	if err != nil {
		t.Fatal(err)
	}
	defer p.issLn.Close()
	if string(p.RootsPEM()) != string(certPEM) {
		t.Error("the plane's bundle is not the Secret's root")
	}
	s, err := p.Authority.IssueSVID(spiffeid.RequireFromString("spiffe://east.local/ns/a/sa/b"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(s.Certificates, root.Bundle()); err != nil {
		t.Errorf("an SVID does not verify against the Secret's root: %v", err)
	}
	for ref, want := range map[string]string{
		"default/no-key":    "neither ca.crt+ca.key nor tls.crt+tls.key",
		"default/wrong-key": "CA key secret default/wrong-key key ca.key",
		"default/missing":   "not found",
		"bad-ref":           "want namespace/name",
	} {
		if _, _, err := SecretRoot(ctx, secrets, ref)(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SecretRoot(%s): %v, want an error containing %q", ref, err, want)
		}
	}
}

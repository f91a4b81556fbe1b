package trust

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	tdA = spiffeid.RequireTrustDomainFromString("a.test")
	tdB = spiffeid.RequireTrustDomainFromString("b.test")
	t0  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func mustCA(t *testing.T, td spiffeid.TrustDomain, opts CAOptions) *CA {
	t.Helper()
	ca, err := NewSelfSignedCA(td, opts)
	if err != nil {
		t.Fatalf("NewSelfSignedCA(%s): %v", td, err)
	}
	return ca
}

func mustID(t *testing.T, td spiffeid.TrustDomain, ns, sa string) spiffeid.ID {
	t.Helper()
	id, err := WorkloadID(td, ns, sa)
	if err != nil {
		t.Fatalf("WorkloadID: %v", err)
	}
	return id
}

func mustIssue(t *testing.T, ca *CA, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	s, err := ca.IssueSVID(id, time.Hour)
	if err != nil {
		t.Fatalf("IssueSVID(%s): %v", id, err)
	}
	return s
}

func newCSR(t testing.TB) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return csr, key
}

// handshake runs a real mTLS handshake on 127.0.0.1 and returns the server's
// and the client's errors.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, serverCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- err
			return
		}
		buf := make([]byte, 4)
		if _, err := tc.Read(buf); err != nil {
			done <- fmt.Errorf("server read: %w", err)
			return
		}
		_, err = tc.Write([]byte("pong"))
		done <- err
	}()
	d := tls.Dialer{Config: clientCfg}
	conn, clientErr := d.DialContext(ctx, "tcp", ln.Addr().String())
	if clientErr == nil {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			clientErr = err
		} else {
			buf := make([]byte, 4)
			if _, err := conn.Read(buf); err != nil {
				clientErr = err
			} else if string(buf) != "pong" {
				clientErr = fmt.Errorf("client read %q", buf)
			}
		}
		conn.Close()
	}
	select {
	case serverErr = <-done:
	case <-ctx.Done():
		t.Fatal("server did not finish")
	}
	return serverErr, clientErr
}

func TestMTLSHandshake(t *testing.T) {
	caA := mustCA(t, tdA, CAOptions{})
	caB := mustCA(t, tdB, CAOptions{})
	impostorA := mustCA(t, tdA, CAOptions{}) // a different root claiming a.test
	interA, err := NewIntermediateCA(tdA, caA.Certificate(), caA.key, CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	serverID := mustID(t, tdA, "shop", "server")
	clientID := mustID(t, tdA, "shop", "client")
	server := mustIssue(t, caA, serverID)

	tests := []struct {
		name       string
		client     *x509svid.SVID
		clientBndl *x509bundle.Bundle
		server     *x509svid.SVID
		wantOK     bool
		wantRefuse string // substring of the server or client error
	}{
		{name: "same trust domain, authorized", client: mustIssue(t, caA, clientID), clientBndl: caA.Bundle(), server: server, wantOK: true},
		{name: "client from intermediate CA under same root", client: mustIssue(t, interA, clientID), clientBndl: caA.Bundle(), server: server, wantOK: true},
		{name: "client from another trust domain refused", client: mustIssue(t, caB, mustID(t, tdB, "shop", "client")), clientBndl: caA.Bundle(), server: server, wantRefuse: `no X.509 bundle found for trust domain: "b.test"`},
		{name: "client from a different root claiming the same trust domain refused", client: mustIssue(t, impostorA, clientID), clientBndl: caA.Bundle(), server: server, wantRefuse: "signed by unknown authority"},
		{name: "wrong client id refused by AuthorizeID", client: mustIssue(t, caA, mustID(t, tdA, "shop", "other")), clientBndl: caA.Bundle(), server: server, wantRefuse: `unexpected ID "spiffe://a.test/ns/shop/sa/other"`},
		{name: "server from another trust domain refused by client", client: mustIssue(t, caA, clientID), clientBndl: caA.Bundle(), server: mustIssue(t, caB, spiffeid.RequireFromPath(tdB, serverID.Path())), wantRefuse: `no X.509 bundle found for trust domain: "b.test"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scfg := tlsconfig.MTLSServerConfig(tc.server, caA.Bundle(), tlsconfig.AuthorizeID(clientID))
			ccfg := tlsconfig.MTLSClientConfig(tc.client, tc.clientBndl, tlsconfig.AuthorizeID(serverID))
			serr, cerr := handshake(t, scfg, ccfg)
			if tc.wantOK {
				if serr != nil || cerr != nil {
					t.Fatalf("handshake failed: server %v, client %v", serr, cerr)
				}
				return
			}
			if serr == nil && cerr == nil {
				t.Fatal("handshake succeeded, want refusal")
			}
			if got := fmt.Sprintf("server: %v; client: %v", serr, cerr); !strings.Contains(got, tc.wantRefuse) {
				t.Fatalf("refused with %s; want %q", got, tc.wantRefuse)
			}
		})
	}
}

func TestSignSVID(t *testing.T) {
	ca := mustCA(t, tdA, CAOptions{Now: fixedClock(t0), Validity: 2 * time.Hour})
	id := mustID(t, tdA, "ns1", "sa1")
	goodCSR, _ := newCSR(t)
	badCSR := append([]byte(nil), goodCSR...)
	badCSR[len(badCSR)-5] ^= 0xff // corrupt the signature
	caNotAfter := ca.Certificate().NotAfter

	tests := []struct {
		name         string
		csr          []byte
		id           spiffeid.ID
		ttl          time.Duration
		wantErr      error
		wantErrText  string
		wantNotAfter time.Time
	}{
		{name: "default ttl clamped to CA expiry", csr: goodCSR, id: id, ttl: 0, wantNotAfter: caNotAfter},
		{name: "ttl within CA lifetime", csr: goodCSR, id: id, ttl: 30 * time.Minute, wantNotAfter: t0.Add(30 * time.Minute)},
		{name: "minimum ttl", csr: goodCSR, id: id, ttl: time.Minute, wantNotAfter: t0.Add(time.Minute)},
		{name: "ttl beyond CA expiry clamped", csr: goodCSR, id: id, ttl: 48 * time.Hour, wantNotAfter: caNotAfter},
		{name: "ttl too short", csr: goodCSR, id: id, ttl: 59 * time.Second, wantErr: ErrTTLTooShort, wantErrText: "ttl 59s is less than 1m0s"},
		{name: "bad CSR signature", csr: badCSR, id: id, ttl: time.Hour, wantErr: ErrBadCSR, wantErrText: "signature"},
		{name: "garbage CSR", csr: []byte("not a csr"), id: id, ttl: time.Hour, wantErr: ErrBadCSR},
		{name: "foreign trust domain", csr: goodCSR, id: mustID(t, tdB, "ns1", "sa1"), ttl: time.Hour, wantErr: ErrForeignTrustDomain,
			wantErrText: `"spiffe://b.test/ns/ns1/sa/sa1" is in trust domain "b.test", this CA signs only for "a.test"`},
		{name: "empty id", csr: goodCSR, ttl: time.Hour, wantErrText: "SPIFFE ID is empty"},
		{name: "no path", csr: goodCSR, id: tdA.ID(), ttl: time.Hour, wantErrText: "has no path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := ca.SignSVID(tc.csr, tc.id, tc.ttl)
			if tc.wantErr != nil || tc.wantErrText != "" {
				if err == nil {
					t.Fatal("SignSVID succeeded, want error")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v is not %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErrText) {
					t.Errorf("error %q does not contain %q", err, tc.wantErrText)
				}
				return
			}
			if err != nil {
				t.Fatalf("SignSVID: %v", err)
			}
			if len(chain) != 1 {
				t.Fatalf("chain length %d, want 1 (leaf only under a self-signed root)", len(chain))
			}
			leaf := chain[0]
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != tc.id.String() {
				t.Errorf("URIs = %v, want exactly [%s]", leaf.URIs, tc.id)
			}
			if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
				t.Errorf("leaf has other SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
			}
			if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; leaf.KeyUsage != want {
				t.Errorf("KeyUsage = %v, want %v", leaf.KeyUsage, want)
			}
			if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
				t.Errorf("ExtKeyUsage = %v, want serverAuth, clientAuth", leaf.ExtKeyUsage)
			}
			if leaf.IsCA {
				t.Error("leaf is a CA")
			}
			if want := t0.Add(-ClockSkew); !leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", leaf.NotBefore, want)
			}
			if !leaf.NotAfter.Equal(tc.wantNotAfter) {
				t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, tc.wantNotAfter)
			}
			got, _, err := x509svid.Verify(chain, ca.Bundle(), x509svid.WithTime(t0))
			if err != nil || got != tc.id {
				t.Errorf("x509svid.Verify = %v, %v; want %v", got, err, tc.id)
			}
		})
	}
}

func TestIntermediateChain(t *testing.T) {
	root := mustCA(t, tdA, CAOptions{Now: fixedClock(t0), Validity: 10 * time.Hour})
	tests := []struct {
		name         string
		validity     time.Duration
		wantNotAfter time.Time
	}{
		{name: "within root lifetime", validity: 2 * time.Hour, wantNotAfter: t0.Add(2 * time.Hour)},
		{name: "clamped to root expiry", validity: 100 * time.Hour, wantNotAfter: root.Certificate().NotAfter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inter, err := NewIntermediateCA(tdA, root.Certificate(), root.key, CAOptions{Now: fixedClock(t0), Validity: tc.validity})
			if err != nil {
				t.Fatal(err)
			}
			if got := inter.Certificate().NotAfter; !got.Equal(tc.wantNotAfter) {
				t.Errorf("intermediate NotAfter = %v, want %v", got, tc.wantNotAfter)
			}
			id := mustID(t, tdA, "ns", "sa")
			csr, _ := newCSR(t)
			chain, err := inter.SignSVID(csr, id, 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 2 || chain[1] != inter.Certificate() {
				t.Fatalf("chain = %d certs, want leaf + intermediate", len(chain))
			}
			if !chain[0].NotAfter.Equal(tc.wantNotAfter) {
				t.Errorf("leaf NotAfter = %v, want clamp to intermediate %v", chain[0].NotAfter, tc.wantNotAfter)
			}
			if b := inter.Bundle().X509Authorities(); len(b) != 1 || !b[0].Equal(root.Certificate()) {
				t.Fatal("intermediate CA bundle is not the root")
			}
			got, chains, err := x509svid.Verify(chain, inter.Bundle(), x509svid.WithTime(t0))
			if err != nil || got != id {
				t.Fatalf("Verify = %v, %v", got, err)
			}
			if last := chains[0][len(chains[0])-1]; !last.Equal(root.Certificate()) {
				t.Error("verified chain does not end at the root")
			}
			// The intermediate alone is not a trust anchor for the root bundle of another domain.
			other := mustCA(t, tdA, CAOptions{Now: fixedClock(t0)})
			if _, _, err := x509svid.Verify(chain, other.Bundle(), x509svid.WithTime(t0)); err == nil {
				t.Error("chain verified against an unrelated root")
			}
		})
	}
}

func TestNewIntermediateCARefuses(t *testing.T) {
	root := mustCA(t, tdA, CAOptions{Now: fixedClock(t0)})
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := mustIssue(t, root, mustID(t, tdA, "n", "s"))
	tests := []struct {
		name    string
		td      spiffeid.TrustDomain
		cert    *x509.Certificate
		key     crypto.Signer
		now     time.Time
		wantErr error
		want    string
	}{
		{name: "key does not match", td: tdA, cert: root.Certificate(), key: otherKey, now: t0, wantErr: ErrInvalidCA, want: "does not match"},
		{name: "not a CA", td: tdA, cert: leaf.Certificates[0], key: leaf.PrivateKey, now: t0, wantErr: ErrInvalidCA, want: "is not a CA"},
		{name: "root of another trust domain", td: tdB, cert: root.Certificate(), key: root.key, now: t0, wantErr: ErrInvalidCA, want: "another trust domain"},
		{name: "root expired", td: tdA, cert: root.Certificate(), key: root.key, now: t0.Add(2 * DefaultRootValidity), wantErr: ErrCAExpired},
		{name: "nil cert", td: tdA, key: root.key, now: t0, wantErr: ErrInvalidCA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewIntermediateCA(tc.td, tc.cert, tc.key, CAOptions{Now: fixedClock(tc.now)})
			if !errors.Is(err, tc.wantErr) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.wantErr, tc.want)
			}
		})
	}
}

func TestCAOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		td   spiffeid.TrustDomain
		opts CAOptions
		want string
	}{
		{name: "empty trust domain", opts: CAOptions{}, want: "trust domain is empty"},
		{name: "validity too short", td: tdA, opts: CAOptions{Validity: time.Minute}, want: "CAOptions.Validity is 1m0s; it must be at least 1h0m0s"},
		{name: "negative validity", td: tdA, opts: CAOptions{Validity: -time.Hour}, want: "must be at least"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSelfSignedCA(tc.td, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSignSVIDCAExpired(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	ca := mustCA(t, tdA, CAOptions{Now: clock, Validity: time.Hour})
	now = t0.Add(2 * time.Hour)
	csr, _ := newCSR(t)
	if _, err := ca.SignSVID(csr, mustID(t, tdA, "a", "b"), time.Hour); !errors.Is(err, ErrCAExpired) {
		t.Fatalf("err = %v, want ErrCAExpired", err)
	}
}

func TestWriteFilesAndLoad(t *testing.T) {
	ca := mustCA(t, tdA, CAOptions{})
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	// A second write replaces the files and keeps the modes.
	if err := ca.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{CACertFile, 0o644}, {CAKeyFile, 0o600}, {BundleFile, 0o644}} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s mode %04o, want %04o", f.name, fi.Mode().Perm(), f.mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("dir has %d entries, want 3 (no temp files left)", len(entries))
	}
	cert, key, err := LoadCAFiles(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Equal(ca.Certificate()) {
		t.Error("loaded certificate differs")
	}
	inter, err := NewIntermediateCA(tdA, cert, key, CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := x509bundle.Load(tdA, filepath.Join(dir, BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	s := mustIssue(t, inter, mustID(t, tdA, "x", "y"))
	if _, _, err := x509svid.Verify(s.Certificates, b); err != nil {
		t.Fatalf("SVID from intermediate over loaded root does not verify against written bundle: %v", err)
	}
}

// plantedKey returns a CA key, its PEM, and the strings that would reveal it.
func plantedKey(t *testing.T) (*ecdsa.PrivateKey, []byte, []string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	body := strings.Split(strings.TrimSpace(string(p)), "\n")
	raw, err := key.Bytes() // the private scalar D
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(raw)
	secrets := []string{d.String(), d.Text(16), hex.EncodeToString(raw), fmt.Sprint(raw)}
	secrets = append(secrets, body[1:len(body)-1]...)
	// The detector must itself detect: formatting the raw key reveals D.
	if !strings.Contains(fmt.Sprintf("%+v", key), secrets[0]) {
		t.Fatal("planted-key detector does not recognise a formatted key")
	}
	return key, p, secrets
}

func assertNoSecret(t *testing.T, what, s string, secrets []string) {
	t.Helper()
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			t.Errorf("%s leaks key material: %q", what, s)
			return
		}
	}
}

func TestNoKeyMaterialInErrorsOrString(t *testing.T) {
	key, keyPEM, secrets := plantedKey(t)
	ca := mustCA(t, tdA, CAOptions{})
	// Swap in the planted key as the CA's key: a root CA signed by it.
	tmpl, err := caTemplate(tdA, "planted", time.Now(), time.Now().Add(time.Hour*2), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	planted := &CA{td: tdA, cert: cert, key: key, roots: []*x509.Certificate{cert}, now: time.Now, rand: rand.Reader}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		assertNoSecret(t, "CA formatted with "+f, fmt.Sprintf(f, planted), secrets)
		assertNoSecret(t, "CA value formatted with "+f, fmt.Sprintf(f, *planted), secrets)
	}
	if s := planted.String(); !strings.Contains(s, "a.test") || !strings.Contains(s, Fingerprint(cert)) {
		t.Errorf("String() = %q, want trust domain and fingerprint", s)
	}

	dir := t.TempDir()
	certPath := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(certPath, CertsPEM([]*x509.Certificate{cert}), 0o644); err != nil {
		t.Fatal(err)
	}
	otherCertPath := filepath.Join(dir, "other.crt")
	if err := os.WriteFile(otherCertPath, CertsPEM([]*x509.Certificate{ca.Certificate()}), 0o644); err != nil {
		t.Fatal(err)
	}
	truncated := append([]byte(nil), keyPEM[:len(keyPEM)/2]...)
	corrupt := []byte(strings.Replace(string(keyPEM), "PRIVATE KEY-----\n", "PRIVATE KEY-----\nAAAA", 1))
	tests := []struct {
		name     string
		certPath string
		keyData  []byte
		mode     os.FileMode
		wantErr  error
		want     string
	}{
		{name: "world readable key", certPath: certPath, keyData: keyPEM, mode: 0o644, wantErr: ErrKeyFilePermissions, want: "chmod 600"},
		{name: "group readable key", certPath: certPath, keyData: keyPEM, mode: 0o640, wantErr: ErrKeyFilePermissions, want: "mode 0640"},
		{name: "key does not match cert", certPath: otherCertPath, keyData: keyPEM, mode: 0o600, wantErr: ErrInvalidCA, want: "does not match"},
		{name: "truncated key", certPath: certPath, keyData: truncated, mode: 0o600, wantErr: ErrInvalidCA, want: "no PEM block"},
		{name: "corrupt key", certPath: certPath, keyData: corrupt, mode: 0o600, wantErr: ErrInvalidCA},
		{name: "key where cert belongs", certPath: "", keyData: keyPEM, mode: 0o600, wantErr: ErrInvalidCA, want: "no PEM CERTIFICATE"},
		{name: "ok", certPath: certPath, keyData: keyPEM, mode: 0o600},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keyPath := filepath.Join(dir, fmt.Sprintf("key%d.pem", i))
			if err := os.WriteFile(keyPath, tc.keyData, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(keyPath, tc.mode); err != nil {
				t.Fatal(err)
			}
			cp := tc.certPath
			if cp == "" {
				cp = keyPath
			}
			_, gotKey, err := LoadCAFiles(cp, keyPath)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !key.Equal(gotKey) {
					t.Fatal("loaded key differs")
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.wantErr, tc.want)
			}
			if tc.wantErr == ErrKeyFilePermissions && !strings.Contains(err.Error(), keyPath) {
				t.Errorf("err %q does not name the file %s", err, keyPath)
			}
			assertNoSecret(t, "LoadCAFiles error", err.Error(), secrets)
		})
	}

	// Errors from signing with the planted CA name no key material either.
	csr, _ := newCSR(t)
	for _, ttl := range []time.Duration{time.Second, time.Hour} {
		for _, id := range []spiffeid.ID{mustID(t, tdB, "a", "b"), mustID(t, tdA, "a", "b")} {
			if _, err := planted.SignSVID(csr[:len(csr)-1], id, ttl); err != nil {
				assertNoSecret(t, "SignSVID error", err.Error(), secrets)
			}
		}
	}
}

func TestNewCAFromChain(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("ext.test")
	root := mustCA(t, td, CAOptions{})
	inter, err := NewIntermediateCA(td, root.cert, root.key, CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := NewCAFromChain(td, inter.Chain(), inter.key, root.Roots(), CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svid := mustIssue(t, ca, mustID(t, td, "ns", "sa"))
	if _, _, err := x509svid.Verify(svid.Certificates, root.Bundle()); err != nil {
		t.Errorf("an SVID of the wrapped CA does not verify against the roots: %v", err)
	}
	other := mustCA(t, td, CAOptions{})
	for name, tc := range map[string]struct {
		chain []*x509.Certificate
		key   crypto.Signer
		roots []*x509.Certificate
		want  string
	}{
		"another key":   {inter.Chain(), other.key, root.Roots(), "does not match"},
		"another root":  {inter.Chain(), inter.key, other.Roots(), "does not chain to the given roots"},
		"no roots":      {inter.Chain(), inter.key, nil, "at least one root"},
		"leaf as a CA?": {svid.Certificates, inter.key, root.Roots(), "not a CA"},
	} {
		if _, err := NewCAFromChain(td, tc.chain, tc.key, tc.roots, CAOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}

package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/trust/trustpb"
)

func TestClientFetch(t *testing.T) {
	e := startEnv(t, envOptions{})
	ctx := testCtx(t)
	tokPath := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokPath, []byte(tokDB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cfg    ClientConfig
		wantID spiffeid.ID
		code   codes.Code
	}{
		{name: "derived id", cfg: ClientConfig{}, wantID: idWeb},
		{name: "requested id", cfg: ClientConfig{ID: idWeb, TTL: 10 * time.Minute}, wantID: idWeb},
		{name: "file token", cfg: ClientConfig{Token: FileToken(tokPath)}, wantID: idDB},
		{name: "other identity refused", cfg: ClientConfig{ID: idDB}, code: codes.PermissionDenied},
		{name: "bad token refused", cfg: ClientConfig{Token: StaticToken("wrong-wrong-wrong-wrong")}, code: codes.Unauthenticated},
		{name: "short ttl refused", cfg: ClientConfig{TTL: 10 * time.Second}, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := e.client(t, tt.cfg).Fetch(ctx)
			if tt.code != codes.OK {
				if status.Code(err) != tt.code {
					t.Fatalf("err = %v, want code %v", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.ID != tt.wantID {
				t.Errorf("ID = %v, want %v", s.ID, tt.wantID)
			}
			if !s.Bundle.HasX509Authority(e.ca.Certificate()) {
				t.Error("bundle lacks the CA root")
			}
			if _, ok := s.PrivateKey.(*ecdsa.PrivateKey); !ok {
				t.Errorf("key type %T, want ECDSA", s.PrivateKey)
			}
			if !s.RenewAt.After(time.Now()) || !s.RenewAt.Before(s.NotAfter) {
				t.Errorf("RenewAt %v not between now and NotAfter %v", s.RenewAt, s.NotAfter)
			}
			if tlsCert := s.TLSCertificate(); len(tlsCert.Certificate) != len(s.Certificates) || tlsCert.Leaf != s.Certificates[0] {
				t.Error("TLSCertificate does not carry the chain")
			}
			for _, str := range []string{s.String(), fmt.Sprintf("%#v %v", s, s)} {
				if !strings.Contains(str, s.ID.String()) || strings.Contains(str, "D:") {
					t.Errorf("String = %q", str)
				}
			}
		})
	}
}

func TestClientRefusesWrongServerID(t *testing.T) {
	e := startEnv(t, envOptions{})
	c, err := NewClient(ClientConfig{
		Target: e.addr, Bundle: e.ca.Bundle(), Token: StaticToken(tokWeb),
		ServerID: spiffeid.RequireFromString("spiffe://example.org/not/the/issuer"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Fetch(testCtx(t))
	// go-spiffe's AuthorizeID refuses the server's certificate during the
	// handshake: no request is sent.
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `unexpected ID "spiffe://example.org/causeway/control-plane"`) {
		t.Fatalf("err = %v, want Unavailable from a handshake refusing the server's ID", err)
	}
}

func TestClientInsecureLoopback(t *testing.T) {
	e := startEnv(t, envOptions{})
	// A plaintext server next to the TLS one.
	c, err := NewClient(ClientConfig{Target: e.addr, Insecure: true, Token: StaticToken(tokWeb)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The env serves TLS only, so plaintext must fail: this checks that
	// Insecure really means plaintext (and that loopback is accepted).
	if _, err := c.Fetch(testCtx(t)); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext to a TLS server: err = %v, want Unavailable", err)
	}
}

func TestNewClientConfig(t *testing.T) {
	ca := newTestCA(t, nil)
	tok := StaticToken("x")
	tests := []struct {
		name string
		cfg  ClientConfig
		want string
		is   error
	}{
		{name: "no target", cfg: ClientConfig{Token: tok, Insecure: true}, want: "Target is empty"},
		{name: "no token", cfg: ClientConfig{Target: "127.0.0.1:1", Insecure: true}, want: "Token is nil"},
		{name: "no credentials", cfg: ClientConfig{Target: "127.0.0.1:1", Token: tok}, want: "no Bundle"},
		{name: "both", cfg: ClientConfig{Target: "127.0.0.1:1", Token: tok, Insecure: true, Bundle: ca.Bundle()}, want: "both Bundle and Insecure"},
		{name: "bundle without server id", cfg: ClientConfig{Target: "127.0.0.1:1", Token: tok, Bundle: ca.Bundle()}, want: "ServerID is empty"},
		{name: "insecure remote", cfg: ClientConfig{Target: "10.0.0.1:443", Token: tok, Insecure: true}, is: ErrInsecureTarget},
		{name: "insecure hostname", cfg: ClientConfig{Target: "localhost:443", Token: tok, Insecure: true}, is: ErrInsecureTarget},
		{name: "insecure no port", cfg: ClientConfig{Target: "127.0.0.1", Token: tok, Insecure: true}, is: ErrInsecureTarget},
		{name: "negative ttl", cfg: ClientConfig{Target: "127.0.0.1:1", Token: tok, Insecure: true, TTL: -time.Second}, want: "TTL is -1s"},
		{name: "insecure v6 loopback ok", cfg: ClientConfig{Target: "[::1]:1", Token: tok, Insecure: true}},
		{name: "insecure loopback ok", cfg: ClientConfig{Target: "127.0.0.2:1", Token: tok, Insecure: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.cfg)
			if err == nil {
				_ = c.Close()
			}
			switch {
			case tt.is != nil:
				if !errors.Is(err, tt.is) {
					t.Fatalf("err = %v, want %v", err, tt.is)
				}
			case tt.want != "":
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.want)
				}
			case err != nil:
				t.Fatal(err)
			}
		})
	}
}

func TestFileToken(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FileToken(empty)(ctx); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := FileToken(filepath.Join(dir, "missing"))(ctx); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestClientVerify feeds the client's response check with responses a
// broken or malicious server could send.
func TestClientVerify(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.client(t, ClientConfig{})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := e.ca.SignSVID(csrFor(t, key), idWeb, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.ca.IssueSVID(idWeb, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := newTestCA(t, nil)
	root := e.ca.Certificate().Raw
	ok := func() *trustpb.SignResponse {
		return &trustpb.SignResponse{CertChain: [][]byte{mine[0].Raw}, Bundle: [][]byte{root}, SpiffeId: idWeb.String()}
	}
	tests := []struct {
		name   string
		mutate func(r *trustpb.SignResponse)
		want   string
	}{
		{name: "ok", mutate: func(*trustpb.SignResponse) {}},
		{name: "empty chain", mutate: func(r *trustpb.SignResponse) { r.CertChain = nil }, want: "cert_chain is empty"},
		{name: "garbage chain", mutate: func(r *trustpb.SignResponse) { r.CertChain = [][]byte{[]byte("x")} }, want: "cert_chain[0]"},
		{name: "someone else's key", mutate: func(r *trustpb.SignResponse) { r.CertChain = [][]byte{other.Certificates[0].Raw} }, want: "does not carry the key"},
		{name: "id mismatch", mutate: func(r *trustpb.SignResponse) { r.SpiffeId = idDB.String() }, want: "differs from the leaf"},
		{name: "no bundle", mutate: func(r *trustpb.SignResponse) { r.Bundle = nil }, want: "bundle is empty"},
		{name: "wrong bundle", mutate: func(r *trustpb.SignResponse) { r.Bundle = [][]byte{foreign.Certificate().Raw} }, want: "verifying the chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok()
			tt.mutate(r)
			s, err := c.verify(r, key)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if want := mine[0].NotBefore.Add(mine[0].NotAfter.Sub(mine[0].NotBefore) / 2); !s.RenewAt.Equal(want) {
					t.Errorf("RenewAt without renew_at_unix = %v, want half-life %v", s.RenewAt, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

package issuer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/trustpb"
)

// rawClient dials the env over TLS and returns the generated client, for
// requests that issuer.Client would never send.
func rawClient(t testing.TB, e *testEnv) trustpb.SVIDClient {
	t.Helper()
	tc := tlsconfig.TLSClientConfig(e.ca.Bundle(), tlsconfig.AuthorizeID(DefaultServerID(testTD)))
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return trustpb.NewSVIDClient(conn)
}

type failingSigner struct{ Signer }

func (failingSigner) SignSVID([]byte, spiffeid.ID, time.Duration) ([]*x509.Certificate, error) {
	return nil, errors.New("HSM offline")
}

func TestSignRefusals(t *testing.T) {
	valid := newCSR(t)
	tampered := append([]byte(nil), valid...)
	tampered[len(tampered)-1] ^= 0xff
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024) // deliberately weak: must be refused
	if err != nil {
		t.Fatal(err)
	}
	weakCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	pemCSR := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: valid})

	unavailable := AuthenticatorFunc(func(context.Context, string) (spiffeid.ID, error) {
		return spiffeid.ID{}, errors.New("apiserver: connection refused")
	})

	tests := []struct {
		name     string
		auth     Authenticator
		signer   bool // use failingSigner
		md       []string
		req      *trustpb.SignRequest
		code     codes.Code
		reason   string
		result   string
		contains []string
	}{
		{name: "no token", req: &trustpb.SignRequest{Csr: valid},
			code: codes.Unauthenticated, reason: ReasonMissingToken, result: ResultRefused, contains: []string{"authorization: Bearer <token>"}},
		{name: "basic scheme", md: []string{"authorization", "Basic " + tokWeb}, req: &trustpb.SignRequest{Csr: valid},
			code: codes.Unauthenticated, reason: ReasonMissingToken, result: ResultRefused, contains: []string{"not \"Bearer <token>\""}},
		{name: "two tokens", md: []string{"authorization", "Bearer " + tokWeb, "authorization", "Bearer " + tokDB}, req: &trustpb.SignRequest{Csr: valid},
			code: codes.Unauthenticated, reason: ReasonMissingToken, result: ResultRefused, contains: []string{"appears 2 times"}},
		{name: "unknown token", md: []string{"authorization", "Bearer not-a-known-token-xyz"}, req: &trustpb.SignRequest{Csr: valid},
			code: codes.Unauthenticated, reason: ReasonInvalidToken, result: ResultRefused, contains: []string{"does not authenticate"}},
		{name: "authenticator down", auth: unavailable, md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: valid},
			code: codes.Unavailable, reason: ReasonAuthenticatorUnavailable, result: ResultFailed, contains: []string{"connection refused", "retry"}},
		{name: "empty csr", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{},
			code: codes.InvalidArgument, reason: ReasonInvalidCSR, result: ResultRefused, contains: []string{"csr is empty"}},
		{name: "garbage csr", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: []byte("hello")},
			code: codes.InvalidArgument, reason: ReasonInvalidCSR, result: ResultRefused, contains: []string{"csr is not a DER-encoded PKCS#10"}},
		{name: "pem csr", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: pemCSR},
			code: codes.InvalidArgument, reason: ReasonInvalidCSR, result: ResultRefused, contains: []string{"looks like PEM"}},
		{name: "huge csr", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: make([]byte, MaxCSRLen+1)},
			code: codes.InvalidArgument, reason: ReasonInvalidCSR, result: ResultRefused, contains: []string{"csr is 16385 bytes"}},
		{name: "bad csr signature", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: tampered},
			code: codes.InvalidArgument, reason: ReasonInvalidCSR, result: ResultRefused, contains: []string{"csr signature does not verify"}},
		{name: "weak rsa", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: weakCSR},
			code: codes.InvalidArgument, reason: ReasonInvalidCSR, result: ResultRefused, contains: []string{"RSA with 1024 bits"}},
		{name: "malformed spiffe_id", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: valid, SpiffeId: "web"},
			code: codes.InvalidArgument, reason: ReasonInvalidSPIFFEID, result: ResultRefused, contains: []string{`spiffe_id "web" is not a SPIFFE ID`}},
		{name: "other identity", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: valid, SpiffeId: idDB.String()},
			code: codes.PermissionDenied, reason: ReasonIdentityMismatch, result: ResultRefused,
			contains: []string{`"spiffe://example.org/ns/demo/sa/db" is not the identity the token proves, "spiffe://example.org/ns/demo/sa/web"`}},
		{name: "other trust domain", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: valid, SpiffeId: "spiffe://evil.org/ns/demo/sa/web"},
			code: codes.PermissionDenied, reason: ReasonIdentityMismatch, result: ResultRefused, contains: []string{"evil.org", idWeb.String()}},
		{name: "negative ttl", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: valid, TtlSeconds: -5},
			code: codes.InvalidArgument, reason: ReasonInvalidTTL, result: ResultRefused, contains: []string{"ttl_seconds is -5"}},
		{name: "ttl below minimum", md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: valid, TtlSeconds: 30},
			code: codes.InvalidArgument, reason: ReasonInvalidTTL, result: ResultRefused, contains: []string{"ttl_seconds is 30; the minimum is 60"}},
		{name: "signer fails", signer: true, md: []string{"authorization", "Bearer " + tokWeb}, req: &trustpb.SignRequest{Csr: valid},
			code: codes.Internal, reason: ReasonSignFailed, result: ResultFailed, contains: []string{"HSM offline", idWeb.String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eo := envOptions{auth: tt.auth}
			if tt.signer {
				eo.signer = failingSigner{}
			}
			e := startEnv(t, eo)
			ctx := testCtx(t)
			if len(tt.md) > 0 {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
			}
			_, err := rawClient(t, e).Sign(ctx, tt.req)
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), tt.code)
			}
			for _, c := range tt.contains {
				if !strings.Contains(st.Message(), c) {
					t.Errorf("message %q does not contain %q", st.Message(), c)
				}
			}
			if got := testutil.ToFloat64(e.srv.Metrics().Requests.WithLabelValues(tt.result, tt.reason)); got != 1 {
				t.Errorf("requests{result=%s,reason=%s} = %v, want 1", tt.result, tt.reason, got)
			}
			if got := testutil.ToFloat64(e.srv.Metrics().Issued); got != 0 {
				t.Errorf("issued = %v, want 0", got)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, `"reason":"`+tt.reason+`"`) || !strings.Contains(logs, `"code":"`+tt.code.String()+`"`) {
				t.Errorf("log does not record reason %s and code %s:\n%s", tt.reason, tt.code, logs)
			}
			for _, tok := range []string{tokWeb, tokDB, "not-a-known-token-xyz"} {
				if strings.Contains(logs, tok) || strings.Contains(st.Message(), tok) {
					t.Errorf("a token leaked into the log or the status message")
				}
			}
		})
	}
}

func TestSignIssues(t *testing.T) {
	e := startEnv(t, envOptions{opts: ServerOptions{DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour}})
	c := rawClient(t, e)
	tests := []struct {
		name    string
		token   string
		id      string
		ttl     int64
		wantID  spiffeid.ID
		wantTTL time.Duration
	}{
		{name: "derived id, default ttl", token: tokWeb, wantID: idWeb, wantTTL: time.Hour},
		{name: "explicit id", token: tokDB, id: idDB.String(), ttl: 600, wantID: idDB, wantTTL: 10 * time.Minute},
		{name: "ttl capped", token: tokWeb, ttl: 10 * 86400, wantID: idWeb, wantTTL: 2 * time.Hour},
		{name: "huge ttl capped", token: tokWeb, ttl: 1 << 62, wantID: idWeb, wantTTL: 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := withToken(testCtx(t), tt.token)
			before := time.Now()
			resp, err := c.Sign(ctx, &trustpb.SignRequest{Csr: newCSR(t), SpiffeId: tt.id, TtlSeconds: tt.ttl})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetSpiffeId() != tt.wantID.String() {
				t.Errorf("spiffe_id = %q, want %q", resp.GetSpiffeId(), tt.wantID)
			}
			var bundle []*x509.Certificate
			for _, der := range resp.GetBundle() {
				cert, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				bundle = append(bundle, cert)
			}
			id, chains, err := x509svid.ParseAndVerify(resp.GetCertChain(), x509bundle.FromX509Authorities(testTD, bundle))
			if err != nil {
				t.Fatal(err)
			}
			if id != tt.wantID {
				t.Errorf("leaf id = %v, want %v", id, tt.wantID)
			}
			leaf := chains[0][0]
			if got := leaf.NotAfter.Unix(); got != resp.GetExpiresAtUnix() {
				t.Errorf("expires_at_unix = %d, leaf NotAfter = %d", resp.GetExpiresAtUnix(), got)
			}
			if lo, hi := before.Add(tt.wantTTL).Add(-time.Second), time.Now().Add(tt.wantTTL).Add(time.Second); leaf.NotAfter.Before(lo) || leaf.NotAfter.After(hi) {
				t.Errorf("NotAfter = %v, want about now+%v", leaf.NotAfter, tt.wantTTL)
			}
			wantRenew, _ := trust.RenewAt(leaf, time.Now())
			if d := resp.GetRenewAtUnix() - wantRenew.Unix(); d < -1 || d > 1 {
				t.Errorf("renew_at_unix = %d, want %d (half-life)", resp.GetRenewAtUnix(), wantRenew.Unix())
			}
		})
	}
	if got := testutil.ToFloat64(e.srv.Metrics().Issued); got != float64(len(tests)) {
		t.Errorf("issued = %v, want %d", got, len(tests))
	}
	if got := testutil.ToFloat64(e.srv.Metrics().Requests.WithLabelValues(ResultIssued, ReasonOK)); got != float64(len(tests)) {
		t.Errorf("requests{issued,ok} = %v, want %d", got, len(tests))
	}
	if n := testutil.CollectAndCount(e.srv.Metrics().Duration); n != 3 {
		t.Errorf("duration histogram has %d series, want 3 (one per result)", n)
	}
	if logs := e.logs.String(); strings.Contains(logs, tokWeb) || strings.Contains(logs, tokDB) {
		t.Error("a token leaked into the log")
	}
}

func TestNewServerOptions(t *testing.T) {
	ca := newTestCA(t, nil)
	auth := newTokenAuth(t)
	tests := []struct {
		name string
		opts ServerOptions
		want string
	}{
		{name: "no signer", opts: ServerOptions{Authenticator: auth}, want: "Signer is nil"},
		{name: "no authenticator", opts: ServerOptions{Signer: ca}, want: "Authenticator is nil"},
		{name: "default above max", opts: ServerOptions{Signer: ca, Authenticator: auth, DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour}, want: "DefaultTTL 2h0m0s is outside"},
		{name: "negative", opts: ServerOptions{Signer: ca, Authenticator: auth, MinTTL: -1}, want: "must not be negative"},
		{name: "ok", opts: ServerOptions{Signer: ca, Authenticator: auth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(tt.opts)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestMetricsRegistrationConflict(t *testing.T) {
	e := startEnv(t, envOptions{})
	_, err := NewServer(ServerOptions{Signer: e.ca, Authenticator: newTokenAuth(t), Registerer: e.reg})
	if err == nil || !strings.Contains(err.Error(), "WrapRegistererWith") {
		t.Fatalf("second server on one registry: err = %v, want a registration conflict naming the fix", err)
	}
}

// The signers of the trust tree fit: *trust.CA directly, others through
// SignerFuncs.
var _ Signer = (*trust.CA)(nil)

func TestSignerFuncs(t *testing.T) {
	ca := newTestCA(t, nil)
	e := startEnv(t, envOptions{signer: SignerFuncs{SignFunc: ca.SignSVID, BundleFunc: ca.Bundle}})
	s, err := e.client(t, ClientConfig{}).Fetch(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Bundle.HasX509Authority(ca.Certificate()) || s.Certificates[0].CheckSignatureFrom(ca.Certificate()) != nil {
		t.Fatal("the SVID was not signed through SignerFuncs")
	}
}

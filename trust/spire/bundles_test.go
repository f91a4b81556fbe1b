package spire_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/spire"
)

func newKey(t testing.TB) crypto.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// peerBundle is a bundle Causeway could have learned from a peer: a root,
// JWT and WIT keys, a refresh hint and a sequence number.
func peerBundle(t testing.TB, name string, seq uint64) *spiffebundle.Bundle {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(name)
	ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := spiffebundle.FromX509Authorities(td, []*x509.Certificate{ca.Certificate()})
	if err := b.AddJWTAuthority("jwt-"+name, newKey(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.AddWITAuthority("wit-"+name, newKey(t)); err != nil {
		t.Fatal(err)
	}
	b.SetRefreshHint(5 * time.Minute)
	b.SetSequenceNumber(seq)
	return b
}

func newBundleClient(t *testing.T, e *env) *spire.BundleClient {
	t.Helper()
	c, err := spire.NewBundleClient(e.conn, tdSPIRE)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGetBundle(t *testing.T) {
	for _, tc := range []struct {
		name string
		as   spiffeid.ID
	}{{"no SVID (GetBundle needs no authentication)", spiffeid.ID{}}, {"admin", idAdmin}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.as)
			b, err := newBundleClient(t, e).GetBundle(testCtx(t))
			if err != nil {
				t.Fatalf("GetBundle: %v", err)
			}
			root, _ := e.srv.Root()
			want := spiffebundle.FromX509Authorities(tdSPIRE, []*x509.Certificate{root})
			want.SetRefreshHint(5 * time.Minute)
			want.SetSequenceNumber(1)
			if !b.Equal(want) {
				t.Errorf("GetBundle = %+v, want SPIRE's root with hint 5m and sequence 1", b)
			}
		})
	}
	e := newEnv(t, spiffeid.ID{})
	c, err := spire.NewBundleClient(e.conn, spiffeid.RequireTrustDomainFromString("wrong.test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetBundle(testCtx(t)); !errors.Is(err, spire.ErrMalformedResponse) || !strings.Contains(err.Error(), `"wrong.test"`) {
		t.Errorf("GetBundle for the wrong trust domain: err = %v, want ErrMalformedResponse naming it", err)
	}
}

func TestPushListRoundTrip(t *testing.T) {
	e := newEnv(t, idAdmin)
	c := newBundleClient(t, e)
	ctx := testCtx(t)

	if got, err := c.ListFederatedBundles(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListFederatedBundles on an empty server = %d, %v", len(got), err)
	}
	// 5 bundles: the fake pages by 2, so listing takes 3 pages.
	names := []string{"e.test", "a.test", "d.test", "b.test", "c.test"}
	var pushed []*spiffebundle.Bundle
	for i, n := range names {
		pushed = append(pushed, peerBundle(t, n, uint64(i+10)))
	}
	if err := c.SetFederatedBundles(ctx, pushed...); err != nil {
		t.Fatalf("SetFederatedBundles: %v", err)
	}
	got, err := c.ListFederatedBundles(ctx)
	if err != nil {
		t.Fatalf("ListFederatedBundles: %v", err)
	}
	if len(got) != len(pushed) {
		t.Fatalf("listed %d bundles, want %d", len(got), len(pushed))
	}
	byTD := map[string]*spiffebundle.Bundle{}
	for _, b := range pushed {
		byTD[b.TrustDomain().Name()] = b
	}
	for i, b := range got {
		if i > 0 && got[i-1].TrustDomain().Name() >= b.TrustDomain().Name() {
			t.Errorf("not sorted by trust domain at %d", i)
		}
		if !b.Equal(byTD[b.TrustDomain().Name()]) {
			t.Errorf("bundle %s did not round-trip (authorities, refresh hint, sequence number)", b.TrustDomain())
		}
	}

	// Set is an upsert: a known trust domain is updated, a new one created.
	updated := peerBundle(t, "a.test", 99)
	fresh := peerBundle(t, "f.test", 1)
	if err := c.SetFederatedBundles(ctx, updated, fresh); err != nil {
		t.Fatalf("second SetFederatedBundles: %v", err)
	}
	got, err = c.ListFederatedBundles(ctx)
	if err != nil || len(got) != 6 {
		t.Fatalf("ListFederatedBundles = %d, %v; want 6", len(got), err)
	}
	if !got[0].Equal(updated) || !got[5].Equal(fresh) {
		t.Error("upsert did not replace a.test and add f.test")
	}
	if seq, _ := got[0].SequenceNumber(); seq != 99 {
		t.Errorf("a.test sequence = %d, want 99", seq)
	}
}

func TestPushPerBundleErrors(t *testing.T) {
	e := newEnv(t, idAdmin)
	c := newBundleClient(t, e)
	ctx := testCtx(t)
	e.srv.ForceStatus("quota.test", &types.Status{Code: int32(codes.ResourceExhausted), Message: "too many bundles"})

	junk := peerBundle(t, "junk.test", 1)
	junk.AddX509Authority(&x509.Certificate{Raw: []byte("not DER")})
	in := []*spiffebundle.Bundle{
		peerBundle(t, "ok1.test", 1),
		spiffebundle.FromX509Authorities(tdSPIRE, nil), // SPIRE's own
		peerBundle(t, "quota.test", 1),
		junk,
		peerBundle(t, "ok2.test", 1),
	}
	err := c.SetFederatedBundles(ctx, in...)
	var pe *spire.PushError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *PushError", err)
	}
	want := []struct {
		td    string
		code  codes.Code
		local bool
		msg   string
	}{
		{"spire.test", codes.InvalidArgument, true, "SPIRE's own trust domain"},
		{"quota.test", codes.ResourceExhausted, false, "too many bundles"},
		{"junk.test", codes.InvalidArgument, false, "x509_authorities[1]"},
	}
	if pe.Total != 5 || len(pe.Failed) != len(want) {
		t.Fatalf("PushError = %v; want 3 of 5 failed", pe)
	}
	for i, w := range want {
		f := pe.Failed[i]
		if f.TrustDomain != w.td || f.Code != w.code || f.Local != w.local || !strings.Contains(f.Message, w.msg) {
			t.Errorf("Failed[%d] = %+v, want %s %s local=%v containing %q", i, f, w.td, w.code, w.local, w.msg)
		}
		if status.Code(f) != w.code || !strings.Contains(f.Error(), `"`+w.td+`"`) {
			t.Errorf("Failed[%d]: status.Code = %v, Error = %q", i, status.Code(f), f.Error())
		}
	}
	var be *spire.BundleError
	if !errors.As(err, &be) || be.TrustDomain != "spire.test" {
		t.Errorf("errors.As(*BundleError) = %v", be)
	}
	for _, ok := range []string{"ok1.test", "ok2.test"} {
		if _, stored := e.srv.Federated(ok); !stored {
			t.Errorf("%s was not stored although only other bundles failed", ok)
		}
	}
	for _, bad := range []string{"spire.test", "quota.test", "junk.test"} {
		if _, stored := e.srv.Federated(bad); stored {
			t.Errorf("%s was stored", bad)
		}
	}

	if err := c.SetFederatedBundles(ctx, peerBundle(t, "x.test", 1), nil); err == nil || !strings.Contains(err.Error(), "bundles[1] is nil") {
		t.Errorf("nil bundle: err = %v", err)
	}
	if err := c.SetFederatedBundles(ctx, peerBundle(t, "y.test", 1), peerBundle(t, "y.test", 2)); err == nil || !strings.Contains(err.Error(), `bundles[0] and bundles[1] are both for trust domain "y.test"`) {
		t.Errorf("duplicate trust domain: err = %v", err)
	}
	if _, stored := e.srv.Federated("x.test"); stored {
		t.Error("a refused call stored a bundle")
	}
}

func TestBundleRPCErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		as   spiffeid.ID
		stop bool
		is   error
		code codes.Code
		msg  string
	}{
		{name: "not admin", as: idNobody, is: spire.ErrPermissionDenied, code: codes.PermissionDenied, msg: "entry create -admin"},
		{name: "no SVID", as: spiffeid.ID{}, is: spire.ErrPermissionDenied, code: codes.PermissionDenied, msg: "entry create -admin"},
		{name: "SPIRE unavailable", as: idAdmin, stop: true, is: spire.ErrUnavailable, code: codes.Unavailable, msg: "check the SPIRE server address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.as)
			c := newBundleClient(t, e)
			if tc.stop {
				e.srv.Stop()
			}
			ctx := testCtx(t)
			_, lerr := c.ListFederatedBundles(ctx)
			perr := c.SetFederatedBundles(ctx, peerBundle(t, "a.test", 1))
			for rpc, err := range map[string]error{"Bundle.ListFederatedBundles": lerr, "Bundle.BatchSetFederatedBundle": perr} {
				if !errors.Is(err, tc.is) || status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), rpc) {
					t.Errorf("%s: err = %v; want %v, code %v, naming the RPC and containing %q", rpc, err, tc.is, tc.code, tc.msg)
				}
			}
		})
	}
}

func TestListSkipsMalformedBundles(t *testing.T) {
	e := newEnv(t, idAdmin)
	c := newBundleClient(t, e)
	ctx := testCtx(t)
	if err := c.SetFederatedBundles(ctx, peerBundle(t, "good.test", 1), peerBundle(t, "fine.test", 1)); err != nil {
		t.Fatal(err)
	}
	// A bundle that SPIRE accepted but that go-spiffe cannot hold: a JWT key
	// without a key ID. Created through the raw API.
	raw := bundlev1.NewBundleClient(e.conn)
	resp, err := raw.BatchCreateFederatedBundle(ctx, &bundlev1.BatchCreateFederatedBundleRequest{Bundle: []*types.Bundle{
		{TrustDomain: "bad.test", JwtAuthorities: []*types.JWTKey{{PublicKey: []byte{1}}}},
	}})
	if err != nil || codes.Code(resp.Results[0].Status.Code) != codes.OK {
		t.Fatalf("BatchCreateFederatedBundle: %v %v", resp, err)
	}
	got, err := c.ListFederatedBundles(ctx)
	if !errors.Is(err, spire.ErrMalformedBundle) || !strings.Contains(err.Error(), `"bad.test"`) || !strings.Contains(err.Error(), "jwt_authorities[0] has an empty key_id") {
		t.Errorf("err = %v, want ErrMalformedBundle naming bad.test and the field", err)
	}
	if len(got) != 2 || got[0].TrustDomain().Name() != "fine.test" || got[1].TrustDomain().Name() != "good.test" {
		t.Errorf("got %d bundles, want the 2 good ones", len(got))
	}
}

// TestFakeCreateUpdateSemantics pins the documented behaviour the fake
// models and SetFederatedBundles relies on choosing Set over Create/Update.
func TestFakeCreateUpdateSemantics(t *testing.T) {
	e := newEnv(t, idAdmin)
	raw := bundlev1.NewBundleClient(e.conn)
	ctx := testCtx(t)
	b, err := spire.BundleToProto(peerBundle(t, "a.test", 1))
	if err != nil {
		t.Fatal(err)
	}
	up, err := raw.BatchUpdateFederatedBundle(ctx, &bundlev1.BatchUpdateFederatedBundleRequest{Bundle: []*types.Bundle{b}})
	if err != nil || codes.Code(up.Results[0].Status.Code) != codes.NotFound {
		t.Fatalf("Update of an unknown bundle = %v, %v; want NotFound", up, err)
	}
	for i, want := range []codes.Code{codes.OK, codes.AlreadyExists} {
		cr, err := raw.BatchCreateFederatedBundle(ctx, &bundlev1.BatchCreateFederatedBundleRequest{Bundle: []*types.Bundle{b}})
		if err != nil || codes.Code(cr.Results[0].Status.Code) != want {
			t.Fatalf("Create #%d = %v, %v; want %v", i, cr, err, want)
		}
	}
	stored, _ := e.srv.Federated("a.test")
	if !proto.Equal(stored, b) {
		t.Error("stored bundle differs from the created one")
	}
}

func TestBundleConversion(t *testing.T) {
	pb, err := spire.BundleToProto(peerBundle(t, "a.test", 7))
	if err != nil {
		t.Fatal(err)
	}
	if pb.RefreshHint != 300 || pb.SequenceNumber != 7 || len(pb.X509Authorities) != 1 || len(pb.JwtAuthorities) != 1 || len(pb.WitAuthorities) != 1 {
		t.Errorf("BundleToProto = %v", pb)
	}
	sub := spiffebundle.New(spiffeid.RequireTrustDomainFromString("b.test"))
	sub.SetRefreshHint(1500 * time.Millisecond)
	if pb, _ := spire.BundleToProto(sub); pb.RefreshHint != 2 || pb.SequenceNumber != 0 {
		t.Errorf("1.5s hint, no sequence: got hint %d seq %d, want 2 (rounded up) and 0", pb.RefreshHint, pb.SequenceNumber)
	}
	if _, err := spire.BundleToProto(nil); !errors.Is(err, spire.ErrMalformedBundle) {
		t.Errorf("BundleToProto(nil) err = %v", err)
	}

	good := func() *types.Bundle { return proto.Clone(pb).(*types.Bundle) }
	for _, tc := range []struct {
		name string
		mod  func(*types.Bundle)
		msg  string
	}{
		{"invalid trust domain", func(b *types.Bundle) { b.TrustDomain = "Not Valid" }, `trust_domain "Not Valid"`},
		{"bad X.509 authority", func(b *types.Bundle) { b.X509Authorities[0].Asn1 = []byte("x") }, "x509_authorities[0] is not a DER X.509 certificate"},
		{"negative refresh hint", func(b *types.Bundle) { b.RefreshHint = -1 }, "refresh_hint is -1 seconds"},
		{"overflowing refresh hint", func(b *types.Bundle) { b.RefreshHint = math.MaxInt64 }, "overflows"},
		{"empty JWT key ID", func(b *types.Bundle) { b.JwtAuthorities[0].KeyId = "" }, "jwt_authorities[0] has an empty key_id"},
		{"duplicate WIT key ID", func(b *types.Bundle) { b.WitAuthorities = append(b.WitAuthorities, b.WitAuthorities[0]) }, `wit_authorities[1] repeats key_id "wit-a.test"`},
		{"bad JWT key", func(b *types.Bundle) { b.JwtAuthorities[0].PublicKey = []byte("x") }, "is not a PKIX public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := good()
			tc.mod(b)
			_, err := spire.BundleFromProto(b)
			if !errors.Is(err, spire.ErrMalformedBundle) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want ErrMalformedBundle containing %q", err, tc.msg)
			}
		})
	}
	// Tainted flags and expiries are dropped; the authority stays.
	b := good()
	b.X509Authorities[0].Tainted = true
	b.JwtAuthorities[0].ExpiresAt = 12345
	got, err := spire.BundleFromProto(b)
	if err != nil || len(got.X509Authorities()) != 1 || len(got.JWTAuthorities()) != 1 {
		t.Errorf("tainted/expiring authorities: %v, %v", got, err)
	}
}

package spire_test

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/trust/spire"
)

func TestDialValidation(t *testing.T) {
	e := newEnv(t, spiffeid.ID{})
	sid, err := spire.ServerID(tdSPIRE)
	if err != nil || sid.String() != "spiffe://spire.test/spire/server" {
		t.Fatalf("ServerID = %v, %v", sid, err)
	}
	for _, tc := range []struct {
		name   string
		target string
		nilB   bool
		id     spiffeid.ID
		msg    string
	}{
		{"no target", "", false, sid, "target is empty"},
		{"no bundle", e.srv.Addr(), true, sid, "bundles is nil"},
		{"no server ID", e.srv.Addr(), false, spiffeid.ID{}, "serverID is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.srv.Bundle()
			if tc.nilB {
				b = nil
			}
			var err error
			if b == nil {
				_, err = spire.Dial(tc.target, nil, nil, tc.id)
			} else {
				_, err = spire.Dial(tc.target, nil, b, tc.id)
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %q", err, tc.msg)
			}
		})
	}
	// A server whose SVID does not carry the expected ID is refused.
	conn, err := spire.Dial(e.srv.Addr(), nil, e.srv.Bundle(), spiffeid.RequireFromPath(tdSPIRE, "/not/spire"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, _ := spire.NewBundleClient(conn, tdSPIRE)
	if _, err := c.GetBundle(testCtx(t)); err == nil || !strings.Contains(err.Error(), "Bundle.GetBundle") {
		t.Errorf("GetBundle from a server with an unexpected ID: err = %v", err)
	}
}

func BenchmarkSignSVID(b *testing.B) {
	e := newEnvTB(b, idCW)
	u, err := spire.NewUpstreamCA(b.Context(), spire.UpstreamOptions{TrustDomain: tdSPIRE, Conn: e.conn, Now: e.clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	csr := newCSR(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.SignSVID(csr, idWL, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBundleToProto(b *testing.B) {
	bundle := peerBundle(b, "a.test", 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spire.BundleToProto(bundle); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBundleFromProto(b *testing.B) {
	pb, err := spire.BundleToProto(peerBundle(b, "a.test", 1))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spire.BundleFromProto(pb); err != nil {
			b.Fatal(err)
		}
	}
}

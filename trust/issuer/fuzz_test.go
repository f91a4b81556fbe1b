package issuer

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/trust/trustpb"
)

// FuzzSignCSR drives the server's request path (CSR, SPIFFE ID, TTL) with
// arbitrary input. It must never panic; it must refuse with InvalidArgument
// or PermissionDenied, or issue an SVID that verifies for the proven ID.
func FuzzSignCSR(f *testing.F) {
	ca := newTestCA(f, nil)
	srv, err := NewServer(ServerOptions{Signer: ca, Authenticator: newTokenAuth(f)})
	if err != nil {
		f.Fatal(err)
	}
	valid := newCSR(f)
	f.Add(valid, "", int64(0))
	f.Add(valid, idWeb.String(), int64(3600))
	f.Add(valid, idDB.String(), int64(60))
	f.Add(valid, "spiffe://example.org/ns/demo/sa/web/", int64(-1))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: valid}), "", int64(0))
	f.Add(valid[:len(valid)/2], "", int64(0))
	f.Add([]byte{}, "", int64(1<<62))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff}, "spiffe://", int64(59))
	bundle := ca.Bundle()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(AuthorizationHeader, "Bearer "+tokWeb))

	f.Fuzz(func(t *testing.T, csr []byte, id string, ttl int64) {
		resp, err := srv.Sign(ctx, &trustpb.SignRequest{Csr: csr, SpiffeId: id, TtlSeconds: ttl})
		if err != nil {
			switch c := status.Code(err); c {
			case codes.InvalidArgument, codes.PermissionDenied:
			default:
				t.Fatalf("unexpected code %v: %v", c, err)
			}
			return
		}
		got, _, err := x509svid.ParseAndVerify(resp.GetCertChain(), bundle)
		if err != nil {
			t.Fatalf("issued chain does not verify: %v", err)
		}
		if got != idWeb {
			t.Fatalf("issued %v for a token of %v", got, idWeb)
		}
		leaf, _ := x509.ParseCertificate(resp.GetCertChain()[0])
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life > 25*time.Hour {
			t.Fatalf("lifetime %v exceeds the maximum", life)
		}
	})
}

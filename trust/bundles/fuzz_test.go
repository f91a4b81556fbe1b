package bundles

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzParseDocument: ParseDocument never panics, refuses with a
// *RefusedError, and what it accepts holds only CA roots and survives a
// marshal/parse round trip unchanged.
func FuzzParseDocument(f *testing.F) {
	ca := mustCA(f, tdPeer, nil)
	a := mustAuthority(f, mustCA(f, tdPeer, nil), AuthorityOptions{})
	if err := a.Prepare(ca); err != nil {
		f.Fatal(err)
	}
	leaf := mustSVID(f, ca, spiffeid.RequireFromPath(tdPeer, "/ns/a/sa/b")).Certificates[0]
	f.Add(a.Document())
	f.Add(marshalBundle(f, tdPeer, []*x509.Certificate{leaf}, 1, time.Second))
	f.Add(marshalBundle(f, tdPeer, mustCA(f, tdOther, nil).Bundle().X509Authorities(), 0, 0))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"use":"x509-svid","kty":"EC","x5c":["AAAA"]}],"spiffe_sequence":-1}`))
	f.Add([]byte(`{"keys":[{"use":"jwt-svid","kty":"oct","kid":"k","k":"AAAA"}],"spiffe_refresh_hint":9223372036854775807}`))
	f.Add([]byte(`null`))
	now := time.Now()
	f.Fuzz(func(t *testing.T, doc []byte) {
		b, err := ParseDocument(tdPeer, doc, now)
		if err != nil {
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason == "" || re.Field == "" {
				t.Fatalf("error %v is not a complete *RefusedError", err)
			}
			return
		}
		roots := b.X509Authorities()
		if len(roots) == 0 {
			t.Fatal("accepted a bundle without X.509 authorities")
		}
		for _, r := range roots {
			if !r.IsCA {
				t.Fatal("accepted a non-CA authority")
			}
		}
		again, err := b.Marshal()
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		b2, err := ParseDocument(tdPeer, again, now)
		if err != nil {
			t.Fatalf("re-parse of an accepted bundle: %v", err)
		}
		if !b2.Equal(b) {
			t.Fatal("round trip changed the bundle")
		}
	})
}

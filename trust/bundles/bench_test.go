package bundles

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// discardWriter is a reusable http.ResponseWriter, so the benchmark measures
// the handler and not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

func BenchmarkServeDocument(b *testing.B) {
	a := mustAuthority(b, mustCA(b, tdLocal, nil), AuthorityOptions{})
	if err := a.Prepare(mustCA(b, tdLocal, nil)); err != nil {
		b.Fatal(err)
	}
	h := NewEndpointHandler(a)
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

// BenchmarkFetchAndVerify is one full https_spiffe fetch: TCP connect, TLS
// handshake with SVID verification against the peer's bundle, GET, parse and
// validation of the document, and the update of the Set.
func BenchmarkFetchAndVerify(b *testing.B) {
	fx := newPeerFixture(b, ProfileHTTPSSPIFFE, fixtureOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fx.f.FetchOnce(ctx, tdPeer); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDocument(b *testing.B) {
	a := mustAuthority(b, mustCA(b, tdPeer, nil), AuthorityOptions{})
	doc, now := a.Document(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDocument(tdPeer, doc, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetGetX509Bundle(b *testing.B) {
	a := mustAuthority(b, mustCA(b, tdLocal, nil), AuthorityOptions{})
	s := mustSet(b, a)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetX509BundleForTrustDomain(tdLocal); err != nil {
			b.Fatal(err)
		}
	}
}

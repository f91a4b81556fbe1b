package bundles

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/federation"
)

// TestEndpointInterop: go-spiffe's own federation.FetchBundle parses what
// ServeEndpoint serves, with both profiles, and sees the Authority's sequence
// number and refresh hint.
func TestEndpointInterop(t *testing.T) {
	a := mustAuthority(t, mustCA(t, tdLocal, nil), AuthorityOptions{RefreshHint: 90 * time.Second})
	if err := a.Prepare(mustCA(t, tdLocal, nil)); err != nil { // two roots on the wire
		t.Fatal(err)
	}
	svid, err := a.IssueSVID(ControlPlaneID(tdLocal), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	web, pool := webCert(t)
	tests := []struct {
		name string
		cfg  EndpointConfig
		opt  federation.FetchOption
	}{
		{name: "https_spiffe", cfg: EndpointConfig{Profile: ProfileHTTPSSPIFFE, SVID: svid}, opt: federation.WithSPIFFEAuth(a, ControlPlaneID(tdLocal))},
		{name: "https_web", cfg: EndpointConfig{Profile: ProfileHTTPSWeb, WebCertificate: web}, opt: federation.WithWebPKIRoots(pool)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srvCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- ServeEndpoint(srvCtx, ln, a, tc.cfg) }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Errorf("ServeEndpoint: %v", err)
				}
			}()
			got, err := federation.FetchBundle(ctx, tdLocal, "https://"+ln.Addr().String()+"/", tc.opt)
			if err != nil {
				t.Fatalf("federation.FetchBundle: %v", err)
			}
			if !got.Equal(a.Bundle()) {
				t.Fatal("fetched bundle differs from the Authority's")
			}
			if seq, ok := got.SequenceNumber(); !ok || seq != a.Sequence() {
				t.Fatalf("spiffe_sequence %d (present %v), want %d", seq, ok, a.Sequence())
			}
			if h, ok := got.RefreshHint(); !ok || h != 90*time.Second {
				t.Fatalf("spiffe_refresh_hint %v (present %v), want 90s", h, ok)
			}
		})
	}
}

func TestEndpointHandler(t *testing.T) {
	a := mustAuthority(t, mustCA(t, tdLocal, nil), AuthorityOptions{})
	h := NewEndpointHandler(a)
	tests := []struct {
		method     string
		wantStatus int
		wantBody   bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodPost, http.StatusMethodNotAllowed, false},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, "/", nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if tc.wantStatus != http.StatusOK {
				if rec.Header().Get("Allow") != "GET, HEAD" {
					t.Fatalf("Allow = %q", rec.Header().Get("Allow"))
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(a.Document())) {
				t.Fatalf("Content-Length %q, want %d", cl, len(a.Document()))
			}
			body, _ := io.ReadAll(rec.Body)
			if tc.wantBody != (len(body) > 0) {
				t.Fatalf("body of %d bytes, want body %v", len(body), tc.wantBody)
			}
			if tc.wantBody {
				b, err := ParseDocument(tdLocal, body, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if !b.Equal(a.Bundle()) {
					t.Fatal("served document differs from the Authority's bundle")
				}
			}
		})
	}
}

func TestEndpointConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  EndpointConfig
	}{
		{"spiffe without SVID", EndpointConfig{Profile: ProfileHTTPSSPIFFE}},
		{"web without certificate", EndpointConfig{Profile: ProfileHTTPSWeb}},
		{"no profile", EndpointConfig{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.cfg.TLSConfig(); err == nil {
				t.Fatal("TLSConfig succeeded")
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			err = ServeEndpoint(context.Background(), ln, nil, tc.cfg)
			if err == nil {
				t.Fatal("ServeEndpoint succeeded")
			}
			if _, aerr := ln.Accept(); !errors.Is(aerr, net.ErrClosed) {
				t.Fatalf("listener not closed: %v", aerr)
			}
		})
	}
}

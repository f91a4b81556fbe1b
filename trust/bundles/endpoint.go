package bundles

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Profile is a SPIFFE bundle endpoint profile (SPIFFE Federation spec §5).
type Profile string

// Bundle endpoint profiles.
const (
	// ProfileHTTPSSPIFFE: the endpoint presents an X.509-SVID; the client
	// authenticates it with the peer trust domain's own bundle and checks its
	// SPIFFE ID.
	ProfileHTTPSSPIFFE Profile = "https_spiffe"
	// ProfileHTTPSWeb: the endpoint presents a Web PKI certificate; the client
	// authenticates it with system or provided roots and the URL's host name.
	ProfileHTTPSWeb Profile = "https_web"
)

// Valid reports whether p is one of the two profiles.
func (p Profile) Valid() bool { return p == ProfileHTTPSSPIFFE || p == ProfileHTTPSWeb }

var (
	jsonContentType = []string{"application/json"}
	allowGetHead    = []string{"GET, HEAD"}
)

// endpointHandler serves the Authority's published document.
type endpointHandler struct{ a *Authority }

// NewEndpointHandler returns the http.Handler of the SPIFFE bundle endpoint
// of a: on GET (or HEAD) of any path it answers the published bundle document
// (a JWKS with spiffe_sequence and spiffe_refresh_hint from the Authority),
// Content-Type application/json. The document is marshalled once per bundle
// change, so serving it takes no lock and copies no certificate.
func NewEndpointHandler(a *Authority) http.Handler { return endpointHandler{a: a} }

func (h endpointHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = allowGetHead
		http.Error(w, "bundle endpoint: method "+r.Method+" is not allowed; use GET", http.StatusMethodNotAllowed)
		return
	}
	st := h.a.state.Load()
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Content-Length"] = st.docLen
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(st.doc)
	}
}

// EndpointConfig says how the bundle endpoint authenticates itself.
type EndpointConfig struct {
	Profile Profile
	// SVID is the endpoint's X.509-SVID for ProfileHTTPSSPIFFE, normally for
	// ControlPlaneID(local trust domain); peers must configure that ID. It is
	// read on every handshake, so a rotating source is picked up.
	SVID x509svid.Source
	// WebCertificate is the endpoint's certificate for ProfileHTTPSWeb.
	WebCertificate *tls.Certificate
}

// TLSConfig is the server TLS configuration for c.
func (c EndpointConfig) TLSConfig() (*tls.Config, error) {
	switch c.Profile {
	case ProfileHTTPSSPIFFE:
		if c.SVID == nil {
			return nil, errors.New("bundles: EndpointConfig.SVID is nil; profile https_spiffe serves with an X.509-SVID of the control plane (see ControlPlaneID)")
		}
		return tlsconfig.TLSServerConfig(c.SVID), nil
	case ProfileHTTPSWeb:
		if c.WebCertificate == nil {
			return nil, errors.New("bundles: EndpointConfig.WebCertificate is nil; profile https_web serves with a Web PKI certificate for the endpoint's host name")
		}
		return &tls.Config{Certificates: []tls.Certificate{*c.WebCertificate}, MinVersion: tls.VersionTLS12}, nil
	}
	return nil, fmt.Errorf("bundles: EndpointConfig.Profile is %q; use %q or %q", c.Profile, ProfileHTTPSSPIFFE, ProfileHTTPSWeb)
}

// ServeEndpoint serves the bundle endpoint of a on ln with TLS per cfg until
// ctx is done, then shuts the server down (waiting at most 5s for requests in
// flight) and returns nil. It closes ln.
func ServeEndpoint(ctx context.Context, ln net.Listener, a *Authority, cfg EndpointConfig) error {
	tcfg, err := cfg.TLSConfig()
	if err == nil && a == nil {
		err = errors.New("bundles: ServeEndpoint: authority is nil; pass the control plane's Authority")
	}
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           NewEndpointHandler(a),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0), // handshake failures of scanners are not news
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, tcfg)) }()
	select {
	case err := <-done:
		return fmt.Errorf("bundles: bundle endpoint on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-done
	return nil
}

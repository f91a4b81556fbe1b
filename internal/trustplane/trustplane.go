// Package trustplane runs the trust side of one control plane: its CA
// (an intermediate under a root kept in a directory, created on first
// start), the bundles.Authority and bundles.Set, the SVID issuer (gRPC over
// TLS with the control plane's own SVID) and the SPIFFE bundle endpoint
// (https_spiffe). cmd/causeway and `causeway up` use it; it holds no policy
// of its own beyond wiring.
//
// Concurrency: Start returns a Plane whose methods are safe for concurrent
// use; Run serves until its context ends and returns after every goroutine
// it started has stopped.
package trustplane

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/bundles"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// Options configure a Plane.
type Options struct {
	TrustDomain spiffeid.TrustDomain
	// CADir holds the root (trust.CACertFile, trust.CAKeyFile). When they
	// are missing a self-signed root is made and written there (key 0600).
	// The signing CA is a fresh intermediate under it on every start, so
	// the bundle (the root) survives restarts.
	CADir string
	// Root, when set, supplies the root instead of CADir (a root kept in a
	// Kubernetes Secret, see SecretRoot).
	Root func() (*x509.Certificate, crypto.Signer, error)
	// IssuerAddress is where the SVID issuer listens, e.g. 127.0.0.1:15012.
	IssuerAddress string
	// BundleAddress is where the SPIFFE bundle endpoint listens; empty: off.
	BundleAddress string
	// Authenticator proves callers of the issuer (issuer.TokenFileAuthenticator
	// in local mode, k8sauth in Kubernetes).
	Authenticator issuer.Authenticator
	Registerer    prometheus.Registerer
	Logger        *slog.Logger
}

// Plane is a running trust side.
type Plane struct {
	Authority *bundles.Authority
	Set       *bundles.Set

	o      Options
	svid   atomic.Pointer[x509svid.SVID] // the control plane's own SVID
	issuer *issuer.Server
	issLn  net.Listener
	bndLn  net.Listener
}

// Start loads or creates the root, makes the signing CA and listens; call
// Run to serve.
func Start(o Options) (*Plane, error) {
	if o.TrustDomain.IsZero() {
		return nil, errors.New("trustplane: TrustDomain is empty")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var ca *trust.CA
	var err error
	if o.Root != nil {
		cert, key, rerr := o.Root()
		if rerr != nil {
			return nil, rerr
		}
		ca, err = trust.NewIntermediateCA(o.TrustDomain, cert, key, trust.CAOptions{})
	} else {
		ca, err = loadOrCreateCA(o.TrustDomain, o.CADir, o.Logger)
	}
	if err != nil {
		return nil, err
	}
	p := &Plane{o: o}
	if p.Authority, err = bundles.NewAuthority(ca, bundles.AuthorityOptions{}); err != nil {
		return nil, err
	}
	if p.Set, err = bundles.NewSet(p.Authority); err != nil {
		return nil, err
	}
	if err := p.renewOwnSVID(); err != nil {
		return nil, err
	}
	p.issuer, err = issuer.NewServer(issuer.ServerOptions{
		Signer:        issuer.SignerFuncs{SignFunc: p.Authority.Sign, BundleFunc: p.Authority.X509Bundle},
		Authenticator: o.Authenticator, Registerer: o.Registerer, Logger: o.Logger,
	})
	if err != nil {
		return nil, err
	}
	if p.issLn, err = net.Listen("tcp", o.IssuerAddress); err != nil {
		return nil, fmt.Errorf("trustplane: SVID issuer listener %s: %w", o.IssuerAddress, err)
	}
	if o.BundleAddress != "" {
		if p.bndLn, err = net.Listen("tcp", o.BundleAddress); err != nil {
			p.issLn.Close()
			return nil, fmt.Errorf("trustplane: bundle endpoint listener %s: %w", o.BundleAddress, err)
		}
	}
	return p, nil
}

// loadOrCreateCA returns an intermediate CA under the root in dir.
func loadOrCreateCA(td spiffeid.TrustDomain, dir string, log *slog.Logger) (*trust.CA, error) {
	certPath, keyPath := filepath.Join(dir, trust.CACertFile), filepath.Join(dir, trust.CAKeyFile)
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		root, err := trust.NewSelfSignedCA(td, trust.CAOptions{Validity: 10 * 365 * 24 * time.Hour})
		if err != nil {
			return nil, err
		}
		if err := root.WriteFiles(dir); err != nil {
			return nil, err
		}
		log.Info("trustplane: created a root CA", "trust_domain", td.Name(), "dir", dir, "root", root.String())
	}
	cert, key, err := trust.LoadCAFiles(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return trust.NewIntermediateCA(td, cert, key, trust.CAOptions{})
}

// renewOwnSVID issues the control plane's SVID (bundles.ControlPlaneID)
// from the active CA; it serves the issuer and the bundle endpoint.
func (p *Plane) renewOwnSVID() error {
	s, err := p.Authority.IssueSVID(bundles.ControlPlaneID(p.o.TrustDomain), 24*time.Hour)
	if err != nil {
		return err
	}
	p.svid.Store(s)
	return nil
}

// GetX509SVID makes the Plane the x509svid.Source of its own servers.
func (p *Plane) GetX509SVID() (*x509svid.SVID, error) { return p.svid.Load(), nil }

// IssuerAddr and BundleURL are where the servers listen.
func (p *Plane) IssuerAddr() string { return p.issLn.Addr().String() }

// BundleURL is the bundle endpoint's URL; empty when it is off.
func (p *Plane) BundleURL() string {
	if p.bndLn == nil {
		return ""
	}
	return "https://" + p.bndLn.Addr().String() + "/"
}

// Bundles is the trusted roots by trust domain, for xds.MTLS.Bundles.
func (p *Plane) Bundles() map[string][]*x509.Certificate {
	out := map[string][]*x509.Certificate{}
	for _, b := range p.Set.Snapshot().X509Bundles().Bundles() {
		out[b.TrustDomain().Name()] = b.X509Authorities()
	}
	return out
}

// RootsPEM is the local trust domain's roots, what sidecars get as
// --trust-bundle.
func (p *Plane) RootsPEM() []byte { return trust.CertsPEM(p.Authority.Bundle().X509Authorities()) }

// Run serves the issuer and the bundle endpoint, renews the control plane's
// own SVID at half-life, and calls onChange after every change of the
// bundle set, until ctx ends.
func (p *Plane) Run(ctx context.Context, onChange func()) error {
	var wg sync.WaitGroup
	tcfg := tlsconfig.TLSServerConfig(p)
	tcfg.MinVersion = tls.VersionTLS13
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tcfg)))
	p.issuer.Register(gs)
	wg.Go(func() { _ = gs.Serve(p.issLn) })
	if p.bndLn != nil {
		wg.Go(func() {
			if err := bundles.ServeEndpoint(ctx, p.bndLn, p.Authority, bundles.EndpointConfig{Profile: bundles.ProfileHTTPSSPIFFE, SVID: p}); err != nil {
				p.o.Logger.Error("trustplane: bundle endpoint", "err", err)
			}
		})
	}
	changes, stop := p.Set.Subscribe()
	defer stop()
	wg.Go(func() {
		for {
			renew, _ := trust.RenewAt(p.svid.Load().Certificates[0], time.Now())
			t := time.NewTimer(max(time.Until(renew), time.Second)) // a failed renewal retries after a second
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-changes:
				t.Stop()
				if onChange != nil {
					onChange()
				}
			case <-t.C:
				if err := p.renewOwnSVID(); err != nil {
					p.o.Logger.Error("trustplane: renewing the control plane's SVID", "err", err)
				}
			}
		}
	})
	<-ctx.Done()
	gs.Stop()
	wg.Wait()
	return nil
}

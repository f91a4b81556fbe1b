package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// FederationPeer is one peer control plane (`--peer`).
type FederationPeer struct {
	// Cluster is the peer's cluster name; TrustDomain its SPIFFE trust
	// domain (its control plane presents bundles.ControlPlaneID of it).
	Cluster     string
	TrustDomain spiffeid.TrustDomain
	// Address is the peer's federation endpoint, host:port. Empty: this
	// cluster does not import from the peer (the peer may still import
	// from this one: links may be one-directional).
	Address string
	// BundleURL is the peer's SPIFFE bundle endpoint, kept fresh in the
	// bundle set by a bundles.Fetcher. Required unless the peer shares
	// this cluster's trust domain.
	BundleURL string
	// Bootstrap is the peer's bundle obtained out of band (its root PEM,
	// or what `causeway link` prints). With it the bundle endpoint is
	// fetched with https_spiffe (authenticated by the peer's own bundle,
	// as Causeway serves it); without it, https_web (Web PKI, system
	// roots).
	Bootstrap *spiffebundle.Bundle
}

// FederationOptions configure a Federation.
type FederationOptions struct {
	// Cluster, Network and TrustDomain of this cluster. Required but
	// Network.
	Cluster     string
	Network     string
	TrustDomain spiffeid.TrustDomain
	// SVID is this control plane's SVID source (trustplane.Plane) and
	// Bundles its bundle set (trustplane.Plane.Set): the federation's
	// mutual TLS, both ways. Required.
	SVID    x509svid.Source
	Bundles *bundles.Set
	// Listener (or Listen, an address to listen on) serves the exporter
	// to the peers; neither: no exporter.
	Listener net.Listener
	Listen   string
	Peers    []FederationPeer
	// Staleness is how long a disconnected peer's imports are kept before
	// they are withdrawn; 0: federation.DefaultStalenessWindow.
	Staleness time.Duration
	// OnImports receives the merged imports of every peer (Merger.SetImports).
	OnImports func(*federation.Imports)
	// Tune, when set, adjusts the exporter's and importer's configs
	// before they are checked (heartbeats, backoff, clocks: tests).
	Tune       func(*federation.ServerConfig, *federation.ImporterConfig)
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Federation is one control plane's side of the federation: the exporter
// (federation.Server on its listener, fed by Update with local
// snapshots), the importer (federation.Importer, one stream per peer with
// an Address) and the bundle fetcher that keeps the peers' trust bundles
// in the bundle set (bundles.Fetcher).
//
// Concurrency: Update, Addr and the status methods are safe from any
// goroutine; Run runs once.
type Federation struct {
	server   *federation.Server // nil: no exporter
	ln       net.Listener
	importer *federation.Importer // nil: no peer to import from
	fetcher  *bundles.Fetcher     // nil: no bundle to fetch
}

// NewFederation checks o, puts the peers' bootstrap bundles in the bundle
// set and listens; Run serves. On error nothing is left open.
func NewFederation(o FederationOptions) (_ *Federation, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	sc := federation.ServerConfig{Cluster: o.Cluster, Network: o.Network, TrustDomain: o.TrustDomain,
		SVID: o.SVID, Bundles: o.Bundles, Registerer: o.Registerer, Logger: o.Logger}
	ic := federation.ImporterConfig{Cluster: o.Cluster, Network: o.Network, SVID: o.SVID, Bundles: o.Bundles,
		StalenessWindow: o.Staleness, OnImports: o.OnImports, Registerer: o.Registerer, Logger: o.Logger}
	var fetch []bundles.PeerConfig
	fetching := map[spiffeid.TrustDomain]string{}
	for _, p := range o.Peers {
		sc.Peers = append(sc.Peers, federation.ExportPeer{TrustDomain: p.TrustDomain, Cluster: p.Cluster})
		if p.Address != "" {
			ic.Peers = append(ic.Peers, federation.ImportPeer{Cluster: p.Cluster, TrustDomain: p.TrustDomain, Address: p.Address})
		}
		if p.TrustDomain == o.TrustDomain {
			continue
		}
		if _, done := fetching[p.TrustDomain]; done {
			continue
		}
		fetching[p.TrustDomain] = p.BundleURL
		pc := bundles.PeerConfig{TrustDomain: p.TrustDomain, URL: p.BundleURL, Profile: bundles.ProfileHTTPSWeb}
		if p.Bootstrap != nil {
			pc.Profile, pc.EndpointID, pc.Bootstrap = bundles.ProfileHTTPSSPIFFE, bundles.ControlPlaneID(p.TrustDomain), p.Bootstrap
		}
		fetch = append(fetch, pc)
	}
	if o.Tune != nil {
		o.Tune(&sc, &ic)
	}
	f := &Federation{}
	if len(fetch) > 0 {
		if f.fetcher, err = bundles.NewFetcher(o.Bundles, fetch, bundles.FetcherOptions{Registerer: o.Registerer, Logger: o.Logger}); err != nil {
			return nil, fmt.Errorf("control plane: federation: %w", err)
		}
	}
	if len(ic.Peers) > 0 {
		if f.importer, err = federation.NewImporter(ic); err != nil {
			return nil, fmt.Errorf("control plane: federation: %w", err)
		}
	}
	if o.Listener != nil || o.Listen != "" {
		if f.server, err = federation.NewServer(sc); err != nil {
			return nil, fmt.Errorf("control plane: federation: %w", err)
		}
		f.ln = o.Listener
		if f.ln == nil {
			if f.ln, err = net.Listen("tcp", o.Listen); err != nil {
				return nil, fmt.Errorf("control plane: federation: listening on %s (--federation-listen): %w", o.Listen, err)
			}
		}
	}
	return f, nil
}

func (o *FederationOptions) check() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("control plane: FederationOptions.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if o.Cluster == "" {
		bad("Cluster", "required: the name of this cluster")
	}
	if o.TrustDomain.IsZero() {
		bad("TrustDomain", "required: this cluster's trust domain")
	}
	if o.SVID == nil || o.Bundles == nil {
		bad("SVID/Bundles", "required: the trust plane's own SVID and bundle set (run with --mtls)")
	}
	if o.Staleness < 0 {
		bad("Staleness", "%s is negative; 0 means the default %s", o.Staleness, federation.DefaultStalenessWindow)
	}
	if len(o.Peers) == 0 {
		bad("Peers", "none: name at least one peer (--peer cluster=...,trust-domain=...,federation=...,bundle=...)")
	}
	clusters := map[string]bool{}
	urls := map[spiffeid.TrustDomain]string{}
	for i, p := range o.Peers {
		f := fmt.Sprintf("Peers[%d]", i)
		switch {
		case p.Cluster == "":
			bad(f+".Cluster", "required: the peer's cluster name")
		case p.Cluster == o.Cluster:
			bad(f+".Cluster", "%q is this cluster; a cluster does not federate with itself", p.Cluster)
		case clusters[p.Cluster]:
			bad(f+".Cluster", "peer %q is named twice; keep one entry per cluster", p.Cluster)
		}
		clusters[p.Cluster] = true
		if p.TrustDomain.IsZero() {
			bad(f+".TrustDomain", "required: the peer's trust domain")
			continue
		}
		if p.TrustDomain == o.TrustDomain {
			continue // same trust domain: nothing to fetch
		}
		if p.BundleURL == "" {
			bad(f+".BundleURL", "required for peer %q in trust domain %s: its SPIFFE bundle endpoint (https://...)", p.Cluster, p.TrustDomain)
		} else if u, seen := urls[p.TrustDomain]; seen && u != p.BundleURL {
			bad(f+".BundleURL", "%s differs from %s given for another peer of trust domain %s; one bundle endpoint per trust domain", p.BundleURL, u, p.TrustDomain)
		}
		urls[p.TrustDomain] = p.BundleURL
		if p.Bootstrap != nil && p.Bootstrap.TrustDomain() != p.TrustDomain {
			bad(f+".Bootstrap", "is a bundle of trust domain %s, not the peer's %s", p.Bootstrap.TrustDomain(), p.TrustDomain)
		}
	}
	return errors.Join(errs...)
}

// Addr is where the exporter listens ("" without one).
func (f *Federation) Addr() string {
	if f.ln == nil {
		return ""
	}
	return f.ln.Addr().String()
}

// Update hands a local snapshot to the exporter (MergerOptions.OnLocal).
// Without an exporter it does nothing.
func (f *Federation) Update(s *model.Snapshot) {
	if f.server != nil {
		f.server.Update(s)
	}
}

// ImportStatus is the state of the import from each peer, sorted by
// cluster (none without an importer).
func (f *Federation) ImportStatus() []federation.PeerStatus {
	if f.importer == nil {
		return nil
	}
	return f.importer.Status()
}

// BundleStatus is the state of each peer trust domain's bundle.
func (f *Federation) BundleStatus() []bundles.Status {
	if f.fetcher == nil {
		return nil
	}
	return f.fetcher.Status()
}

// Run serves the exporter, imports and fetches bundles until ctx ends; it
// returns after all of them stopped, with the exporter's error if it
// failed (the importer and fetcher retry on their own).
func (f *Federation) Run(ctx context.Context) error {
	var (
		wg     sync.WaitGroup
		srvErr error
	)
	if f.fetcher != nil {
		wg.Go(func() { _ = f.fetcher.Run(ctx) })
	}
	if f.importer != nil {
		wg.Go(func() { _ = f.importer.Run(ctx) })
	}
	if f.server != nil {
		wg.Go(func() { srvErr = f.server.Serve(ctx, f.ln) })
	}
	wg.Wait()
	return srvErr
}

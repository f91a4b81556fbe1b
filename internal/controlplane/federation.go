package controlplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// FederationPeer is one peer control plane: a `--peer` flag or a Peer
// object (federation/peerapi).
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
	// BundleEndpointID is the SPIFFE ID the https_spiffe endpoint
	// presents; zero: bundles.ControlPlaneID(TrustDomain).
	BundleEndpointID spiffeid.ID
	// NoExport: the peer may not import from this cluster (a Peer with
	// direction Import).
	NoExport bool
	// Filter selects the exported services the peer may import; zero:
	// all of them.
	Filter federation.Filter
	// Origin names where the peer was configured, for messages: "--peer"
	// or "Peer west (peers.yaml)". Empty: "--peer".
	Origin string
}

func (p *FederationPeer) origin() string { return cmp.Or(p.Origin, "--peer") }

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
	// Peers are the initial peers; SetPeers replaces them at runtime.
	Peers []FederationPeer
	// Staleness is how long a disconnected peer's imports are kept before
	// they are withdrawn; 0: federation.DefaultStalenessWindow.
	Staleness time.Duration
	// OnImports receives the merged imports of every peer (Merger.SetImports).
	OnImports func(*federation.Imports)
	// EastWest is this cluster's east-west gateway as peers on other
	// networks reach it (`--eastwest-address`): the exporter sends them
	// per-locality summaries behind it (healthy and total endpoints,
	// healthy weight, SNI, identities) instead of pod IPs. Zero: no
	// gateway, and peers on another network are refused.
	EastWest netip.AddrPort
	// Tune, when set, adjusts the exporter's and importer's configs
	// before they are checked (heartbeats, backoff, clocks: tests). The
	// ImporterConfig is the template of every link's importer.
	Tune       func(*federation.ServerConfig, *federation.ImporterConfig)
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Federation is one control plane's side of the federation: the exporter
// (federation.Server on its listener, fed by Update with local
// snapshots), one importer per peer it imports from (federation.Importer
// with that peer alone) and one bundle fetcher per peer trust domain
// (bundles.Fetcher). SetPeers adds, removes and changes links at runtime:
// only the links that changed are restarted, the others keep their
// streams.
//
// Concurrency: SetPeers, Update, Addr and the status methods are safe from
// any goroutine; Run runs once. SetPeers is serialised by a mutex; the
// merged imports are built on Run's goroutine.
type Federation struct {
	o       FederationOptions
	ic      federation.ImporterConfig // template of the links' importers
	server  *federation.Server        // nil: no exporter
	ln      net.Listener
	local   atomic.Pointer[model.Snapshot]
	kick    chan struct{}
	metrics *linkCollector

	mu       sync.Mutex
	ctx      context.Context // Run's; nil before Run
	wg       sync.WaitGroup  // the links' goroutines
	peers    []FederationPeer
	imports  map[string]*importLink               // by cluster
	fetchers map[spiffeid.TrustDomain]*bundleLink // by trust domain
}

// importLink is the import from one peer.
type importLink struct {
	peer    federation.ImportPeer
	im      *federation.Importer
	reg     *collectorSet
	imports atomic.Pointer[federation.Imports]
	cancel  context.CancelFunc // nil until started
	done    chan struct{}
}

// bundleLink keeps one peer trust domain's bundle fresh.
type bundleLink struct {
	pc     bundles.PeerConfig
	f      *bundles.Fetcher
	reg    *collectorSet
	cancel context.CancelFunc
	done   chan struct{}
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
	if err := checkPeers(o.Cluster, o.TrustDomain, o.Peers); err != nil {
		return nil, err
	}
	sc := federation.ServerConfig{Cluster: o.Cluster, Network: o.Network, TrustDomain: o.TrustDomain,
		SVID: o.SVID, Bundles: o.Bundles, Registerer: o.Registerer, Logger: o.Logger,
		Gateway: federation.Gateway{Address: o.EastWest}}
	ic := federation.ImporterConfig{Cluster: o.Cluster, Network: o.Network, SVID: o.SVID, Bundles: o.Bundles,
		StalenessWindow: o.Staleness, Logger: o.Logger}
	if o.Tune != nil {
		o.Tune(&sc, &ic)
	}
	f := &Federation{o: o, ic: ic, kick: make(chan struct{}, 1), metrics: &linkCollector{},
		imports: map[string]*importLink{}, fetchers: map[spiffeid.TrustDomain]*bundleLink{}}
	if o.Listener != nil || o.Listen != "" {
		if f.server, err = federation.NewServer(sc); err != nil {
			return nil, fmt.Errorf("control plane: federation: %w", err)
		}
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(f.metrics); err != nil {
			return nil, fmt.Errorf("control plane: federation: registering the links' metrics: %w", err)
		}
	}
	if err := f.SetPeers(o.Peers); err != nil {
		if o.Registerer != nil {
			o.Registerer.Unregister(f.metrics)
		}
		return nil, err
	}
	if f.server != nil {
		f.ln = o.Listener
		if f.ln == nil {
			if f.ln, err = net.Listen("tcp", o.Listen); err != nil {
				f.stopAll()
				if o.Registerer != nil {
					o.Registerer.Unregister(f.metrics)
				}
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
	return errors.Join(errs...)
}

// checkPeers checks a set of peers; each error names the peer's index,
// field and origin.
func checkPeers(cluster string, own spiffeid.TrustDomain, peers []FederationPeer) error {
	var errs []error
	clusters := map[string]string{}
	urls := map[spiffeid.TrustDomain]string{}
	for i := range peers {
		p := &peers[i]
		bad := func(field, format string, a ...any) {
			errs = append(errs, fmt.Errorf("control plane: FederationOptions.Peers[%d].%s (%s): %s", i, field, p.origin(), fmt.Sprintf(format, a...)))
		}
		switch first, seen := clusters[p.Cluster]; {
		case p.Cluster == "":
			bad("Cluster", "required: the peer's cluster name")
		case p.Cluster == cluster:
			bad("Cluster", "%q is this cluster; a cluster does not federate with itself", p.Cluster)
		case seen:
			bad("Cluster", "peer %q is named twice, by %s and by %s; keep one entry per cluster", p.Cluster, first, p.origin())
		}
		clusters[p.Cluster] = p.origin()
		if p.TrustDomain.IsZero() {
			bad("TrustDomain", "required: the peer's trust domain")
			continue
		}
		if p.TrustDomain == own {
			continue // same trust domain: nothing to fetch
		}
		if p.BundleURL == "" {
			bad("BundleURL", "required for peer %q in trust domain %s: its SPIFFE bundle endpoint (https://...)", p.Cluster, p.TrustDomain)
		} else if u, seen := urls[p.TrustDomain]; seen && u != p.BundleURL {
			bad("BundleURL", "%s differs from %s given for another peer of trust domain %s; one bundle endpoint per trust domain", p.BundleURL, u, p.TrustDomain)
		}
		urls[p.TrustDomain] = p.BundleURL
		if p.Bootstrap != nil && p.Bootstrap.TrustDomain() != p.TrustDomain {
			bad("Bootstrap", "is a bundle of trust domain %s, not the peer's %s", p.Bootstrap.TrustDomain(), p.TrustDomain)
		}
		if !p.BundleEndpointID.IsZero() && p.BundleEndpointID.TrustDomain() != p.TrustDomain {
			bad("BundleEndpointID", "%s is not in the peer's trust domain %s", p.BundleEndpointID, p.TrustDomain)
		}
	}
	return errors.Join(errs...)
}

// SetPeers replaces the peers. Links whose configuration is unchanged keep
// running untouched; removed links stop (their imports are withdrawn at
// once, their trust domain's bundle is forgotten when no peer is left in
// it), new and changed ones start. On error nothing changes.
func (f *Federation) SetPeers(peers []FederationPeer) error {
	if err := checkPeers(f.o.Cluster, f.o.TrustDomain, peers); err != nil {
		return err
	}
	peers = slices.Clone(peers)
	// What the peers want: importers by cluster, fetchers by trust domain,
	// the exporter's peers.
	wantIm := map[string]federation.ImportPeer{}
	wantFetch := map[spiffeid.TrustDomain]bundles.PeerConfig{}
	var export []federation.ExportPeer
	for _, p := range peers {
		if !p.NoExport {
			export = append(export, federation.ExportPeer{TrustDomain: p.TrustDomain, Cluster: p.Cluster, Filter: p.Filter})
		}
		if p.Address != "" {
			wantIm[p.Cluster] = federation.ImportPeer{Cluster: p.Cluster, TrustDomain: p.TrustDomain, Address: p.Address}
		}
		if p.TrustDomain == f.o.TrustDomain {
			continue
		}
		if _, done := wantFetch[p.TrustDomain]; done {
			continue
		}
		pc := bundles.PeerConfig{TrustDomain: p.TrustDomain, URL: p.BundleURL, Profile: bundles.ProfileHTTPSWeb}
		if p.Bootstrap != nil {
			pc.Profile, pc.EndpointID, pc.Bootstrap = bundles.ProfileHTTPSSPIFFE, bundles.ControlPlaneID(p.TrustDomain), p.Bootstrap
			if !p.BundleEndpointID.IsZero() {
				pc.EndpointID = p.BundleEndpointID
			}
		}
		wantFetch[p.TrustDomain] = pc
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	// Build every new part first, so that an error changes nothing.
	newIm := map[string]*importLink{}
	for c, ip := range wantIm {
		if l, ok := f.imports[c]; ok && l.peer == ip {
			continue
		}
		l := &importLink{peer: ip, reg: &collectorSet{}, done: make(chan struct{})}
		ic := f.ic
		ic.Peers = []federation.ImportPeer{ip}
		ic.Registerer = l.reg
		ic.OnImports = func(im *federation.Imports) { l.imports.Store(im); f.changed() }
		var err error
		if l.im, err = federation.NewImporter(ic); err != nil {
			return fmt.Errorf("control plane: federation: peer %s: %w", c, err)
		}
		newIm[c] = l
	}
	newFetch := map[spiffeid.TrustDomain]*bundleLink{}
	var refetch []spiffeid.TrustDomain // bootstrap changed: forget the old bundle first
	for td, pc := range wantFetch {
		if b, ok := f.fetchers[td]; ok {
			if samePeerConfig(b.pc, pc) {
				continue
			}
			if !sameBootstrap(b.pc.Bootstrap, pc.Bootstrap) {
				refetch = append(refetch, td)
			}
		}
		newFetch[td] = &bundleLink{pc: pc, reg: &collectorSet{}, done: make(chan struct{})}
	}
	if f.server != nil {
		if err := f.server.SetPeers(export); err != nil {
			return fmt.Errorf("control plane: federation: %w", err)
		}
	}
	// Stop what goes or changes.
	changed := false
	for c, l := range f.imports {
		if _, keep := wantIm[c]; keep && newIm[c] == nil {
			continue
		}
		f.stopImport(l)
		delete(f.imports, c)
		changed = true
	}
	for td, b := range f.fetchers {
		if _, keep := wantFetch[td]; keep && newFetch[td] == nil {
			continue
		}
		f.stopFetch(b)
		delete(f.fetchers, td)
		if _, keep := wantFetch[td]; !keep {
			f.o.Bundles.RemoveFederated(td)
		}
	}
	for _, td := range refetch {
		f.o.Bundles.RemoveFederated(td)
	}
	// Start what is new (fetchers first: their bootstrap bundles
	// authenticate the importers' peers).
	var errs []error
	for td, b := range newFetch {
		var err error
		if b.f, err = bundles.NewFetcher(f.o.Bundles, []bundles.PeerConfig{b.pc}, bundles.FetcherOptions{Registerer: b.reg, Logger: f.o.Logger}); err != nil {
			errs = append(errs, fmt.Errorf("control plane: federation: trust domain %s: %w", td, err))
			continue
		}
		f.fetchers[td] = b
		f.metrics.add(b.reg)
		if f.ctx != nil {
			f.startFetch(b)
		}
	}
	for c, l := range newIm {
		f.imports[c] = l
		f.metrics.add(l.reg)
		if f.ctx != nil {
			f.startImport(l)
		}
		changed = true
	}
	f.peers = peers
	if changed {
		f.changed()
	}
	return errors.Join(errs...)
}

func samePeerConfig(a, b bundles.PeerConfig) bool {
	return a.TrustDomain == b.TrustDomain && a.URL == b.URL && a.Profile == b.Profile &&
		a.EndpointID == b.EndpointID && sameBootstrap(a.Bootstrap, b.Bootstrap)
}

func sameBootstrap(a, b *spiffebundle.Bundle) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

// startImport and startFetch run a link on Run's context; f.mu is held.
func (f *Federation) startImport(l *importLink) {
	ctx, cancel := context.WithCancel(f.ctx)
	l.cancel = cancel
	f.wg.Go(func() {
		defer close(l.done)
		_ = l.im.Run(ctx)
	})
}

func (f *Federation) startFetch(b *bundleLink) {
	ctx, cancel := context.WithCancel(f.ctx)
	b.cancel = cancel
	f.wg.Go(func() {
		defer close(b.done)
		_ = b.f.Run(ctx)
	})
}

// stopImport and stopFetch stop a link and wait for it; f.mu is held.
func (f *Federation) stopImport(l *importLink) {
	if l.cancel != nil {
		l.cancel()
		<-l.done
	}
	f.metrics.remove(l.reg)
}

func (f *Federation) stopFetch(b *bundleLink) {
	if b.cancel != nil {
		b.cancel()
		<-b.done
	}
	f.metrics.remove(b.reg)
}

func (f *Federation) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.imports {
		f.stopImport(l)
	}
	for _, b := range f.fetchers {
		f.stopFetch(b)
	}
}

// changed asks Run to merge the imports again.
func (f *Federation) changed() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// merge builds the merged imports of every link and hands them to
// OnImports; Run's goroutine only.
func (f *Federation) merge() {
	f.mu.Lock()
	parts := make([]*federation.Imports, 0, len(f.imports))
	for _, l := range f.imports {
		parts = append(parts, l.imports.Load())
	}
	f.mu.Unlock()
	if f.o.OnImports != nil {
		f.o.OnImports(federation.MergeImports(parts...))
	}
}

// Peers returns the current peers.
func (f *Federation) Peers() []FederationPeer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.peers)
}

// Addr is where the exporter listens ("" without one).
func (f *Federation) Addr() string {
	if f.ln == nil {
		return ""
	}
	return f.ln.Addr().String()
}

// Update hands a local snapshot to the exporter (MergerOptions.OnLocal).
// Without an exporter it only keeps it for the exported counts.
func (f *Federation) Update(s *model.Snapshot) {
	f.local.Store(s)
	if f.server != nil {
		f.server.Update(s)
	}
}

// ImportStatus is the state of the import from each peer, sorted by
// cluster (none without a peer to import from).
func (f *Federation) ImportStatus() []federation.PeerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []federation.PeerStatus
	for _, l := range f.imports {
		out = append(out, l.im.Status()...)
	}
	slices.SortFunc(out, func(a, b federation.PeerStatus) int { return cmp.Compare(a.Cluster, b.Cluster) })
	return out
}

// BundleStatus is the state of each peer trust domain's bundle, sorted by
// trust domain.
func (f *Federation) BundleStatus() []bundles.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []bundles.Status
	for _, b := range f.fetchers {
		out = append(out, b.f.Status()...)
	}
	slices.SortFunc(out, func(a, b bundles.Status) int { return cmp.Compare(a.TrustDomain.Name(), b.TrustDomain.Name()) })
	return out
}

// Run serves the exporter, imports and fetches bundles until ctx ends; it
// returns after all of them stopped, with the exporter's error if it
// failed (the importers and fetchers retry on their own).
func (f *Federation) Run(ctx context.Context) error {
	f.mu.Lock()
	f.ctx = ctx
	for _, b := range f.fetchers {
		f.startFetch(b)
	}
	for _, l := range f.imports {
		f.startImport(l)
	}
	f.mu.Unlock()
	var (
		srv    sync.WaitGroup
		srvErr error
	)
	if f.server != nil {
		srv.Go(func() { srvErr = f.server.Serve(ctx, f.ln) })
	}
	f.merge()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-f.kick:
			f.merge()
		}
	}
	srv.Wait()
	f.mu.Lock()
	f.wg.Wait() // every link's context is a child of ctx
	f.mu.Unlock()
	return srvErr
}

// collectorSet is one link's metrics: a prometheus.Registerer that only
// keeps its collectors, collected by the Federation's linkCollector while
// the link lives (so a removed link's series disappear and a re-added one
// registers again).
type collectorSet struct {
	mu sync.Mutex
	cs []prometheus.Collector
}

func (s *collectorSet) Register(c prometheus.Collector) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cs = append(s.cs, c)
	return nil
}

func (s *collectorSet) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = s.Register(c)
	}
}

func (s *collectorSet) Unregister(c prometheus.Collector) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.cs)
	s.cs = slices.DeleteFunc(s.cs, func(x prometheus.Collector) bool { return x == c })
	return len(s.cs) != n
}

// linkCollector collects the metrics of every live link. It is an
// unchecked collector (Describe sends nothing): the set changes at runtime.
// The links' series differ by their peer and trust_domain labels.
type linkCollector struct {
	mu   sync.Mutex
	sets []*collectorSet
}

func (l *linkCollector) add(s *collectorSet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sets = append(l.sets, s)
}

func (l *linkCollector) remove(s *collectorSet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sets = slices.DeleteFunc(l.sets, func(x *collectorSet) bool { return x == s })
}

func (l *linkCollector) Describe(chan<- *prometheus.Desc) {}

func (l *linkCollector) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	sets := slices.Clone(l.sets)
	l.mu.Unlock()
	for _, s := range sets {
		s.mu.Lock()
		cs := slices.Clone(s.cs)
		s.mu.Unlock()
		for _, c := range cs {
			c.Collect(ch)
		}
	}
}

package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/trustplane"
)

// peerSpec is one --peer flag, parsed but not loaded.
type peerSpec struct {
	Cluster, TrustDomain, Federation, Bundle, BundleFile string
}

// peerFlags is the repeatable --peer flag.
type peerFlags []peerSpec

func (p *peerFlags) String() string {
	if p == nil {
		return ""
	}
	var parts []string
	for _, s := range *p {
		parts = append(parts, s.Cluster)
	}
	return strings.Join(parts, ",")
}

func (p *peerFlags) Set(v string) error {
	s, err := parsePeer(v)
	if err != nil {
		return err
	}
	*p = append(*p, s)
	return nil
}

// parsePeer reads "cluster=<name>,trust-domain=<td>[,federation=<host:port>][,bundle=<https url>][,bundle-file=<pem>]".
func parsePeer(v string) (peerSpec, error) {
	var s peerSpec
	var errs []error
	seen := map[string]bool{}
	for item := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || val == "" {
			errs = append(errs, fmt.Errorf("%q: want key=value", item))
			continue
		}
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s: given twice", k))
		}
		seen[k] = true
		switch k {
		case "cluster":
			s.Cluster = val
		case "trust-domain":
			if _, err := spiffeid.TrustDomainFromString(val); err != nil {
				errs = append(errs, fmt.Errorf("trust-domain %q: %w", val, err))
			}
			s.TrustDomain = val
		case "federation":
			if _, port, err := net.SplitHostPort(val); err != nil || port == "" {
				errs = append(errs, fmt.Errorf("federation %q: want the peer's federation endpoint host:port (its --federation-listen)", val))
			}
			s.Federation = val
		case "bundle":
			if u, err := url.Parse(val); err != nil || u.Scheme != "https" || u.Host == "" {
				errs = append(errs, fmt.Errorf("bundle %q: want the peer's SPIFFE bundle endpoint, an https:// URL (its --bundle-listen)", val))
			}
			s.Bundle = val
		case "bundle-file":
			s.BundleFile = val
		default:
			errs = append(errs, fmt.Errorf("unknown key %q: want cluster, trust-domain, federation, bundle or bundle-file", k))
		}
	}
	if s.Cluster == "" {
		errs = append(errs, errors.New("cluster: required; the peer's cluster name (its --cluster)"))
	}
	if s.TrustDomain == "" {
		errs = append(errs, errors.New("trust-domain: required; the peer's SPIFFE trust domain (its --trust-domain)"))
	}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("--peer %q: %w", v, err)
	}
	return s, nil
}

// federationPeers loads the --peer flags: each bundle-file is the peer's
// root PEM, the bootstrap of its https_spiffe bundle endpoint.
func federationPeers(specs []peerSpec) ([]controlplane.FederationPeer, error) {
	var out []controlplane.FederationPeer
	var errs []error
	for _, s := range specs {
		td, err := spiffeid.TrustDomainFromString(s.TrustDomain)
		if err != nil {
			errs = append(errs, fmt.Errorf("--peer cluster=%s: trust-domain %q: %w", s.Cluster, s.TrustDomain, err))
			continue
		}
		p := controlplane.FederationPeer{Cluster: s.Cluster, TrustDomain: td, Address: s.Federation, BundleURL: s.Bundle}
		if s.BundleFile != "" {
			b, err := x509bundle.Load(td, s.BundleFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("--peer cluster=%s: bundle-file %s: %w; give the peer's root certificates (PEM), e.g. its ca.crt", s.Cluster, s.BundleFile, err))
				continue
			}
			p.Bootstrap = spiffebundle.FromX509Bundle(b)
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// validateFederation checks the federation and Gateway API flags.
func (c *controlPlaneConfig) validateFederation() []error {
	var errs []error
	if !c.MTLS && c.FederationListen != "" {
		errs = append(errs, errors.New("--federation-listen: requires --mtls; the federation is mutual TLS with the trust plane's SVID and bundles"))
	}
	if !c.MTLS && len(c.Peers) > 0 {
		errs = append(errs, errors.New("--peer: requires --mtls; peers are authenticated by their trust bundles"))
	}
	if c.Staleness < 0 {
		errs = append(errs, fmt.Errorf("--staleness %s: must not be negative", c.Staleness))
	}
	td := c.TrustDomain
	if td == "" {
		td = c.Cluster + ".local"
	}
	for _, p := range c.Peers {
		if p.Bundle == "" && p.TrustDomain != td {
			errs = append(errs, fmt.Errorf("--peer cluster=%s: bundle: required; the peer's SPIFFE bundle endpoint (https://..., its --bundle-listen), unless it shares this trust domain", p.Cluster))
		}
		if p.BundleFile != "" && p.Bundle == "" {
			errs = append(errs, fmt.Errorf("--peer cluster=%s: bundle-file: only with bundle=", p.Cluster))
		}
	}
	if c.EastWestAddress != "" {
		if _, err := netip.ParseAddrPort(c.EastWestAddress); err != nil {
			errs = append(errs, fmt.Errorf("--eastwest-address %q: want the gateway's ip:port as peers reach it, e.g. 10.0.0.5:15443 (%w)", c.EastWestAddress, err))
		}
		if c.FederationListen == "" {
			errs = append(errs, errors.New("--eastwest-address: only with --federation-listen; the address is what this cluster's exporter advertises to peers on other networks"))
		}
	}
	if c.GatewayController && c.Source != "kubernetes" {
		errs = append(errs, errors.New("--gateway-controller: only with --source kubernetes; the controller watches Gateway API objects on the apiserver"))
	}
	return errs
}

// newPeerLinks loads the --peer flags for peerLinks.
func newPeerLinks(c *controlPlaneConfig, log *slog.Logger) (*peerLinks, error) {
	flags, err := federationPeers(c.Peers)
	if err != nil {
		return nil, err
	}
	td, err := spiffeid.TrustDomainFromString(cmp.Or(c.TrustDomain, c.Cluster+".local"))
	if err != nil {
		return nil, fmt.Errorf("--trust-domain %q: %w", c.TrustDomain, err)
	}
	where := "in " + c.Dir
	if c.Source == "kubernetes" {
		where = "on the apiserver"
	}
	return &peerLinks{cluster: c.Cluster, td: td, flags: flags, log: log,
		origin: func(p *peerapi.Peer) string { return "Peer " + p.Name + " (" + where + ")" }}, nil
}

// newFederation builds the federation of --federation-listen and --peer
// on the trust plane; its imports go to onImports (the merger's
// SetImports, and in Kubernetes mode the MCS writer's too).
func newFederation(c *controlPlaneConfig, plane *trustplane.Plane, onImports func(*federation.Imports), reg prometheus.Registerer, log *slog.Logger) (*controlplane.Federation, error) {
	peers, err := federationPeers(c.Peers)
	if err != nil {
		return nil, err
	}
	var gw netip.AddrPort // validated by validateFederation
	if c.EastWestAddress != "" {
		gw = netip.MustParseAddrPort(c.EastWestAddress)
	}
	return controlplane.NewFederation(controlplane.FederationOptions{
		Cluster: c.Cluster, Network: c.Network, TrustDomain: plane.Authority.TrustDomain(),
		SVID: plane, Bundles: plane.Set, Listen: c.FederationListen, Peers: peers,
		Staleness: c.Staleness, OnImports: onImports, Registerer: reg, Logger: log,
		EastWest: gw,
	})
}

// writeFederationStatus is the admin /federation page: one line per peer
// import and per peer trust bundle.
func writeFederationStatus(w io.Writer, fed *controlplane.Federation) {
	for _, s := range fed.ImportStatus() {
		state := "connecting"
		switch {
		case s.Connected:
			state = "connected"
		case s.Stale:
			state = "stale since " + s.StaleSince.Format(time.RFC3339)
		case s.Withdrawn:
			state = "withdrawn"
		}
		fmt.Fprintf(w, "import %s trust-domain=%s address=%s state=%q services=%d endpoints=%d revision=%d last-error=%v\n",
			s.Cluster, s.TrustDomain, s.Address, state, s.Services, s.Endpoints, s.Revision, s.LastError)
	}
	for _, s := range fed.BundleStatus() {
		fmt.Fprintf(w, "bundle %s url=%s profile=%s healthy=%t refreshes=%d expiry=%s last-error=%v\n",
			s.TrustDomain, s.URL, s.Profile, s.Healthy, s.Refreshes, s.Expiry.Format(time.RFC3339), s.LastError)
	}
}

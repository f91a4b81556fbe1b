package controlplane

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/model"
)

// StatusReport is one control plane's state as the admin /status endpoint
// serves it (JSON) and `causeway status` prints it. Every list is sorted,
// so two reports of the same state are byte-identical.
type StatusReport struct {
	Cluster     string    `json:"cluster"`
	Network     string    `json:"network,omitempty"`
	TrustDomain string    `json:"trust_domain,omitempty"`
	Time        time.Time `json:"time"`
	// Ready: a model is being served (the admin /ready).
	Ready bool `json:"ready"`
	// Services and Endpoints in the served model (imports included).
	Services  int `json:"services"`
	Endpoints int `json:"endpoints"`
	// Problems are the source's problems and the merge's conflicts.
	Problems []string `json:"problems,omitempty"`
	// Export is this cluster's exporter; nil without one.
	Export *ExportStatus `json:"export,omitempty"`
	// Links are the imports from the peers, by cluster.
	Links []LinkStatus `json:"links,omitempty"`
	// Trust are the peers' trust bundles, by trust domain.
	Trust []TrustStatus `json:"trust,omitempty"`
	// Exported and Imported services of the served model.
	Exported []ServiceStatus `json:"exported,omitempty"`
	Imported []ServiceStatus `json:"imported,omitempty"`
	// Proxies are the connected xDS nodes, by id.
	Proxies []ProxyStatus `json:"proxies,omitempty"`
}

// ExportStatus is the federation exporter.
type ExportStatus struct {
	Listen   string `json:"listen"`
	Epoch    string `json:"epoch,omitempty"`
	Revision uint64 `json:"revision"`
}

// LinkStatus is the import from one peer (federation.PeerStatus).
type LinkStatus struct {
	Peer        string `json:"peer"`
	TrustDomain string `json:"trust_domain"`
	Address     string `json:"address"`
	// State is "connected", "stale", "withdrawn" or "connecting";
	// Healthy is State == "connected".
	State      string    `json:"state"`
	Healthy    bool      `json:"healthy"`
	StaleSince time.Time `json:"stale_since,omitzero"`
	LastSync   time.Time `json:"last_sync,omitzero"`
	Epoch      string    `json:"epoch,omitempty"`
	Revision   uint64    `json:"revision"`
	Services   int       `json:"services"`
	Endpoints  int       `json:"endpoints"`
	Connects   uint64    `json:"connects"`
	Failures   uint64    `json:"failures"`
	Refusals   uint64    `json:"refusals"`
	LastError  string    `json:"last_error,omitempty"`
}

// TrustStatus is one peer trust domain's bundle (bundles.Status).
type TrustStatus struct {
	TrustDomain string `json:"trust_domain"`
	URL         string `json:"url"`
	Profile     string `json:"profile"`
	Healthy     bool   `json:"healthy"`
	// Sequence is the bundle's spiffe_sequence; nil when it carries none.
	Sequence            *uint64   `json:"sequence,omitempty"`
	Expiry              time.Time `json:"expiry,omitzero"`
	LastRefresh         time.Time `json:"last_refresh,omitzero"`
	NextAttempt         time.Time `json:"next_attempt,omitzero"`
	Refreshes           uint64    `json:"refreshes"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastError           string    `json:"last_error,omitempty"`
}

// ServiceStatus is one exported or imported service.
type ServiceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Clusters backing the service (from its endpoints), sorted.
	Clusters []string `json:"clusters,omitempty"`
	// Endpoints and the Ready ones among them.
	Endpoints int `json:"endpoints"`
	Ready     int `json:"ready"`
}

// ProxyStatus is one connected xDS node. The control plane does not yet
// record which version of each type a node has ACKed, so none is shown.
type ProxyStatus struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Cluster   string `json:"cluster"`
	Locality  string `json:"locality,omitempty"`
	// Kind is "sidecar", "proxyless" or "east-west".
	Kind    string `json:"kind"`
	Streams int    `json:"streams"`
	// Acked is the config version the proxy last ACKed, by type (lds, cds,
	// rds, eds, sds); state-of-the-world streams only (delta requests carry
	// no version).
	Acked map[string]string `json:"acked,omitempty"`
}

// StatusSources are what a status report reads besides the ControlPlane;
// nil ones are left out of it.
type StatusSources struct {
	TrustDomain string
	Federation  *Federation
	Merger      *Merger
	Problems    func() []discovery.Problem
	// Now stamps the report; default time.Now.
	Now func() time.Time
}

// Status reports the control plane's state. Safe from any goroutine; it
// holds c.mu only to copy the node table and the model pointer.
func (c *ControlPlane) Status(src StatusSources) StatusReport {
	now := time.Now
	if src.Now != nil {
		now = src.Now
	}
	r := StatusReport{Cluster: c.o.Cluster, Network: c.o.Network, TrustDomain: src.TrustDomain, Time: now().UTC()}
	c.mu.Lock()
	m := c.model
	for _, st := range c.nodes {
		n := st.node
		kind := "sidecar"
		switch {
		case n.Proxyless:
			kind = "proxyless"
		case n.EastWestPort != 0:
			kind = "east-west"
		}
		r.Proxies = append(r.Proxies, ProxyStatus{ID: n.ID, Namespace: n.Namespace, Cluster: n.Cluster,
			Locality: n.Locality.String(), Kind: kind, Streams: st.streams, Acked: maps.Clone(st.acked)})
	}
	c.mu.Unlock()
	slices.SortFunc(r.Proxies, func(a, b ProxyStatus) int { return strings.Compare(a.ID, b.ID) })

	if m != nil {
		r.Ready = true
		if r.TrustDomain == "" {
			r.TrustDomain = m.TrustDomain
		}
		for _, s := range m.Services {
			r.Services++
			r.Endpoints += len(s.Endpoints)
			if s.Exported {
				r.Exported = append(r.Exported, serviceStatus(s, func(e model.Endpoint) bool { return e.Cluster == c.o.Cluster }))
			}
			if s.Imported {
				r.Imported = append(r.Imported, serviceStatus(s, func(e model.Endpoint) bool { return e.Cluster != c.o.Cluster }))
			}
		}
	}
	if src.Problems != nil {
		for _, p := range src.Problems() {
			r.Problems = append(r.Problems, p.Error())
		}
	}
	if src.Merger != nil {
		for _, cf := range src.Merger.Conflicts() {
			r.Problems = append(r.Problems, "merge: "+cf.Error())
		}
	}
	if f := src.Federation; f != nil {
		if f.server != nil {
			r.Export = &ExportStatus{Listen: f.Addr(), Epoch: f.server.Epoch(), Revision: f.server.Revision()}
		}
		for _, s := range f.ImportStatus() {
			l := LinkStatus{Peer: s.Cluster, TrustDomain: s.TrustDomain.String(), Address: s.Address, State: "connecting",
				StaleSince: s.StaleSince, LastSync: s.LastSync, Epoch: s.Epoch, Revision: s.Revision,
				Services: s.Services, Endpoints: s.Endpoints, Connects: s.Connects, Failures: s.Failures,
				Refusals: s.Refusals, LastError: errString(s.LastError)}
			switch {
			case s.Connected:
				l.State, l.Healthy = "connected", true
			case s.Stale:
				l.State = "stale"
			case s.Withdrawn:
				l.State = "withdrawn"
			}
			r.Links = append(r.Links, l)
		}
		for _, s := range f.BundleStatus() {
			t := TrustStatus{TrustDomain: s.TrustDomain.String(), URL: s.URL, Profile: string(s.Profile), Healthy: s.Healthy,
				Expiry: s.Expiry, LastRefresh: s.LastRefresh, NextAttempt: s.NextAttempt, Refreshes: s.Refreshes,
				ConsecutiveFailures: s.ConsecutiveFailures, LastError: errString(s.LastError)}
			if s.HasSequence {
				seq := s.Sequence
				t.Sequence = &seq
			}
			r.Trust = append(r.Trust, t)
		}
		slices.SortFunc(r.Links, func(a, b LinkStatus) int { return strings.Compare(a.Peer, b.Peer) })
		slices.SortFunc(r.Trust, func(a, b TrustStatus) int { return strings.Compare(a.TrustDomain, b.TrustDomain) })
	}
	return r
}

// StatusHandler serves Status as JSON: the admin /status endpoint.
func (c *ControlPlane) StatusHandler(src StatusSources) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(c.Status(src))
	})
}

// serviceStatus counts s's endpoints that mine selects (this cluster's for
// an export, the peers' for an import).
func serviceStatus(s model.Service, mine func(model.Endpoint) bool) ServiceStatus {
	st := ServiceStatus{Namespace: s.Namespace, Name: s.Name}
	for _, e := range s.Endpoints {
		if !mine(e) {
			continue
		}
		st.Endpoints++
		if e.Ready {
			st.Ready++
		}
		if !slices.Contains(st.Clusters, e.Cluster) {
			st.Clusters = append(st.Clusters, e.Cluster)
		}
	}
	slices.Sort(st.Clusters)
	return st
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

package lb

import (
	"cmp"
	"slices"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// ClusterStatus is a deterministic view of a Cluster for /clusters and
// `causeway explain`.
type ClusterStatus struct {
	Name                   string  `json:"name"`
	Policy                 string  `json:"lb_policy"` // config.LBPolicy.String()
	OverprovisioningFactor float64 `json:"overprovisioning_factor"`
	PanicThreshold         float64 `json:"panic_threshold"`
	// NoHealthyUpstream is true when Pick would fail.
	NoHealthyUpstream bool          `json:"no_healthy_upstream"`
	Levels            []LevelStatus `json:"priorities"` // by ascending priority
	Hosts             []HostStatus  `json:"endpoints"`  // by priority, locality, cluster, address
	// Circuit-breaker gauges.
	ActiveRequests  int64 `json:"active_requests"`
	PendingRequests int64 `json:"pending_requests"`
	Connections     int64 `json:"connections"`
	ActiveRetries   int64 `json:"active_retries"`
}

// LevelStatus is one priority level.
type LevelStatus struct {
	Priority      uint32 `json:"priority"`
	Healthy       int    `json:"healthy"` // usable hosts (health and not ejected)
	Total         int    `json:"total"`
	HealthPercent uint32 `json:"health_percent"` // min(100, OF*usable/total), in capacity (host weights)
	LoadPercent   uint32 `json:"load_percent"`   // share of traffic this level receives
	Panic         bool   `json:"panic"`          // the level ignores health
}

// HostStatus is one host.
type HostStatus struct {
	Address        string          `json:"address"`
	Hostname       string          `json:"hostname,omitempty"`
	Locality       config.Locality `json:"locality"`
	Cluster        string          `json:"cluster,omitempty"`
	Network        string          `json:"network,omitempty"`
	Priority       uint32          `json:"priority"`
	Weight         uint32          `json:"weight"`
	Health         config.Health   `json:"health"` // control-plane health
	Ejected        bool            `json:"ejected"`
	EjectedUntil   time.Time       `json:"ejected_until,omitzero"`    // zero unless Ejected
	EjectionReason string          `json:"ejection_reason,omitempty"` // empty unless Ejected
	TimesEjected   int             `json:"times_ejected"`
	ActiveRequests int64           `json:"active_requests"`
	Successes      uint64          `json:"successes"`
	Failures       uint64          `json:"failures"`
}

// Status returns the current state, sorted.
func (c *Cluster) Status() ClusterStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pick.Load()
	s := ClusterStatus{
		Name: c.name, Policy: c.cfg.LB.String(), OverprovisioningFactor: c.of,
		PanicThreshold: c.cfg.PanicThreshold, NoHealthyUpstream: p.none,
		ActiveRequests: c.requests.Load(), PendingRequests: c.pending.Load(),
		Connections: c.conns.Load(), ActiveRetries: c.retries.Load(),
	}
	for _, L := range p.levels {
		s.Levels = append(s.Levels, LevelStatus{
			Priority: L.priority, Healthy: L.usable, Total: L.total,
			HealthPercent: L.health, LoadPercent: L.load, Panic: L.panic,
		})
	}
	for _, g := range c.groups {
		for _, h := range g.hosts {
			st := h.st
			hs := HostStatus{
				Address: h.Address, Hostname: h.Hostname, Locality: h.Locality,
				Cluster: h.Cluster, Network: h.Network, Priority: h.Priority,
				Weight: h.Weight, Health: h.Health, Ejected: st.ejected,
				TimesEjected: st.ejections, ActiveRequests: st.active.Load(),
				Successes: st.okTotal.Load(), Failures: st.failTotal.Load(),
			}
			if st.ejected {
				hs.EjectedUntil, hs.EjectionReason = st.ejectedUntil, st.reason
			}
			s.Hosts = append(s.Hosts, hs)
		}
	}
	slices.SortFunc(s.Hosts, func(a, b HostStatus) int {
		return cmp.Or(
			cmp.Compare(a.Priority, b.Priority),
			cmp.Compare(a.Locality.Region, b.Locality.Region),
			cmp.Compare(a.Locality.Zone, b.Locality.Zone),
			cmp.Compare(a.Locality.SubZone, b.Locality.SubZone),
			cmp.Compare(a.Cluster, b.Cluster),
			cmp.Compare(a.Address, b.Address),
		)
	})
	return s
}

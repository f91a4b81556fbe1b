package lb

import (
	"github.com/causewaymesh/causeway/proxy/config"
)

// LocalityLoad is one LocalityEndpoints entry of a Cluster and the share
// of the cluster's new requests Pick sends to it now. It is what `causeway
// explain` shows as the per-locality split; it is computed from the same
// immutable picker snapshot that Pick reads, so it is the live answer, not
// a re-derivation.
type LocalityLoad struct {
	Priority uint32          `json:"priority"`
	Locality config.Locality `json:"locality"`
	Cluster  string          `json:"cluster,omitempty"` // Kubernetes cluster
	Network  string          `json:"network,omitempty"`
	Weight   uint32          `json:"weight"`  // locality weight (zero in config means 1)
	Healthy  int             `json:"healthy"` // usable: health Usable() and not ejected
	Total    int             `json:"total"`
	// LevelPercent is the share of its priority level's traffic this
	// locality receives; SharePercent is the share of the whole cluster's
	// traffic (level load × LevelPercent / 100). Both are 0 when nothing
	// may be picked.
	LevelPercent float64 `json:"level_percent"`
	SharePercent float64 `json:"share_percent"`
	// Mode says how LevelPercent was split: "locality_weighted" (locality
	// weight × min(1, OF × healthy/total)), "panic" (the level ignores
	// health: by host weight over every host), "hashed" (RING_HASH/MAGLEV
	// ignore localities: by usable host weight) or "none" (nothing may be
	// picked).
	Mode string `json:"mode"`
}

// Modes of LocalityLoad.Mode.
const (
	ModeLocalityWeighted = "locality_weighted"
	ModePanic            = "panic"
	ModeHashed           = "hashed"
	ModeNone             = "none"
)

// LocalityLoads returns the current per-locality split, by ascending
// priority and then in LoadAssignment order. It takes Cluster.mu (never
// held on the Pick path) and does not change any state: a lazily expired
// ejection still counts until a Pick or Sweep notices it.
func (c *Cluster) LocalityLoads() []LocalityLoad {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pick.Load()
	var out []LocalityLoad
	for _, L := range p.levels {
		first := len(out)
		var allW, usableW uint64 // host weights in the level
		k := 0                   // index into L.locs: groups with a usable host, in order
		for _, g := range c.groups {
			if g.priority != L.priority {
				continue
			}
			ll := LocalityLoad{Priority: g.priority, Weight: g.weight, Total: len(g.hosts)}
			if len(g.hosts) > 0 {
				h0 := g.hosts[0]
				ll.Locality, ll.Cluster, ll.Network = h0.Locality, h0.Cluster, h0.Network
			}
			var gAll, gUsable uint64
			for _, h := range g.hosts {
				gAll += uint64(h.Weight)
				if h.Health.Usable() && !h.st.ejected {
					ll.Healthy++
					gUsable += uint64(h.Weight)
				}
			}
			allW += gAll
			usableW += gUsable
			switch {
			case p.none:
				ll.Mode = ModeNone
			case L.panic:
				ll.Mode, ll.LevelPercent = ModePanic, float64(gAll) // normalised below
			case p.hashed:
				ll.Mode, ll.LevelPercent = ModeHashed, float64(gUsable)
			default:
				ll.Mode = ModeLocalityWeighted
				if ll.Healthy > 0 && k < len(L.locW) && L.locSum > 0 {
					ll.LevelPercent = 100 * float64(L.locW[k]) / float64(L.locSum)
				}
			}
			if ll.Healthy > 0 {
				k++
			}
			out = append(out, ll)
		}
		for i := first; i < len(out); i++ {
			ll := &out[i]
			switch ll.Mode {
			case ModePanic:
				ll.LevelPercent = pct(ll.LevelPercent, allW)
			case ModeHashed:
				ll.LevelPercent = pct(ll.LevelPercent, usableW)
			}
			if !p.none {
				ll.SharePercent = ll.LevelPercent * float64(L.load) / 100
			}
		}
	}
	return out
}

func pct(part float64, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * part / float64(whole)
}

package lb

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// ErrNoHealthyUpstream is returned (wrapped, naming the cluster) by Pick
// when the cluster has no endpoint it may send to.
var ErrNoHealthyUpstream = errors.New("no healthy upstream")

// Ejection reasons passed to Observer.Ejected.
const (
	ReasonConsecutive5xx            = "consecutive_5xx"
	ReasonConsecutiveGatewayFailure = "consecutive_gateway_failure"
	ReasonSuccessRate               = "success_rate"
)

// Observer hears about state changes of a Cluster. Calls for one Cluster
// are serialised and made in order, without the Cluster's lock held, so an
// Observer may call Status or Pick; it must not call Update, Sweep or End
// synchronously (they may deliver events and would deadlock).
type Observer interface {
	Ejected(cluster string, h *Host, reason string)
	Unejected(cluster string, h *Host)
	// PriorityChanged reports that the deepest (numerically largest)
	// priority level receiving a traffic share > 0 changed: from 0 to 1
	// when spillover or failover to P1 begins, back to 0 when it ends.
	PriorityChanged(cluster string, from, to int)
}

// Options for a Cluster. Clock and Rand are injected (tests use fakes).
type Options struct {
	Now func() time.Time // default time.Now
	// Rand returns uniformly distributed bits and must be safe for
	// concurrent use. Default: math/rand/v2.Uint64 (the runtime's
	// per-thread ChaCha8, lock-free).
	Rand     func() uint64
	Observer Observer // may be nil
	// ManualSweep, when true, starts no background goroutine: the owner
	// calls Sweep itself (tests, or a proxy that drives all clusters from
	// one timer). Un-ejection still happens lazily in Pick.
	ManualSweep bool
}

// Cluster is the upstream state of one cluster: its hosts, the picker
// snapshot, outlier detection and circuit breakers. All methods are safe for
// concurrent use.
type Cluster struct {
	name   string
	now    func() time.Time
	rand   func() uint64
	obs    Observer
	manual bool

	pick   atomic.Pointer[picker]
	limits atomic.Pointer[limits]
	od     atomic.Pointer[outlierCfg] // nil: outlier detection disabled

	requests, pending, conns, retries atomic.Int64

	mu     sync.Mutex
	cfg    *config.Cluster
	groups []group
	of     float64               // overprovisioning factor, percent
	states map[string]*hostState // by hostKey
	closed bool
	// sweeper goroutine; stop is nil when none runs.
	stop     chan struct{}
	done     chan struct{}
	interval chan time.Duration // buffered 1: latest sweep interval
	every    time.Duration      // interval the sweeper was last given

	obsMu sync.Mutex // serialises Observer calls
}

// group is the hosts of one LocalityEndpoints entry.
type group struct {
	priority uint32
	weight   uint32
	hosts    []*Host
}

type event struct {
	kind     uint8 // evEject, evUneject, evPriority
	h        *Host
	reason   string
	from, to int
}

const (
	evEject uint8 = iota
	evUneject
	evPriority
)

// NewCluster builds the state of cfg with endpoints la. When la is nil,
// cfg.Static is used. A nil cfg is treated as an empty ROUND_ROBIN cluster.
func NewCluster(cfg *config.Cluster, la *config.LoadAssignment, opts Options) *Cluster {
	c := &Cluster{
		now:      opts.Now,
		rand:     opts.Rand,
		obs:      opts.Observer,
		manual:   opts.ManualSweep,
		states:   map[string]*hostState{},
		interval: make(chan time.Duration, 1),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = rand.Uint64
	}
	c.mu.Lock()
	evs := c.updateLocked(cfg, la, true)
	c.unlockAndDeliver(evs)
	return c
}

// Name is the cluster's name.
func (c *Cluster) Name() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.name
}

// Update swaps config and/or endpoints; a nil argument keeps the current
// one (la == nil with a cfg carrying Static uses Static). Hosts with the
// same address in the same locality and cluster keep their outlier state,
// ejection and active-request counts. Hosts that disappear are forgotten
// without an Unejected event.
func (c *Cluster) Update(cfg *config.Cluster, la *config.LoadAssignment) {
	c.mu.Lock()
	evs := c.updateLocked(cfg, la, false)
	c.unlockAndDeliver(evs)
}

func (c *Cluster) updateLocked(cfg *config.Cluster, la *config.LoadAssignment, first bool) []event {
	if cfg == nil {
		cfg = c.cfg
		if cfg == nil {
			cfg = &config.Cluster{}
		}
	}
	c.cfg = cfg
	c.name = cfg.Name
	c.limits.Store(newLimits(cfg.Circuit))
	od := newOutlierCfg(cfg.Outlier)
	c.od.Store(od)
	if la == nil && (first || cfg.Static != nil) {
		la = cfg.Static
	}
	if la != nil || first {
		c.setEndpointsLocked(la)
	}
	var evs []event
	if od == nil {
		// Outlier detection removed: return every ejected host.
		for _, st := range c.sortedStatesLocked() {
			if st.ejected {
				c.unejectLocked(st)
				evs = append(evs, event{kind: evUneject, h: st.host})
			}
		}
	}
	if od != nil && !c.manual && !c.closed {
		if c.stop == nil {
			c.stop, c.done = make(chan struct{}), make(chan struct{})
			c.every = od.interval
			go c.sweeper(c.stop, c.done, od.interval)
		} else if od.interval != c.every {
			// Only on a change: resetting the ticker on every EDS update
			// would postpone sweeps indefinitely.
			c.every = od.interval
			select { // replace any unread interval
			case <-c.interval:
			default:
			}
			c.interval <- od.interval
		}
	}
	return c.rebuildLocked(evs, first)
}

func (c *Cluster) setEndpointsLocked(la *config.LoadAssignment) {
	of := 140.0
	if la != nil && la.OverprovisioningFactor > 0 {
		of = la.OverprovisioningFactor
	}
	c.groups = c.groups[:0]
	seen := make(map[string]*hostState, len(c.states))
	if la != nil {
		for _, le := range la.Localities {
			if le == nil || len(le.Endpoints) == 0 {
				continue
			}
			g := group{priority: le.Priority, weight: max(le.Weight, 1)}
			for _, ep := range le.Endpoints {
				key := ep.Address
				if _, dup := seen[key]; dup {
					key = hostKey(ep.Address, le)
					if _, dup := seen[key]; dup {
						continue // first occurrence of an address in a locality wins
					}
				}
				st := c.states[key]
				if st == nil {
					st = &hostState{c: c, addr: key}
				}
				h := &Host{
					Address: ep.Address, Hostname: ep.Hostname, Locality: le.Locality,
					Cluster: le.Cluster, Network: le.Network, Identity: ep.Identity,
					Priority: le.Priority, Weight: max(ep.Weight, 1), LocalityWeight: g.weight,
					Health: ep.Health, st: st,
				}
				st.host = h
				seen[key] = st
				g.hosts = append(g.hosts, h)
			}
			if len(g.hosts) > 0 {
				c.groups = append(c.groups, g)
			}
		}
	}
	c.states = seen
	c.of = of
}

// hostKey names the second and later occurrences of an address, in other
// localities, across updates (the first is keyed by its address alone, so
// a host that moves to another locality keeps its state). One address may
// stand for several localities: a peer's east-west gateway is advertised
// once per locality behind it (federation), and each is a host of its
// own, balanced by its locality's weight and ejected alone, never the
// whole peer at once.
func hostKey(addr string, le *config.LocalityEndpoints) string {
	return addr + "|" + le.Cluster + "|" + le.Locality.Region + "/" + le.Locality.Zone + "/" + le.Locality.SubZone
}

// Close stops the background sweep goroutine, if any. It is idempotent; the
// Cluster stays usable for Pick and the breakers.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	stop, done := c.stop, c.done
	c.stop = nil
	c.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

func (c *Cluster) sweeper(stop <-chan struct{}, done chan<- struct{}, d time.Duration) {
	defer close(done)
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case d := <-c.interval:
			t.Reset(d)
		case <-t.C:
			c.Sweep(c.now())
		}
	}
}

// unlockAndDeliver releases c.mu and hands evs to the Observer in order.
func (c *Cluster) unlockAndDeliver(evs []event) {
	if len(evs) == 0 || c.obs == nil {
		c.mu.Unlock()
		return
	}
	c.obsMu.Lock()
	name := c.name
	c.mu.Unlock()
	defer c.obsMu.Unlock()
	for _, e := range evs {
		switch e.kind {
		case evEject:
			c.obs.Ejected(name, e.h, e.reason)
		case evUneject:
			c.obs.Unejected(name, e.h)
		case evPriority:
			c.obs.PriorityChanged(name, e.from, e.to)
		}
	}
}

package lb

import (
	"container/heap"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/causewaymesh/causeway/proxy/config"
)

// PickRequest carries what a Pick may depend on. A nil *PickRequest is the
// same as the zero value.
type PickRequest struct {
	Hash    uint64 // for RING_HASH / MAGLEV
	HasHash bool   // false: ring/maglev fall back to a random hash
	// Tried are the hosts earlier tries of this request used (retries).
	// Pick avoids them when any alternative exists and prefers a host whose
	// locality (region/zone/subzone plus Kubernetes cluster) differs from
	// every tried host's.
	Tried []*Host
}

// picker is an immutable snapshot of everything Pick needs. It is rebuilt
// under Cluster.mu whenever the host set, control-plane health or an
// ejection changes, and published with an atomic store. Only the
// round-robin counters inside it are mutated (atomically).
type picker struct {
	lb          config.LBPolicy
	hashed      bool
	levels      []*level // by ascending priority
	cum         []uint32 // cumulative load percent, cum[len-1] == 100
	none        bool     // nothing may be picked
	errNone     error
	nextUneject int64 // earliest ejection end in Unix ns; 0: none ejected
	deepest     int   // deepest priority with load > 0; -1 none
}

// level is one priority level.
type level struct {
	priority      uint32
	total, usable int
	// totalW and usableW are the level's capacity: the sums of its hosts'
	// weights. Health, a locality's availability and panic are counted in
	// capacity rather than hosts. With unit weights (every pod) that is
	// Envoy's host count; a peer's east-west gateway endpoint stands for
	// a whole locality and carries its healthy weight, so the locality
	// counts for the endpoints behind it, not as one host.
	totalW, usableW uint64
	health, load    uint32 // percent
	panic           bool
	all             *hostSet   // every host: the pick set in panic mode
	usableSet       *hostSet   // usable hosts
	locs            []*hostSet // usable hosts per locality with weight > 0
	locW            []uint64   // scaled effective locality weights
	locSum          uint64
	hashHosts       []*Host // hosts of ring / mag
	ring            *ring   // RING_HASH over the pick set (load > 0 only)
	mag             *maglev // MAGLEV over the pick set (load > 0 only)
}

// hostSet is a set of hosts with a weighted schedule.
type hostSet struct {
	hosts []*Host
	// sched lists indices into hosts in EDF order, each host appearing in
	// proportion to its weight; nil when all weights are equal.
	sched []uint32
	rr    atomic.Uint64
}

// maxSched bounds a weighted round-robin schedule; larger weight sums are
// scaled down proportionally (each host keeps at least one slot).
const maxSched = 8192

func newHostSet(hosts []*Host, seed uint64) *hostSet {
	s := &hostSet{hosts: hosts, sched: buildSched(hosts)}
	s.rr.Store(seed)
	return s
}

func (s *hostSet) n() uint64 {
	if s.sched != nil {
		return uint64(len(s.sched))
	}
	return uint64(len(s.hosts))
}

// at maps 32 random bits to a host, weighted.
func (s *hostSet) at(r uint64) *Host {
	i := (r & math.MaxUint32) * s.n() >> 32
	if s.sched != nil {
		return s.hosts[s.sched[i]]
	}
	return s.hosts[i]
}

func (s *hostSet) pick(lb config.LBPolicy, rnd func() uint64) *Host {
	if lb == config.LeastRequest {
		// Power of two choices, candidates drawn by weight.
		r := rnd()
		a := s.at(r)
		if len(s.hosts) == 1 {
			return a
		}
		b := s.at(r >> 32)
		if b.st.active.Load() < a.st.active.Load() {
			return b
		}
		return a
	}
	i := s.rr.Add(1) % s.n()
	if s.sched != nil {
		return s.hosts[s.sched[i]]
	}
	return s.hosts[i]
}

// buildSched builds an earliest-deadline-first schedule of weighted hosts.
func buildSched(hosts []*Host) []uint32 {
	if len(hosts) < 2 {
		return nil
	}
	equal := true
	g := uint64(0)
	sum := uint64(0)
	for _, h := range hosts {
		w := uint64(h.Weight)
		equal = equal && h.Weight == hosts[0].Weight
		g = gcd(g, w)
		sum += w
	}
	if equal {
		return nil
	}
	ws := make([]uint64, len(hosts))
	for i, h := range hosts {
		ws[i] = uint64(h.Weight) / g
	}
	sum /= g
	limit := uint64(max(maxSched, len(hosts)))
	if sum > limit {
		total := float64(sum)
		sum = 0
		for i := range ws {
			ws[i] = max(1, uint64(math.Round(float64(ws[i])*float64(limit)/total)))
			sum += ws[i]
		}
	}
	q := make(edf, len(ws))
	for i, w := range ws {
		q[i] = edfEntry{deadline: 1 / float64(w), step: 1 / float64(w), idx: uint32(i)}
	}
	heap.Init(&q)
	out := make([]uint32, 0, sum)
	for uint64(len(out)) < sum {
		e := &q[0]
		out = append(out, e.idx)
		e.deadline += e.step
		heap.Fix(&q, 0)
	}
	return out
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

type edfEntry struct {
	deadline, step float64
	idx            uint32
}

type edf []edfEntry

func (q edf) Len() int { return len(q) }
func (q edf) Less(i, j int) bool {
	if q[i].deadline != q[j].deadline {
		return q[i].deadline < q[j].deadline
	}
	return q[i].idx < q[j].idx
}
func (q edf) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *edf) Push(x any)   { *q = append(*q, x.(edfEntry)) }
func (q *edf) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// rebuildLocked publishes a new picker and appends a PriorityChanged event
// when the deepest loaded priority moved.
func (c *Cluster) rebuildLocked(evs []event, first bool) []event {
	p := c.buildLocked()
	old := c.pick.Swap(p)
	if !first && old != nil && old.deepest != p.deepest {
		evs = append(evs, event{kind: evPriority, from: old.deepest, to: p.deepest})
	}
	return evs
}

func (c *Cluster) buildLocked() *picker {
	cfg := c.cfg
	p := &picker{lb: cfg.LB, hashed: cfg.LB == config.RingHash || cfg.LB == config.Maglev, deepest: -1}
	prios := make([]uint32, 0, 4)
	for _, g := range c.groups {
		if !slices.Contains(prios, g.priority) {
			prios = append(prios, g.priority)
		}
	}
	slices.Sort(prios)
	of := c.of
	seed := c.rand()
	for _, prio := range prios {
		L := &level{priority: prio}
		var all, usable []*Host
		var locs []*hostSet
		var effs []float64
		for _, g := range c.groups {
			if g.priority != prio {
				continue
			}
			var gu []*Host
			var gAllW, gUsableW uint64
			for _, h := range g.hosts {
				all = append(all, h)
				gAllW += uint64(h.Weight)
				if h.st.ejected {
					if u := h.st.ejectedUntil.UnixNano(); p.nextUneject == 0 || u < p.nextUneject {
						p.nextUneject = max(u, 1)
					}
				}
				if h.Health.Usable() && !h.st.ejected {
					gu = append(gu, h)
					gUsableW += uint64(h.Weight)
				}
			}
			usable = append(usable, gu...)
			L.totalW += gAllW
			L.usableW += gUsableW
			if len(gu) > 0 {
				// Envoy: weight * min(1, OF * usable/total), counted in
				// capacity (host weights; see level.totalW).
				eff := float64(g.weight) * math.Min(1, of/100*float64(gUsableW)/float64(gAllW))
				locs = append(locs, newHostSet(gu, seed))
				effs = append(effs, eff)
			}
		}
		L.total, L.usable = len(all), len(usable)
		L.all = newHostSet(all, seed)
		L.usableSet = newHostSet(usable, seed)
		L.locs = locs
		effSum := 0.0
		for _, e := range effs {
			effSum += e
		}
		for _, e := range effs {
			w := max(1, uint64(math.Round(e/effSum*(1<<30))))
			L.locW = append(L.locW, w)
			L.locSum += w
		}
		if L.totalW > 0 {
			L.health = uint32(min(100, math.Floor(of*float64(L.usableW)/float64(L.totalW)+1e-9)))
		}
		p.levels = append(p.levels, L)
	}
	c.computeLoads(p)
	if p.none {
		p.errNone = fmt.Errorf("lb: cluster %q: %d endpoints, none usable (control-plane health or outlier ejection) and panic mode is off: %w",
			c.name, len(c.states), ErrNoHealthyUpstream)
		return p
	}
	for _, L := range p.levels {
		if L.load == 0 || !p.hashed {
			continue
		}
		src := L.usableSet.hosts
		if L.panic {
			src = L.all.hosts
		}
		L.hashHosts = src
		if cfg.LB == config.RingHash {
			L.ring = buildRing(src, cfg.RingSize)
		} else {
			L.mag = buildMaglev(src)
		}
	}
	return p
}

// computeLoads implements Envoy's priority load and panic computation
// (LoadBalancerBase::recalculatePriorityLoad, recalculatePerPriorityPanic,
// recalculateLoadInTotalPanic):
//
//   - health(P) = min(100, OF * usable/total), in whole percent, usable
//     and total counted in capacity (host weights; see level.totalW);
//   - normalized total health NTH = min(100, Σ health);
//   - if NTH > 0, load(P) = min(remaining, health(P)*100/NTH) in priority
//     order, rounding leftovers going to the first level with health > 0;
//   - a level is in panic when NTH < 100 and its usable share (without OF)
//     is below PanicThreshold; a panicking level balances over all its
//     hosts, ignoring health and ejection;
//   - if every level is in panic, load is split by host count instead;
//   - with PanicThreshold 0 and NTH 0 nothing may be picked.
func (c *Cluster) computeLoads(p *picker) {
	if len(p.levels) == 0 {
		p.none = true
		return
	}
	thr := min(max(c.cfg.PanicThreshold, 0), 100)
	nth := uint32(0)
	for _, L := range p.levels {
		nth += L.health
	}
	nth = min(nth, 100)
	if nth == 0 && thr == 0 {
		p.none = true
		p.levels[0].load = 100
		return
	}
	if nth > 0 {
		remaining := uint32(100)
		first := -1
		for i, L := range p.levels {
			if first < 0 && L.health > 0 {
				first = i
			}
			L.load = min(remaining, L.health*100/nth)
			remaining -= L.load
		}
		p.levels[first].load += remaining
	}
	allPanic := true
	for _, L := range p.levels {
		pct := 0.0
		if L.totalW > 0 {
			pct = 100 * float64(L.usableW) / float64(L.totalW)
		}
		L.panic = thr > 0 && nth < 100 && pct < thr
		allPanic = allPanic && L.panic
	}
	if allPanic {
		total := 0
		for _, L := range p.levels {
			total += L.total
		}
		remaining := uint32(100)
		for _, L := range p.levels {
			L.load = uint32(100 * L.total / total)
			remaining -= L.load
		}
		p.levels[0].load += remaining // levels are never empty here
	}
	sum := uint32(0)
	for _, L := range p.levels {
		sum += L.load
		p.cum = append(p.cum, sum)
		if L.load > 0 {
			p.deepest = int(L.priority)
		}
	}
}

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (p *picker) chooseLevel(x uint64) *level {
	v := uint32((x >> 32) * 100 >> 32)
	for i, c := range p.cum {
		if v < c {
			return p.levels[i]
		}
	}
	return p.levels[len(p.levels)-1]
}

func (L *level) chooseLoc(x uint64) *hostSet {
	v := (x & math.MaxUint32) * L.locSum >> 32
	for i, w := range L.locW {
		if v < w {
			return L.locs[i]
		}
		v -= w
	}
	return L.locs[len(L.locs)-1]
}

// Pick chooses a host for one try: a priority level by load, then (unless
// the level is in panic) a locality by effective weight, then a host by
// the cluster's policy. RING_HASH and MAGLEV choose the level with the
// request hash and look the host up over the whole level. The error wraps
// ErrNoHealthyUpstream.
func (c *Cluster) Pick(r *PickRequest) (*Host, error) {
	p := c.pick.Load()
	if p.nextUneject != 0 && c.now().UnixNano() >= p.nextUneject {
		p = c.unejectExpired(p)
	}
	if p.none {
		return nil, p.errNone
	}
	var hash uint64
	if p.hashed {
		if r != nil && r.HasHash {
			hash = r.Hash
		} else {
			hash = c.rand()
		}
	}
	L := p.levels[0]
	if len(p.levels) > 1 {
		if p.hashed {
			L = p.chooseLevel(mix(hash))
		} else {
			L = p.chooseLevel(c.rand())
		}
	}
	var h *Host
	switch {
	case L.ring != nil:
		h = L.ring.lookup(hash)
	case L.mag != nil:
		h = L.mag.lookup(hash)
	case L.panic:
		h = L.all.pick(p.lb, c.rand)
	case len(L.locs) == 1:
		h = L.locs[0].pick(p.lb, c.rand)
	default:
		h = L.chooseLoc(c.rand()).pick(p.lb, c.rand)
	}
	if r != nil && len(r.Tried) > 0 {
		h = c.retryPick(p, L, h, hash, r.Tried)
	}
	return h, nil
}

func triedHost(h *Host, tried []*Host) bool {
	for _, t := range tried {
		if t != nil && t.st == h.st {
			return true
		}
	}
	return false
}

func triedLocality(h *Host, tried []*Host) bool {
	for _, t := range tried {
		if t != nil && t.Locality == h.Locality && t.Cluster == h.Cluster {
			return true
		}
	}
	return false
}

// retryPick applies the retry preferences to first, the host the normal
// path chose in level L: (1) a usable host in a locality no try used,
// searching L first and then the other levels in priority order; (2) any
// untried usable host, same order; (3) an untried host of L's panic set;
// (4) first. Hash policies walk L's ring/table from the hash first, so
// retries stay consistent for a key.
func (c *Cluster) retryPick(p *picker, L *level, first *Host, hash uint64, tried []*Host) *Host {
	if !triedHost(first, tried) && !triedLocality(first, tried) {
		return first
	}
	for _, otherLoc := range [2]bool{true, false} {
		if h := L.hashWalk(hash, tried, otherLoc); h != nil {
			return h
		}
		if h := c.search(p, L, L, tried, otherLoc); h != nil {
			return h
		}
		for _, o := range p.levels {
			if o != L {
				if h := c.search(p, o, L, tried, otherLoc); h != nil {
					return h
				}
			}
		}
	}
	if L.panic {
		hs := L.all.hosts
		off := int((c.rand() & math.MaxUint32) * uint64(len(hs)) >> 32)
		for i := range hs {
			if h := hs[(off+i)%len(hs)]; !triedHost(h, tried) {
				return h
			}
		}
	}
	return first
}

func (c *Cluster) search(p *picker, L, chosen *level, tried []*Host, otherLoc bool) *Host {
	if len(L.locs) == 0 {
		return nil
	}
	if otherLoc {
		var sum uint64
		for i, s := range L.locs {
			if !triedLocality(s.hosts[0], tried) {
				sum += L.locW[i]
			}
		}
		if sum == 0 {
			return nil
		}
		v := (c.rand() & math.MaxUint32) * sum >> 32
		for i, s := range L.locs {
			if triedLocality(s.hosts[0], tried) {
				continue
			}
			if v < L.locW[i] {
				return s.pick(p.lb, c.rand) // no host here was tried
			}
			v -= L.locW[i]
		}
		return nil
	}
	r := c.rand()
	target := L.chooseLoc(r)
	start := 0
	for i, s := range L.locs {
		if s == target {
			start = i
			break
		}
	}
	for k := range L.locs {
		hs := L.locs[(start+k)%len(L.locs)].hosts
		off := int((r >> 32) * uint64(len(hs)) >> 32)
		for i := range hs {
			if h := hs[(off+i)%len(hs)]; !triedHost(h, tried) {
				return h
			}
		}
	}
	return nil
}

func (L *level) hashWalk(hash uint64, tried []*Host, otherLoc bool) *Host {
	ok := func(h *Host) bool {
		return !triedHost(h, tried) && (!otherLoc || !triedLocality(h, tried))
	}
	// Walk only when some host qualifies, so a walk never scans a whole
	// table in vain.
	if !slices.ContainsFunc(L.hashHosts, ok) {
		return nil
	}
	switch {
	case L.ring != nil:
		return L.ring.walk(hash, ok)
	case L.mag != nil:
		return L.mag.walk(hash, ok)
	}
	return nil
}

package lb

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// outlierCfg is config.OutlierDetection with defaults applied.
type outlierCfg struct {
	c5xx, cgw      int32
	interval, base time.Duration
	maxT           time.Duration // max(base, MaxEjectionTime)
	maxPct         float64
	srMin, srVol   int
	srFactor       float64
}

func newOutlierCfg(o *config.OutlierDetection) *outlierCfg {
	if o == nil {
		return nil
	}
	d := &outlierCfg{
		c5xx: int32(o.Consecutive5xx), cgw: int32(o.ConsecutiveGatewayFailure),
		interval: o.Interval, base: o.BaseEjectionTime, maxT: o.MaxEjectionTime,
		maxPct: o.MaxEjectionPercent, srMin: o.SuccessRateMinimumHosts,
		srVol: o.SuccessRateRequestVolume, srFactor: o.SuccessRateStdevFactor,
	}
	if d.interval <= 0 {
		d.interval = 10 * time.Second
	}
	if d.base <= 0 {
		d.base = 30 * time.Second
	}
	if d.maxT <= 0 {
		d.maxT = 300 * time.Second
	}
	d.maxT = max(d.maxT, d.base)
	if d.maxPct <= 0 {
		d.maxPct = 10
	}
	if d.srVol <= 0 {
		d.srVol = 100
	}
	if d.srFactor <= 0 {
		d.srFactor = 1900
	}
	return d
}

func (c *Cluster) tryEject(st *hostState, reason string) {
	c.mu.Lock()
	var evs []event
	if c.ejectLocked(st, reason, c.now()) {
		evs = c.rebuildLocked([]event{{kind: evEject, h: st.host, reason: reason}}, false)
	}
	c.unlockAndDeliver(evs)
}

// ejectLocked applies Envoy's ejection algorithm: if no host is ejected the
// host is ejected; otherwise only while 100*ejected/total is below
// MaxEjectionPercent (so one host can always be ejected, whatever the
// percentage). The duration is BaseEjectionTime times the backoff
// multiplier, capped at MaxEjectionTime; the multiplier grows by one per
// ejection while base*multiplier < max, and shrinks by one per sweep the
// host spends un-ejected.
func (c *Cluster) ejectLocked(st *hostState, reason string, now time.Time) bool {
	od := c.od.Load()
	if od == nil || c.states[st.addr] != st || st.ejected {
		return false
	}
	ejected := 0
	for _, s := range c.states {
		if s.ejected {
			ejected++
		}
	}
	if ejected > 0 && 100*float64(ejected)/float64(len(c.states)) >= od.maxPct {
		return false
	}
	if time.Duration(st.backoff)*od.base < od.maxT {
		st.backoff++
	}
	st.ejected = true
	st.ejectedUntil = now.Add(min(time.Duration(st.backoff)*od.base, od.maxT))
	st.reason = reason
	st.ejections++
	return true
}

func (c *Cluster) unejectLocked(st *hostState) {
	st.ejected = false
	st.reason = ""
	st.cons5xx.Store(0)
	st.consGW.Store(0)
}

// unejectExpired returns hosts whose ejection ended (lazily, from Pick). It
// never blocks Pick: if another goroutine holds the lock, p is used as is.
func (c *Cluster) unejectExpired(p *picker) *picker {
	if !c.mu.TryLock() {
		return p
	}
	now := c.now()
	var evs []event
	for _, st := range c.sortedStatesLocked() {
		if st.ejected && !now.Before(st.ejectedUntil) {
			c.unejectLocked(st)
			evs = append(evs, event{kind: evUneject, h: st.host})
		}
	}
	if len(evs) > 0 {
		evs = c.rebuildLocked(evs, false)
	}
	p = c.pick.Load()
	c.unlockAndDeliver(evs)
	return p
}

func (c *Cluster) sortedStatesLocked() []*hostState {
	out := make([]*hostState, 0, len(c.states))
	for _, st := range c.states {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *hostState) int { return cmp.Compare(a.addr, b.addr) })
	return out
}

// Sweep runs one outlier-detection interval at now: it returns hosts whose
// ejection ended, decays ejection multipliers, and runs success-rate
// detection over the window since the previous Sweep. The background
// goroutine calls it every Interval; with Options.ManualSweep the owner
// does.
//
// Success rate (Envoy's algorithm): hosts with at least
// SuccessRateRequestVolume tries in the window are considered; if there are
// at least SuccessRateMinimumHosts of them, each whose success rate is
// below mean - stdev*SuccessRateStdevFactor/1000 is ejected, subject to
// MaxEjectionPercent.
func (c *Cluster) Sweep(now time.Time) {
	c.mu.Lock()
	var evs []event
	od := c.od.Load()
	states := c.sortedStatesLocked()
	type cand struct {
		st   *hostState
		rate float64
	}
	var cands []cand
	for _, st := range states {
		ok, fail := st.okWin.Swap(0), st.failWin.Swap(0)
		if st.ejected {
			if !now.Before(st.ejectedUntil) {
				c.unejectLocked(st)
				evs = append(evs, event{kind: evUneject, h: st.host})
			}
			continue
		}
		if st.backoff > 0 {
			st.backoff--
		}
		if od != nil && od.srMin > 0 && ok+fail >= uint64(od.srVol) {
			cands = append(cands, cand{st, 100 * float64(ok) / float64(ok+fail)})
		}
	}
	if od != nil && od.srMin > 0 && len(cands) >= od.srMin {
		mean := 0.0
		for _, cd := range cands {
			mean += cd.rate
		}
		mean /= float64(len(cands))
		variance := 0.0
		for _, cd := range cands {
			variance += (cd.rate - mean) * (cd.rate - mean)
		}
		stdev := math.Sqrt(variance / float64(len(cands)))
		limit := mean - stdev*od.srFactor/1000
		for _, cd := range cands {
			if cd.rate < limit && c.ejectLocked(cd.st, ReasonSuccessRate, now) {
				evs = append(evs, event{kind: evEject, h: cd.st.host, reason: ReasonSuccessRate})
			}
		}
	}
	if len(evs) > 0 {
		evs = c.rebuildLocked(evs, false)
	}
	c.unlockAndDeliver(evs)
}

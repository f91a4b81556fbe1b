package lb

import (
	"sync/atomic"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// Result is the outcome of one try on a host, as outlier detection sees it.
// It follows Envoy with split_external_local_origin_errors=false: errors the
// proxy itself observes (connect failure, reset, timeout) count like a 503.
type Result uint8

const (
	// Success is any response that is not a 5xx (4xx included, as in
	// Envoy). It resets both consecutive-failure counters.
	Success Result = iota
	// Status5xx is a 5xx response other than 502/503/504 (e.g. 500) from
	// the upstream app. It counts towards Consecutive5xx and the success
	// rate, and resets the consecutive gateway-failure counter.
	Status5xx
	// GatewayFailure is a 502, 503 or 504 response. It counts towards
	// Consecutive5xx, ConsecutiveGatewayFailure and the success rate.
	GatewayFailure
	// LocalOriginFailure is a failure seen by the proxy before a response
	// arrived: connect failure or timeout, reset, per-try timeout. It counts
	// exactly like GatewayFailure.
	LocalOriginFailure
	// Abandoned is a try that ended without a verdict on the host (the
	// downstream went away, the route timeout fired elsewhere). It only
	// releases the active-request count.
	Abandoned
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case Status5xx:
		return "5xx"
	case GatewayFailure:
		return "gateway_failure"
	case LocalOriginFailure:
		return "local_origin_failure"
	case Abandoned:
		return "abandoned"
	}
	return "unknown"
}

// Host is one endpoint of a Cluster. Its exported fields are a read-only
// description taken from the LoadAssignment; never modify them. An Update
// yields new *Host values, but hosts with the same Address share their
// mutable state (active requests, outlier counters, ejection), so a *Host
// picked before an Update may still be passed to End.
type Host struct {
	Address  string // host:port
	Hostname string
	Locality config.Locality
	// Cluster and Network are the Kubernetes cluster and network the
	// endpoint runs in.
	Cluster, Network string
	Identity         string // expected SPIFFE ID, if known
	Priority         uint32
	Weight           uint32 // endpoint weight, >= 1
	LocalityWeight   uint32 // weight of its locality, >= 1
	Health           config.Health

	st *hostState
}

// ActiveRequests is the number of tries begun on h and not yet ended.
func (h *Host) ActiveRequests() int64 { return h.st.active.Load() }

// Begin records the start of one try on h. Every Begin must be matched by
// exactly one End.
func (h *Host) Begin() { h.st.active.Add(1) }

// End records the end of one try on h and feeds its result to outlier
// detection. It takes no lock unless the try crosses an ejection threshold.
func (h *Host) End(r Result) {
	st := h.st
	st.active.Add(-1)
	switch r {
	case Success:
		st.okTotal.Add(1)
		st.okWin.Add(1)
		if st.cons5xx.Load() != 0 {
			st.cons5xx.Store(0)
		}
		if st.consGW.Load() != 0 {
			st.consGW.Store(0)
		}
		return
	case Abandoned:
		return
	}
	st.failTotal.Add(1)
	st.failWin.Add(1)
	n5 := st.cons5xx.Add(1)
	var ngw int32
	if r == Status5xx {
		if st.consGW.Load() != 0 {
			st.consGW.Store(0)
		}
	} else {
		ngw = st.consGW.Add(1)
	}
	od := st.c.od.Load()
	if od == nil {
		return
	}
	// "==" makes exactly one End trigger the attempt; the counter is reset
	// after it (as Envoy does), so another full run is needed to retry.
	if od.cgw > 0 && ngw == od.cgw {
		st.consGW.Store(0)
		st.c.tryEject(st, ReasonConsecutiveGatewayFailure)
		return
	}
	if od.c5xx > 0 && n5 == od.c5xx {
		st.cons5xx.Store(0)
		st.c.tryEject(st, ReasonConsecutive5xx)
	}
}

// hostState is the mutable state of one host (its address; hostKey for
// an address that is in several localities), shared by every *Host value
// describing it across Updates.
type hostState struct {
	c    *Cluster
	addr string // the key in Cluster.states

	active  atomic.Int64
	cons5xx atomic.Int32
	consGW  atomic.Int32
	// totals since the host appeared, and the current success-rate window.
	okTotal, failTotal atomic.Uint64
	okWin, failWin     atomic.Uint64

	// Guarded by Cluster.mu.
	host         *Host // latest descriptor
	ejected      bool
	ejectedUntil time.Time
	reason       string
	ejections    int // times ejected, ever
	backoff      int // ejection-time multiplier (Envoy's eject_time_backoff)
}

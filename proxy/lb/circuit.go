package lb

import (
	"sync/atomic"

	"github.com/causewaymesh/causeway/proxy/config"
)

// limits is config.CircuitBreakers with Envoy's defaults applied.
type limits struct {
	conns, pending, requests, retries int64
	budgetPct                         float64 // > 0: retry budget replaces retries
	minRetry                          int64
}

func newLimits(cb config.CircuitBreakers) *limits {
	l := &limits{
		conns: int64(cb.MaxConnections), pending: int64(cb.MaxPendingRequests),
		requests: int64(cb.MaxRequests), retries: int64(cb.MaxRetries),
		budgetPct: cb.RetryBudgetPercent, minRetry: int64(cb.MinRetryConcurrency),
	}
	if l.conns <= 0 {
		l.conns = 1024
	}
	if l.pending <= 0 {
		l.pending = 1024
	}
	if l.requests <= 0 {
		l.requests = 1024
	}
	if l.retries <= 0 {
		l.retries = 3
	}
	if l.minRetry <= 0 {
		l.minRetry = 3 // Envoy's min_retry_concurrency default
	}
	return l
}

// Each TryAcquire* admits one unit if the cluster is under its limit and
// must then be paired with the matching Release*. They are lock-free; under
// a race at the limit a caller may be refused spuriously, never admitted
// beyond the limit.

// TryAcquireRequest admits one active request (MaxRequests).
func (c *Cluster) TryAcquireRequest() bool {
	return acquire(&c.requests, c.limits.Load().requests)
}

// ReleaseRequest ends an admitted request.
func (c *Cluster) ReleaseRequest() { c.requests.Add(-1) }

// TryAcquirePending admits one request waiting for a connection
// (MaxPendingRequests).
func (c *Cluster) TryAcquirePending() bool {
	return acquire(&c.pending, c.limits.Load().pending)
}

// ReleasePending ends an admitted pending request.
func (c *Cluster) ReleasePending() { c.pending.Add(-1) }

// TryAcquireConnection admits one upstream connection (MaxConnections).
func (c *Cluster) TryAcquireConnection() bool {
	return acquire(&c.conns, c.limits.Load().conns)
}

// ReleaseConnection ends an admitted connection.
func (c *Cluster) ReleaseConnection() { c.conns.Add(-1) }

// TryAcquireRetry admits one active retry. With RetryBudgetPercent > 0 the
// limit is max(MinRetryConcurrency (default 3), pct/100 * active requests)
// where active requests are those admitted by TryAcquireRequest; otherwise
// it is MaxRetries (default 3).
func (c *Cluster) TryAcquireRetry() bool {
	l := c.limits.Load()
	limit := l.retries
	if l.budgetPct > 0 {
		limit = max(l.minRetry, int64(l.budgetPct/100*float64(c.requests.Load())))
	}
	return acquire(&c.retries, limit)
}

// ReleaseRetry ends an admitted retry.
func (c *Cluster) ReleaseRetry() { c.retries.Add(-1) }

func acquire(n *atomic.Int64, limit int64) bool {
	if n.Add(1) > limit {
		n.Add(-1)
		return false
	}
	return true
}

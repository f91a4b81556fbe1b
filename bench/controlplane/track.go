package main

import (
	"bytes"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// change is one model change being waited for.
type change struct {
	id      int
	cluster string // the EDS name that carries the change
	marker  []byte // length-prefixed address bytes as they appear in a ClusterLoadAssignment
	start   time.Time

	mu    sync.Mutex
	want  []bool          // by client id: affected and not yet ACKed
	left  int             // affected clients not yet ACKed
	lat   []time.Duration // one per ACK, in ACK order
	done  chan struct{}   // closed when left reaches 0
	extra int             // ACKs from clients not affected (should stay 0)
}

// newChange waits for the clients whose affected[i] is true.
func newChange(id int, cluster, addr string, start time.Time, affected []bool) *change {
	c := &change{id: id, cluster: cluster, marker: markerBytes(addr), start: start, want: slices.Clone(affected), done: make(chan struct{})}
	for _, a := range affected {
		if a {
			c.left++
		}
	}
	if c.left == 0 {
		close(c.done)
	}
	return c
}

func (c *change) name() string { return c.cluster }

// markerBytes is addr as a protobuf string field of a SocketAddress
// (field 2, wire type 2: tag 0x12, then the length). Addresses are short,
// so the length is one byte.
func markerBytes(addr string) []byte {
	return append([]byte{0x12, byte(len(addr))}, addr...)
}

// in reports whether any of the raw resources carries the marker.
func (c *change) in(raw [][]byte) bool {
	for _, r := range raw {
		if bytes.Contains(r, c.marker) {
			return true
		}
	}
	return false
}

// ack records client's ACK at t; the first one per client counts.
func (c *change) ack(client int, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if client < 0 || client >= len(c.want) || !c.want[client] {
		c.extra++
		return
	}
	c.want[client] = false
	c.lat = append(c.lat, t.Sub(c.start))
	c.left--
	if c.left == 0 {
		close(c.done)
	}
}

// result is the convergence (the last ACK) and every ACK's latency.
func (c *change) result() (converged time.Duration, lat []time.Duration, missing int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lat = slices.Clone(c.lat)
	if c.left == 0 && len(lat) > 0 {
		converged = slices.Max(lat)
	}
	return converged, lat, c.left
}

// tracker holds the change the clients are checking for.
type tracker struct {
	cur atomic.Pointer[change]
}

func (t *tracker) current() *change { return t.cur.Load() }
func (t *tracker) set(c *change)    { t.cur.Store(c) }

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of ds; 0
// for none. ds is not modified.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

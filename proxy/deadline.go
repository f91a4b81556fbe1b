package proxy

import (
	"context"
	"sync"
	"time"
)

// Route timeouts without a runtime timer per request.
//
// context.WithTimeout starts a runtime timer for every request. A new
// timer that is the earliest on its P (a 15 s route timeout is, when the
// connections' deadlines are an hour away) makes the runtime wake another
// thread to re-arm the network poller: a futex wake-up, a context switch
// and a spinning thread that finds nothing to do, for every request (8 %
// of the proxy's CPU at 1,000 req/s in the profile of docs/benchmarks.md).
//
// deadlines keeps the deadlines of one cluster's requests in flight in a
// heap behind one runtime timer, armed for the earliest of them. A request
// whose deadline is later than the armed time (the usual case: requests
// arrive in order and share a timeout) touches no runtime timer at all;
// the timer fires about once per timeout period, cancels what expired and
// re-arms for the next deadline.

// deadlines fires the route timeouts of one cluster's requests. Safe for
// concurrent use.
type deadlines struct {
	mu     sync.Mutex
	heap   []*routeCtx // min-heap by deadline
	timer  *time.Timer
	armed  time.Time // when the timer fires; zero: not armed
	closed bool
}

// routeCtx is a request's context under its route timeout. It behaves as
// context.WithTimeout's: Deadline reports the deadline, and once it has
// passed Done is closed and Err is context.DeadlineExceeded. When its
// parent ends first, it ends with the parent's error. Under an HTTP/1.1
// request's context (a ctxNode, reqctx.go) it is that node's child and
// costs one allocation; under any other parent it watches the parent with
// context.AfterFunc.
type routeCtx struct {
	ctxNode
	parent     *ctxNode    // set when linked as parent's child
	stopParent func() bool // set when watching a foreign parent
	idx        int         // in deadlines.heap; -1 when not in it
}

// withTimeout returns a context that ends when parent does or timeout
// after now, and the function that releases it (call it when the request
// ends, as a CancelFunc).
func (d *deadlines) withTimeout(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	now := time.Now()
	deadline := now.Add(timeout)
	if pd, ok := parent.Deadline(); ok && !pd.After(deadline) {
		// The parent ends first anyway (context.WithDeadline's rule).
		return context.WithCancel(parent)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return context.WithDeadline(parent, deadline)
	}
	c := &routeCtx{ctxNode: ctxNode{deadline: deadline}, idx: -1}
	d.push(c)
	if d.armed.IsZero() || deadline.Before(d.armed) {
		d.arm(deadline, now)
	}
	d.mu.Unlock()
	if p := asNode(parent); p != nil {
		c.parent = p
		p.link(&c.ctxNode)
	} else {
		c.stopParent = context.AfterFunc(parent, func() { c.end(parent.Err()) })
	}
	return c, func() { d.release(c) }
}

// arm sets the timer for t. Called with mu held.
func (d *deadlines) arm(t, now time.Time) {
	d.armed = t
	wait := max(t.Sub(now), 0)
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.fire)
		return
	}
	d.timer.Reset(wait)
}

func (d *deadlines) release(c *routeCtx) {
	d.mu.Lock()
	if c.idx >= 0 {
		d.remove(c.idx)
		d.stopIfIdle()
	}
	d.mu.Unlock()
	if c.parent != nil {
		c.parent.unlink(&c.ctxNode)
	} else if c.stopParent != nil {
		c.stopParent()
	}
	c.end(context.Canceled)
}

// fire cancels every context whose deadline has passed and re-arms the
// timer for the next one.
func (d *deadlines) fire() {
	now := time.Now()
	var expired []*routeCtx
	d.mu.Lock()
	for len(d.heap) > 0 && !d.heap[0].deadline.After(now) {
		expired = append(expired, d.heap[0])
		d.remove(0)
	}
	d.armed = time.Time{}
	if len(d.heap) > 0 {
		d.arm(d.heap[0].deadline, now)
	}
	d.mu.Unlock()
	for _, c := range expired {
		c.end(context.DeadlineExceeded)
	}
}

// close stops the timer once no request is in flight: contexts still in
// flight keep their deadlines; new ones get a timer of their own.
func (d *deadlines) close() {
	d.mu.Lock()
	d.closed = true
	d.stopIfIdle()
	d.mu.Unlock()
}

// stopIfIdle stops the timer of a closed set with nothing in flight, so
// that no timer outlives the cluster. Called with mu held.
func (d *deadlines) stopIfIdle() {
	if d.closed && len(d.heap) == 0 && d.timer != nil {
		d.timer.Stop()
		d.armed = time.Time{}
	}
}

// The heap, by deadline; each context knows its index.

func (d *deadlines) push(c *routeCtx) {
	c.idx = len(d.heap)
	d.heap = append(d.heap, c)
	d.up(c.idx)
}

func (d *deadlines) remove(i int) {
	h := d.heap
	last := len(h) - 1
	h[i].idx = -1
	if i != last {
		h[i] = h[last]
		h[i].idx = i
	}
	h[last] = nil
	d.heap = h[:last]
	if i != last {
		if !d.down(i) {
			d.up(i)
		}
	}
}

func (d *deadlines) less(i, j int) bool { return d.heap[i].deadline.Before(d.heap[j].deadline) }

func (d *deadlines) swap(i, j int) {
	h := d.heap
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}

func (d *deadlines) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !d.less(j, i) {
			break
		}
		d.swap(i, j)
		j = i
	}
}

// down reports whether the element at i moved.
func (d *deadlines) down(i0 int) bool {
	i, n := i0, len(d.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && d.less(r, l) {
			j = r
		}
		if !d.less(j, i) {
			break
		}
		d.swap(i, j)
		i = j
	}
	return i > i0
}

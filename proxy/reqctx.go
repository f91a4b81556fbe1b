package proxy

import (
	"context"
	"sync"
	"time"
)

// Request contexts in one allocation each.
//
// With context.WithCancel for the request and the cluster's deadline heap
// for its route timeout, an HTTP/1.1 request made about fourteen
// allocations of the context package on its way upstream (cancelCtxs, an
// afterFuncCtx, children maps, Done channels, cancel closures): that many
// of the 46 allocations and a fifth of the bytes a proxied request
// allocated (docs/benchmarks.md). ctxNode is a context.Context that needs
// none of them: the request's context and its route context are one ctxNode each,
// the route context hangs off the request's in a field, and the upstream
// connection's "close me if the request is canceled" hook is a slot in the
// route context's list instead of an afterFuncCtx.

// ctxNode is a context.Context that ends when end is called (by its owner,
// or by its parent ctxNode through the child link). It has no values
// (Value returns nil: nothing in the proxy stores any) and a deadline only
// as set at creation. Contexts derived from it with the context package
// register through its AfterFunc method, so no goroutine watches it.
type ctxNode struct {
	deadline time.Time // zero: none; immutable

	mu     sync.Mutex
	err    error
	done   chan struct{} // made by the first Done; closed by end
	child  *ctxNode      // ended with this one
	funcs  []afterEntry  // run when it ends; starts in inline
	inline [2]afterEntry
	nextID uint32
}

type afterEntry struct {
	id     uint32
	f      func()
	inline bool // run on the ending goroutine (our own cheap hooks)
}

// closedChan is the Done channel of a node that ended before anyone asked.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (n *ctxNode) Deadline() (time.Time, bool) { return n.deadline, !n.deadline.IsZero() }

func (n *ctxNode) Done() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		if n.err != nil {
			return closedChan
		}
		n.done = make(chan struct{})
	}
	return n.done
}

func (n *ctxNode) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

func (n *ctxNode) Value(any) any { return nil }

// AfterFunc arranges for f to run on its own goroutine once n ends (at
// once if it has), as context.AfterFunc does; stop reports whether it
// kept f from running. The context package uses it for contexts derived
// from n.
func (n *ctxNode) AfterFunc(f func()) (stop func() bool) {
	return n.after(f, false)
}

func (n *ctxNode) after(f func(), inline bool) func() bool {
	n.mu.Lock()
	if n.err != nil {
		n.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if n.funcs == nil {
		n.funcs = n.inline[:0]
	}
	n.nextID++
	id := n.nextID
	n.funcs = append(n.funcs, afterEntry{id: id, f: f, inline: inline})
	n.mu.Unlock()
	return func() bool { return n.stop(id) }
}

func (n *ctxNode) stop(id uint32) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, e := range n.funcs {
		if e.id == id {
			last := len(n.funcs) - 1
			n.funcs[i] = n.funcs[last]
			n.funcs[last] = afterEntry{}
			n.funcs = n.funcs[:last]
			return true
		}
	}
	return false
}

// end ends n with err (the first call wins), then its child with the same
// error, and runs what AfterFunc registered.
func (n *ctxNode) end(err error) {
	n.mu.Lock()
	if n.err != nil {
		n.mu.Unlock()
		return
	}
	n.err = err
	if n.done != nil {
		close(n.done)
	}
	child := n.child
	n.child = nil
	var run [2]afterEntry
	funcs := append(run[:0], n.funcs...)
	clear(n.funcs)
	n.funcs = n.funcs[:0]
	n.mu.Unlock()
	if child != nil {
		child.end(err)
	}
	for _, e := range funcs {
		if e.inline {
			e.f()
		} else {
			go e.f()
		}
	}
}

// link makes child end when n does (at once if n has ended). One child:
// a second link replaces the first.
func (n *ctxNode) link(child *ctxNode) {
	n.mu.Lock()
	err := n.err
	if err == nil {
		n.child = child
	}
	n.mu.Unlock()
	if err != nil {
		child.end(err)
	}
}

// unlink undoes link.
func (n *ctxNode) unlink(child *ctxNode) {
	n.mu.Lock()
	if n.child == child {
		n.child = nil
	}
	n.mu.Unlock()
}

// afterFunc runs f once ctx ends, like context.AfterFunc. On a ctxNode it
// costs no context-package objects and f runs on the goroutine that ends
// ctx, so f must be quick, must not block, and must take no lock that
// goroutine may hold. The two callers qualify: the HTTP/1.1 pool's sets a
// connection's deadline, the HTTP/2 client's takes its connection's mu
// for a moment; nodes end from request goroutines, the deadline heap's
// timer and context.AfterFunc goroutines, none of them holding a
// connection's lock.
func afterFunc(ctx context.Context, f func()) (stop func() bool) {
	if n := asNode(ctx); n != nil {
		return n.after(f, true)
	}
	return context.AfterFunc(ctx, f)
}

// asNode returns the ctxNode behind ctx, if ctx is one.
func asNode(ctx context.Context) *ctxNode {
	switch c := ctx.(type) {
	case *ctxNode:
		return c
	case *routeCtx:
		return &c.ctxNode
	}
	return nil
}

// reqCtxs hands out the contexts of an HTTP/1.1 connection's requests:
// one at a time, each ended by the connection's serve loop when the
// request is done, or by the connection's context (close, drain deadline,
// listener stop) while it is in flight.
type reqCtxs struct {
	mu    sync.Mutex
	cur   *ctxNode
	endFn context.CancelFunc // c.endRequest, made once; set once the connection's context is watched
}

// newRequestContext returns the context of the connection's next request
// and the function that ends it.
func (c *h1ServerConn) newRequestContext() (context.Context, context.CancelFunc) {
	n := &ctxNode{}
	r := &c.reqs
	r.mu.Lock()
	if r.endFn == nil {
		r.endFn = c.endRequest
		context.AfterFunc(c.ctx, r.endFn)
	}
	r.cur = n
	r.mu.Unlock()
	if c.ctx.Err() != nil {
		n.end(context.Canceled)
	}
	return n, r.endFn
}

// endRequest ends the context of the request in flight, if any.
func (c *h1ServerConn) endRequest() {
	r := &c.reqs
	r.mu.Lock()
	n := r.cur
	r.cur = nil
	r.mu.Unlock()
	if n != nil {
		n.end(context.Canceled)
	}
}

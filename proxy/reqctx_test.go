package proxy

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestCtxNodeEnds(t *testing.T) {
	var n ctxNode
	if _, ok := n.Deadline(); ok {
		t.Error("a node made without a deadline reports one")
	}
	if n.Value("any") != nil {
		t.Error("Value is not nil")
	}
	done := n.Done()
	select {
	case <-done:
		t.Fatal("Done closed before end")
	default:
	}
	if n.Err() != nil {
		t.Fatalf("Err() = %v before end", n.Err())
	}
	n.end(context.Canceled)
	n.end(context.DeadlineExceeded) // the first error stays
	waitDone(t, &n, time.Second)
	if err := n.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err() = %v, want context.Canceled", err)
	}
	if c := context.Cause(&n); !errors.Is(c, context.Canceled) {
		t.Errorf("Cause = %v, want context.Canceled", c)
	}
	var late ctxNode // Done asked only after the end
	late.end(context.Canceled)
	waitDone(t, &late, time.Second)
}

// TestCtxNodeDerived checks contexts the context package derives from a
// node: they end with it and carry its error.
func TestCtxNodeDerived(t *testing.T) {
	for _, err := range []error{context.Canceled, context.DeadlineExceeded} {
		var n ctxNode
		child, cancel := context.WithCancel(&n)
		defer cancel()
		timed, cancelTimed := context.WithTimeout(&n, time.Hour)
		defer cancelTimed()
		n.end(err)
		for _, c := range []context.Context{child, timed} {
			waitDone(t, c, 5*time.Second)
			if !errors.Is(c.Err(), err) {
				t.Errorf("derived context: Err() = %v, want %v", c.Err(), err)
			}
		}
	}
	// A derived context canceled first leaves the node alone and stops
	// its registration.
	var n ctxNode
	child, cancel := context.WithCancel(&n)
	cancel()
	waitDone(t, child, time.Second)
	if n.Err() != nil {
		t.Errorf("node ended with its child: %v", n.Err())
	}
	n.mu.Lock()
	left := len(n.funcs)
	n.mu.Unlock()
	if left != 0 {
		t.Errorf("%d registrations left on the node after its only child was canceled", left)
	}
}

func TestCtxNodeAfterFunc(t *testing.T) {
	var n ctxNode
	ran := make(chan string, 4)
	n.AfterFunc(func() { ran <- "goroutine" })
	afterFunc(&n, func() { ran <- "inline" })
	stopped := afterFunc(&n, func() { ran <- "stopped" })
	if !stopped() {
		t.Error("stop before the end reported false")
	}
	if stopped() {
		t.Error("a second stop reported true")
	}
	n.end(context.Canceled)
	got := map[string]bool{}
	for range 2 {
		select {
		case s := <-ran:
			got[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("after end, ran %v; want goroutine and inline", got)
		}
	}
	if !got["goroutine"] || !got["inline"] {
		t.Errorf("ran %v; want goroutine and inline", got)
	}
	select {
	case s := <-ran:
		t.Errorf("%q ran too", s)
	default:
	}
	// Registered after the end: runs at once, and cannot be stopped.
	stop := n.AfterFunc(func() { ran <- "late" })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a function registered after the end did not run")
	}
	if stop() {
		t.Error("stop of a function that ran reported true")
	}
}

// TestRouteCtxUnderRequest checks a route context whose parent is a
// request's node: the request's end ends it, its expiry does not end the
// request, and its release unlinks it.
func TestRouteCtxUnderRequest(t *testing.T) {
	t.Run("request ends", func(t *testing.T) {
		var d deadlines
		defer d.close()
		var req ctxNode
		ctx, release := d.withTimeout(&req, time.Hour)
		defer release()
		var closed atomic.Bool
		afterFunc(ctx, func() { closed.Store(true) })
		req.end(context.Canceled)
		waitDone(t, ctx, 5*time.Second)
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("route Err() = %v, want context.Canceled", ctx.Err())
		}
		if !closed.Load() {
			t.Error("the route context's inline hook did not run when the request ended")
		}
	})
	t.Run("route expires", func(t *testing.T) {
		var d deadlines
		defer d.close()
		var req ctxNode
		ctx, release := d.withTimeout(&req, 10*time.Millisecond)
		defer release()
		waitDone(t, ctx, 5*time.Second)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("route Err() = %v, want context.DeadlineExceeded", ctx.Err())
		}
		if req.Err() != nil {
			t.Errorf("the request ended with its route timeout: %v", req.Err())
		}
	})
	t.Run("released", func(t *testing.T) {
		var d deadlines
		defer d.close()
		var req ctxNode
		ctx, release := d.withTimeout(&req, time.Hour)
		release()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("route Err() after release = %v, want context.Canceled", ctx.Err())
		}
		req.mu.Lock()
		child := req.child
		req.mu.Unlock()
		if child != nil {
			t.Error("the released route context is still the request's child")
		}
	})
}

func TestRequestContextsOfConn(t *testing.T) {
	connCtx, closeConn := context.WithCancel(context.Background())
	c := &h1ServerConn{ctx: connCtx, cancel: closeConn}

	first, end := c.newRequestContext()
	end()
	if !errors.Is(first.Err(), context.Canceled) {
		t.Fatalf("ended request: Err() = %v, want context.Canceled", first.Err())
	}
	second, _ := c.newRequestContext()
	if second.Err() != nil {
		t.Fatalf("the next request starts ended: %v", second.Err())
	}
	closeConn() // the connection closes under the request in flight
	waitDone(t, second, 5*time.Second)
	third, _ := c.newRequestContext()
	if !errors.Is(third.Err(), context.Canceled) {
		t.Errorf("a request on a closed connection: Err() = %v, want context.Canceled", third.Err())
	}
}

// TestRequestContextAllocs bounds what a request's contexts allocate on
// the HTTP/1.1 path: the request's node, the route context and its
// release, and the upstream connection's hook with its stop.
func TestRequestContextAllocs(t *testing.T) {
	connCtx, closeConn := context.WithCancel(context.Background())
	defer closeConn()
	c := &h1ServerConn{ctx: connCtx, cancel: closeConn}
	var d deadlines
	defer d.close()
	c.newRequestContext() // the connection's one-time watch
	allocs := testing.AllocsPerRun(200, func() {
		req, end := c.newRequestContext()
		ctx, release := d.withTimeout(req, 15*time.Second)
		stop := afterFunc(ctx, func() {})
		stop()
		release()
		end()
	})
	if allocs > 4 {
		t.Errorf("a request's contexts allocate %.0f times; want at most 4", allocs)
	}
}

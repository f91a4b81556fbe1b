package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// waitDone waits for ctx to end, failing after limit.
func waitDone(t *testing.T, ctx context.Context, limit time.Duration) time.Time {
	t.Helper()
	select {
	case <-ctx.Done():
		return time.Now()
	case <-time.After(limit):
		t.Fatalf("context not done after %s", limit)
		return time.Time{}
	}
}

func TestDeadlinesExpire(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeouts []time.Duration // started in this order
	}{
		{"one", []time.Duration{20 * time.Millisecond}},
		{"in order", []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond}},
		{"out of order", []time.Duration{60 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 10 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d deadlines
			defer d.close()
			type started struct {
				ctx    context.Context
				cancel context.CancelFunc
				dl     time.Time
			}
			var all []started
			for _, to := range tc.timeouts {
				ctx, cancel := d.withTimeout(context.Background(), to)
				dl, ok := ctx.Deadline()
				if !ok {
					t.Fatalf("timeout %s: no deadline", to)
				}
				all = append(all, started{ctx, cancel, dl})
			}
			for i, s := range all {
				at := waitDone(t, s.ctx, 5*time.Second)
				if at.Before(s.dl) {
					t.Errorf("context %d (timeout %s) ended %s before its deadline", i, tc.timeouts[i], s.dl.Sub(at))
				}
				if err := s.ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("context %d: Err() = %v, want context.DeadlineExceeded", i, err)
				}
				if c := context.Cause(s.ctx); !errors.Is(c, context.DeadlineExceeded) {
					t.Errorf("context %d: Cause = %v, want context.DeadlineExceeded", i, c)
				}
				s.cancel()
				if err := s.ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("context %d after release: Err() = %v, want context.DeadlineExceeded", i, err)
				}
			}
			d.mu.Lock()
			n := len(d.heap)
			d.mu.Unlock()
			if n != 0 {
				t.Errorf("%d contexts left in the heap", n)
			}
		})
	}
}

func TestDeadlinesEndEarly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		end     func(release context.CancelFunc, parentCancel context.CancelFunc)
		wantErr error
	}{
		{"released", func(release, _ context.CancelFunc) { release() }, context.Canceled},
		{"parent canceled", func(_, parentCancel context.CancelFunc) { parentCancel() }, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d deadlines
			parent, parentCancel := context.WithCancel(context.Background())
			defer parentCancel()
			ctx, release := d.withTimeout(parent, time.Hour)
			child, childCancel := context.WithCancel(ctx) // registers on the route context
			defer childCancel()
			tc.end(release, parentCancel)
			waitDone(t, ctx, 5*time.Second)
			waitDone(t, child, 5*time.Second)
			if err := ctx.Err(); !errors.Is(err, tc.wantErr) {
				t.Errorf("Err() = %v, want %v", err, tc.wantErr)
			}
			release()
			d.close()
			d.mu.Lock()
			defer d.mu.Unlock()
			if len(d.heap) != 0 || !d.armed.IsZero() {
				t.Errorf("after release and close: %d in the heap, armed %v; want none, not armed", len(d.heap), d.armed)
			}
		})
	}
}

func TestDeadlinesParentDeadlineFirst(t *testing.T) {
	var d deadlines
	defer d.close()
	parent, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	pdl, _ := parent.Deadline()
	ctx, release := d.withTimeout(parent, time.Hour)
	defer release()
	if dl, _ := ctx.Deadline(); !dl.Equal(pdl) {
		t.Errorf("Deadline() = %v, want the parent's %v", dl, pdl)
	}
	waitDone(t, ctx, 5*time.Second)
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err() = %v, want context.DeadlineExceeded", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.heap) != 0 {
		t.Errorf("%d in the heap; a context bounded by its parent needs none", len(d.heap))
	}
}

func TestDeadlinesAfterClose(t *testing.T) {
	var d deadlines
	d.close()
	ctx, release := d.withTimeout(context.Background(), 10*time.Millisecond)
	defer release()
	waitDone(t, ctx, 5*time.Second)
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err() = %v, want context.DeadlineExceeded", err)
	}
}

// TestDeadlinesHeap releases contexts in random order and checks the heap
// order and indexes after every step.
func TestDeadlinesHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d deadlines
	defer d.close()
	var rel []context.CancelFunc
	for range 200 {
		_, r := d.withTimeout(context.Background(), time.Hour+time.Duration(rng.IntN(1000))*time.Millisecond)
		rel = append(rel, r)
	}
	rng.Shuffle(len(rel), func(i, j int) { rel[i], rel[j] = rel[j], rel[i] })
	for step, r := range rel {
		r()
		d.mu.Lock()
		for i, c := range d.heap {
			if c.idx != i {
				t.Fatalf("step %d: heap[%d].idx = %d", step, i, c.idx)
			}
			if i > 0 && d.less(i, (i-1)/2) {
				t.Fatalf("step %d: heap[%d] is earlier than its parent", step, i)
			}
		}
		d.mu.Unlock()
	}
}

// BenchmarkRouteTimeout compares a route-timeout context from the
// cluster's deadline heap with context.WithTimeout.
func BenchmarkRouteTimeout(b *testing.B) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Run("deadlines", func(b *testing.B) {
		var d deadlines
		defer d.close()
		b.ReportAllocs()
		for b.Loop() {
			_, release := d.withTimeout(parent, 15*time.Second)
			release()
		}
	})
	b.Run("context.WithTimeout", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, release := context.WithTimeout(parent, 15*time.Second)
			release()
		}
	})
}

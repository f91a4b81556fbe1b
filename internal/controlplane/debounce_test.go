package controlplane

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/internal/model"
)

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers chan *fakeTimer // every timer made, in order
}

type fakeTimer struct {
	d time.Duration
	c chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { return true }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{d: d, c: make(chan time.Time, 1)}
	f.timers <- t
	return t
}

type idleSource struct{}

func (idleSource) Run(ctx context.Context, _ func(*model.Snapshot)) error {
	<-ctx.Done()
	return nil
}

// TestDebounceIsLeadingEdge: a snapshot after a quiet period is applied at
// once; one within the debounce of the last push waits for a timer that
// ends the window.
func TestDebounceIsLeadingEdge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clock := &fakeClock{now: time.Unix(1000, 0), timers: make(chan *fakeTimer, 4)}
	cp, err := New(Options{Cluster: "east", Debounce: 100 * time.Millisecond, NewTimer: clock.NewTimer, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx, idleSource{}) }()
	defer func() {
		cancel()
		<-done
	}()
	snap := func(cluster string) *model.Snapshot { return &model.Snapshot{Cluster: cluster} }
	applied := func(what string, want string) {
		t.Helper()
		waitUntil(t, 5*time.Second, what, func() bool { m := cp.Model(); return m != nil && m.Cluster == want })
	}

	cp.Offer(snap("a"))
	applied("the first snapshot, at once", "a")

	clock.advance(30 * time.Millisecond)
	cp.Offer(snap("b"))
	var tm *fakeTimer
	select {
	case tm = <-clock.timers:
	case <-ctx.Done():
		t.Fatal("no debounce timer for a snapshot 30ms after a push")
	}
	if tm.d != 70*time.Millisecond {
		t.Errorf("timer for %s, want the rest of the window, 70ms", tm.d)
	}
	if m := cp.Model(); m.Cluster != "a" {
		t.Fatalf("model %q applied before the window ended", m.Cluster)
	}
	clock.advance(70 * time.Millisecond)
	tm.c <- clock.Now()
	applied("the window's snapshot at its end", "b")

	clock.advance(150 * time.Millisecond)
	cp.Offer(snap("d"))
	applied("a snapshot after a quiet period, at once", "d")
	select {
	case tm := <-clock.timers:
		t.Errorf("a timer (%s) was made for a snapshot after a quiet period", tm.d)
	default:
	}
}

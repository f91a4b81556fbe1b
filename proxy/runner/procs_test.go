package runner

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"
)

func TestProcsPolicyNext(t *testing.T) {
	p := DefaultProcsPolicy // Up 0.7, Down 0.45
	nan := math.NaN()
	for _, tc := range []struct {
		name         string
		cur, ceiling int
		recent, avg  float64
		want         int
	}{
		{"idle at 1 stays", 1, 2, 0.1, 0.1, 1},
		{"saturated 1 doubles", 1, 2, 0.95, nan, 2},
		{"just under Up stays", 1, 2, 0.69, 0.6, 1},
		{"doubling stops at the ceiling", 4, 6, 3.5, nan, 6},
		{"at the ceiling stays", 2, 2, 2.0, 2.0, 2},
		{"light load at 2 goes to 1", 2, 2, 0.3, 0.3, 1},
		{"not before the window fills", 2, 2, 0.1, nan, 2},
		{"load between Down and Up keeps 2", 2, 2, 0.6, 0.6, 2},
		{"a burst in the window keeps 2", 2, 2, 0.1, 0.5, 2},
		{"8 down to what the average needs", 8, 8, 1.0, 1.2, 3},
		{"never below 1", 2, 2, 0, 0, 1},
		{"up wins over down", 2, 4, 1.5, 0.2, 4},
	} {
		if got := p.next(tc.cur, tc.ceiling, tc.recent, tc.avg); got != tc.want {
			t.Errorf("%s: next(cur %d, ceiling %d, recent %.2f, avg %.2f) = %d, want %d", tc.name, tc.cur, tc.ceiling, tc.recent, tc.avg, got, tc.want)
		}
	}
}

// TestProcsControllerFollowsLoad runs the controller on this process:
// it starts with GOMAXPROCS 1; with more busy goroutines than Ps it
// raises it back to the ceiling; idle again, it lowers it again; Stop
// restores the ceiling.
func TestProcsControllerFollowsLoad(t *testing.T) {
	ceiling := runtime.GOMAXPROCS(0)
	if ceiling < 2 {
		t.Skipf("GOMAXPROCS is %d: nothing to adapt", ceiling)
	}
	c := startProcsController(ProcsPolicy{Interval: 20 * time.Millisecond, Up: 0.7, Down: 0.45, DownWindow: 200 * time.Millisecond})
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	waitProcs := func(want int, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for runtime.GOMAXPROCS(0) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GOMAXPROCS is %d after 20 s, want %d", what, runtime.GOMAXPROCS(0), want)
			}
			time.Sleep(5 * time.Millisecond) // polling a condition, not synchronising
		}
	}
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("GOMAXPROCS after start = %d, want 1", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	for range ceiling * 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			x := 0
			for ctx.Err() == nil {
				for i := range 100000 {
					x += i
				}
			}
			_ = x
		}()
	}
	waitProcs(ceiling, "busy")
	cancel()
	for range ceiling * 2 {
		<-done
	}
	waitProcs(1, "idle again")

	c.Stop()
	stopped = true
	if got := runtime.GOMAXPROCS(0); got != ceiling {
		t.Errorf("after Stop GOMAXPROCS = %d, want the ceiling %d", got, ceiling)
	}
}

func TestAdaptiveProcsDefault(t *testing.T) {
	if !DefaultRuntimeConfig("sidecar").AdaptiveProcs {
		t.Error("a sidecar does not adapt GOMAXPROCS by default")
	}
	if DefaultRuntimeConfig(eastWestMode).AdaptiveProcs {
		t.Error("a gateway adapts GOMAXPROCS by default; it should keep its Ps")
	}
}

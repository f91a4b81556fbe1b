package lb

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestConsecutiveCounters(t *testing.T) {
	tests := []struct {
		name   string
		od     config.OutlierDetection
		seq    []Result
		reason string // "" when no ejection is expected
	}{
		{"5xx threshold", config.OutlierDetection{Consecutive5xx: 3}, []Result{Status5xx, GatewayFailure, LocalOriginFailure}, ReasonConsecutive5xx},
		{"success resets", config.OutlierDetection{Consecutive5xx: 3}, []Result{Status5xx, Status5xx, Success, Status5xx, Status5xx}, ""},
		{"abandoned is neutral", config.OutlierDetection{Consecutive5xx: 3}, []Result{Status5xx, Abandoned, Status5xx, Abandoned, Status5xx}, ReasonConsecutive5xx},
		{"gateway threshold", config.OutlierDetection{ConsecutiveGatewayFailure: 2}, []Result{GatewayFailure, LocalOriginFailure}, ReasonConsecutiveGatewayFailure},
		{"500 resets gateway run", config.OutlierDetection{ConsecutiveGatewayFailure: 2}, []Result{GatewayFailure, Status5xx, GatewayFailure}, ""},
		{"disabled", config.OutlierDetection{}, []Result{Status5xx, Status5xx, Status5xx, Status5xx, Status5xx, Status5xx}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			od := tc.od
			e := newEnv(t, &config.Cluster{Outlier: &od}, mkLA(0, grp{n: 4}))
			h := e.host(t, addr(0, 0))
			for _, r := range tc.seq {
				h.Begin()
				h.End(r)
			}
			got := e.obs.take()
			var want []string
			if tc.reason != "" {
				want = []string{"eject svc 10.0.0.0:80 " + tc.reason}
			}
			if !slices.Equal(got, want) {
				t.Errorf("events %q, want %q", got, want)
			}
			if h.ActiveRequests() != 0 {
				t.Errorf("active %d", h.ActiveRequests())
			}
		})
	}
}

func TestEjectionBackoff(t *testing.T) {
	od := &config.OutlierDetection{Consecutive5xx: 1, BaseEjectionTime: 10 * time.Second, MaxEjectionTime: 25 * time.Second}
	e := newEnv(t, &config.Cluster{Outlier: od}, mkLA(0, grp{n: 4}))
	h := e.host(t, addr(0, 0))
	until := func() time.Duration {
		for _, hs := range e.c.Status().Hosts {
			if hs.Address == h.Address {
				if !hs.Ejected {
					return 0
				}
				return hs.EjectedUntil.Sub(e.clock.Now())
			}
		}
		return -1
	}
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second, 25 * time.Second} {
		fail(h, Status5xx, 1)
		if got := until(); got != want {
			t.Fatalf("ejection %d lasts %v, want %v", i+1, got, want)
		}
		e.clock.Advance(want - time.Nanosecond)
		e.c.Pick(nil)
		if until() == 0 {
			t.Fatalf("un-ejected early")
		}
		e.clock.Advance(time.Nanosecond)
		e.c.Pick(nil) // lazy un-ejection
		if got := until(); got != 0 {
			t.Fatalf("still ejected after %v", want)
		}
	}
	// Each sweep spent un-ejected lowers the multiplier by one: 3 -> 1.
	e.c.Sweep(e.clock.Now())
	e.c.Sweep(e.clock.Now())
	fail(h, Status5xx, 1)
	if got := until(); got != 20*time.Second {
		t.Fatalf("after decay ejection lasts %v, want 20s", got)
	}
	if got := e.c.Status().Hosts[0].TimesEjected; got != 5 {
		t.Errorf("TimesEjected %d, want 5", got)
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		hosts int
		pct   float64
		want  int
	}{
		{10, 20, 2}, // 0% < 20, 10% < 20, 20% stops
		{10, 0, 1},  // default 10%
		{3, 10, 1},  // one host may always be ejected
		{4, 100, 4},
	}
	for _, tc := range tests {
		od := &config.OutlierDetection{Consecutive5xx: 1, MaxEjectionPercent: tc.pct}
		e := newEnv(t, &config.Cluster{Outlier: od}, mkLA(0, grp{n: tc.hosts}))
		for i := range tc.hosts {
			fail(e.host(t, addr(0, i)), Status5xx, 1)
		}
		ejected := 0
		for _, hs := range e.c.Status().Hosts {
			if hs.Ejected {
				ejected++
			}
		}
		if ejected != tc.want {
			t.Errorf("%d hosts, max %v%%: %d ejected, want %d", tc.hosts, tc.pct, ejected, tc.want)
		}
	}
}

func TestSuccessRate(t *testing.T) {
	od := &config.OutlierDetection{SuccessRateMinimumHosts: 5, SuccessRateRequestVolume: 100, MaxEjectionPercent: 50}
	e := newEnv(t, &config.Cluster{Outlier: od}, mkLA(0, grp{n: 6}))
	// Hosts 0-3 succeed always, host 4 half the time, host 5 has too
	// little volume to count. Rates 100,100,100,100,50: mean 90, stdev 20,
	// limit 90 - 20*1.9 = 52.
	for i := range 4 {
		fail(e.host(t, addr(0, i)), Success, 100)
	}
	bad := e.host(t, addr(0, 4))
	for range 50 {
		fail(bad, Success, 1)
		fail(bad, Status5xx, 1)
	}
	fail(e.host(t, addr(0, 5)), Status5xx, 99)
	e.c.Sweep(e.clock.Now())
	if got, want := e.obs.take(), []string{"eject svc 10.0.0.4:80 success_rate"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	// The window was reset: a second sweep ejects no one.
	e.c.Sweep(e.clock.Now())
	if got := e.obs.take(); len(got) != 0 {
		t.Fatalf("second sweep: %q", got)
	}
	// Sweep also un-ejects when the time has come.
	e.clock.Advance(30 * time.Second)
	e.c.Sweep(e.clock.Now())
	if got, want := e.obs.take(), []string{"uneject svc 10.0.0.4:80"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestBackgroundSweeperAndClose(t *testing.T) {
	clock := newFakeClock()
	obs := newRecorder()
	od := &config.OutlierDetection{Consecutive5xx: 1, Interval: time.Millisecond}
	c := NewCluster(&config.Cluster{Name: "svc", Outlier: od}, mkLA(0, grp{n: 2}), Options{Now: clock.Now, Observer: obs})
	fail(hostOf(t, c, addr(0, 0)), Status5xx, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor := func(want string) {
		t.Helper()
		for {
			select {
			case got := <-obs.ch:
				if got == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q event", want)
			}
		}
	}
	waitFor("eject svc 10.0.0.0:80 consecutive_5xx")
	clock.Advance(time.Minute) // no Pick: only the sweeper can un-eject
	waitFor("uneject svc 10.0.0.0:80")
	// Update changes the interval without leaking the goroutine.
	od2 := *od
	od2.Interval = 2 * time.Millisecond
	c.Update(&config.Cluster{Name: "svc", Outlier: &od2}, nil)
	c.Close()
	c.Close()
	if _, err := c.Pick(nil); err != nil {
		t.Fatalf("Pick after Close: %v", err)
	}
	goleak.VerifyNone(t)
}

package lb

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestCircuitBreakers(t *testing.T) {
	type op struct {
		acquire func(*Cluster) bool
		release func(*Cluster)
	}
	ops := map[string]op{
		"request":    {(*Cluster).TryAcquireRequest, (*Cluster).ReleaseRequest},
		"pending":    {(*Cluster).TryAcquirePending, (*Cluster).ReleasePending},
		"connection": {(*Cluster).TryAcquireConnection, (*Cluster).ReleaseConnection},
		"retry":      {(*Cluster).TryAcquireRetry, (*Cluster).ReleaseRetry},
	}
	tests := []struct {
		name  string
		cb    config.CircuitBreakers
		op    string
		limit int
	}{
		{"default requests", config.CircuitBreakers{}, "request", 1024},
		{"default pending", config.CircuitBreakers{}, "pending", 1024},
		{"default connections", config.CircuitBreakers{}, "connection", 1024},
		{"default retries", config.CircuitBreakers{}, "retry", 3},
		{"requests", config.CircuitBreakers{MaxRequests: 2}, "request", 2},
		{"pending", config.CircuitBreakers{MaxPendingRequests: 5}, "pending", 5},
		{"connections", config.CircuitBreakers{MaxConnections: 1}, "connection", 1},
		{"retries", config.CircuitBreakers{MaxRetries: 7}, "retry", 7},
		{"budget floor", config.CircuitBreakers{RetryBudgetPercent: 20, MinRetryConcurrency: 4}, "retry", 4},
		{"budget default floor", config.CircuitBreakers{RetryBudgetPercent: 20}, "retry", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCluster(&config.Cluster{Name: "svc", Circuit: tc.cb}, nil, Options{ManualSweep: true})
			o := ops[tc.op]
			for i := range tc.limit {
				if !o.acquire(c) {
					t.Fatalf("acquire %d of %d refused", i+1, tc.limit)
				}
			}
			if o.acquire(c) {
				t.Fatalf("acquire beyond %d admitted", tc.limit)
			}
			o.release(c)
			if !o.acquire(c) {
				t.Fatal("acquire after release refused")
			}
		})
	}
}

func TestRetryBudgetFollowsActiveRequests(t *testing.T) {
	c := NewCluster(&config.Cluster{Name: "svc", Circuit: config.CircuitBreakers{RetryBudgetPercent: 20, MinRetryConcurrency: 3}}, nil, Options{ManualSweep: true})
	for range 100 {
		c.TryAcquireRequest()
	}
	n := 0
	for c.TryAcquireRetry() {
		n++
	}
	if n != 20 {
		t.Fatalf("budget admitted %d retries with 100 active requests, want 20", n)
	}
	if st := c.Status(); st.ActiveRequests != 100 || st.ActiveRetries != 20 {
		t.Fatalf("gauges %d %d", st.ActiveRequests, st.ActiveRetries)
	}
}

func TestBreakersConcurrent(t *testing.T) {
	c := NewCluster(&config.Cluster{Name: "svc", Circuit: config.CircuitBreakers{MaxRequests: 10}}, nil, Options{ManualSweep: true})
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak, cur := int64(0), int64(0)
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				if c.TryAcquireRequest() {
					mu.Lock()
					cur++
					peak = max(peak, cur)
					mu.Unlock()
					mu.Lock()
					cur--
					mu.Unlock()
					c.ReleaseRequest()
				}
			}
		})
	}
	wg.Wait()
	if peak > 10 || c.Status().ActiveRequests != 0 {
		t.Fatalf("peak %d, left %d", peak, c.Status().ActiveRequests)
	}
}

func TestUpdatePreservesState(t *testing.T) {
	od := &config.OutlierDetection{Consecutive5xx: 1, MaxEjectionPercent: 100}
	e := newEnv(t, &config.Cluster{Outlier: od, PanicThreshold: 50}, mkLA(0, grp{n: 3}))
	old0 := e.host(t, addr(0, 0))
	fail(old0, Status5xx, 1)
	old1 := e.host(t, addr(0, 1))
	old1.Begin()
	old1.Begin()
	old2 := e.host(t, addr(0, 2))
	old2.Begin()

	// New endpoints: 0 and 1 move to another zone and priority, 2 goes, 3 comes.
	la := &config.LoadAssignment{Localities: []*config.LocalityEndpoints{{
		Locality: config.Locality{Region: "r2", Zone: "z9"}, Priority: 1,
		Endpoints: []config.Endpoint{{Address: addr(0, 0)}, {Address: addr(0, 1)}, {Address: addr(0, 3)}},
	}}}
	e.c.Update(nil, la)
	new0, new1 := e.host(t, addr(0, 0)), e.host(t, addr(0, 1))
	if new0 == old0 || new0.Priority != 1 || new0.Locality.Zone != "z9" {
		t.Fatalf("host not re-described: %+v", new0)
	}
	if new1.ActiveRequests() != 2 {
		t.Fatalf("active %d, want 2", new1.ActiveRequests())
	}
	st := e.c.Status()
	if len(st.Hosts) != 3 || !st.Hosts[0].Ejected || st.Hosts[0].TimesEjected != 1 || st.Levels[0].Healthy != 2 {
		t.Fatalf("status after update %+v", st)
	}
	// Hosts from before the update still work; a removed host is inert.
	old1.End(Success)
	old2.End(Status5xx)
	if new1.ActiveRequests() != 1 {
		t.Fatalf("End on the old *Host did not reach the shared state")
	}
	for range 100 {
		if h, _ := e.c.Pick(nil); h.Address == addr(0, 0) || h.Address == addr(0, 2) {
			t.Fatalf("picked %s", h.Address)
		}
	}
	// Config-only update: endpoints kept; removing outlier detection
	// returns the ejected host.
	e.obs.take()
	e.c.Update(&config.Cluster{Name: "svc", LB: config.LeastRequest}, nil)
	if got, want := e.obs.take(), []string{"uneject svc 10.0.0.0:80"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if st := e.c.Status(); len(st.Hosts) != 3 || st.Policy != "LEAST_REQUEST" || st.Levels[0].Healthy != 3 {
		t.Fatalf("status %+v", st)
	}
}

func TestStatus(t *testing.T) {
	od := &config.OutlierDetection{Consecutive5xx: 1, BaseEjectionTime: time.Minute, MaxEjectionPercent: 100}
	la := &config.LoadAssignment{OverprovisioningFactor: 140, Localities: []*config.LocalityEndpoints{
		{Locality: config.Locality{Region: "r1", Zone: "b"}, Priority: 1, Cluster: "east", Network: "n1",
			Endpoints: []config.Endpoint{{Address: "10.1.0.2:80", Weight: 3}, {Address: "10.1.0.1:80", Health: config.Draining}}},
		{Locality: config.Locality{Region: "r1", Zone: "a"}, Priority: 0, Cluster: "west",
			Endpoints: []config.Endpoint{{Address: "10.0.0.9:80", Hostname: "pod-9", Identity: "spiffe://west/ns/a/sa/b"}, {Address: "10.0.0.1:80"}}},
	}}
	e := newEnv(t, &config.Cluster{Outlier: od, PanicThreshold: 50}, la)
	h := e.host(t, "10.0.0.9:80")
	if h.Identity != "spiffe://west/ns/a/sa/b" || h.Cluster != "west" || h.Weight != 1 || h.LocalityWeight != 1 {
		t.Fatalf("host %+v", h)
	}
	fail(h, Status5xx, 1)
	fail(e.host(t, "10.0.0.1:80"), Success, 4)
	st := e.c.Status()
	want := []HostStatus{
		{Address: "10.0.0.1:80", Locality: config.Locality{Region: "r1", Zone: "a"}, Cluster: "west", Weight: 1, Successes: 4},
		{Address: "10.0.0.9:80", Hostname: "pod-9", Locality: config.Locality{Region: "r1", Zone: "a"}, Cluster: "west", Weight: 1,
			Ejected: true, EjectedUntil: e.clock.Now().Add(time.Minute), EjectionReason: ReasonConsecutive5xx, TimesEjected: 1, Failures: 1},
		{Address: "10.1.0.1:80", Locality: config.Locality{Region: "r1", Zone: "b"}, Cluster: "east", Network: "n1", Priority: 1, Weight: 1, Health: config.Draining},
		{Address: "10.1.0.2:80", Locality: config.Locality{Region: "r1", Zone: "b"}, Cluster: "east", Network: "n1", Priority: 1, Weight: 3},
	}
	if !slices.Equal(st.Hosts, want) {
		t.Errorf("hosts\n got %+v\nwant %+v", st.Hosts, want)
	}
	// P0: 1 of 2 usable, health 70; P1: 1 of 2 hosts but capacity 3 of
	// 4 (health counts host weights), health min(100, 105). NTH 100.
	wantLevels := []LevelStatus{
		{Priority: 0, Healthy: 1, Total: 2, HealthPercent: 70, LoadPercent: 70},
		{Priority: 1, Healthy: 1, Total: 2, HealthPercent: 100, LoadPercent: 30},
	}
	if !slices.Equal(st.Levels, wantLevels) {
		t.Errorf("levels\n got %+v\nwant %+v", st.Levels, wantLevels)
	}
	if st.Name != "svc" || st.Policy != "ROUND_ROBIN" || st.OverprovisioningFactor != 140 || st.PanicThreshold != 50 {
		t.Errorf("header %+v", st)
	}
}

func TestEmptyCluster(t *testing.T) {
	c := NewCluster(nil, nil, Options{})
	defer c.Close()
	if _, err := c.Pick(nil); err == nil {
		t.Fatal("Pick on an empty cluster succeeded")
	}
	if st := c.Status(); !st.NoHealthyUpstream || len(st.Hosts) != 0 {
		t.Fatalf("status %+v", st)
	}
}

// Concurrent Pick/Begin/End with ejections and updates (run with -race).
func TestConcurrentUse(t *testing.T) {
	od := &config.OutlierDetection{Consecutive5xx: 3, BaseEjectionTime: time.Millisecond}
	cfg := &config.Cluster{Name: "svc", Outlier: od, PanicThreshold: 50, LB: config.LeastRequest}
	c := NewCluster(cfg, mkLA(0, grp{n: 10}, grp{prio: 1, n: 5}), Options{ManualSweep: true})
	defer c.Close()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			var tried []*Host
			for i := range 3000 {
				h, err := c.Pick(&PickRequest{Tried: tried})
				if err != nil {
					t.Error(err)
					return
				}
				h.Begin()
				r := Success
				if (i+w)%4 == 0 {
					r = GatewayFailure
				}
				h.End(r)
				tried = append(tried[:0], h)
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			c.Update(nil, mkLA(0, grp{n: 10 - i%3}, grp{prio: 1, n: 5}))
			c.Sweep(time.Now())
			_ = c.Status()
		}
	})
	wg.Wait()
	for _, hs := range c.Status().Hosts {
		if hs.ActiveRequests != 0 {
			t.Errorf("%s: %d active", hs.Address, hs.ActiveRequests)
		}
	}
}

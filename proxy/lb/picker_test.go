package lb

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestPriorityLoad(t *testing.T) {
	tests := []struct {
		name   string
		of     float64
		panic  float64
		gs     []grp
		loads  []uint32
		panics []bool
		none   bool
	}{
		{"all healthy", 0, 50, []grp{{prio: 0, n: 10}, {prio: 1, n: 10}}, []uint32{100, 0}, []bool{false, false}, false},
		{"3 of 10 down: 7*1.4=98", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 3}, {prio: 1, n: 10}}, []uint32{98, 2}, []bool{false, false}, false},
		{"2 of 10 down: 8*1.4 caps at 100", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 2}, {prio: 1, n: 10}}, []uint32{100, 0}, []bool{false, false}, false},
		{"5 of 10 down", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 5}, {prio: 1, n: 10}}, []uint32{70, 30}, []bool{false, false}, false},
		{"P0 all down", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 10}, {prio: 1, n: 10}}, []uint32{0, 100}, []bool{false, false}, false},
		{"three levels", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 10}, {prio: 1, n: 10, unhealthy: 5}, {prio: 2, n: 10}}, []uint32{0, 70, 30}, []bool{false, false, false}, false},
		{"OF 100", 100, 50, []grp{{prio: 0, n: 10, unhealthy: 1}, {prio: 1, n: 10}}, []uint32{90, 10}, []bool{false, false}, false},
		{"P1 small", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 8}, {prio: 1, n: 5}}, []uint32{28, 72}, []bool{false, false}, false},
		// NTH = 84+14 = 98: loads 85+14 = 99, the rounding 1 goes to P0;
		// P1 is 10% usable < 50 and NTH < 100: panic.
		{"normalised, P1 panics", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 4}, {prio: 1, n: 10, unhealthy: 9}}, []uint32{86, 14}, []bool{false, true}, false},
		// NTH = 56+28 = 84 and both below 50%: total panic, by host count.
		{"total panic by host count", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 6}, {prio: 1, n: 30, unhealthy: 24}}, []uint32{25, 75}, []bool{true, true}, false},
		{"single level panic", 0, 50, []grp{{prio: 0, n: 10, unhealthy: 6}}, []uint32{100}, []bool{true}, false},
		{"panic disabled", 0, 0, []grp{{prio: 0, n: 10, unhealthy: 6}}, []uint32{100}, []bool{false}, false},
		{"nothing usable, panic disabled", 0, 0, []grp{{prio: 0, n: 3, unhealthy: 3}}, []uint32{100}, []bool{false}, true},
		{"nothing usable, panic", 0, 50, []grp{{prio: 0, n: 3, unhealthy: 3}, {prio: 1, n: 1, unhealthy: 1}}, []uint32{75, 25}, []bool{true, true}, false},
		{"sparse priorities", 0, 50, []grp{{prio: 0, n: 4, unhealthy: 4}, {prio: 5, n: 4}}, []uint32{0, 100}, []bool{false, false}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, &config.Cluster{PanicThreshold: tc.panic}, mkLA(tc.of, tc.gs...))
			st := e.c.Status()
			var loads []uint32
			var panics []bool
			sum := uint32(0)
			for _, l := range st.Levels {
				loads = append(loads, l.LoadPercent)
				panics = append(panics, l.Panic)
				sum += l.LoadPercent
			}
			if !slices.Equal(loads, tc.loads) || !slices.Equal(panics, tc.panics) || st.NoHealthyUpstream != tc.none {
				t.Errorf("loads %v panic %v none %v, want %v %v %v", loads, panics, st.NoHealthyUpstream, tc.loads, tc.panics, tc.none)
			}
			if sum != 100 {
				t.Errorf("loads sum to %d", sum)
			}
			_, err := e.c.Pick(nil)
			if tc.none != (err != nil) {
				t.Errorf("Pick error %v, want error %v", err, tc.none)
			}
			if err != nil && (!errors.Is(err, ErrNoHealthyUpstream) || !strings.Contains(err.Error(), `"svc"`)) {
				t.Errorf("error %q should wrap ErrNoHealthyUpstream and name the cluster", err)
			}
		})
	}
}

// Ejecting 3 of 10 P0 hosts sends 2% to P1, measured over picks.
func TestGradualSpilloverByEjection(t *testing.T) {
	cfg := &config.Cluster{PanicThreshold: 50, Outlier: &config.OutlierDetection{Consecutive5xx: 1, MaxEjectionPercent: 100}}
	e := newEnv(t, cfg, mkLA(0, grp{prio: 0, n: 10}, grp{prio: 1, n: 10}))
	for i := range 3 {
		fail(e.host(t, addr(0, i)), Status5xx, 1)
	}
	st := e.c.Status()
	if st.Levels[0].LoadPercent != 98 || st.Levels[1].LoadPercent != 2 || st.Levels[0].Healthy != 7 {
		t.Fatalf("levels %+v", st.Levels)
	}
	const n = 200000
	got := picks(t, e.c, n, nil)
	p1 := 0
	for a, k := range got {
		if strings.HasPrefix(a, "10.0.1.") {
			p1 += k
		}
		for i := range 3 {
			if a == addr(0, i) {
				t.Errorf("ejected host %s picked %d times", a, k)
			}
		}
	}
	within(t, "P1 share", float64(p1)/n, 0.02, 0.002)
	if ev := e.obs.take(); !slices.Contains(ev, "priority svc 0->1") {
		t.Errorf("events %v lack priority 0->1", ev)
	}
}

func TestPanicModeUsesAllHosts(t *testing.T) {
	for _, tc := range []struct {
		thr   float64
		hosts int
	}{{50, 10}, {0, 4}} {
		e := newEnv(t, &config.Cluster{PanicThreshold: tc.thr}, mkLA(0, grp{prio: 0, n: 10, unhealthy: 6}))
		got := picks(t, e.c, 10000, nil)
		if len(got) != tc.hosts {
			t.Errorf("threshold %v: picked %d distinct hosts, want %d", tc.thr, len(got), tc.hosts)
		}
	}
}

func TestFailoverAndBack(t *testing.T) {
	od := &config.OutlierDetection{Consecutive5xx: 2, BaseEjectionTime: 30e9, MaxEjectionPercent: 50}
	e := newEnv(t, &config.Cluster{PanicThreshold: 50, Outlier: od}, mkLA(0, grp{prio: 0, n: 2}, grp{prio: 1, n: 2}))
	for i := range 2 {
		fail(e.host(t, addr(0, i)), GatewayFailure, 2)
	}
	want := []string{
		"eject svc 10.0.0.0:80 consecutive_5xx",
		"priority svc 0->1", // 1 of 2 left: 70% in P0, 30% in P1
		"eject svc 10.0.0.1:80 consecutive_5xx",
	}
	if got := e.obs.take(); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for a := range picks(t, e.c, 1000, nil) {
		if !strings.HasPrefix(a, "10.0.1.") {
			t.Fatalf("picked %s from the ejected P0", a)
		}
	}
	e.clock.Advance(29e9)
	picks(t, e.c, 10, nil)
	if got := e.obs.take(); len(got) != 0 {
		t.Fatalf("early events %q", got)
	}
	e.clock.Advance(1e9)
	got := picks(t, e.c, 1000, nil)
	if got[addr(0, 0)]+got[addr(0, 1)] != 1000 {
		t.Fatalf("after un-ejection picks %v, want all in P0", got)
	}
	want = []string{"uneject svc 10.0.0.0:80", "uneject svc 10.0.0.1:80", "priority svc 1->0"}
	if got := e.obs.take(); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestLocalityWeights(t *testing.T) {
	const n = 100000
	share := func(got map[string]int, gi int) float64 {
		k := 0
		for a, c := range got {
			if strings.HasPrefix(a, addr(gi, 0)[:7]) {
				k += c
			}
		}
		return float64(k) / n
	}
	// Weights 1 and 3.
	e := newEnv(t, &config.Cluster{PanicThreshold: 50}, mkLA(0, grp{n: 5, weight: 1}, grp{n: 5, weight: 3}))
	within(t, "A share", share(picks(t, e.c, n, nil), 0), 0.25, 0.01)
	// B loses 4 of 5: effective weight 3*min(1, 1.4*1/5) = 0.84 against 1.
	e = newEnv(t, &config.Cluster{PanicThreshold: 50}, mkLA(0, grp{n: 5, weight: 1}, grp{n: 5, weight: 3, unhealthy: 4}))
	within(t, "A share", share(picks(t, e.c, n, nil), 0), 1/1.84, 0.01)
}

func TestRoundRobinWeighted(t *testing.T) {
	e := newEnv(t, &config.Cluster{}, mkLA(0, grp{n: 3, weights: []uint32{1, 2, 3}}))
	got := picks(t, e.c, 600, nil)
	for i, w := range []int{100, 200, 300} {
		if got[addr(0, i)] != w {
			t.Errorf("host %d: %d picks, want %d (%v)", i, got[addr(0, i)], w, got)
		}
	}
	// Equal weights: strict rotation.
	e = newEnv(t, &config.Cluster{}, mkLA(0, grp{n: 4}))
	var seq []string
	for range 8 {
		h, _ := e.c.Pick(nil)
		seq = append(seq, h.Address)
	}
	if !slices.Equal(seq[:4], seq[4:]) || len(picks(t, e.c, 4, nil)) != 4 {
		t.Errorf("not a rotation: %v", seq)
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	e := newEnv(t, &config.Cluster{LB: config.LeastRequest}, mkLA(0, grp{n: 2}))
	busy := e.host(t, addr(0, 0))
	for range 10 {
		busy.Begin()
	}
	const n = 40000
	got := picks(t, e.c, n, nil)
	// P2C: the busy host only wins when both draws are it (1/4).
	within(t, "idle share", float64(got[addr(0, 1)])/n, 0.75, 0.01)
	for range 10 {
		busy.End(Abandoned)
	}
	got = picks(t, e.c, n, nil)
	within(t, "even share", float64(got[addr(0, 1)])/n, 0.5, 0.01)
}

func TestRetryPrefersOtherLocality(t *testing.T) {
	for _, lb := range []config.LBPolicy{config.RoundRobin, config.LeastRequest, config.RingHash, config.Maglev} {
		t.Run(lb.String(), func(t *testing.T) {
			la := mkLA(0, grp{prio: 0, zone: "a", n: 3}, grp{prio: 0, zone: "b", n: 3}, grp{prio: 1, zone: "c", n: 3})
			e := newEnv(t, &config.Cluster{LB: lb, PanicThreshold: 50}, la)
			a0 := e.host(t, addr(0, 0))
			b0 := e.host(t, addr(1, 0))
			for i := range 500 {
				req := &PickRequest{Tried: []*Host{a0}, Hash: uint64(i) * 0x9e3779b97f4a7c15, HasHash: true}
				h, err := e.c.Pick(req)
				if err != nil || h.Locality.Zone != "b" {
					t.Fatalf("retry after a0 picked %v (%v), want zone b", h, err)
				}
				if lb == config.RingHash || lb == config.Maglev {
					h2, _ := e.c.Pick(req)
					if h2 != h {
						t.Fatalf("hash retry not consistent: %s then %s", h.Address, h2.Address)
					}
				}
			}
			// a and b tried: crosses to the other locality in P1.
			for range 200 {
				h, _ := e.c.Pick(&PickRequest{Tried: []*Host{a0, b0}})
				if h.Locality.Zone != "c" {
					t.Fatalf("picked %s, want zone c", h.Address)
				}
			}
			// Every locality tried: any untried host.
			var tried []*Host
			for gi := range 3 {
				tried = append(tried, e.host(t, addr(gi, 0)))
			}
			for range 200 {
				h, _ := e.c.Pick(&PickRequest{Tried: tried})
				if slices.Contains(tried, h) {
					t.Fatalf("picked tried host %s", h.Address)
				}
			}
			// Everything tried: still a host.
			tried = nil
			for gi := range 3 {
				for i := range 3 {
					tried = append(tried, e.host(t, addr(gi, i)))
				}
			}
			if h, err := e.c.Pick(&PickRequest{Tried: tried}); h == nil || err != nil {
				t.Fatalf("all tried: %v %v", h, err)
			}
		})
	}
}

// hashOwners maps n keys to hosts.
func hashOwners(t *testing.T, c *Cluster, n int) []string {
	out := make([]string, n)
	for i := range out {
		h, err := c.Pick(&PickRequest{Hash: mix(uint64(i)), HasHash: true})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = h.Address
	}
	return out
}

func TestConsistentHash(t *testing.T) {
	const hosts, keys = 50, 20000
	for _, tc := range []struct {
		lb       config.LBPolicy
		maxMoved float64 // fraction of keys, as multiple of 1/N
	}{{config.RingHash, 1.6}, {config.Maglev, 2}} {
		t.Run(tc.lb.String(), func(t *testing.T) {
			la := mkLA(0, grp{n: hosts})
			e := newEnv(t, &config.Cluster{LB: tc.lb}, la)
			before := hashOwners(t, e.c, keys)
			if again := hashOwners(t, e.c, keys); !slices.Equal(before, again) {
				t.Fatal("same hash gave different hosts")
			}
			other := NewCluster(&config.Cluster{Name: "x", LB: tc.lb}, la, Options{Rand: seeded(99), ManualSweep: true})
			if again := hashOwners(t, other, keys); !slices.Equal(before, again) {
				t.Fatal("another cluster built from the same endpoints disagrees")
			}
			count := map[string]int{}
			for _, a := range before {
				count[a]++
			}
			if len(count) != hosts {
				t.Errorf("only %d of %d hosts own keys", len(count), hosts)
			}
			removed := addr(0, 7)
			la2 := mkLA(0, grp{n: hosts})
			la2.Localities[0].Endpoints = slices.Delete(la2.Localities[0].Endpoints, 7, 8)
			e.c.Update(nil, la2)
			after := hashOwners(t, e.c, keys)
			moved := 0
			for i := range before {
				if before[i] == removed && after[i] == removed {
					t.Fatal("key still on removed host")
				}
				if before[i] != after[i] {
					moved++
				}
			}
			frac := float64(moved) / keys
			if frac < float64(count[removed])/keys || frac > tc.maxMoved/hosts {
				t.Errorf("moved %.4f of keys (removed host owned %.4f), want about 1/N = %.4f", frac, float64(count[removed])/keys, 1.0/hosts)
			}
		})
	}
}

func TestHashWithoutKeyIsRandom(t *testing.T) {
	e := newEnv(t, &config.Cluster{LB: config.RingHash}, mkLA(0, grp{n: 10}))
	if got := picks(t, e.c, 5000, &PickRequest{}); len(got) != 10 {
		t.Errorf("random fallback reached %d of 10 hosts", len(got))
	}
}

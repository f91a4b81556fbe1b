package lb

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// seeded is a deterministic, concurrency-safe Rand.
func seeded(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

// grp describes one LocalityEndpoints entry for tests.
type grp struct {
	prio      uint32
	zone      string
	weight    uint32
	n         int // endpoints
	unhealthy int // the first `unhealthy` endpoints are UNHEALTHY
	cluster   string
	weights   []uint32 // per-endpoint weights, optional
}

func mkLA(of float64, gs ...grp) *config.LoadAssignment {
	la := &config.LoadAssignment{Cluster: "svc", OverprovisioningFactor: of}
	for gi, g := range gs {
		le := &config.LocalityEndpoints{
			Locality: config.Locality{Region: "r1", Zone: g.zone},
			Priority: g.prio, Weight: g.weight, Cluster: g.cluster,
		}
		if le.Locality.Zone == "" {
			le.Locality.Zone = fmt.Sprintf("z%d", gi)
		}
		for i := range g.n {
			ep := config.Endpoint{Address: fmt.Sprintf("10.0.%d.%d:80", gi, i)}
			if i < g.unhealthy {
				ep.Health = config.Unhealthy
			}
			if i < len(g.weights) {
				ep.Weight = g.weights[i]
			}
			le.Endpoints = append(le.Endpoints, ep)
		}
		la.Localities = append(la.Localities, le)
	}
	return la
}

func addr(gi, i int) string { return fmt.Sprintf("10.0.%d.%d:80", gi, i) }

// recorder is an Observer that records events as strings.
type recorder struct {
	mu  sync.Mutex
	evs []string
	ch  chan string
}

func newRecorder() *recorder { return &recorder{ch: make(chan string, 1000)} }

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.evs = append(r.evs, s)
	r.mu.Unlock()
	r.ch <- s
}

func (r *recorder) Ejected(cluster string, h *Host, reason string) {
	r.add(fmt.Sprintf("eject %s %s %s", cluster, h.Address, reason))
}
func (r *recorder) Unejected(cluster string, h *Host) {
	r.add(fmt.Sprintf("uneject %s %s", cluster, h.Address))
}
func (r *recorder) PriorityChanged(cluster string, from, to int) {
	r.add(fmt.Sprintf("priority %s %d->%d", cluster, from, to))
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	for len(r.ch) > 0 {
		<-r.ch
	}
	return out
}

type env struct {
	c     *Cluster
	clock *fakeClock
	obs   *recorder
}

func newEnv(t testing.TB, cfg *config.Cluster, la *config.LoadAssignment) *env {
	t.Helper()
	e := &env{clock: newFakeClock(), obs: newRecorder()}
	if cfg.Name == "" {
		cfg.Name = "svc"
	}
	e.c = NewCluster(cfg, la, Options{Now: e.clock.Now, Rand: seeded(1), Observer: e.obs, ManualSweep: true})
	t.Cleanup(e.c.Close)
	return e
}

// host returns the current *Host with address a.
func (e *env) host(t testing.TB, a string) *Host {
	t.Helper()
	return hostOf(t, e.c, a)
}

// hostOf returns the current *Host of c with address a.
func hostOf(t testing.TB, c *Cluster, a string) *Host {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var st *hostState
	for _, s := range c.sortedStatesLocked() { // keyed by hostKey: find the address
		if s.host.Address == a {
			st = s
			break
		}
	}
	if st == nil {
		t.Fatalf("no host %s", a)
	}
	return st.host
}

// fail ends n tries on h with r.
func fail(h *Host, r Result, n int) {
	for range n {
		h.Begin()
		h.End(r)
	}
}

// picks counts n picks by address.
func picks(t testing.TB, c *Cluster, n int, req *PickRequest) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		h, err := c.Pick(req)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		out[h.Address]++
	}
	return out
}

func within(t testing.TB, what string, got, want, tol float64) {
	t.Helper()
	if got < want-tol || got > want+tol {
		t.Errorf("%s = %.4f, want %.4f ± %.4f", what, got, want, tol)
	}
}

package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/bundles"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeClock fires timers only when advanced.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clk *fakeClock
	c   chan time.Time
	at  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) bundles.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, c: make(chan time.Time, 1), at: c.now.Add(d)}
	if d <= 0 {
		t.c <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clk
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = slices.Delete(c.timers, i, i+1)
			return true
		}
	}
	return false
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
}

// pki holds one CA per trust domain and a bundle set trusting all of them.
type pki struct {
	cas map[string]*trust.CA
	set *x509bundle.Set
}

func newPKI(t testing.TB, tds ...string) *pki {
	t.Helper()
	p := &pki{cas: map[string]*trust.CA{}, set: x509bundle.NewSet()}
	for _, name := range tds {
		ca, err := trust.NewSelfSignedCA(spiffeid.RequireTrustDomainFromString(name), trust.CAOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.cas[name] = ca
		p.set.Add(ca.Bundle())
	}
	return p
}

type staticSVID struct{ s *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.s, nil }

func (p *pki) svid(t testing.TB, id spiffeid.ID) x509svid.Source {
	t.Helper()
	s, err := p.cas[id.TrustDomain().Name()].IssueSVID(id, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return staticSVID{s}
}

func (p *pki) controlPlane(t testing.TB, td string) x509svid.Source {
	return p.svid(t, bundles.ControlPlaneID(spiffeid.RequireTrustDomainFromString(td)))
}

func td(name string) spiffeid.TrustDomain { return spiffeid.RequireTrustDomainFromString(name) }

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// background runs f until the test ends: the test's cleanup cancels ctx and
// waits for f.
func background(t testing.TB, ctx context.Context, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("background: %v", err)
		}
	})
}

// serve starts s on a fresh loopback listener and returns its address.
func serve(t testing.TB, ctx context.Context, s *Server) string {
	ln := listen(t)
	background(t, ctx, func(ctx context.Context) error { return s.Serve(ctx, ln) })
	return ln.Addr().String()
}

// waitFor polls cond until it holds, failing the test after 20s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// snapshot makes a canonical snapshot with n services of eps endpoints in
// namespace shop; every fifth service is not exported.
func snapshot(cluster, network, trustDomain string, idx, n, eps int) *model.Snapshot {
	s := &model.Snapshot{Cluster: cluster, Network: network, TrustDomain: trustDomain, Namespaces: []string{"shop"}}
	for i := range n {
		sv := model.Service{
			Namespace: "shop", Name: fmt.Sprintf("svc-%04d", i), Exported: i%5 != 4,
			Ports: []model.ServicePort{{Name: "grpc", Port: 9090, Protocol: model.TCP, AppProtocol: "grpc"}, {Name: "http", Port: 80, Protocol: model.TCP, AppProtocol: "http"}},
		}
		for j := range eps {
			k := i*eps + j
			sv.Endpoints = append(sv.Endpoints, model.Endpoint{
				Address: fmt.Sprintf("10.%d.%d.%d", idx, k/250, k%250+1),
				Ports:   []model.EndpointPort{{Name: "grpc", Port: 9090}, {Name: "http", Port: 8080}},
				Cluster: cluster, Network: network,
				Locality: model.Locality{Region: "r1", Zone: fmt.Sprintf("z%d", j%3)},
				Identity: model.SPIFFEID(trustDomain, "shop", sv.Name),
				Ready:    j%4 != 3, Serving: true, Weight: uint32(1 + j%3), Workload: fmt.Sprintf("Pod shop/%s-%d", sv.Name, j),
			})
		}
		s.Services = append(s.Services, sv)
	}
	s.Canonicalize()
	return s
}

// clone copies s deeply enough to change endpoints and services.
func clone(s *model.Snapshot) *model.Snapshot {
	c := *s
	c.Services = slices.Clone(s.Services)
	for i := range c.Services {
		c.Services[i].Endpoints = slices.Clone(c.Services[i].Endpoints)
	}
	return &c
}

// expected is what an importer on the exporters' (flat) network must hold
// after importing from them: computed from the model, canonicalised by the
// model itself.
func expected(exporters ...*model.Snapshot) []model.Service {
	byName := map[NamespacedName]*model.Service{}
	var names []NamespacedName
	for _, snap := range exporters {
		for _, sv := range snap.Services {
			if !sv.Exported {
				continue
			}
			n := NamespacedName{sv.Namespace, sv.Name}
			out := byName[n]
			if out == nil {
				out = &model.Service{Namespace: sv.Namespace, Name: sv.Name}
				byName[n] = out
				names = append(names, n)
			}
			for _, p := range sv.Ports {
				if !slices.Contains(out.Ports, p) {
					out.Ports = append(out.Ports, p)
				}
			}
			for _, e := range sv.Endpoints {
				out.Endpoints = append(out.Endpoints, model.Endpoint{
					Address: e.Address, Ports: e.Ports, Cluster: snap.Cluster, Network: snap.Network,
					Locality: e.Locality, Identity: e.Identity, Ready: e.Ready, Serving: e.Ready, Weight: e.Weight,
				})
			}
		}
	}
	snap := &model.Snapshot{Cluster: "x"}
	for _, n := range names {
		snap.Services = append(snap.Services, *byName[n])
	}
	snap.Canonicalize()
	return snap.Services
}

func equalServices(a, b []model.Service) bool {
	return slices.EqualFunc(a, b, func(x, y model.Service) bool { return x.Equal(&y) })
}

// flaky is a TCP proxy on loopback that can cut every connection.
type flaky struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newFlaky(t testing.TB, target string) *flaky {
	f := &flaky{ln: listen(t), target: target}
	f.wg.Go(f.accept)
	t.Cleanup(func() {
		f.ln.Close()
		f.partition()
		f.wg.Wait()
	})
	return f
}

func (f *flaky) addr() string { return f.ln.Addr().String() }

func (f *flaky) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.cut {
			f.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", f.target)
		if err != nil {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.conns = append(f.conns, c, u)
		f.mu.Unlock()
		f.wg.Go(func() { _, _ = io.Copy(u, c); u.Close() })
		f.wg.Go(func() { _, _ = io.Copy(c, u); c.Close() })
	}
}

// partition closes every connection and refuses new ones until heal.
func (f *flaky) partition() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = true
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func (f *flaky) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = false
}

func peerStatus(im *Importer, cluster string) PeerStatus {
	for _, s := range im.Status() {
		if s.Cluster == cluster {
			return s
		}
	}
	panic("no peer " + cluster)
}

func isRefusal(err error, r Reason) bool {
	var re *RefusedError
	return errors.As(err, &re) && re.Reason == r
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

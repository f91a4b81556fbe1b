package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/xds"
)

type config struct {
	services, eps, clients, changes int
	debounce, gap                   time.Duration
	setupTimeout, changeTimeout     time.Duration
	budget                          time.Duration
	out, cpuprofile, memprofile     string
	connectParallel                 int
	delta, inProcess                bool
	clientBDP                       bool
	runner                          string // -client-runner: the ADS address to run the fleet against
	source                          string // -source: sourceOffer or sourceKubernetes (kube.go)
}

func main() {
	var c config
	flag.IntVar(&c.services, "services", 1000, "services in the model")
	flag.IntVar(&c.eps, "endpoints-per-service", 10, "endpoints per service")
	flag.IntVar(&c.clients, "clients", 1000, "simulated xDS clients (one gRPC connection and ADS stream each)")
	flag.IntVar(&c.changes, "changes", 50, "endpoint changes, one service each, one after the other")
	flag.DurationVar(&c.debounce, "debounce", 100*time.Millisecond, "control plane debounce (its default is 100ms); 0: none")
	flag.DurationVar(&c.gap, "gap", -1, "pause after each converged change before the next (default: the debounce, so every change arrives after a quiet period, as an isolated change does)")
	flag.DurationVar(&c.setupTimeout, "setup-timeout", 90*time.Second, "limit for every client to connect and ACK the first full EDS")
	flag.DurationVar(&c.changeTimeout, "change-timeout", 10*time.Second, "limit per change for every affected client to ACK it")
	flag.DurationVar(&c.budget, "max-duration", 170*time.Second, "the whole run's limit: changes not started by then are skipped and reported")
	flag.IntVar(&c.connectParallel, "connect-parallel", 64, "clients connecting at once during setup")
	flag.StringVar(&c.out, "out", "", "also write the markdown section to this file, replacing its \"## Control plane convergence\" section or appending one")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the change phase to this file")
	flag.StringVar(&c.memprofile, "memprofile", "", "write a heap profile (live objects after the changes, before shutdown) to this file")
	flag.BoolVar(&c.delta, "delta", false, "clients speak incremental xDS (DeltaAggregatedResources) instead of state of the world")
	flag.BoolVar(&c.inProcess, "in-process", false, "run the simulated clients in this process (default: a second process, so CPU and memory are the control plane's alone)")
	flag.BoolVar(&c.clientBDP, "client-bdp", false, "true: clients keep grpc-go's default dynamic flow-control window (BDP pings after every response, as Causeway's sidecar did until 2026-11-23); false: a static 16 MiB window and no BDP pings, as Causeway's sidecar and Envoy behave")
	flag.StringVar(&c.source, "source", sourceOffer, `where the model changes come from: "offer" (the bench hands snapshots to controlplane.Offer; the clock starts there) or "kubernetes" (a real etcd and kube-apiserver from internal/testcluster, the informer source behind a Merger as in `+"`causeway control-plane --source kubernetes`"+`; each change is one EndpointSlice Update and the clock starts just before it)`)
	flag.StringVar(&c.runner, "client-runner", "", "internal: run only the simulated clients against this ADS address, commanded on stdin (see fleet.go)")
	flag.Parse()
	if c.runner != "" {
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		if err := runFleet(ctx, c, c.runner, os.Stdin, os.Stdout); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "controlplane bench client runner:", err)
			os.Exit(1)
		}
		return
	}
	if c.gap < 0 {
		c.gap = c.debounce
	}
	if c.services < 1 || c.eps < 1 || c.clients < 1 || c.changes < 1 {
		fmt.Fprintln(os.Stderr, "controlplane bench: -services, -endpoints-per-service, -clients and -changes must be at least 1")
		os.Exit(2)
	}
	if c.source != sourceOffer && c.source != sourceKubernetes {
		fmt.Fprintf(os.Stderr, "controlplane bench: -source %q: want %q or %q\n", c.source, sourceOffer, sourceKubernetes)
		os.Exit(2)
	}
	// Interrupted, run still stops everything it started (the cluster of
	// -source kubernetes included).
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, c.budget+15*time.Second)
	defer cancel()
	res, err := run(ctx, c, os.Stderr)
	if err != nil {
		if sctx.Err() != nil {
			err = fmt.Errorf("interrupted, everything started was stopped: %w", err)
		}
		fmt.Fprintln(os.Stderr, "controlplane bench:", err)
		os.Exit(1)
	}
	md := res.markdown(c)
	fmt.Print(md)
	if c.out != "" {
		if err := writeSection(c.out, md); err != nil {
			fmt.Fprintln(os.Stderr, "controlplane bench:", err)
			os.Exit(1)
		}
	}
}

const clusterName = "bench"

// snapshotOf builds services × eps endpoints in 3 zones; addresses are
// 10.0.0.0 + i*(eps+changes) + j + 1, so change k of service i can use
// + eps + k + 1 without colliding.
func snapshotOf(c config) *model.Snapshot {
	s := &model.Snapshot{Cluster: clusterName, Network: "net1", TrustDomain: "bench.local"}
	zones := []model.Locality{{Region: "r1", Zone: "z1"}, {Region: "r1", Zone: "z2"}, {Region: "r1", Zone: "z3"}}
	nss := map[string]bool{}
	for i := range c.services {
		ns := fmt.Sprintf("ns-%02d", i%10)
		nss[ns] = true
		sv := model.Service{Namespace: ns, Name: fmt.Sprintf("svc-%05d", i),
			Ports: []model.ServicePort{{Name: "http", Port: 80, Protocol: model.TCP}}}
		for j := range c.eps {
			sv.Endpoints = append(sv.Endpoints, model.Endpoint{Address: addrOf(c, i, j), Ports: []model.EndpointPort{{Name: "http", Port: 8080}},
				Cluster: clusterName, Network: "net1", Locality: zones[j%3], Ready: true, Serving: true, Weight: 1})
		}
		s.Services = append(s.Services, sv)
	}
	for ns := range nss {
		s.Namespaces = append(s.Namespaces, ns)
	}
	s.Canonicalize()
	return s
}

func addrOf(c config, svc, j int) string {
	base := netip.MustParseAddr("10.0.0.0").As4()
	n := uint32(base[0])<<24 + uint32(svc*(c.eps+c.changes)+j+1)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
}

// withChange returns a copy of s (sharing every untouched service) where
// the last endpoint of service svc has address addr.
func withChange(s *model.Snapshot, svc int, addr string) *model.Snapshot {
	n := *s
	n.Services = slices.Clone(s.Services)
	sv := &n.Services[svc]
	sv.Endpoints = slices.Clone(sv.Endpoints)
	sv.Endpoints[len(sv.Endpoints)-1].Address = addr
	// One cluster, same ports, no workloads: canonical order is by address.
	slices.SortFunc(sv.Endpoints, func(a, b model.Endpoint) int { return strings.Compare(a.Address, b.Address) })
	return &n
}

type result struct {
	converged         []time.Duration // per change: the last affected client's ACK
	acks              []time.Duration // every (client, change) ACK
	affected          int
	timeouts, skipped int
	setup             time.Duration
	setupCPU, chgCPU  time.Duration
	pushes            map[string]float64 // during the changes, by type
	recvd             [5]int64           // client responses during the changes
	peakHeap, peakRSS uint64
	heapAfter         uint64
	gomaxprocs, nproc int
	wall              time.Duration
	clientErrs        []string
	extraAcks         int
	fleetCPU          time.Duration // the clients' process during the changes (0 with -in-process: shared)
	fleetHWM          uint64
	cnt0, cnt1        counters // the control plane's process, before and after the changes
	// -source kubernetes: the cluster's start and the objects' creation
	// (part of setup), and the etcd and kube-apiserver processes' CPU
	// during the changes and peak RSS.
	kubeStart, kubeCreate time.Duration
	kubeCPU               map[string]time.Duration
	kubeHWM               map[string]uint64
	// -source kubernetes, per converged change: the Update call's return
	// and the new model leaving the Merger, from just before the Update.
	updated, emitted []time.Duration
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM is the process's peak resident set (bytes), from /proc.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb uint64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb * 1024
		}
	}
	return 0
}

// heapSampler tracks the peak of live heap objects (runtime/metrics: no
// stop-the-world).
type heapSampler struct {
	mu   sync.Mutex
	peak uint64
}

func (h *heapSampler) run(ctx context.Context) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		metrics.Read(s)
		h.mu.Lock()
		h.peak = max(h.peak, s[0].Value.Uint64())
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *heapSampler) get() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak
}

func run(ctx context.Context, c config, logw io.Writer) (_ *result, err error) {
	logf := func(format string, a ...any) { fmt.Fprintf(logw, "[controlplane-bench] "+format+"\n", a...) }
	start := time.Now()
	r := &result{gomaxprocs: runtime.GOMAXPROCS(0), nproc: runtime.NumCPU()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var hs heapSampler
	var bg sync.WaitGroup
	bg.Go(func() { hs.run(ctx) })

	snap := snapshotOf(c)
	if err := snap.Validate(); err != nil {
		return nil, fmt.Errorf("the generated model is invalid (a bug in the bench): %w", err)
	}
	debounce := c.debounce
	if debounce == 0 {
		debounce = -1
	}
	reg := prometheus.NewRegistry()
	var (
		src    discovery.Source = offerOnly{}
		locate xds.PodLocator
		kb     *kubeBench
		stamp  *stampedSource
	)
	if c.source == sourceKubernetes {
		if kb, err = startKube(ctx, c, logf); err != nil {
			return nil, err
		}
		defer kb.close() // after the control plane and the fleet (deferred below) have stopped
		r.kubeStart, r.kubeCreate = kb.started, kb.created
		logger := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelError}))
		m, k, err := kb.source(logger)
		if err != nil {
			return nil, fmt.Errorf("-source kubernetes: %w", err)
		}
		stamp = &stampedSource{src: m}
		src, locate = stamp, k
	}
	cp, err := controlplane.New(controlplane.Options{Cluster: clusterName, Network: "net1", XDSAddress: "127.0.0.1:0",
		Debounce: debounce, Registry: reg, Logger: slog.New(slog.DiscardHandler), Locate: locate})
	if err != nil {
		return nil, err
	}
	if kb == nil {
		cp.Offer(snap)
	}
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Run(ctx, src) }()
	defer func() {
		cancel()
		if e := <-cpDone; e != nil && !errors.Is(e, context.Canceled) && err == nil {
			err = fmt.Errorf("control plane: %w", e)
		}
		bg.Wait()
	}()
	if kb != nil {
		// The clients connect once the model is complete, so that the
		// first full EDS they ACK is the whole model.
		if err := waitModel(ctx, cp, c, min(c.setupTimeout, c.budget), cpDone); err != nil {
			return nil, err
		}
		logf("kubernetes: the control plane serves the full model after %s", time.Since(start).Round(time.Millisecond))
	}

	// Clients: the fleet (fleet.go), in a second process unless -in-process.
	fl, err := startFleet(ctx, c, cp.Addr(), logw)
	if err != nil {
		return nil, err
	}
	defer func() {
		if e := fl.stop(); e != nil && ctx.Err() == nil && err == nil && !c.inProcess {
			err = fmt.Errorf("client runner: %w", e)
		}
	}()
	if _, err := fl.next(ctx, "ready", min(c.setupTimeout, c.budget)+5*time.Second); err != nil {
		return nil, err
	}
	r.setup = time.Since(start)
	r.setupCPU = cpuTime()
	logf("setup: %d services x %d endpoints, %d clients ready in %s (control plane CPU %s)", c.services, c.eps, c.clients, r.setup.Round(time.Millisecond), r.setupCPU.Round(time.Millisecond))

	pushes0 := gatherPushes(reg)
	if err := fl.send("stats"); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	l, err := fl.next(ctx, "stats", 10*time.Second)
	if err != nil {
		return nil, err
	}
	stats0, err := parseStats(l)
	if err != nil {
		return nil, err
	}

	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			return nil, fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("-cpuprofile %s: %w", c.cpuprofile, err)
		}
	}
	if c.memprofile != "" {
		// The base for `go tool pprof -sample_index=alloc_objects -base`:
		// what the changes alone allocated (a heap profile is as of the
		// last GC: collect first, or the setup's last allocations count
		// as the changes').
		runtime.GC()
		if err := writeHeapProfile(c.memprofile + ".base"); err != nil {
			return nil, err
		}
	}
	r.cnt0 = readCounters()
	var kube0 map[string]procStat
	if kb != nil {
		kube0 = childStats()
	}
	cur := snap
	deadline := start.Add(c.budget)
	for k := range c.changes {
		if k > 0 && c.gap > 0 {
			t := time.NewTimer(c.gap)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		if c.budget > 0 && !time.Now().Before(deadline) {
			r.skipped = c.changes - k
			logf("-max-duration %s spent: %d of %d changes not run", c.budget, r.skipped, c.changes)
			break
		}
		svc := (k * 7919) % c.services
		sv := cur.Services[svc]
		name := xds.ClusterName(sv.Namespace, sv.Name, 80)
		addr := addrOf(c, svc, c.eps+k)
		wait := c.changeTimeout
		if c.budget > 0 {
			wait = min(wait, max(time.Until(deadline), time.Second))
		}
		if err := fl.send("arm %d %s %s %d", k, name, addr, int64(wait)); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		l, err := fl.next(ctx, "armed", 10*time.Second)
		if err != nil {
			return nil, err
		}
		n, _ := strconv.Atoi(l[2])
		next := withChange(cur, svc, addr)
		t0 := time.Now().UnixNano() // wall clock: the fleet's ACK times are wall clock too
		var updated time.Duration
		if kb != nil {
			if err := kb.change(ctx, svc, addr); err != nil {
				return nil, fmt.Errorf("change %d: %w", k, err)
			}
			updated = time.Duration(time.Now().UnixNano() - t0)
		} else {
			cp.Offer(next)
		}
		cur = next
		l, err = fl.next(ctx, "result", wait+10*time.Second)
		if err != nil {
			return nil, err
		}
		missing, _ := strconv.Atoi(l[2])
		extra, _ := strconv.Atoi(l[3])
		var conv time.Duration
		for _, v := range l[4:] {
			at, _ := strconv.ParseInt(v, 10, 64)
			d := time.Duration(at - t0)
			r.acks = append(r.acks, d)
			conv = max(conv, d)
		}
		r.affected += n
		r.extraAcks += extra
		if missing > 0 {
			r.timeouts++
			logf("change %d (%s): %d of %d clients did not ACK within %s", k, name, missing, n, wait)
			continue
		}
		r.converged = append(r.converged, conv)
		if kb != nil {
			r.updated = append(r.updated, updated)
			r.emitted = append(r.emitted, time.Duration(stamp.last.Load()-t0))
		}
	}
	if c.cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	r.chgCPU = cpuTime() - r.setupCPU
	r.cnt1 = readCounters()
	if kb != nil {
		r.kubeCPU, r.kubeHWM = map[string]time.Duration{}, map[string]uint64{}
		for n, s := range childStats() {
			r.kubeCPU[n] = s.cpu - kube0[n].cpu
			r.kubeHWM[n] = s.hwm
		}
	}
	p1 := gatherPushes(reg)
	r.pushes = map[string]float64{}
	for k, v := range p1 {
		r.pushes[k] = v - pushes0[k]
	}
	if err := fl.send("stats"); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if l, err = fl.next(ctx, "stats", 10*time.Second); err != nil {
		return nil, err
	}
	stats1, err := parseStats(l)
	if err != nil {
		return nil, err
	}
	for t := range r.recvd {
		r.recvd[t] = stats1.recvd[t] - stats0.recvd[t]
	}
	r.fleetCPU, r.fleetHWM = stats1.cpu-stats0.cpu, stats1.hwm
	if stats1.errs > 0 {
		r.clientErrs = append(r.clientErrs, fmt.Sprintf("%d client errors, the first: %s", stats1.errs, stats1.first))
	}
	r.peakHeap = hs.get()
	r.peakRSS = vmHWM()
	runtime.GC()
	ms := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(ms)
	r.heapAfter = ms[0].Value.Uint64()
	r.wall = time.Since(start)
	if c.memprofile != "" {
		f, err := os.Create(c.memprofile)
		if err != nil {
			return nil, fmt.Errorf("-memprofile: %w", err)
		}
		err = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("-memprofile %s: %w", c.memprofile, err)
		}
	}
	logf("changes: %d done, %d timed out; shutting down", len(r.converged), r.timeouts)
	return r, nil
}

// waitModel waits until the control plane serves every service of c with
// all its endpoints.
func waitModel(ctx context.Context, cp *controlplane.ControlPlane, c config, timeout time.Duration, cpDone chan error) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	limit := time.NewTimer(timeout)
	defer limit.Stop()
	for !modelComplete(cp.Model(), c) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-cpDone:
			cpDone <- e // for the deferred shutdown
			return fmt.Errorf("-source kubernetes: the control plane stopped before serving the full model: %w", e)
		case <-limit.C:
			n := 0
			if m := cp.Model(); m != nil {
				n = len(m.Services)
			}
			return fmt.Errorf("-source kubernetes: the control plane serves %d services, not all %d with %d endpoints each, after %s (raise -setup-timeout)", n, c.services, c.eps, timeout)
		case <-t.C:
		}
	}
	return nil
}

func firstN(s []string, n int) []string { return s[:min(n, len(s))] }

func gatherPushes(g prometheus.Gatherer) map[string]float64 {
	out := map[string]float64{}
	mfs, err := g.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "causeway_xds_pushes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[label(m, "type")] += m.GetCounter().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// offerOnly is a discovery.Source that emits nothing: the bench offers
// snapshots to the control plane directly.
type offerOnly struct{}

func (offerOnly) Run(ctx context.Context, _ func(*model.Snapshot)) error {
	<-ctx.Done()
	return nil
}

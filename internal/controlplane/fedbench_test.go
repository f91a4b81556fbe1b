package controlplane

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/xds"
)

// benchSnapshot is cluster's model: services x eps, all exported under the
// same names in every cluster (so each importer merges three clusters'
// endpoints per service), k numbering the addresses.
func benchSnapshot(cluster string, k, services, eps int) *model.Snapshot {
	td := cluster + ".local"
	s := &model.Snapshot{Cluster: cluster, Network: "flat", TrustDomain: td, Namespaces: []string{"shop"}}
	for i := range services {
		sv := model.Service{Namespace: "shop", Name: fmt.Sprintf("svc-%04d", i), Exported: true,
			Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.TCP}}}
		for j := range eps {
			n := i*eps + j
			sv.Endpoints = append(sv.Endpoints, model.Endpoint{
				Address: fmt.Sprintf("10.%d.%d.%d", k, n/250, n%250+1), Ports: []model.EndpointPort{{Name: "http", Port: 8080}},
				Cluster: cluster, Network: "flat", Locality: model.Locality{Region: "r1", Zone: fmt.Sprintf("z%d", j%3)},
				Identity: model.SPIFFEID(td, "shop", sv.Name), Ready: true, Serving: true, Weight: 1,
				Workload: fmt.Sprintf("Pod shop/%s-%d", sv.Name, j),
			})
		}
		s.Services = append(s.Services, sv)
	}
	s.Canonicalize()
	return s
}

func benchHeapMB() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

func pctl(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkFederationPropagation: three clusters (a, b, c), each a full
// control plane (trust plane, federation, Merger, xDS server) with its own
// trust domain, federated both ways over real mutual-TLS gRPC on loopback;
// each exports 1,000 services x 10 endpoints under the same names. One
// change at a time: an endpoint address of svc-0500 changes in a's source;
// the time is until an xDS client connected to b (a real ADS stream) has
// ACKed the clusterset load assignment that carries it. Path: a's source ->
// a's Merger -> a's exporter -> b's importer -> b's Merger -> b's control
// plane (debounce 100 ms, the default; each change waits 200 ms after the
// last ACK, so the debounce never delays it) -> the client. b.N changes (run with -benchtime 50x or
// more). Also: the time for the three to converge at start, and the heap of
// the three control planes.
func BenchmarkFederationPropagation(b *testing.B) {
	const services, eps = 1000, 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	base := benchHeapMB()
	names := []string{"a", "b", "c"}
	var nodes []*fedNode
	for i, n := range names {
		nodes = append(nodes, newFedNode(b, n, fmt.Sprintf("127.72.2.%d", i+1)))
	}
	srcs := make([]chanSource, len(nodes))
	snaps := make([]*model.Snapshot, len(nodes))
	log := slog.New(slog.DiscardHandler)
	// Stage times of the change in flight, at b: first import and first
	// model emitted after the change entered a's source.
	var (
		stageMu        sync.Mutex
		t0             time.Time
		tImport, tEmit time.Time
	)
	nodes[1].trace = func(stage string) {
		now := time.Now()
		stageMu.Lock()
		defer stageMu.Unlock()
		switch {
		case t0.IsZero():
		case stage == "import" && tImport.IsZero():
			tImport = now
		case stage == "emit" && tEmit.IsZero() && !tImport.IsZero():
			tEmit = now
		}
	}
	start := time.Now()
	for i, n := range nodes {
		var peers []FederationPeer
		for _, o := range nodes {
			if o != n {
				peers = append(peers, o.peerOf(b, ""))
			}
		}
		srcs[i] = make(chanSource, 1)
		snaps[i] = benchSnapshot(n.name, i+1, services, eps)
		n.start(b, ctx, srcs[i], peers, 0, 0, log)
		srcs[i] <- snaps[i]
	}
	total := len(nodes) * services * eps
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, n := range nodes {
		for {
			m := n.cp.Model()
			if m != nil && len(m.Services) == services && countEndpoints(m) == total {
				break
			}
			select {
			case <-ctx.Done():
				b.Fatalf("cluster %s did not converge: %v", n.name, ctx.Err())
			case <-tick.C:
			}
		}
	}
	converge := time.Since(start)
	heap := benchHeapMB() - base

	a, bb := nodes[0], nodes[1]
	const svc = 500
	var (
		mu   sync.Mutex
		want string
	)
	seen := make(chan struct{}, 1)
	onAck := func(cla *endpointv3.ClusterLoadAssignment) {
		mu.Lock()
		w := want
		mu.Unlock()
		if w == "" {
			return
		}
		if _, ok := slices.BinarySearch(claAddresses(cla), w); ok {
			mu.Lock()
			want = ""
			mu.Unlock()
			seen <- struct{}{}
		}
	}
	wait := func(addr string) {
		mu.Lock()
		want = addr
		mu.Unlock()
	}
	wait(snaps[0].Services[svc].Endpoints[0].Address + ":8080")
	watchEDS(b, ctx, bb.cp.Addr(), bb.name, xds.ClustersetName("shop", fmt.Sprintf("svc-%04d", svc), 8080), onAck)
	select {
	case <-seen:
	case <-ctx.Done():
		b.Fatal("b's xDS client never got svc-0500 with a's endpoints")
	}

	lat := make([]time.Duration, 0, b.N)
	var toImport, toEmit, toAck []time.Duration // stages at b
	pace := time.NewTimer(0)
	defer pace.Stop()
	snap := snaps[0]
	cpu0 := processCPU()
	b.ResetTimer()
	for i := range b.N {
		<-pace.C
		next := *snap
		next.Services = slices.Clone(snap.Services)
		sv := &next.Services[svc]
		sv.Endpoints = slices.Clone(sv.Endpoints)
		addr := fmt.Sprintf("10.250.%d.%d", i/250, i%250+1)
		sv.Endpoints[0].Address = addr
		slices.SortFunc(sv.Endpoints, func(x, y model.Endpoint) int { return cmp.Compare(x.Address, y.Address) })
		snap = &next
		wait(addr + ":8080")
		stageMu.Lock()
		t0, tImport, tEmit = time.Now(), time.Time{}, time.Time{}
		begin := t0
		stageMu.Unlock()
		srcs[0] <- snap
		select {
		case <-seen:
		case <-ctx.Done():
			b.Fatalf("change %d (%s in %s) never reached b's xDS client", i, addr, a.name)
		}
		end := time.Now()
		lat = append(lat, end.Sub(begin))
		stageMu.Lock()
		if !tImport.IsZero() && !tEmit.IsZero() {
			toImport = append(toImport, tImport.Sub(begin))
			toEmit = append(toEmit, tEmit.Sub(tImport))
			toAck = append(toAck, end.Sub(tEmit))
		}
		t0 = time.Time{}
		stageMu.Unlock()
		pace.Reset(200 * time.Millisecond)
	}
	b.StopTimer()
	// CPU of the whole process (three control planes) per change: the
	// number the machine's load does not change.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/change")
	b.ReportMetric(float64(converge.Milliseconds()), "converge-ms")
	b.ReportMetric(heap, "heap-MB")
	b.ReportMetric(float64(pctl(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pctl(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(slices.Max(lat).Microseconds())/1000, "max-ms")
	if len(toImport) > 0 {
		b.ReportMetric(float64(pctl(toImport, 0.5).Microseconds())/1000, "p50-to-import-ms")
		b.ReportMetric(float64(pctl(toEmit, 0.5).Microseconds())/1000, "p50-merge-ms")
		b.ReportMetric(float64(pctl(toAck, 0.5).Microseconds())/1000, "p50-xds-ms")
	}
}

func countEndpoints(m *model.Snapshot) int {
	n := 0
	for _, s := range m.Services {
		n += len(s.Endpoints)
	}
	return n
}

// processCPU is the user+system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

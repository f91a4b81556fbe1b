package federation

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/internal/model"
)

func allExported(s *model.Snapshot) *model.Snapshot {
	for i := range s.Services {
		s.Services[i].Exported = true
	}
	return s
}

func heapMB() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkPropagationLatency: one endpoint change, from the exporter's
// Update to the importer's OnImports, with 1,000 services x 10 endpoints,
// over real mTLS gRPC on loopback.
func BenchmarkPropagationLatency(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := newPKI(b, "east.test", "west.test")
	base := heapMB()
	snap := allExported(snapshot("east", "flat", "east.test", 1, 1000, 10))
	srv, err := NewServer(ServerConfig{Cluster: "east", Network: "flat", TrustDomain: td("east.test"), SVID: p.controlPlane(b, "east.test"),
		Bundles: p.set, Peers: []ExportPeer{{TrustDomain: td("west.test"), Cluster: "west"}}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	srv.Update(snap)
	addr := serve(b, ctx, srv)
	var weight atomic.Uint32 // the weight the next callback must show
	target := NamespacedName{"shop", "svc-0500"}
	seen := make(chan struct{}, 1)
	im, err := NewImporter(ImporterConfig{Cluster: "west", Network: "flat", SVID: p.controlPlane(b, "west.test"), Bundles: p.set,
		Peers: []ImportPeer{{Cluster: "east", TrustDomain: td("east.test"), Address: addr}}, Logger: quiet,
		OnImports: func(imp *Imports) {
			i, ok := slices.BinarySearchFunc(imp.Services, target, func(s model.Service, n NamespacedName) int {
				return compareNames(NamespacedName{s.Namespace, s.Name}, n)
			})
			if ok && imp.Services[i].Endpoints[0].Weight == weight.Load() {
				select {
				case seen <- struct{}{}:
				default:
				}
			}
		}})
	if err != nil {
		b.Fatal(err)
	}
	weight.Store(snap.Services[500].Endpoints[0].Weight)
	background(b, ctx, im.Run)
	<-seen
	heap := heapMB() - base
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		next := *snap
		next.Services = slices.Clone(snap.Services)
		sv := &next.Services[500]
		sv.Endpoints = slices.Clone(sv.Endpoints)
		sv.Endpoints[0].Weight = uint32(100 + i%2)
		weight.Store(sv.Endpoints[0].Weight)
		snap = &next
		start := time.Now()
		srv.Update(snap)
		select {
		case <-seen:
		case <-ctx.Done():
			b.Fatal("timed out")
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(heap, "heap-MB")
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
}

// BenchmarkFanOut256: 256 peer clusters (in-process importers, each with
// its own trust domain) import 100 services x 10 endpoints from one
// exporter: time until all converged, then one change until all saw it.
func BenchmarkFanOut256(b *testing.B) {
	const peers = 256
	for range b.N {
		func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			tds := []string{"east.test"}
			for i := range peers {
				tds = append(tds, fmt.Sprintf("p%03d.test", i))
			}
			p := newPKI(b, tds...)
			base := heapMB()
			snap := allExported(snapshot("east", "flat", "east.test", 1, 100, 10))
			cfg := ServerConfig{Cluster: "east", Network: "flat", TrustDomain: td("east.test"), SVID: p.controlPlane(b, "east.test"), Bundles: p.set, Logger: quiet}
			for _, name := range tds[1:] {
				cfg.Peers = append(cfg.Peers, ExportPeer{TrustDomain: td(name), Cluster: name[:4]})
			}
			srv, err := NewServer(cfg)
			if err != nil {
				b.Fatal(err)
			}
			srv.Update(snap)
			addr := serve(b, ctx, srv)
			var want atomic.Uint32
			want.Store(snap.Services[50].Endpoints[0].Weight)
			bgctx, stop := context.WithCancel(ctx)
			seen := make(chan struct{}, 2*peers)
			exited := make(chan struct{}, peers)
			start, cpu0 := time.Now(), processCPU()
			for _, name := range tds[1:] {
				var last atomic.Uint32
				im, err := NewImporter(ImporterConfig{Cluster: name[:4], Network: "flat", SVID: p.controlPlane(b, name), Bundles: p.set,
					Peers: []ImportPeer{{Cluster: "east", TrustDomain: td("east.test"), Address: addr}}, Logger: quiet,
					OnImports: func(imp *Imports) {
						if len(imp.Services) != 100 {
							return
						}
						if w := imp.Services[50].Endpoints[0].Weight; w == want.Load() && last.Swap(w) != w {
							seen <- struct{}{}
						}
					}})
				if err != nil {
					b.Fatal(err)
				}
				go func() { _ = im.Run(bgctx); exited <- struct{}{} }()
			}
			for range peers {
				<-seen
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds()), "converge-ms")
			// The CPU the convergence took (all 257 sides: handshakes, full
			// syncs), which the machine's load does not change.
			b.ReportMetric(float64((processCPU() - cpu0).Milliseconds()), "converge-cpu-ms")
			heap := heapMB() - base
			b.ReportMetric(heap, "heap-MB")
			b.ReportMetric(heap*1024/peers, "heap-KiB/peer")
			// One endpoint change, until all 256 importers saw it.
			next := *snap
			next.Services = slices.Clone(snap.Services)
			sv := &next.Services[50]
			sv.Endpoints = slices.Clone(sv.Endpoints)
			sv.Endpoints[0].Weight = 77
			want.Store(77)
			start = time.Now()
			srv.Update(&next)
			for range peers {
				<-seen
			}
			b.ReportMetric(float64(time.Since(start).Microseconds()), "fanout-change-µs")
			stop()
			for range peers {
				<-exited
			}
		}()
	}
}

// processCPU is the user+system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

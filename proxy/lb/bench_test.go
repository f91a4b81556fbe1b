package lb

import (
	"testing"

	"github.com/causewaymesh/causeway/proxy/config"
)

func benchCluster(b *testing.B, lb config.LBPolicy) *Cluster {
	la := mkLA(0, grp{n: 34, weight: 2}, grp{n: 33, weight: 1}, grp{n: 33, weight: 1})
	c := NewCluster(&config.Cluster{Name: "svc", LB: lb, PanicThreshold: 50}, la, Options{ManualSweep: true})
	b.Cleanup(c.Close)
	return c
}

func BenchmarkPick(b *testing.B) {
	for _, lb := range []config.LBPolicy{config.RoundRobin, config.LeastRequest, config.RingHash, config.Maglev} {
		b.Run(lb.String(), func(b *testing.B) {
			c := benchCluster(b, lb)
			req := &PickRequest{HasHash: true}
			b.ReportAllocs()
			i := uint64(0)
			for b.Loop() {
				i++
				req.Hash = i * 0x9e3779b97f4a7c15
				if _, err := c.Pick(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, lb := range []config.LBPolicy{config.RoundRobin, config.LeastRequest, config.RingHash} {
		b.Run(lb.String(), func(b *testing.B) {
			c := benchCluster(b, lb)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := &PickRequest{HasHash: true}
				for pb.Next() {
					req.Hash++
					c.Pick(req)
				}
			})
		})
	}
}

func BenchmarkPickRetry(b *testing.B) {
	c := benchCluster(b, config.RoundRobin)
	h, _ := c.Pick(nil)
	req := &PickRequest{Tried: []*Host{h}}
	b.ReportAllocs()
	for b.Loop() {
		c.Pick(req)
	}
}

func BenchmarkBeginEnd(b *testing.B) {
	c := benchCluster(b, config.RoundRobin)
	c.Update(&config.Cluster{Name: "svc", Outlier: &config.OutlierDetection{Consecutive5xx: 5}}, nil)
	h, _ := c.Pick(nil)
	b.ReportAllocs()
	for b.Loop() {
		h.Begin()
		h.End(Success)
	}
}

func BenchmarkTryAcquireRequest(b *testing.B) {
	c := benchCluster(b, config.RoundRobin)
	b.ReportAllocs()
	for b.Loop() {
		if c.TryAcquireRequest() {
			c.ReleaseRequest()
		}
	}
}

package telemetry

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func benchMetrics(b *testing.B) *Metrics {
	b.Helper()
	m, err := NewMetrics(prometheus.NewRegistry(), Workload{Name: "frontend", Namespace: "shop", Cluster: "east", Locality: "us-east1/us-east1-b/"})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func BenchmarkObserveRequest(b *testing.B) {
	m := benchMetrics(b)
	ri := &RequestInfo{
		Direction: DirectionOutbound,
		Peer:      Workload{Name: "checkout", Namespace: "shop", Cluster: "west", Locality: "us-west1/us-west1-a/"},
		Service:   "outbound|8080||checkout.shop.svc.clusterset.local",
		Code:      200, Protocol: ProtocolHTTP2,
		Duration: 1234 * time.Microsecond, ReqBytes: 512, RespBytes: 2048,
	}
	m.ObserveRequest(ri)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.ObserveRequest(ri)
	}
}

func BenchmarkObserveRequestParallel(b *testing.B) {
	m := benchMetrics(b)
	ri := RequestInfo{
		Direction: DirectionInbound,
		Peer:      Workload{Name: "frontend", Namespace: "shop", Cluster: "east", Locality: "us-east1/us-east1-b/"},
		Service:   "inbound|8080||", Code: 200, Protocol: ProtocolHTTP1,
		Duration: 800 * time.Microsecond, ReqBytes: 100, RespBytes: 1000,
	}
	m.ObserveRequest(&ri)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := ri
		for pb.Next() {
			m.ObserveRequest(&r)
		}
	})
}

func BenchmarkConnOpenedClosed(b *testing.B) {
	m := benchMetrics(b)
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened("outbound_15001", DirectionOutbound)
		m.ConnClosed("outbound_15001", DirectionOutbound)
	}
}

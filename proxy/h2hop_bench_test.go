package proxy

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/telemetry"
)

// Fixed loopback addresses of the sidecar-to-sidecar benchmark (in this
// package's benchmark block, 127.60.0.0/16).
const (
	meshUpstreamAddr = "127.60.2.1:18300"
	meshInboundAddr  = "127.60.2.1:18301"
	meshOutboundAddr = "127.60.2.1:18302"
)

// meshPair starts the mesh path: an outbound proxy whose cluster speaks
// h2c to an inbound proxy, which speaks HTTP/1.1 to the application (as
// two sidecars do, minus TLS).
func meshPair(tb testing.TB) {
	tb.Helper()
	startHotUpstream(tb, meshUpstreamAddr)
	newMetrics := func() func(*Options) {
		m, err := telemetry.NewMetrics(prometheus.NewRegistry(), telemetry.Workload{Name: "bench", Namespace: "bench"})
		if err != nil {
			tb.Fatal(err)
		}
		return func(o *Options) { o.Metrics = m }
	}
	in := newSnap().httpListener("in", prefix("/", to("app"))).
		cluster(&config.Cluster{Name: "app", Protocol: config.HTTP1}, loc("r", "z", 0, meshUpstreamAddr))
	in.s.Listeners[0].Address = meshInboundAddr
	start(tb, in, newMetrics())
	out := newSnap().httpListener("out", prefix("/", to("peer"))).
		cluster(&config.Cluster{Name: "peer", Protocol: config.HTTP2}, loc("r", "z", 0, meshInboundAddr))
	out.s.Listeners[0].Address = meshOutboundAddr
	start(tb, out, newMetrics())
}

// BenchmarkProxyMeshH2C is one keep-alive HTTP/1.1 GET through two proxies
// with h2c between them: the path every request between two sidecars
// takes (without TLS). allocs/op are both proxies'.
func BenchmarkProxyMeshH2C(b *testing.B) {
	meshPair(b)
	benchKeepAliveGets(b, meshOutboundAddr, 2*h2Conns) // opens every h2 connection
}

package xdsclient

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/leanxds"
	listenerv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/listener/v3"
	routev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/route/v3"
	discoveryv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/service/discovery/v3"
)

// lean converts m (go-control-plane's) to the sidecar's lean type, as the
// wire does, so the benchmarks measure translation alone.
func lean[L proto.Message](b *testing.B, m proto.Message) L {
	l, err := leanxds.As[L](m)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func BenchmarkTranslateRouteConfig(b *testing.B) {
	rc := lean[*routev3.RouteConfiguration](b, simpleRoute("rc", "web"))
	for b.Loop() {
		if _, err := translateRouteConfig(rc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTranslateListener(b *testing.B) {
	l := lean[*listenerv3.Listener](b, httpListener(b, "l", 1, "rc"))
	for b.Loop() {
		if _, err := translateListener(l); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleEDS measures applying an EDS response of 100 assignments
// of 10 endpoints, all changed, and publishing the snapshot.
func BenchmarkHandleEDS(b *testing.B) {
	var res []*anypb.Any
	names := map[string]bool{}
	clusters := map[string]*config.Cluster{}
	for i := range 100 {
		n := "svc" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		names[n] = true
		clusters[n] = &config.Cluster{Name: n}
		res = append(res, mustAny(b, loadAssignment(n, "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5",
			"10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9", "10.0.0.10")))
	}
	o := &Options{Static: &config.Snapshot{Clusters: clusters}, OnUpdate: func(*config.Snapshot) {}}
	c, err := New(*o)
	if err != nil {
		b.Fatal(err)
	}
	st := newState(&c.o)
	st.types[lds].received, st.types[cds].received = true, true
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		st.types[eds].resources = map[string]entry{} // force translation
		st.handle(&discoveryv3.DiscoveryResponse{TypeUrl: EndpointTypeURL, VersionInfo: "v", Nonce: "n", Resources: res})
		st.queue = st.queue[:0]
	}
	if len(st.types[eds].resources) != len(names) {
		b.Fatalf("resources = %d", len(st.types[eds].resources))
	}
}

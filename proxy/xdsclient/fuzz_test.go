package xdsclient

import (
	"testing"

	envoyroute "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	listenerv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/listener/v3"
	routev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/route/v3"
)

// The fuzzers decode into the sidecar's lean messages, as the ADS client
// does; the seeds are go-control-plane's messages, encoded.

func FuzzTranslateRouteConfig(f *testing.F) {
	rc := simpleRoute("rc", "web")
	for _, m := range []proto.Message{rc, &envoyroute.RouteConfiguration{}} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r routev3.RouteConfiguration
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		_, _ = translateRouteConfig(&r)
	})
}

func FuzzTranslateListener(f *testing.F) {
	for _, m := range []proto.Message{httpListener(f, "l", 1, "rc"), tcpListener(f, "t", 2, "db")} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var l listenerv3.Listener
		if proto.Unmarshal(b, &l) != nil {
			return
		}
		_, _ = translateListener(&l)
	})
}

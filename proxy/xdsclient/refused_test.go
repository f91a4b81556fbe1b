package xdsclient

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/proxy/config"
)

// refusingADS ends every stream with code, as a control plane does with a
// node it will not serve, until accept is set; then it ends streams with
// Unavailable (a transport-like failure that is not a refusal).
type refusingADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	code   codes.Code
	accept atomic.Bool
	calls  atomic.Int32
}

func (r *refusingADS) StreamAggregatedResources(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	r.calls.Add(1)
	if _, err := s.Recv(); err != nil {
		return err
	}
	if r.accept.Load() {
		return status.Error(codes.Unavailable, "restarting")
	}
	return status.Error(r.code, `node "web.default": metadata "locality": region and zone are required; set --locality`)
}

// TestClientReportsRefusal: a server that refuses the node makes
// Status().Refused say why (and the runner's /ready fail), also after
// warming expires; other stream failures are not refusals.
func TestClientReportsRefusal(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.PermissionDenied} {
		t.Run(code.String(), func(t *testing.T) {
			ctx := testCtx(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ads := &refusingADS{code: code}
			gs := grpc.NewServer()
			discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, ads)
			served := make(chan struct{})
			go func() { defer close(served); _ = gs.Serve(ln) }()
			t.Cleanup(func() { gs.Stop(); <-served })

			h := runClient(t, ln.Addr().String(), func(o *Options) { o.WarmingTimeout = 50 * time.Millisecond })
			waitFor := func(what string, ok func(Status) bool) {
				t.Helper()
				for !ok(h.client.Status()) {
					select {
					case <-ctx.Done():
						t.Fatalf("%s: status %+v", what, h.client.Status())
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
			waitFor("refusal reported", func(s Status) bool {
				return strings.Contains(s.Refused, "region and zone are required")
			})
			// Warming expires (an empty snapshot is published) and the
			// refusal stays.
			h.waitSnapshot(ctx, t, "published after warming", func(*config.Snapshot) bool { return true })
			n := ads.calls.Load()
			waitFor("still refused after warming and a retry", func(s Status) bool {
				return ads.calls.Load() > n && s.Refused != ""
			})

			ads.accept.Store(true)
			n = ads.calls.Load()
			waitFor("a failure that is not a refusal clears it", func(s Status) bool {
				return ads.calls.Load() > n+1 && s.Refused == ""
			})
		})
	}
}

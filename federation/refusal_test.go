package federation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/causewaymesh/causeway/federation/federationpb"
)

// fakeExporter sends a scripted stream, then holds it open.
type fakeExporter struct {
	pb.UnimplementedFederationServer
	script func(sub *pb.Subscribe) []*pb.SyncResponse
}

func (f *fakeExporter) Sync(stream pb.Federation_SyncServer) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	for _, r := range f.script(m.GetSubscribe()) {
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

func serveFake(t *testing.T, ctx context.Context, svid x509svid.Source, bundles x509bundle.Source, f *fakeExporter) string {
	t.Helper()
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsconfig.MTLSServerConfig(svid, bundles, tlsconfig.AuthorizeAny()))),
		grpc.MaxSendMsgSize(64<<20))
	pb.RegisterFederationServer(gs, f)
	ln := listen(t)
	background(t, ctx, func(ctx context.Context) error {
		go func() { <-ctx.Done(); gs.Stop() }()
		return gs.Serve(ln)
	})
	return ln.Addr().String()
}

func hello(seq uint64) *pb.SyncResponse {
	return &pb.SyncResponse{Sequence: seq, Message: &pb.SyncResponse_Hello{Hello: &pb.Hello{
		Cluster: "fake", Network: "flat", TrustDomain: "fake.test", Epoch: "e1", Mode: pb.Mode_MODE_DIRECT}}}
}

func delta(seq, rev uint64, full bool, svcs ...*pb.ExportedService) *pb.SyncResponse {
	return &pb.SyncResponse{Sequence: seq, Message: &pb.SyncResponse_Delta{Delta: &pb.Delta{Revision: rev, FullResync: full, Upserts: svcs}}}
}

func service(name string, eps ...*pb.Endpoint) *pb.ExportedService {
	return &pb.ExportedService{Namespace: "shop", Name: name, Ports: []*pb.Port{{Port: 80, Protocol: "TCP"}}, Endpoints: eps}
}

func ep(addr, identity string) *pb.Endpoint {
	return &pb.Endpoint{Address: addr, Identity: identity, Weight: 1, Healthy: true, Ports: []*pb.EndpointPort{{Port: 8080}}}
}

// TestImporterRefusesBadPeer runs each bad exporter next to a good one: the
// bad one is refused precisely, the good one is never disturbed.
func TestImporterRefusesBadPeer(t *testing.T) {
	many := make([]*pb.Endpoint, 2000)
	for i := range many {
		many[i] = ep(fmt.Sprintf("10.9.%d.%d", i/250, i%250+1), "")
	}
	for _, tc := range []struct {
		name   string
		script []*pb.SyncResponse
		reason Reason
		detail string
	}{
		{"sequence goes backwards", []*pb.SyncResponse{hello(5), delta(3, 1, true)}, ReasonSequence, "sequence 3 went backwards"},
		{"sequence replayed", []*pb.SyncResponse{hello(1), delta(2, 1, true, service("a", ep("10.9.0.1", ""))), delta(2, 2, false)}, ReasonSequence, "sequence 2 was replayed"},
		{"endpoint with a bad address", []*pb.SyncResponse{hello(1), delta(2, 1, true, service("a", ep("10.0.0.300", "")))}, ReasonMalformed, `service shop/a: endpoints[0].address: "10.0.0.300"`},
		{"identity of another trust domain", []*pb.SyncResponse{hello(1), delta(2, 1, true, service("a", ep("10.9.0.1", "spiffe://east.test/ns/shop/sa/a")))}, ReasonMalformed, "not in the peer's trust domain fake.test"},
		{"bad service name", []*pb.SyncResponse{hello(1), delta(2, 1, true, service("A_b"))}, ReasonMalformed, "name"},
		{"delta before hello", []*pb.SyncResponse{delta(1, 1, true)}, ReasonMalformed, "delta before hello"},
		{"revision goes backwards", []*pb.SyncResponse{hello(1), delta(2, 5, true), delta(3, 4, false)}, ReasonSequence, "revision 4 went backwards"},
		{"hello from another cluster", []*pb.SyncResponse{{Sequence: 1, Message: &pb.SyncResponse_Hello{Hello: &pb.Hello{Cluster: "imposter", TrustDomain: "fake.test", Epoch: "e", Mode: pb.Mode_MODE_DIRECT}}}}, ReasonUnknownPeer, `hello.cluster "imposter"`},
		{"oversized message", []*pb.SyncResponse{hello(1), delta(2, 1, true, service("a", many...))}, ReasonOversized, "larger than max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			p := newPKI(t, "east.test", "west.test", "fake.test")
			east := snapshot("east", "flat", "east.test", 1, 5, 2)
			srv, err := NewServer(ServerConfig{Cluster: "east", Network: "flat", TrustDomain: td("east.test"), SVID: p.controlPlane(t, "east.test"),
				Bundles: p.set, Peers: []ExportPeer{{TrustDomain: td("west.test"), Cluster: "west"}}, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			srv.Update(east)
			good := serve(t, ctx, srv)
			bad := serveFake(t, ctx, p.controlPlane(t, "fake.test"), p.set, &fakeExporter{script: func(*pb.Subscribe) []*pb.SyncResponse { return tc.script }})
			im, err := NewImporter(ImporterConfig{Cluster: "west", Network: "flat", SVID: p.controlPlane(t, "west.test"), Bundles: p.set,
				Peers: []ImportPeer{
					{Cluster: "east", TrustDomain: td("east.test"), Address: good},
					{Cluster: "fake", TrustDomain: td("fake.test"), Address: bad},
				},
				MaxMessageBytes: 16 << 10, Clock: newFakeClock(), Logger: quiet, Registerer: newRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			background(t, ctx, im.Run)
			waitFor(t, "the refusal", func() bool { return isRefusal(peerStatus(im, "fake").LastError, tc.reason) })
			s := peerStatus(im, "fake")
			if !strings.Contains(s.LastError.Error(), tc.detail) || s.Connected || s.Refusals != 1 {
				t.Errorf("fake peer: %+v; want refused once with %q", s, tc.detail)
			}
			if got := testutil.ToFloat64(im.metrics.refused.WithLabelValues("fake", string(tc.reason))); got != 1 {
				t.Errorf("causeway_federation_import_refused_total{peer=fake,reason=%s} = %v; want 1", tc.reason, got)
			}
			want := expected(east)
			waitFor(t, "east's imports", func() bool {
				var got []string
				for _, sv := range im.Imports().Services {
					got = append(got, sv.Name)
				}
				es := peerStatus(im, "east")
				return es.Connected && es.Services == len(want) && len(got) >= len(want)
			})
			if es := peerStatus(im, "east"); es.Connects != 1 || es.Failures != 0 || es.LastError != nil {
				t.Errorf("the good peer was disturbed: %+v", es)
			}
		})
	}
}

// TestRefusedIdentities covers refusals decided by SPIFFE IDs on both sides.
func TestRefusedIdentities(t *testing.T) {
	stranger := newPKI(t, "stranger.test") // a trust domain nobody trusts
	for _, tc := range []struct {
		name string
		// importer side
		cluster, importerID, peerTD string
		serverID                    string
		// the expected refusal
		serverTD     string // label of the exporter's metric; "" when the exporter does not refuse
		serverReason Reason
		importReason Reason
		detail       string
	}{
		{name: "trust domain that is not a peer", cluster: "evil", importerID: "spiffe://evil.test/causeway/control-plane", peerTD: "east.test",
			serverTD: "evil.test", serverReason: ReasonWrongTrustDomain, importReason: ReasonRefusedByPeer, detail: `trust domain "evil.test" is not a federation peer`},
		{name: "trust domain without a bundle", cluster: "west", importerID: "spiffe://stranger.test/causeway/control-plane", peerTD: "east.test",
			serverTD: "stranger.test", serverReason: ReasonWrongTrustDomain},
		{name: "cluster that is not a peer", cluster: "west2", importerID: "spiffe://west.test/causeway/control-plane", peerTD: "east.test",
			serverTD: "west.test", serverReason: ReasonUnknownPeer, importReason: ReasonRefusedByPeer, detail: `cluster "west2" of trust domain west.test is not a federation peer`},
		{name: "workload instead of a control plane", cluster: "west", importerID: "spiffe://west.test/ns/shop/sa/web", peerTD: "east.test",
			serverTD: "west.test", serverReason: ReasonUnknownPeer, importReason: ReasonRefusedByPeer, detail: "is not a control plane"},
		{name: "server in another trust domain", cluster: "west", importerID: "spiffe://west.test/causeway/control-plane", peerTD: "north.test",
			importReason: ReasonWrongTrustDomain, detail: "presented spiffe://east.test/causeway/control-plane; expected spiffe://north.test/causeway/control-plane"},
		{name: "server that is not a control plane", cluster: "west", importerID: "spiffe://west.test/causeway/control-plane", peerTD: "east.test",
			serverID: "spiffe://east.test/ns/shop/sa/web", importReason: ReasonUnknownPeer, detail: "presented spiffe://east.test/ns/shop/sa/web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			p := newPKI(t, "east.test", "west.test", "evil.test", "north.test")
			p.cas["stranger.test"] = stranger.cas["stranger.test"]
			importerBundles := x509bundle.NewSet(p.set.Bundles()...)
			importerBundles.Add(stranger.cas["stranger.test"].Bundle())
			serverID := "spiffe://east.test/causeway/control-plane"
			if tc.serverID != "" {
				serverID = tc.serverID
			}
			reg := newRegistry()
			srv, err := NewServer(ServerConfig{Cluster: "east", Network: "flat", TrustDomain: td("east.test"),
				SVID: p.svid(t, spiffeid.RequireFromString(serverID)), Bundles: p.set,
				Peers: []ExportPeer{{TrustDomain: td("west.test"), Cluster: "west"}}, Logger: quiet, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			srv.Update(snapshot("east", "flat", "east.test", 1, 2, 1))
			addr := serve(t, ctx, srv)
			im, err := NewImporter(ImporterConfig{Cluster: tc.cluster, Network: "flat", SVID: p.svid(t, spiffeid.RequireFromString(tc.importerID)),
				Bundles: importerBundles, Peers: []ImportPeer{{Cluster: "east", TrustDomain: td(tc.peerTD), Address: addr}},
				Clock: newFakeClock(), Logger: quiet, Registerer: newRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			background(t, ctx, im.Run)
			waitFor(t, "the stream to fail", func() bool { return peerStatus(im, "east").LastError != nil })
			s := peerStatus(im, "east")
			if tc.importReason != "" {
				if !isRefusal(s.LastError, tc.importReason) || !strings.Contains(s.LastError.Error(), tc.detail) {
					t.Errorf("importer: %v; want a %s refusal with %q", s.LastError, tc.importReason, tc.detail)
				}
			}
			if tc.serverTD != "" {
				waitFor(t, "the exporter's refusal metric", func() bool {
					return testutil.ToFloat64(srv.metrics.refused.WithLabelValues(tc.serverTD, string(tc.serverReason))) == 1
				})
			}
			if s.Services != 0 || len(im.Imports().Services) != 0 {
				t.Errorf("imported %d services from a refused stream", s.Services)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	p := newPKI(t, "east.test")
	svid := p.controlPlane(t, "east.test")
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"server without cluster", func() error {
			_, err := NewServer(ServerConfig{TrustDomain: td("east.test"), SVID: svid, Bundles: p.set})
			return err
		}, "ServerConfig.Cluster: required"},
		{"server duplicate peer", func() error {
			_, err := NewServer(ServerConfig{Cluster: "e", TrustDomain: td("east.test"), SVID: svid, Bundles: p.set,
				Peers: []ExportPeer{{TrustDomain: td("west.test"), Cluster: "w"}, {TrustDomain: td("west.test"), Cluster: "w"}}})
			return err
		}, "ServerConfig.Peers[1]: duplicate peer w"},
		{"server tiny messages", func() error {
			_, err := NewServer(ServerConfig{Cluster: "e", TrustDomain: td("east.test"), SVID: svid, Bundles: p.set, MaxMessageBytes: 10})
			return err
		}, "MaxMessageBytes: 10 is below the minimum"},
		{"importer from itself", func() error {
			_, err := NewImporter(ImporterConfig{Cluster: "e", SVID: svid, Bundles: p.set, Peers: []ImportPeer{{Cluster: "e", TrustDomain: td("east.test"), Address: "127.0.0.1:1"}}})
			return err
		}, `Peers[0].Cluster: "e" is this cluster`},
		{"importer backoff", func() error {
			_, err := NewImporter(ImporterConfig{Cluster: "e", SVID: svid, Bundles: p.set, BackoffInitial: time.Minute, BackoffMax: time.Second})
			return err
		}, "need 0 < BackoffInitial <= BackoffMax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want %q", err, tc.want)
			}
		})
	}
}

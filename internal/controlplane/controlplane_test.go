package controlplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/runner"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type backend struct {
	name string
	port int
	srv  *http.Server
	done chan struct{}
}

func startHTTP(t *testing.T, name string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, port: lis.Addr().(*net.TCPAddr).Port, done: make(chan struct{})}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-backend", name)
		io.WriteString(w, name)
	})}
	go func() { b.srv.Serve(lis); close(b.done) }()
	t.Cleanup(func() { b.srv.Close(); <-b.done })
	return b
}

// slice is one EndpointSlice with one endpoint (all backends share
// 127.0.0.1, so each needs its own slice for its own port).
func slice(svc, name string, port int, zone string, ready bool) string {
	return fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s
  namespace: shop
  labels: {kubernetes.io/service-name: %s}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints:
- addresses: [127.0.0.1]
  nodeName: node-%s
  conditions: {ready: %t}
`, name, svc, port, zone, ready)
}

const nodesYAML = `apiVersion: v1
kind: Node
metadata: {name: node-z1, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1}}
---
apiVersion: v1
kind: Node
metadata: {name: node-z2, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z2}}
`

const webService = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
`

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	// Write then rename: the folder source never sees a half-written file.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

type harness struct {
	cp     *ControlPlane
	folder *discovery.Folder
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startControlPlane(t *testing.T, ctx context.Context, dir string) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	folder, err := discovery.NewFolder(discovery.FolderOptions{Dir: dir, Interval: 20 * time.Millisecond,
		BuildOptions: discovery.BuildOptions{Cluster: "east", Network: "net1", TrustDomain: "east.local"}})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := New(Options{Cluster: "east", Network: "net1", Debounce: 10 * time.Millisecond, Registry: reg,
		Translate: xds.TranslateOptions{EphemeralPorts: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &harness{cp: cp, folder: folder, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- cp.Run(ctx, folder) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
	h.done <- nil // idempotent
}

// TestSidecarFollowsTheFolder: a real causeway sidecar (runner.Start)
// connected to the control plane routes to backends named in the folder,
// prefers its own zone, and follows scale-up, a drained zone, bad YAML
// (last good state kept, problem reported) and deletion of the service.
func TestSidecarFollowsTheFolder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	z1a, z1b, z2 := startHTTP(t, "z1a"), startHTTP(t, "z1b"), startHTTP(t, "z2")
	dir := t.TempDir()
	write(t, dir, "nodes.yaml", nodesYAML)
	write(t, dir, "web.yaml", webService)
	write(t, dir, "z1a.yaml", slice("web", "web-z1a", z1a.port, "z1", true))
	write(t, dir, "z2.yaml", slice("web", "web-z2", z2.port, "z2", true))
	h := startControlPlane(t, ctx, dir)

	cfg := runner.DefaultConfig()
	cfg.XDS, cfg.Admin, cfg.NodeID = h.cp.Addr(), "127.0.0.1:0", "client.shop"
	cfg.Workload, cfg.Namespace, cfg.Cluster, cfg.Network, cfg.Locality = "client", "shop", "east", "net1", "r1/z1"
	cfg.AccessLog, cfg.DrainTimeout = "off", 2*time.Second
	p, err := runner.Start(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()

	var outbound string
	waitUntil(t, 10*time.Second, "listener outbound_8080", func() bool {
		if a := p.Proxy.ListenerAddr("outbound_8080"); a != nil {
			outbound = a.String()
			return true
		}
		return false
	})
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	call := func(host string) (string, int) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+outbound+"/", nil)
		req.Host = host
		resp, err := hc.Do(req)
		if err != nil {
			return "error: " + err.Error(), 0
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.Header.Get("x-backend"), resp.StatusCode
	}
	// spread makes n calls and counts backends.
	spread := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			b, _ := call("web.shop.svc.cluster.local")
			seen[b]++
		}
		return seen
	}
	waitUntil(t, 10*time.Second, "traffic to web", func() bool { _, c := call("web"); return c == 200 })

	t.Run("prefers its own zone under every name", func(t *testing.T) {
		for _, host := range []string{"web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local:8080"} {
			for range 10 {
				if b, c := call(host); c != 200 || b != "z1a" {
					t.Fatalf("Host %s: %d from %q, want 200 from z1a (same zone, priority 0)", host, c, b)
				}
			}
		}
	})
	t.Run("scale up", func(t *testing.T) {
		write(t, dir, "z1b.yaml", slice("web", "web-z1b", z1b.port, "z1", true))
		waitUntil(t, 10*time.Second, "z1b to receive traffic", func() bool { return spread(20)["z1b"] > 0 })
		if s := spread(40); s["z2"] > 0 || s["z1a"] == 0 || s["z1b"] == 0 {
			t.Fatalf("after scale up: %v, want z1a and z1b only", s)
		}
	})
	t.Run("drain a zone", func(t *testing.T) {
		write(t, dir, "z1a.yaml", slice("web", "web-z1a", z1a.port, "z1", false))
		write(t, dir, "z1b.yaml", slice("web", "web-z1b", z1b.port, "z1", false))
		waitUntil(t, 10*time.Second, "traffic to move to z2", func() bool { return spread(10)["z2"] == 10 })
	})
	t.Run("bad YAML keeps the last good state", func(t *testing.T) {
		bad := strings.Replace(slice("web", "web-z2", z2.port, "z2", true), fmt.Sprintf("port: %d", z2.port), "port: 70000", 1)
		write(t, dir, "z2.yaml", bad)
		write(t, dir, "broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x\n")
		var got []string
		waitUntil(t, 10*time.Second, "the problems to be reported", func() bool {
			got = got[:0]
			for _, p := range h.folder.Problems() {
				got = append(got, p.Error())
			}
			return len(got) == 2
		})
		want := "z2.yaml: document 1: EndpointSlice shop/web-z2: ports[0].port: 70000: must be 1-65535"
		if !strings.HasPrefix(got[1], want) || !strings.HasPrefix(got[0], "broken.yaml: document 1: ") {
			t.Fatalf("problems:\n%s\nwant broken.yaml's and %q", strings.Join(got, "\n"), want)
		}
		if s := spread(10); s["z2"] != 10 {
			t.Fatalf("with bad YAML: %v, want z2 still serving (its last good contents)", s)
		}
		os.Remove(filepath.Join(dir, "broken.yaml"))
		write(t, dir, "z2.yaml", slice("web", "web-z2", z2.port, "z2", true))
		waitUntil(t, 10*time.Second, "problems to clear", func() bool { return len(h.folder.Problems()) == 0 })
	})
	t.Run("delete the service", func(t *testing.T) {
		os.Remove(filepath.Join(dir, "web.yaml"))
		waitUntil(t, 10*time.Second, "listener outbound_8080 to go", func() bool { return p.Proxy.ListenerAddr("outbound_8080") == nil })
	})
	if n := testutil.ToFloat64(h.cp.metrics.connected); n != 1 {
		t.Errorf("connected proxies = %v, want 1", n)
	}
	if n := testutil.CollectAndCount(h.cp.metrics.nacks); n != 0 {
		t.Errorf("NACKs from our own proxy: %d series, want none", n)
	}
	// The model changed at start, scale-up and drain (the drain's two files
	// may land in one debounce window: one push or two); restoring z2's
	// last good contents changes nothing, and the deletion removes the
	// service's load assignments without a new one.
	if n := testutil.ToFloat64(h.cp.metrics.pushes.WithLabelValues("eds")); n < 3 {
		t.Errorf("EDS pushes = %v, want at least 3 (start, scale, drain)", n)
	}
}

// TestProxylessGRPC: grpc-go's own xDS resolver (xds:///catalog) with a
// bootstrap pointing at the control plane reaches the service's endpoints,
// preferring the client's zone.
func TestProxylessGRPC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type gb struct {
		addr string
		port int
	}
	var backends []gb
	for range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, health.NewServer())
		done := make(chan struct{})
		go func() { s.Serve(lis); close(done) }()
		t.Cleanup(func() { s.Stop(); <-done })
		backends = append(backends, gb{lis.Addr().String(), lis.Addr().(*net.TCPAddr).Port})
	}
	dir := t.TempDir()
	write(t, dir, "nodes.yaml", nodesYAML)
	write(t, dir, "catalog.yaml", `apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  ports: [{name: http, port: 9000, appProtocol: grpc}]
`)
	write(t, dir, "z1.yaml", slice("catalog", "catalog-z1", backends[0].port, "z1", true))
	write(t, dir, "z2.yaml", slice("catalog", "catalog-z2", backends[1].port, "z2", true))
	h := startControlPlane(t, ctx, dir)
	waitUntil(t, 10*time.Second, "the first model", func() bool { return h.cp.Model() != nil })

	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": "grpc-client.shop", "metadata": {"namespace": "shop", "cluster": "east"}, "locality": {"region": "r1", "zone": "z2"}}
}`, h.cp.Addr())
	builder, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"xds:///catalog", "xds:///catalog.shop.svc.cluster.local:9000"} {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(builder))
		if err != nil {
			t.Fatal(err)
		}
		hc := healthpb.NewHealthClient(conn)
		for i := range 10 {
			var pr peer.Peer
			rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
			resp, err := hc.Check(rctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true), grpc.Peer(&pr))
			rcancel()
			if err != nil {
				conn.Close()
				t.Fatalf("%s: call %d: %v", target, i, err)
			}
			if resp.Status != healthpb.HealthCheckResponse_SERVING || pr.Addr.String() != backends[1].addr {
				conn.Close()
				t.Fatalf("%s: call %d: %v from %s, want SERVING from the z2 backend %s", target, i, resp.Status, pr.Addr, backends[1].addr)
			}
		}
		conn.Close()
	}
}

// TestRefusesNodesAndCountsNACKs: a node without metadata is refused with
// its reason; a NACK is counted by type and node.
func TestRefusesNodesAndCountsNACKs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	write(t, dir, "web.yaml", webService)
	h := startControlPlane(t, ctx, dir)
	waitUntil(t, 10*time.Second, "the first model", func() bool { return h.cp.Model() != nil })
	conn, err := grpc.NewClient(h.cp.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ads := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn)

	tests := []struct {
		name string
		node *corev3.Node
		want string
	}{
		{"no metadata", &corev3.Node{Id: "x"}, `node.metadata["namespace"] is missing`},
		{"other cluster", &corev3.Node{Id: "x", Locality: &corev3.Locality{Region: "r", Zone: "z"}, Metadata: md("shop", "west")}, `node cluster "west" is not this control plane's cluster "east"`},
		{"no locality", &corev3.Node{Id: "x", Metadata: md("shop", "east")}, "region and zone are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			st, err := ads.StreamAggregatedResources(sctx)
			if err != nil {
				t.Fatal(err)
			}
			st.Send(&discoverygrpc.DiscoveryRequest{Node: tt.node, TypeUrl: resourcev3.ClusterType})
			_, err = st.Recv()
			if s, _ := grpcstatus.FromError(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), tt.want) {
				t.Fatalf("got %v, want InvalidArgument containing %q", err, tt.want)
			}
		})
	}
	if n := testutil.ToFloat64(h.cp.metrics.refused); n != float64(len(tests)) {
		t.Errorf("refused = %v, want %d", n, len(tests))
	}

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	st, err := ads.StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "nacker.shop", Locality: &corev3.Locality{Region: "r1", Zone: "z1"}, Metadata: md("shop", "east")}
	st.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType})
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 1 {
		t.Fatalf("CDS: %d clusters, want 1 (web:8080)", len(resp.Resources))
	}
	st.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.Nonce,
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "cluster \"web\": nope"}})
	waitUntil(t, 5*time.Second, "the NACK to be counted", func() bool {
		return testutil.ToFloat64(h.cp.metrics.nacks.WithLabelValues("cds", "nacker.shop")) == 1
	})
	scancel()
	waitUntil(t, 5*time.Second, "the node to be forgotten", func() bool { return testutil.ToFloat64(h.cp.metrics.connected) == 0 })
}

func md(ns, cluster string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{"namespace": structpb.NewStringValue(ns), "cluster": structpb.NewStringValue(cluster)}}
}

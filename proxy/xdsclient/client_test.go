package xdsclient

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/causewaymesh/causeway/proxy/config"
	leancore "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testNode = "sidecar~127.0.0.1~web-0.default~default.svc.cluster.local"

// xdsServer is a real go-control-plane ADS server on 127.0.0.1.
type xdsServer struct {
	addr   string
	cache  cachev3.SnapshotCache
	grpc   *grpc.Server
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	history []*discoveryv3.DiscoveryRequest
	changed chan struct{} // closed and replaced on every request
}

func startServer(t *testing.T, addr string, cache cachev3.SnapshotCache) *xdsServer {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &xdsServer{addr: lis.Addr().String(), cache: cache, cancel: cancel,
		done: make(chan struct{}), changed: make(chan struct{})}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		s.mu.Lock()
		s.history = append(s.history, proto.Clone(r).(*discoveryv3.DiscoveryRequest))
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		return nil
	}}
	s.grpc = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, serverv3.NewServer(ctx, cache, cb))
	go func() {
		defer close(s.done)
		_ = s.grpc.Serve(lis)
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *xdsServer) stop() {
	s.grpc.Stop()
	s.cancel()
	<-s.done
}

// waitRequest waits until the server has seen a request that satisfies ok.
func (s *xdsServer) waitRequest(ctx context.Context, t *testing.T, what string, ok func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	for {
		s.mu.Lock()
		hist, changed := s.history, s.changed
		s.mu.Unlock()
		for _, r := range hist {
			if ok(r) {
				return r
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for request: %s", what)
		}
	}
}

type resources struct {
	listeners []types.Resource
	routes    []types.Resource
	clusters  []types.Resource
	endpoints []types.Resource
	secrets   []types.Resource
}

func (s *xdsServer) set(t *testing.T, version string, r resources) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: r.listeners,
		resourcev3.RouteType:    r.routes,
		resourcev3.ClusterType:  r.clusters,
		resourcev3.EndpointType: r.endpoints,
		resourcev3.SecretType:   r.secrets,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		t.Fatal(err)
	}
}

// harness runs a Client against a server and collects snapshots.
type harness struct {
	client *Client
	snaps  chan *config.Snapshot
	stop   func()
}

func runClient(t *testing.T, addr string, mod func(*Options)) *harness {
	t.Helper()
	h := &harness{snaps: make(chan *config.Snapshot, 100)}
	o := Options{
		Server:         addr,
		Node:           &leancore.Node{Id: testNode, Cluster: "web.default"},
		OnUpdate:       func(s *config.Snapshot) { h.snaps <- s },
		BackoffBase:    10 * time.Millisecond,
		BackoffMax:     100 * time.Millisecond,
		WarmingTimeout: 10 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.client = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// waitSnapshot waits for a published snapshot that satisfies ok.
func (h *harness) waitSnapshot(ctx context.Context, t *testing.T, what string, ok func(*config.Snapshot) bool) *config.Snapshot {
	t.Helper()
	for {
		select {
		case s := <-h.snaps:
			if ok(s) {
				return s
			}
		case <-ctx.Done():
			t.Fatalf("timed out waiting for snapshot: %s", what)
		}
	}
}

func versionIs(v string) func(*config.Snapshot) bool {
	return func(s *config.Snapshot) bool { return s.Version == v }
}

// world is a complete, consistent configuration.
func world(t *testing.T, cert, key []byte, webIP string) resources {
	tlsL := httpListener(t, "a-http", 15001, "rc")
	tlsL.FilterChains[0].TransportSocket = tlsSocket(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig("cert")},
		ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sdsConfig("roots")},
	}})
	return resources{
		listeners: []types.Resource{tcpListener(t, "b-tcp", 15002, "db"), tlsL},
		routes:    []types.Resource{simpleRoute("rc", "web")},
		clusters:  []types.Resource{edsCluster("web", "web.svc"), edsCluster("db", "")},
		endpoints: []types.Resource{loadAssignment("web.svc", webIP), loadAssignment("db", "10.0.1.1")},
		secrets:   []types.Resource{certSecret("cert", cert, key), rootsSecret("roots", cert)},
	}
}

// expected translates r with the public translators.
func expected(t *testing.T, version string, r resources) *config.Snapshot {
	s := &config.Snapshot{Version: version, Routes: map[string]*config.RouteConfig{}, Clusters: map[string]*config.Cluster{},
		Endpoints: map[string]*config.LoadAssignment{}, Secrets: map[string]*config.Secret{}}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range r.listeners {
		v, err := TranslateListener(x.(*listenerv3.Listener))
		must(err)
		s.Listeners = append(s.Listeners, v)
	}
	for _, x := range r.routes {
		v, err := TranslateRouteConfig(x.(*routev3.RouteConfiguration))
		must(err)
		s.Routes[v.Name] = v
	}
	for _, x := range r.clusters {
		v, err := TranslateCluster(x.(*clusterv3.Cluster))
		must(err)
		s.Clusters[v.Name] = v
	}
	for _, x := range r.endpoints {
		v, err := TranslateLoadAssignment(x.(*endpointv3.ClusterLoadAssignment))
		must(err)
		s.Endpoints[v.Cluster] = v
	}
	for _, x := range r.secrets {
		v, err := TranslateSecret(x.(*tlsv3.Secret))
		must(err)
		s.Secrets[v.Name] = v
	}
	// Listeners sorted by name, as the client publishes them.
	for i := 1; i < len(s.Listeners); i++ {
		for j := i; j > 0 && s.Listeners[j].Name < s.Listeners[j-1].Name; j-- {
			s.Listeners[j], s.Listeners[j-1] = s.Listeners[j-1], s.Listeners[j]
		}
	}
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientRoundTripUpdateAndNACK(t *testing.T) {
	ctx := testCtx(t)
	cert, key := selfSigned(t)
	srv := startServer(t, "127.0.0.1:0", cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil))
	w1 := world(t, cert, key, "10.0.0.1")
	srv.set(t, "1", w1)
	h := runClient(t, srv.addr, nil)

	// 1. Everything arrives and forms one complete snapshot.
	s1 := h.waitSnapshot(ctx, t, "v1", versionIs("lds=1,rds=1,cds=1,eds=1,sds=1"))
	if diff := cmp.Diff(expected(t, s1.Version, w1), s1, cmpOpts); diff != "" {
		t.Fatalf("snapshot (-want +got):\n%s", diff)
	}
	if s1.Secrets["cert"].Cert == nil || s1.Secrets["roots"].Roots == nil {
		t.Fatal("secrets not translated")
	}
	for _, typ := range []string{ListenerTypeURL, RouteTypeURL, ClusterTypeURL, EndpointTypeURL, SecretTypeURL} {
		srv.waitRequest(ctx, t, "ACK of "+typ, func(r *discoveryv3.DiscoveryRequest) bool {
			return r.TypeUrl == typ && r.VersionInfo == "1" && r.ErrorDetail == nil
		})
	}
	st := h.client.Status()
	if !st.Connected || st.Types[EndpointTypeURL].Version != "1" || !cmp.Equal(st.Types[EndpointTypeURL].Subscribed, []string{"db", "web.svc"}) {
		t.Fatalf("status = %+v", st)
	}

	// 2. Only endpoints change: unchanged resources keep their pointers.
	w2 := world(t, cert, key, "10.0.0.2")
	srv.set(t, "2", w2)
	s2 := h.waitSnapshot(ctx, t, "v2", versionIs("lds=2,rds=2,cds=2,eds=2,sds=2"))
	if got := s2.Endpoints["web.svc"].Localities[0].Endpoints[0].Address; got != "10.0.0.2:8080" {
		t.Fatalf("web.svc endpoint = %s", got)
	}
	if s2.Listeners[0] != s1.Listeners[0] || s2.Routes["rc"] != s1.Routes["rc"] || s2.Clusters["web"] != s1.Clusters["web"] ||
		s2.Endpoints["db"] != s1.Endpoints["db"] || s2.Secrets["cert"] != s1.Secrets["cert"] {
		t.Fatal("unchanged resources were translated again")
	}

	// 3. A bad route and a bad listener are NACKed with precise messages;
	// the last good ones stay.
	w3 := world(t, cert, key, "10.0.0.3")
	w3.routes[0].(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].Match.PathSpecifier =
		&routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/(a"}}
	badL := proto.Clone(w3.listeners[0].(*listenerv3.Listener)).(*listenerv3.Listener)
	badL.FilterChains[0].Filters = append(badL.FilterChains[0].Filters, &listenerv3.Filter{Name: "envoy.filters.network.rbac",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &corev3.Node{})}})
	w3.listeners[0] = badL
	srv.set(t, "3", w3)
	nack := srv.waitRequest(ctx, t, "RDS NACK", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.TypeUrl == RouteTypeURL && r.ErrorDetail != nil
	})
	if want := `route_config "rc": virtual_hosts["vh"].routes["all"].match.safe_regex.regex: invalid regex "/(a"`; !strings.Contains(nack.ErrorDetail.Message, want) || nack.VersionInfo != "2" {
		t.Fatalf("RDS NACK version %q message %q; want version 2 and %q", nack.VersionInfo, nack.ErrorDetail.Message, want)
	}
	nack = srv.waitRequest(ctx, t, "LDS NACK", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.TypeUrl == ListenerTypeURL && r.ErrorDetail != nil
	})
	if want := `listener "b-tcp": filter_chains[0].filters[1].typed_config: unsupported filter "envoy.filters.network.rbac"`; !strings.Contains(nack.ErrorDetail.Message, want) || nack.VersionInfo != "2" {
		t.Fatalf("LDS NACK version %q message %q; want version 2 and %q", nack.VersionInfo, nack.ErrorDetail.Message, want)
	}
	s3 := h.waitSnapshot(ctx, t, "v3 without LDS and RDS", versionIs("lds=2,rds=2,cds=3,eds=3,sds=3"))
	if s3.Routes["rc"] != s2.Routes["rc"] || s3.Listeners[1] != s2.Listeners[1] {
		t.Fatal("NACKed resources replaced the last good ones")
	}
	if e := h.client.Status().Types[RouteTypeURL].LastError; !strings.Contains(e, "invalid regex") {
		t.Fatalf("status LastError = %q", e)
	}

	// 4. The fixed resources are accepted.
	srv.set(t, "4", world(t, cert, key, "10.0.0.4"))
	h.waitSnapshot(ctx, t, "v4", versionIs("lds=4,rds=4,cds=4,eds=4,sds=4"))
	srv.waitRequest(ctx, t, "RDS ACK v4", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.TypeUrl == RouteTypeURL && r.VersionInfo == "4" && r.ErrorDetail == nil
	})
	if e := h.client.Status().Types[RouteTypeURL].LastError; e != "" {
		t.Fatalf("LastError not cleared: %q", e)
	}
}

func TestClientReconnectsAfterServerRestart(t *testing.T) {
	ctx := testCtx(t)
	cert, key := selfSigned(t)
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	srv := startServer(t, "127.0.0.1:0", cache)
	srv.set(t, "1", world(t, cert, key, "10.0.0.1"))
	h := runClient(t, srv.addr, nil)
	h.waitSnapshot(ctx, t, "v1", versionIs("lds=1,rds=1,cds=1,eds=1,sds=1"))

	srv.stop()
	srv2 := startServer(t, srv.addr, cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil))
	// The new stream resubscribes with the last accepted versions and names.
	first := srv2.waitRequest(ctx, t, "resubscription", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.TypeUrl == RouteTypeURL
	})
	if first.VersionInfo != "1" || !cmp.Equal(first.ResourceNames, []string{"rc"}) || first.ResponseNonce != "" {
		t.Fatalf("resubscription = %v", first)
	}
	srv2.set(t, "2", world(t, cert, key, "10.0.0.2"))
	s := h.waitSnapshot(ctx, t, "v2 after restart", versionIs("lds=2,rds=2,cds=2,eds=2,sds=2"))
	if got := s.Endpoints["web.svc"].Localities[0].Endpoints[0].Address; got != "10.0.0.2:8080" {
		t.Fatalf("endpoint after restart = %s", got)
	}
	if !h.client.Status().Connected {
		t.Fatal("status not connected")
	}
}

func TestClientWarmingTimeout(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, "127.0.0.1:0", cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil))
	// The listener references a route configuration the server never has.
	srv.set(t, "1", resources{listeners: []types.Resource{httpListener(t, "l", 15001, "missing")}})
	h := runClient(t, srv.addr, func(o *Options) { o.WarmingTimeout = 200 * time.Millisecond })
	s := h.waitSnapshot(ctx, t, "published after warming", func(s *config.Snapshot) bool { return len(s.Listeners) == 1 })
	if !strings.HasPrefix(s.Version, "lds=1,") || len(s.Routes) != 0 {
		t.Fatalf("snapshot = %+v", s)
	}
}

func TestClientStaticMerge(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, "127.0.0.1:0", cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil))
	srv.set(t, "1", resources{clusters: []types.Resource{edsCluster("web", "web.svc")}, endpoints: []types.Resource{loadAssignment("web.svc", "10.0.0.1")}})
	staticWeb := &config.Cluster{Name: "web", Static: &config.LoadAssignment{Cluster: "web"}}
	staticXDS := &config.Cluster{Name: "xds", Static: &config.LoadAssignment{Cluster: "xds"}}
	h := runClient(t, srv.addr, func(o *Options) {
		o.Static = &config.Snapshot{Clusters: map[string]*config.Cluster{"web": staticWeb, "xds": staticXDS}}
	})
	s := h.waitSnapshot(ctx, t, "merged", versionIs("lds=1,rds=,cds=1,eds=1,sds="))
	if s.Clusters["xds"] != staticXDS || s.Clusters["web"] == staticWeb || s.Clusters["web"].EDSServiceName != "web.svc" {
		t.Fatalf("clusters = %+v", s.Clusters)
	}
}

func TestClientStaticOnly(t *testing.T) {
	ctx := testCtx(t)
	static := &config.Snapshot{Listeners: []*config.Listener{{Name: "s"}}}
	h := runClient(t, "", func(o *Options) { o.Static = static; o.Node = nil })
	s := h.waitSnapshot(ctx, t, "static", func(*config.Snapshot) bool { return true })
	if len(s.Listeners) != 1 || s.Listeners[0] != static.Listeners[0] {
		t.Fatalf("snapshot = %+v", s)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"no OnUpdate", Options{Server: "127.0.0.1:1", Node: &leancore.Node{Id: "n"}}, "OnUpdate"},
		{"no node", Options{Server: "127.0.0.1:1", OnUpdate: func(*config.Snapshot) {}}, "Node is nil"},
		{"no node id", Options{Server: "127.0.0.1:1", Node: &leancore.Node{}, OnUpdate: func(*config.Snapshot) {}}, "Node.Id is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	c, err := New(Options{OnUpdate: func(*config.Snapshot) {}, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second, Rand: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		attempt int
		want    time.Duration
	}{{0, 75 * time.Millisecond}, {1, 150 * time.Millisecond}, {3, 600 * time.Millisecond}, {4, 750 * time.Millisecond}, {100, 750 * time.Millisecond}} {
		if got := c.backoff(tt.attempt); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

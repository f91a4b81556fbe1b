// Package xds serves xDS v3 resources to Causeway proxies (and to
// proxyless gRPC clients) over ADS, with go-control-plane's snapshot cache
// and server, and builds the resources the proxy's documented subset
// (docs/xds.md) accepts.
//
// The control plane (internal/controlplane) translates the model into
// Resources per node class with Translate (translate.go: names, locality
// priorities, api listeners for proxyless gRPC) and publishes them with
// Publish under the class's key (Options.SnapshotKey maps each connecting
// node to it, so the nodes of a class share one snapshot); the demo and the
// data-plane tests build resources by hand with the builders of
// resources.go and publish per node id.
//
// Versions are per key and per type: Publish bumps only the types whose
// resources changed (the same message, or equal marshalled bytes, is no
// change), so a node gets no push for the others. go-control-plane's server
// speaks the state-of-the-world protocol and this package's delta server
// (delta.go: a per-stream cursor instead of per-stream version maps) the
// incremental ADS one; the cache behind both is this package's (cache.go):
// every resource is marshalled once per publish that changes it, its
// version is the hash of its bytes, state-of-the-world clients receive the
// whole subscribed set of a changed type over shared marshalled values, and
// delta clients receive only the resources that changed. Translator
// (translator.go) is Translate with memory per node class, so an unchanged
// service keeps its messages and costs Publish nothing.
//
// Delta pushes after a publish are sent by a few push workers (deltapush.go),
// not by each stream's goroutine, and a push that many streams share is
// marshalled once (codec.go): the server installs its own gRPC codec
// (protobuf, plus those shared bytes), so Options.GRPCOptions must not
// replace it (grpc.ForceServerCodec / ForceServerCodecV2).
//
// Server is safe for concurrent use: SetResources may be called from any
// goroutine; each call publishes one consistent snapshot, and the cache
// pushes only the resource types whose version changed. Stop waits for the
// push workers.
package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// Resources is one complete set of xDS resources for a node.
type Resources struct {
	Listeners []types.Resource
	Routes    []types.Resource
	Clusters  []types.Resource
	Endpoints []types.Resource
	Secrets   []types.Resource
}

// Server is an ADS server on a loopback (or given) address.
type Server struct {
	cache *resourceCache
	grpc  *grpc.Server
	lis   net.Listener

	mu       sync.Mutex // serialises Publish and Forget
	seq      int
	done     chan struct{}
	serveErr error
}

// Options configure a Server.
type Options struct {
	Address   string // default 127.0.0.1:0
	Callbacks serverv3.Callbacks
	// GRPCOptions are passed to grpc.NewServer (credentials, limits),
	// after the server's own; they must not set a codec (see the package
	// doc).
	GRPCOptions []grpc.ServerOption
	// SnapshotKey maps a connecting node to the key its resources are
	// published under (default: the node id). The control plane keys by
	// node class, so every node of a class shares one snapshot and each
	// resource is marshalled once per change, not once per node.
	SnapshotKey func(*corev3.Node) string
}

type snapshotKey func(*corev3.Node) string

func (f snapshotKey) ID(n *corev3.Node) string { return f(n) }

// NewServer listens and starts serving at once.
func NewServer(o Options) (*Server, error) {
	addr := o.Address
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("xds server: listen %s: %w", addr, err)
	}
	s := &Server{
		// The cache (cache.go) answers a request that names resources with
		// the named subset: grpc-go asks for the one listener it needs.
		cache: newResourceCache(hashOf(o.SnapshotKey)),
		grpc:  grpc.NewServer(append(defaultGRPCOptions(), o.GRPCOptions...)...),
		lis:   lis,
		done:  make(chan struct{}),
	}
	srv := serverv3.NewServer(context.Background(), s.cache, o.Callbacks)
	// Incremental ADS is Causeway's own (delta.go); the rest is go-control-plane's.
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.grpc, adsServer{Server: srv, delta: &deltaServer{cache: s.cache, callbacks: o.Callbacks, sawResponses: wantsResponses(o.Callbacks)}})
	listenerservice.RegisterListenerDiscoveryServiceServer(s.grpc, srv)
	routeservice.RegisterRouteDiscoveryServiceServer(s.grpc, srv)
	clusterservice.RegisterClusterDiscoveryServiceServer(s.grpc, srv)
	endpointservice.RegisterEndpointDiscoveryServiceServer(s.grpc, srv)
	secretservice.RegisterSecretDiscoveryServiceServer(s.grpc, srv)
	go func() {
		s.serveErr = s.grpc.Serve(lis)
		close(s.done)
	}()
	return s, nil
}

func hashOf(key func(*corev3.Node) string) cachev3.NodeHash {
	if key == nil {
		return cachev3.IDHash{}
	}
	return snapshotKey(key)
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// SetResources publishes r for the node with the given id. A type whose
// resources did not change keeps its version, so proxies get no push for it.
func (s *Server) SetResources(ctx context.Context, node string, r Resources) error {
	_, err := s.Publish(ctx, node, r)
	return err
}

// Publish is SetResources that also reports which types changed (and so
// were pushed to the node's open watches), in the order LDS, RDS, CDS,
// EDS, SDS. Nothing changed: nil, and the cache is left alone.
func (s *Server) Publish(ctx context.Context, node string, r Resources) ([]resourcev3.Type, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byType := [numTypes][]types.Resource{r.Listeners, r.Routes, r.Clusters, r.Endpoints, r.Secrets}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	var prev [numTypes]*typeState
	if k := s.cache.keys[node]; k != nil {
		prev = k.types
	}
	var next [numTypes]*typeState
	var changed []resourcev3.Type
	check := false // can a reference between types have broken?
	for i, t := range typeOrder {
		ts, err := buildTypeState(t, prev[i], byType[i])
		if err != nil {
			return nil, fmt.Errorf("xds server: node %q: %w", node, err)
		}
		if ts != prev[i] {
			next[i] = ts
			changed = append(changed, t)
			// Listeners and clusters hold the references; route
			// configurations and assignments break them only by name.
			check = check || ts.renamed || t == resourcev3.ListenerType || t == resourcev3.ClusterType
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	if check {
		if err := consistent(r); err != nil {
			return nil, fmt.Errorf("xds server: inconsistent resources for node %q: %w", node, err)
		}
	}
	s.seq++
	s.cache.setLocked(node, next, strconv.Itoa(s.seq))
	return changed, nil
}

// consistent checks that every EDS cluster's assignment and every
// listener's RDS route configuration is published (go-control-plane's
// snapshot check).
func consistent(r Resources) error {
	snap := &cachev3.Snapshot{}
	for i, rs := range [][]types.Resource{r.Listeners, r.Routes, r.Clusters, r.Endpoints, r.Secrets} {
		items := make([]types.ResourceWithTTL, len(rs))
		for j, res := range rs {
			items[j] = types.ResourceWithTTL{Resource: res}
		}
		snap.Resources[cachev3.GetResponseType(typeOrder[i])] = cachev3.NewResourcesWithTTL("", items)
	}
	return snap.Consistent()
}

var typeOrder = []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType}

// Forget drops everything published for node (its last proxy has gone);
// a node that comes back is published afresh.
func (s *Server) Forget(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	s.cache.forgetLocked(node)
}

// Stop closes every stream and the listener, and waits for the server.
func (s *Server) Stop() error {
	s.grpc.Stop()
	<-s.done
	s.cache.push.wait() // push workers finish their (non-blocking) sends
	if errors.Is(s.serveErr, grpc.ErrServerStopped) {
		return nil
	}
	return s.serveErr
}

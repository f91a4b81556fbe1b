// Package xds serves xDS v3 resources to Causeway proxies (and to
// proxyless gRPC clients) over ADS, with go-control-plane's snapshot cache
// and server, and builds the resources the proxy's documented subset
// (docs/xds.md) accepts.
//
// Today it is what the demo and the data-plane tests use to drive real
// proxies over a real gRPC stream; the control plane (issue 4) will grow its
// model-to-xDS translation here.
//
// Server is safe for concurrent use: SetResources may be called from any
// goroutine; each call publishes one consistent snapshot, and the cache
// pushes only the resource types whose version changed.
package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

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
	"google.golang.org/protobuf/proto"
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
	cache cachev3.SnapshotCache
	grpc  *grpc.Server
	lis   net.Listener

	mu       sync.Mutex
	versions map[string]map[resourcev3.Type]string // node -> type -> version
	last     map[string]map[resourcev3.Type][]types.Resource
	seq      int
	done     chan struct{}
	serveErr error
}

// Options configure a Server.
type Options struct {
	Address   string // default 127.0.0.1:0
	Callbacks serverv3.Callbacks
	// GRPCOptions are passed to grpc.NewServer (credentials, limits).
	GRPCOptions []grpc.ServerOption
}

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
		cache:    cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		grpc:     grpc.NewServer(o.GRPCOptions...),
		lis:      lis,
		versions: map[string]map[resourcev3.Type]string{},
		last:     map[string]map[resourcev3.Type][]types.Resource{},
		done:     make(chan struct{}),
	}
	srv := serverv3.NewServer(context.Background(), s.cache, o.Callbacks)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.grpc, srv)
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

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// SetResources publishes r for the node with the given id. A type whose
// resources did not change keeps its version, so proxies get no push for it.
func (s *Server) SetResources(ctx context.Context, node string, r Resources) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	byType := map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: r.Listeners,
		resourcev3.RouteType:    r.Routes,
		resourcev3.ClusterType:  r.Clusters,
		resourcev3.EndpointType: r.Endpoints,
		resourcev3.SecretType:   r.Secrets,
	}
	vers := s.versions[node]
	if vers == nil {
		vers = map[resourcev3.Type]string{}
		s.versions[node] = vers
	}
	prev := s.last[node]
	withTTL := make(map[resourcev3.Type][]types.ResourceWithTTL, len(byType))
	for t, rs := range byType {
		if prev == nil || !sameResources(prev[t], rs) {
			vers[t] = strconv.Itoa(s.seq)
		}
		items := make([]types.ResourceWithTTL, len(rs))
		for i, res := range rs {
			items[i] = types.ResourceWithTTL{Resource: res}
		}
		withTTL[t] = items
	}
	snap := &cachev3.Snapshot{}
	for t, items := range withTTL {
		idx := cachev3.GetResponseType(t)
		snap.Resources[idx] = cachev3.NewResourcesWithTTL(vers[t], items)
	}
	if err := snap.Consistent(); err != nil {
		return fmt.Errorf("xds server: inconsistent resources for node %q: %w", node, err)
	}
	if err := s.cache.SetSnapshot(ctx, node, snap); err != nil {
		return fmt.Errorf("xds server: node %q: %w", node, err)
	}
	s.last[node] = byType
	return nil
}

func sameResources(a, b []types.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// Stop closes every stream and the listener, and waits for the server.
func (s *Server) Stop() error {
	s.grpc.Stop()
	<-s.done
	if errors.Is(s.serveErr, grpc.ErrServerStopped) {
		return nil
	}
	return s.serveErr
}

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
// resources changed (proto.Equal, memoized per pair of resource slices), so
// a node gets no push for the others.
// Within a type, state-of-the-world clients receive the whole subscribed
// set again (go-control-plane's snapshot cache); delta clients receive
// only the resources whose content changed.
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
	// same memoizes resource-set comparisons. The control plane translates
	// once per node class and publishes the same slices to every node of
	// the class, so one comparison per class serves all of its nodes. The
	// keys hold the slices alive, so an address is never reused while its
	// entry exists; the map is reset when it grows past sameMemoMax.
	same     map[sliceKey]bool
	done     chan struct{}
	serveErr error
}

// sliceKey identifies a pair of resource slices by their backing arrays.
type sliceKey struct {
	a, b   *types.Resource
	la, lb int
}

const sameMemoMax = 256

// Options configure a Server.
type Options struct {
	Address   string // default 127.0.0.1:0
	Callbacks serverv3.Callbacks
	// GRPCOptions are passed to grpc.NewServer (credentials, limits).
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
		// ads=false: go-control-plane's "ADS mode" answers a request that
		// names resources only when it names every resource of the type in
		// the snapshot, which starves grpc-go (it asks for the one listener
		// it needs). Without it, responses carry the requested subset.
		cache:    cachev3.NewSnapshotCache(false, hashOf(o.SnapshotKey), nil),
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
	var changed []resourcev3.Type
	for _, t := range typeOrder {
		if prev == nil || !s.sameLocked(prev[t], byType[t]) {
			changed = append(changed, t)
			vers[t] = strconv.Itoa(s.seq)
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	withTTL := make(map[resourcev3.Type][]types.ResourceWithTTL, len(byType))
	for t, rs := range byType {
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
		return nil, fmt.Errorf("xds server: inconsistent resources for node %q: %w", node, err)
	}
	if err := s.cache.SetSnapshot(ctx, node, snap); err != nil {
		return nil, fmt.Errorf("xds server: node %q: %w", node, err)
	}
	s.last[node] = byType
	return changed, nil
}

var typeOrder = []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType}

// Forget drops everything published for node (its last proxy has gone);
// a node that comes back is published afresh.
func (s *Server) Forget(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache.ClearSnapshot(node)
	delete(s.versions, node)
	delete(s.last, node)
}

// sameLocked is sameResources, memoized per pair of slices.
func (s *Server) sameLocked(a, b []types.Resource) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	k := sliceKey{a: &a[0], b: &b[0], la: len(a), lb: len(b)}
	if v, ok := s.same[k]; ok {
		return v
	}
	if s.same == nil || len(s.same) >= sameMemoMax {
		s.same = map[sliceKey]bool{}
	}
	v := sameResources(a, b)
	s.same[k] = v
	return v
}

func sameResources(a, b []types.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !proto.Equal(a[i], b[i]) {
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

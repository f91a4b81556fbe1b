package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// client is one simulated sidecar on its own gRPC connection.
type client struct {
	id   int
	node *corev3.Node

	eds    atomic.Pointer[map[string]struct{}] // EDS names subscribed
	ready  chan struct{}                       // closed at the first complete EDS ACK
	recvd  [5]atomic.Int64                     // responses by type: LDS RDS CDS EDS other
	nacked atomic.Int64
}

func newClient(id int, cluster, ns string, zone string) *client {
	md, _ := structpb.NewStruct(map[string]any{"namespace": ns, "cluster": cluster, "service_account": "bench"})
	return &client{
		id: id,
		node: &corev3.Node{
			Id: fmt.Sprintf("bench-%05d.%s", id, ns), Cluster: cluster, Metadata: md,
			Locality: &corev3.Locality{Region: "r1", Zone: zone},
		},
		ready: make(chan struct{}),
	}
}

func (c *client) subscribed(name string) bool {
	m := c.eds.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[name]
	return ok
}

type typeState struct {
	names   []string
	version string
	nonce   string
}

// run speaks ADS until ctx ends or the stream fails. A stream ended by the
// server's shutdown or ctx is not an error.
func (c *client) run(ctx context.Context, conn grpc.ClientConnInterface, tr *tracker) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(256<<20))
	if err != nil {
		return fmt.Errorf("client %s: open ADS stream: %w", c.node.Id, err)
	}
	st := map[string]*typeState{
		resourcev3.ListenerType: {}, resourcev3.RouteType: {}, resourcev3.ClusterType: {}, resourcev3.EndpointType: {},
	}
	send := func(typ string, withNode bool) error {
		s := st[typ]
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: s.version, ResponseNonce: s.nonce, ResourceNames: s.names}
		if withNode {
			req.Node = c.node
		}
		return stream.Send(req)
	}
	if err := send(resourcev3.ListenerType, true); err != nil {
		return c.ended(ctx, err)
	}
	if err := send(resourcev3.ClusterType, false); err != nil {
		return c.ended(ctx, err)
	}
	readyDone, edsDone, rdsDone := false, false, false
	for {
		resp, err := stream.Recv()
		if err != nil {
			return c.ended(ctx, err)
		}
		typ := resp.GetTypeUrl()
		s, ok := st[typ]
		if !ok {
			c.recvd[4].Add(1)
			continue
		}
		var follow string // a type whose subscription changed
		var newNames []string
		switch typ {
		case resourcev3.ListenerType:
			c.recvd[0].Add(1)
			names, err := routeNames(resp.GetResources())
			if err != nil {
				return c.nack(stream, resp, s, err)
			}
			if !slices.Equal(names, st[resourcev3.RouteType].names) {
				follow, newNames = resourcev3.RouteType, names
			}
		case resourcev3.RouteType:
			c.recvd[1].Add(1)
		case resourcev3.ClusterType:
			c.recvd[2].Add(1)
			names, err := edsNames(resp.GetResources())
			if err != nil {
				return c.nack(stream, resp, s, err)
			}
			if !slices.Equal(names, st[resourcev3.EndpointType].names) {
				follow, newNames = resourcev3.EndpointType, names
			}
		case resourcev3.EndpointType:
			c.recvd[3].Add(1)
		}
		var hit *change
		if typ == resourcev3.EndpointType {
			if ch := tr.current(); ch != nil && c.subscribed(ch.name()) && ch.in(rawOf(resp)) {
				hit = ch
			}
		}
		s.version, s.nonce = resp.GetVersionInfo(), resp.GetNonce()
		if err := send(typ, false); err != nil { // the ACK
			return c.ended(ctx, err)
		}
		now := time.Now()
		if hit != nil {
			hit.ack(c.id, now)
		}
		// Ready once both leaves of the tree are complete: routes and
		// endpoints are requested independently (after the listeners and
		// the clusters), so either may come last.
		switch {
		case typ == resourcev3.EndpointType && len(s.names) > 0 && len(resp.GetResources()) == len(s.names):
			edsDone = true
		case typ == resourcev3.RouteType && len(s.names) > 0 && len(resp.GetResources()) == len(s.names):
			rdsDone = true
		}
		if !readyDone && edsDone && rdsDone {
			readyDone = true
			close(c.ready)
		}
		if follow != "" {
			st[follow].names = newNames
			if follow == resourcev3.EndpointType {
				c.setEDS(newNames)
			}
			if err := send(follow, false); err != nil {
				return c.ended(ctx, err)
			}
		}
	}
}

func (c *client) setEDS(names []string) {
	m := make(map[string]struct{}, len(names))
	for _, n := range names {
		m[n] = struct{}{}
	}
	c.eds.Store(&m)
}

func rawOf(resp *discoveryv3.DiscoveryResponse) [][]byte {
	out := make([][]byte, len(resp.GetResources()))
	for i, r := range resp.GetResources() {
		out[i] = r.GetValue()
	}
	return out
}

func (c *client) nack(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, resp *discoveryv3.DiscoveryResponse, s *typeState, cause error) error {
	c.nacked.Add(1)
	_ = stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: s.version, ResponseNonce: resp.GetNonce(),
		ResourceNames: s.names, ErrorDetail: status.New(codes.InvalidArgument, cause.Error()).Proto()})
	return fmt.Errorf("client %s: NACK %s version %s: %w", c.node.Id, resp.GetTypeUrl(), resp.GetVersionInfo(), cause)
}

func (c *client) ended(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || status.Code(err) == codes.Unavailable {
		return nil
	}
	return fmt.Errorf("client %s: ADS stream: %w", c.node.Id, err)
}

// routeNames are the RDS names the listeners' HTTP connection managers use.
func routeNames(resources []*anypb.Any) ([]string, error) {
	set := map[string]struct{}{}
	for _, a := range resources {
		var l listenerv3.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			return nil, fmt.Errorf("listener: %w", err)
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var h hcmv3.HttpConnectionManager
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&h) != nil {
					continue
				}
				if n := h.GetRds().GetRouteConfigName(); n != "" {
					set[n] = struct{}{}
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(set)), nil
}

// edsNames are the EDS service names of the EDS clusters.
func edsNames(resources []*anypb.Any) ([]string, error) {
	var out []string
	for _, a := range resources {
		var cl clusterv3.Cluster
		if err := a.UnmarshalTo(&cl); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if cl.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		out = append(out, cmp.Or(cl.GetEdsClusterConfig().GetServiceName(), cl.GetName()))
	}
	slices.Sort(out)
	return out, nil
}

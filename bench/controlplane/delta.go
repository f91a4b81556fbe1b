package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// deltaType is the client's view of one type on a delta stream: the
// resources it holds by name, each reduced to the names it refers to
// (route configurations of a listener, the EDS name of a cluster; nothing
// for the others), and the names it subscribes to (nil for the wildcard
// types LDS and CDS). Holding the bytes of every resource in every one of
// 1,000 simulated clients would dwarf the control plane's memory.
type deltaType struct {
	have       map[string][]string
	subscribed map[string]struct{}
}

// referenced is the sorted union of what the held resources refer to.
func (d *deltaType) referenced() []string {
	set := map[string]struct{}{}
	for _, refs := range d.have {
		for _, r := range refs {
			set[r] = struct{}{}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// runDelta is run over incremental ADS (DeltaAggregatedResources): LDS and
// CDS wildcard, RDS and EDS subscribed by name as the listeners and
// clusters name them (subscribe and unsubscribe only the difference),
// every response ACKed by nonce. The client keeps the resources it was
// sent, so its view is the state of the world a sidecar would hold.
func (c *client) runDelta(ctx context.Context, conn grpc.ClientConnInterface, tr *tracker) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(256<<20))
	if err != nil {
		return fmt.Errorf("client %s: open delta ADS stream: %w", c.node.Id, err)
	}
	st := map[string]*deltaType{
		resourcev3.ListenerType: {have: map[string][]string{}},
		resourcev3.RouteType:    {have: map[string][]string{}, subscribed: map[string]struct{}{}},
		resourcev3.ClusterType:  {have: map[string][]string{}},
		resourcev3.EndpointType: {have: map[string][]string{}, subscribed: map[string]struct{}{}},
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: c.node, TypeUrl: resourcev3.ListenerType}); err != nil {
		return c.ended(ctx, err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType}); err != nil {
		return c.ended(ctx, err)
	}
	readyDone := false
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
		var refsOf func([]*anypb.Any) ([]string, error)
		var follow string // the type this one refers to
		switch typ {
		case resourcev3.ListenerType:
			c.recvd[0].Add(1)
			refsOf, follow = routeNames, resourcev3.RouteType
		case resourcev3.RouteType:
			c.recvd[1].Add(1)
		case resourcev3.ClusterType:
			c.recvd[2].Add(1)
			refsOf, follow = edsNames, resourcev3.EndpointType
		case resourcev3.EndpointType:
			c.recvd[3].Add(1)
		}
		for _, r := range resp.GetResources() {
			var refs []string
			if refsOf != nil {
				if refs, err = refsOf([]*anypb.Any{r.GetResource()}); err != nil {
					return c.deltaNACK(stream, resp, fmt.Errorf("%s: %w", r.GetName(), err))
				}
			}
			s.have[r.GetName()] = refs
		}
		for _, name := range resp.GetRemovedResources() {
			delete(s.have, name)
		}
		var newNames []string
		if follow != "" {
			newNames = s.referenced()
		}
		var hit *change
		if typ == resourcev3.EndpointType {
			if ch := tr.current(); ch != nil && c.subscribed(ch.name()) {
				raw := make([][]byte, len(resp.GetResources()))
				for i, r := range resp.GetResources() {
					raw[i] = r.GetResource().GetValue()
				}
				if ch.in(raw) {
					hit = ch
				}
			}
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil { // the ACK
			return c.ended(ctx, err)
		}
		now := time.Now()
		if hit != nil {
			hit.ack(c.id, now)
		}
		// Ready once both leaves of the tree are complete: routes and
		// endpoints are subscribed independently (after the listeners and
		// the clusters), so either may come last.
		complete := func(s *deltaType) bool { return len(s.subscribed) > 0 && len(s.have) == len(s.subscribed) }
		if (typ == resourcev3.EndpointType || typ == resourcev3.RouteType) && !readyDone &&
			complete(st[resourcev3.EndpointType]) && complete(st[resourcev3.RouteType]) {
			readyDone = true
			close(c.ready)
		}
		if follow != "" {
			f := st[follow]
			var sub, unsub []string
			want := make(map[string]struct{}, len(newNames))
			for _, n := range newNames {
				want[n] = struct{}{}
				if _, ok := f.subscribed[n]; !ok {
					sub = append(sub, n)
				}
			}
			for n := range f.subscribed {
				if _, ok := want[n]; !ok {
					unsub = append(unsub, n)
					delete(f.have, n)
				}
			}
			if len(sub) == 0 && len(unsub) == 0 {
				continue
			}
			f.subscribed = want
			if follow == resourcev3.EndpointType {
				c.setEDS(newNames)
			}
			slices.Sort(unsub)
			if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: follow, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
				return c.ended(ctx, err)
			}
		}
	}
}

func (c *client) deltaNACK(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, resp *discoveryv3.DeltaDiscoveryResponse, cause error) error {
	c.nacked.Add(1)
	_ = stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(),
		ErrorDetail: status.New(codes.InvalidArgument, cause.Error()).Proto()})
	return fmt.Errorf("client %s: NACK delta %s: %w", c.node.Id, resp.GetTypeUrl(), cause)
}

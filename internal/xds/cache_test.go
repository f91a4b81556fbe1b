package xds

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// edsSet is clusters and assignments for the named services, the
// assignment of each with one endpoint at addrs[name] (default 10.0.0.1).
func edsSet(names []string, addrs map[string]string) Resources {
	var r Resources
	for _, n := range names {
		r.Clusters = append(r.Clusters, EDSCluster(n, ClusterOptions{}))
		addr := addrs[n]
		if addr == "" {
			addr = "10.0.0.1"
		}
		r.Endpoints = append(r.Endpoints, LoadAssignment(n, Locality{Region: "r", Zone: "z", Addresses: []string{addr + ":80"}}))
	}
	return r
}

func startServer(t *testing.T) (*Server, *grpc.ClientConn) {
	t.Helper()
	srv, err := NewServer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	return srv, cc
}

type deltaStream struct {
	t *testing.T
	s discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func openDelta(t *testing.T, ctx context.Context, cc *grpc.ClientConn) *deltaStream {
	t.Helper()
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &deltaStream{t: t, s: s}
}

func (d *deltaStream) send(req *discoverygrpc.DeltaDiscoveryRequest) {
	d.t.Helper()
	if err := d.s.Send(req); err != nil {
		d.t.Fatal(err)
	}
}

// recv reads one response and ACKs it.
func (d *deltaStream) recv() *discoverygrpc.DeltaDiscoveryResponse {
	d.t.Helper()
	resp, err := d.s.Recv()
	if err != nil {
		d.t.Fatal(err)
	}
	d.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
	return resp
}

func names(resp *discoverygrpc.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.GetResources() {
		out = append(out, r.GetName())
	}
	return out
}

func versions(resp *discoverygrpc.DeltaDiscoveryResponse) map[string]string {
	out := map[string]string{}
	for _, r := range resp.GetResources() {
		out[r.GetName()] = r.GetVersion()
	}
	return out
}

var testNode = &corev3.Node{Id: "n1"}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// parkedWithout: key has a parked EDS delta watch whose subscription
// lacks name (the server has applied an unsubscription).
func parkedWithout(srv *Server, key, name string) bool {
	srv.cache.mu.Lock()
	defer srv.cache.mu.Unlock()
	k := srv.cache.keys[key]
	if k == nil {
		return false
	}
	for _, w := range k.delta[typeIndex(resourcev3.EndpointType)] {
		if _, ok := w.sub.SubscribedResources()[name]; !ok {
			return true
		}
	}
	for st := range k.streams { // incremental ADS (delta.go)
		if t := st.types[typeIndex(resourcev3.EndpointType)]; t.open && t.pending == "" {
			if !t.sub.has(name) {
				return true
			}
		}
	}
	return false
}

// TestDeltaSendsOnlyWhatChanged: a delta client gets each assignment once,
// then only the one that changed (with a new version; the others keep
// theirs), a removal for one that went, nothing for one it unsubscribed,
// and a reconnecting client that names the versions it holds gets only
// what it lacks.
func TestDeltaSendsOnlyWhatChanged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, cc := startServer(t)
	all := []string{"a", "b", "c"}
	if _, err := srv.Publish(ctx, "n1", edsSet(all, nil)); err != nil {
		t.Fatal(err)
	}
	d := openDelta(t, ctx, cc)
	d.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: all})
	first := d.recv()
	if got := names(first); !slices.Equal(got, all) {
		t.Fatalf("first response: %v, want %v", got, all)
	}
	v1 := versions(first)
	for _, r := range first.GetResources() {
		if want := cachev3.HashResource(r.GetResource().GetValue()); r.GetVersion() != want {
			t.Errorf("%s: version %q is not the hash of its bytes %q", r.GetName(), r.GetVersion(), want)
		}
	}

	steps := []struct {
		name        string
		publish     Resources
		unsubscribe []string
		wantNames   []string
		wantRemoved []string
	}{
		{name: "one changes", publish: edsSet(all, map[string]string{"b": "10.0.0.2"}), wantNames: []string{"b"}},
		{name: "one goes", publish: edsSet([]string{"a", "b"}, map[string]string{"b": "10.0.0.2"}), wantRemoved: []string{"c"}},
		{name: "an unsubscribed one changes with a subscribed one", unsubscribe: []string{"a"},
			publish: edsSet([]string{"a", "b"}, map[string]string{"a": "10.0.0.9", "b": "10.0.0.3"}), wantNames: []string{"b"}},
	}
	for _, st := range steps {
		if len(st.unsubscribe) > 0 {
			d.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesUnsubscribe: st.unsubscribe})
			waitFor(t, "the unsubscription to reach the cache", func() bool { return parkedWithout(srv, "n1", st.unsubscribe[0]) })
		}
		changed, err := srv.Publish(ctx, "n1", st.publish)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(changed, resourcev3.EndpointType) {
			t.Fatalf("%s: Publish changed %v, want EDS among them", st.name, changed)
		}
		resp := d.recv()
		if got := names(resp); !slices.Equal(got, st.wantNames) {
			t.Errorf("%s: sent %v, want %v", st.name, got, st.wantNames)
		}
		if got := resp.GetRemovedResources(); !slices.Equal(got, st.wantRemoved) {
			t.Errorf("%s: removed %v, want %v", st.name, got, st.wantRemoved)
		}
		for n, v := range versions(resp) {
			if v == v1[n] {
				t.Errorf("%s: %s was resent with its old version %q", st.name, n, v)
			}
		}
	}

	// A new stream that holds a at its current version and b at an old one.
	d2 := openDelta(t, ctx, cc)
	d2.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a", "b"}})
	cur := versions(d2.recv())
	d3 := openDelta(t, ctx, cc)
	d3.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a", "b"},
		InitialResourceVersions: map[string]string{"a": cur["a"], "b": v1["b"]}})
	if got := names(d3.recv()); !slices.Equal(got, []string{"b"}) {
		t.Errorf("reconnect holding a: sent %v, want [b]", got)
	}
}

// TestDeltaWildcard: a wildcard (no names) delta stream gets every
// cluster, then only additions and removals.
func TestDeltaWildcard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, cc := startServer(t)
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"a", "b"}, nil)); err != nil {
		t.Fatal(err)
	}
	d := openDelta(t, ctx, cc)
	d.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.ClusterType})
	if got := names(d.recv()); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first: %v", got)
	}
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"b", "c"}, nil)); err != nil {
		t.Fatal(err)
	}
	resp := d.recv()
	if got := names(resp); !slices.Equal(got, []string{"c"}) {
		t.Errorf("after a→c: sent %v, want [c]", got)
	}
	if got := resp.GetRemovedResources(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("after a→c: removed %v, want [a]", got)
	}
}

// TestSotWSubsetsAndShells: state-of-the-world streams get the named
// subset (grpc-go names the one listener it wants) or everything, in name
// order; two streams get distinct response shells (the server sets a nonce
// on each) over the same marshalled values.
func TestSotWSubsetsAndShells(t *testing.T) {
	c := newResourceCache(cachev3.IDHash{})
	ts, err := buildTypeState(resourcev3.EndpointType, nil, edsSet([]string{"c", "a", "b"}, nil).Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	var next [numTypes]*typeState
	next[typeIndex(resourcev3.EndpointType)] = ts
	c.setLocked("n1", next, "1")
	tests := []struct {
		name  string
		names []string
		want  []string
	}{
		{"wildcard", nil, []string{"a", "b", "c"}},
		{"all by name", []string{"c", "b", "a"}, []string{"a", "b", "c"}},
		{"subset", []string{"c", "a"}, []string{"a", "c"}},
		{"one and an unknown", []string{"zz", "b"}, []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make(chan cachev3.Response, 1)
			req := &discoverygrpc.DiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNames: tt.names}
			sub := subscriptionOf(tt.names)
			if _, err := c.CreateWatch(req, sub, out); err != nil {
				t.Fatal(err)
			}
			resp := <-out
			a, _ := resp.GetDiscoveryResponse()
			b, _ := resp.GetDiscoveryResponse()
			if a == b {
				t.Fatal("GetDiscoveryResponse returned the same shell twice: nonces would be shared")
			}
			var got []string
			for _, r := range a.GetResources() {
				if !slices.Contains(ts.all, r) {
					t.Errorf("resource value is a copy, not the shared one")
				}
				got = append(got, nameOfCLA(t, r.GetValue()))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("sent %v, want %v", got, tt.want)
			}
			if a.GetVersionInfo() != "1" || a.GetTypeUrl() != resourcev3.EndpointType {
				t.Errorf("version %q type %q", a.GetVersionInfo(), a.GetTypeUrl())
			}
			if len(resp.GetReturnedResources()) != len(tt.want) {
				t.Errorf("returned resources %v, want %d", resp.GetReturnedResources(), len(tt.want))
			}
		})
	}
}

func nameOfCLA(t *testing.T, b []byte) string {
	t.Helper()
	rs := edsSet([]string{"x"}, nil).Endpoints
	m := proto.Clone(rs[0])
	proto.Reset(m)
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	return cachev3.GetResourceName(m)
}

// subscriptionOf is a state-of-the-world subscription to names (wildcard
// when empty) that has been sent nothing.
type subscriptionOf []string

func (s subscriptionOf) ReturnedResources() map[string]string { return map[string]string{} }
func (s subscriptionOf) SubscribedResources() map[string]struct{} {
	m := map[string]struct{}{}
	for _, n := range s {
		m[n] = struct{}{}
	}
	return m
}
func (s subscriptionOf) IsWildcard() bool { return len(s) == 0 }

// TestPublishKeepsVersionsOfEqualContent: publishing equal resources in
// new messages changes nothing; a changed one bumps only its type.
func TestPublishKeepsVersionsOfEqualContent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, _ := startServer(t)
	tests := []struct {
		name string
		res  Resources
		want []resourcev3.Type
	}{
		{"first", edsSet([]string{"a", "b"}, nil), typeOrder},
		{"equal, new messages", edsSet([]string{"a", "b"}, nil), nil},
		{"one address", edsSet([]string{"a", "b"}, map[string]string{"a": "10.0.0.7"}), []resourcev3.Type{resourcev3.EndpointType}},
		{"unsorted input, same content", func() Resources {
			r := edsSet([]string{"a", "b"}, map[string]string{"a": "10.0.0.7"})
			slices.Reverse(r.Clusters)
			slices.Reverse(r.Endpoints)
			return r
		}(), nil},
	}
	for _, tt := range tests {
		got, err := srv.Publish(ctx, "n1", tt.res)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: changed %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestPublishRefusesBadSets: every problem names the resource and the fix.
func TestPublishRefusesBadSets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, _ := startServer(t)
	dup := edsSet([]string{"a"}, nil)
	dup.Endpoints = append(dup.Endpoints, dup.Endpoints[0])
	missing := edsSet([]string{"a"}, nil)
	missing.Endpoints = nil
	tests := []struct {
		name string
		res  Resources
		want string
	}{
		{"duplicate name", dup, `"a" is published twice`},
		{"cluster without assignment", missing, "inconsistent"},
		{"nameless", Resources{Clusters: []types.Resource{EDSCluster("", ClusterOptions{})}}, "has no name"},
	}
	for _, tt := range tests {
		_, err := srv.Publish(ctx, fmt.Sprintf("n-%s", tt.name), tt.res)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

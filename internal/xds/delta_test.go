package xds

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// recvNoAck reads one response without acknowledging it.
func (d *deltaStream) recvNoAck() *discoverygrpc.DeltaDiscoveryResponse {
	d.t.Helper()
	resp, err := d.s.Recv()
	if err != nil {
		d.t.Fatal(err)
	}
	return resp
}

func (d *deltaStream) ack(resp *discoverygrpc.DeltaDiscoveryResponse) {
	d.t.Helper()
	d.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
}

// pendingEDS: the stream of key has an unacknowledged EDS response.
func pendingEDS(srv *Server, key string) bool {
	srv.cache.mu.Lock()
	defer srv.cache.mu.Unlock()
	if k := srv.cache.keys[key]; k != nil {
		for st := range k.streams {
			if st.types[typeIndex(resourcev3.EndpointType)].pending != "" {
				return true
			}
		}
	}
	return false
}

// TestDeltaFlowControl: while a response is unacknowledged, publishes are
// held back and then sent as one response that brings the client to the
// newest state (a lagging cursor diffs against its own state); a
// subscription change is answered at once even then.
func TestDeltaFlowControl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, cc := startServer(t)
	all := []string{"a", "b", "c", "d"}
	if _, err := srv.Publish(ctx, "n1", edsSet(all, nil)); err != nil {
		t.Fatal(err)
	}
	d := openDelta(t, ctx, cc)
	d.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a", "b", "c"}})
	d.recv()

	// b changes: pushed, not ACKed yet.
	if _, err := srv.Publish(ctx, "n1", edsSet(all, map[string]string{"b": "10.0.0.2"})); err != nil {
		t.Fatal(err)
	}
	r1 := d.recvNoAck()
	if got := names(r1); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("first push: %v, want [b]", got)
	}
	// Two more publishes while r1 is unacknowledged: c changes, then a
	// changes and d (not subscribed) changes.
	if _, err := srv.Publish(ctx, "n1", edsSet(all, map[string]string{"b": "10.0.0.2", "c": "10.0.0.3"})); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Publish(ctx, "n1", edsSet(all, map[string]string{"a": "10.0.0.4", "b": "10.0.0.2", "c": "10.0.0.3", "d": "10.0.0.5"})); err != nil {
		t.Fatal(err)
	}
	if !pendingEDS(srv, "n1") {
		t.Fatal("no unacknowledged response recorded")
	}
	// A subscription change is answered at once, unacknowledged or not:
	// d, at its newest version, and the held-back a and c with it.
	d.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"d"}})
	r2 := d.recvNoAck()
	if got := names(r2); !slices.Equal(got, []string{"a", "c", "d"}) {
		t.Fatalf("after subscribing d: %v, want [a c d]", got)
	}
	d.ack(r1) // stale: r2 is still unacknowledged
	if _, err := srv.Publish(ctx, "n1", edsSet(all, map[string]string{"a": "10.0.0.6", "b": "10.0.0.2", "c": "10.0.0.3", "d": "10.0.0.5"})); err != nil {
		t.Fatal(err)
	}
	d.ack(r2)
	r3 := d.recv()
	if got := names(r3); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the ACK: %v, want [a]", got)
	}
}

// TestDeltaInternsNames: subscribed names share the cache's strings.
func TestDeltaInternsNames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, cc := startServer(t)
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"alpha", "beta"}, nil)); err != nil {
		t.Fatal(err)
	}
	d := openDelta(t, ctx, cc)
	d.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"alpha", "beta", "gamma"}})
	d.recv()
	srv.cache.mu.Lock()
	defer srv.cache.mu.Unlock()
	k := srv.cache.keys["n1"]
	ts := k.types[typeIndex(resourcev3.EndpointType)]
	for st := range k.streams {
		for _, name := range st.types[typeIndex(resourcev3.EndpointType)].sub.names {
			e, ok := ts.byName[name]
			if !ok {
				continue // gamma: not published, kept as sent
			}
			if unsafe.StringData(name) != unsafe.StringData(e.name) {
				t.Errorf("subscribed %q is a copy, not the cache's string", name)
			}
		}
	}
}

type recordingCallbacks struct {
	serverv3.CallbackFuncs
	mu     sync.Mutex
	ids    []int64
	nodes  []string // node id seen on each request
	resps  int
	closed int
	refuse string // node id to refuse
}

func newRecordingCallbacks(refuse string) *recordingCallbacks {
	r := &recordingCallbacks{refuse: refuse}
	r.CallbackFuncs = serverv3.CallbackFuncs{
		DeltaStreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.ids = append(r.ids, id)
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.nodes = append(r.nodes, req.GetNode().GetId())
			if req.GetNode().GetId() == r.refuse {
				return status.Error(codes.InvalidArgument, "node "+r.refuse+" refused")
			}
			return nil
		},
		StreamDeltaResponseFunc: func(int64, *discoverygrpc.DeltaDiscoveryRequest, *discoverygrpc.DeltaDiscoveryResponse) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.resps++
		},
		DeltaStreamClosedFunc: func(int64, *corev3.Node) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.closed++
		},
	}
	return r
}

// TestDeltaCallbacks: stream ids apart from state-of-the-world ones, the
// node carried to later requests, a refusal ends the stream with its
// status, and every stream is reported closed.
func TestDeltaCallbacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb := newRecordingCallbacks("bad")
	srv, err := NewServer(Options{Address: "127.75.0.1:18470", Callbacks: cb})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"a"}, nil)); err != nil {
		t.Fatal(err)
	}
	d := openDelta(t, ctx, cc)
	d.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}})
	d.recv() // and its ACK carries no node

	bad := openDelta(t, ctx, cc)
	bad.send(&discoverygrpc.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "bad"}, TypeUrl: resourcev3.EndpointType})
	if _, err := bad.s.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("refused stream ended with %v, want InvalidArgument", err)
	}
	waitFor(t, "the ACK to reach the callbacks", func() bool {
		cb.mu.Lock()
		defer cb.mu.Unlock()
		return len(cb.nodes) == 3
	})
	cc.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	cb.mu.Lock()
	defer cb.mu.Unlock()
	for _, id := range cb.ids {
		if id < deltaStreamIDBase {
			t.Errorf("delta stream id %d is below %d: it could collide with a state-of-the-world stream's", id, int64(deltaStreamIDBase))
		}
	}
	if want := []string{"n1", "n1", "bad"}; !slices.Equal(slices.Sorted(slices.Values(cb.nodes)), slices.Sorted(slices.Values(want))) {
		t.Errorf("nodes on requests %v, want %v (the ACK carries the stream's node)", cb.nodes, want)
	}
	if cb.resps != 1 || cb.closed != 2 || len(cb.ids) != 2 {
		t.Errorf("responses %d closed %d opened %d, want 1 2 2", cb.resps, cb.closed, len(cb.ids))
	}
}

// TestDeltaUnknownKeyWaits: a stream whose key has nothing published gets
// its first response when the key is published; a stream's key goes when
// its last stream does.
func TestDeltaUnknownKeyWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, cc := startServer(t)
	sctx, scancel := context.WithCancel(ctx)
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	d := &deltaStream{t: t, s: s}
	d.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.ClusterType})
	waitFor(t, "the stream to register", func() bool {
		srv.cache.mu.Lock()
		defer srv.cache.mu.Unlock()
		return srv.cache.keys["n1"] != nil && len(srv.cache.keys["n1"].streams) == 1
	})
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"x", "y"}, nil)); err != nil {
		t.Fatal(err)
	}
	if got := names(d.recv()); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("first: %v, want [x y]", got)
	}
	srv.Forget("n1")
	scancel()
	waitFor(t, "the key to go with its stream", func() bool {
		srv.cache.mu.Lock()
		defer srv.cache.mu.Unlock()
		return srv.cache.keys["n1"] == nil
	})
}

// deltaBench is a cache with n assignments under one key and a stream
// subscribed to all of them, synced.
func deltaBench(b *testing.B, n int) (*resourceCache, *deltaConn, []string, func(i int) [numTypes]*typeState) {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%05d.ns|80", i)
	}
	c := newResourceCache(cachev3.IDHash{})
	ti := typeIndex(resourcev3.EndpointType)
	ts, err := buildTypeState(resourcev3.EndpointType, nil, edsSet(names, nil).Endpoints)
	if err != nil {
		b.Fatal(err)
	}
	var next [numTypes]*typeState
	next[ti] = ts
	c.mu.Lock()
	c.setLocked("k", next, "1")
	c.mu.Unlock()
	st := &deltaConn{key: "k"}
	c.register(st)
	if resp := c.deltaRequest(st, ti, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names}); len(resp.GetResources()) != n {
		b.Fatalf("first response: %d resources, want %d", len(resp.GetResources()), n)
	}
	st.types[ti].pending = ""
	// States where one assignment changed, prepared outside the timer.
	prev := ts
	change := func(i int) [numTypes]*typeState {
		addrs := map[string]string{names[i%n]: fmt.Sprintf("10.1.%d.%d", (i/250)%250, i%250+1)}
		s, err := buildTypeState(resourcev3.EndpointType, prev, edsSet(names, addrs).Endpoints)
		if err != nil {
			b.Fatal(err)
		}
		prev = s
		var next [numTypes]*typeState
		next[ti] = s
		return next
	}
	return c, st, names, change
}

// BenchmarkDeltaPushOneChange: the per-stream cost of one changed
// assignment out of 1,000 subscribed (what each of N streams pays per
// change, under the cache's lock).
func BenchmarkDeltaPushOneChange(b *testing.B) {
	c, st, _, change := deltaBench(b, 1000)
	ti := typeIndex(resourcev3.EndpointType)
	synced := st.types[ti].synced
	c.mu.Lock()
	c.setLocked("k", change(1), "2")
	c.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st.types[ti].synced, st.types[ti].pending = synced, ""
		if resp := c.deltaPush(st, ti); len(resp.GetResources()) != 1 {
			b.Fatalf("push %d: %d resources, want 1", i, len(resp.GetResources()))
		}
	}
}

// TestDeltaSubscriptionChanges: each subscription change is answered with
// exactly what the client newly lacks.
func TestDeltaSubscriptionChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, cc := startServer(t)
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"a", "b", "c"}, nil)); err != nil {
		t.Fatal(err)
	}
	d := openDelta(t, ctx, cc)
	d.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}})
	if got := names(d.recv()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first: %v, want [a]", got)
	}
	steps := []struct {
		name       string
		sub, unsub []string
		want       []string
	}{
		{"add a name", []string{"b"}, nil, []string{"b"}},
		{"add an unknown name and a held one", []string{"zz", "a"}, nil, nil},
		{"drop and re-add", []string{"c"}, []string{"b"}, []string{"c"}},
		{"re-add a dropped name", []string{"b"}, nil, []string{"b"}},
		{"drop all, then wildcard", []string{"*"}, []string{"a", "b", "c"}, []string{"a", "b", "c"}},
	}
	for _, st := range steps {
		d.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: st.sub, ResourceNamesUnsubscribe: st.unsub})
		if st.want == nil {
			// Nothing is sent; a later publish proves the stream is alive.
			continue
		}
		if got := names(d.recv()); !slices.Equal(got, st.want) {
			t.Errorf("%s: sent %v, want %v", st.name, got, st.want)
		}
	}
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"a", "b", "c", "d"}, nil)); err != nil {
		t.Fatal(err)
	}
	if got := names(d.recv()); !slices.Equal(got, []string{"d"}) {
		t.Errorf("wildcard after a publish adding d: sent %v, want [d]", got)
	}
}

// TestDeltaNackAndReconnect: a NACK is not resent (the cursor stays at the
// rejected state, as go-control-plane did: the next change goes out), and
// a reconnecting client that names a resource which has since gone is
// told it was removed.
func TestDeltaNackAndReconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, cc := startServer(t)
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"a", "b"}, nil)); err != nil {
		t.Fatal(err)
	}
	d := openDelta(t, ctx, cc)
	d.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a", "b"}})
	first := d.recvNoAck()
	d.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: first.GetNonce(),
		ErrorDetail: status.New(codes.InvalidArgument, "rejected").Proto()})
	waitFor(t, "the NACK to clear the pending response", func() bool { return !pendingEDS(srv, "n1") })
	if _, err := srv.Publish(ctx, "n1", edsSet([]string{"a", "b"}, map[string]string{"b": "10.0.0.2"})); err != nil {
		t.Fatal(err)
	}
	if got := names(d.recv()); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after a NACK and a change of b: sent %v, want [b]", got)
	}

	d2 := openDelta(t, ctx, cc)
	d2.send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a", "gone"},
		InitialResourceVersions: map[string]string{"a": versions(first)["a"], "gone": "v0"}})
	resp := d2.recv()
	if got := names(resp); len(got) != 0 {
		t.Errorf("reconnect holding a current a: sent %v, want nothing", got)
	}
	if got := resp.GetRemovedResources(); !slices.Equal(got, []string{"gone"}) {
		t.Errorf("reconnect holding a resource that went: removed %v, want [gone]", got)
	}
}

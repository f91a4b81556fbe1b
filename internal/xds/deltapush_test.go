package xds

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// TestDeltaSharedPush: streams up to date with the previous state and
// subscribed to the same names get one response encoded once (one memo
// entry per subscription), each with its own nonce, decoded by a stock
// gRPC client; a stream with another subscription gets its own; callbacks
// see every response with the nonce the client got.
func TestDeltaSharedPush(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var seen []string // nonces the callbacks saw
	cb := serverv3.CallbackFuncs{StreamDeltaResponseFunc: func(_ int64, _ *discoverygrpc.DeltaDiscoveryRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, resp.GetNonce())
	}}
	srv, err := NewServer(Options{Address: "127.64.0.1:18401", Callbacks: cb})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cc.Close()
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	}()
	all := []string{"a", "b", "c"}
	if _, err := srv.Publish(ctx, "n1", edsSet(all, nil)); err != nil {
		t.Fatal(err)
	}
	subs := [][]string{{"a", "b"}, {"a", "b"}, {"b", "a"}, {"a", "c"}}
	streams := make([]*deltaStream, len(subs))
	for i, sub := range subs {
		streams[i] = openDelta(t, ctx, cc)
		streams[i].send(&discoverygrpc.DeltaDiscoveryRequest{Node: testNode, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: sub})
		if got := names(streams[i].recv()); len(got) != 2 {
			t.Fatalf("stream %d: first response %v, want its 2 names", i, got)
		}
	}
	waitFor(t, "every ACK", func() bool { return !pendingEDS(srv, "n1") })

	if _, err := srv.Publish(ctx, "n1", edsSet(all, map[string]string{"b": "10.0.0.2"})); err != nil {
		t.Fatal(err)
	}
	var nonces []string // per stream: each stream's second response
	for i := range 3 {
		resp := streams[i].recv()
		if got := names(resp); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("stream %d: push %v, want [b]", i, got)
		}
		nonces = append(nonces, resp.GetNonce())
	}
	waitFor(t, "the ACKs of the push", func() bool { return !pendingEDS(srv, "n1") })
	if _, err := srv.Publish(ctx, "n1", edsSet(all, map[string]string{"b": "10.0.0.2", "c": "10.0.0.3"})); err != nil {
		t.Fatal(err)
	}
	resp := streams[3].recv() // its first push is c's: b's change was not its
	if got := names(resp); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("stream 3: push %v, want [c]", got)
	}
	nonces = append(nonces, resp.GetNonce())
	if want := []string{"2", "2", "2", "2"}; !slices.Equal(nonces, want) {
		t.Fatalf("nonces %v, want %v (each stream numbers its own responses)", nonces, want)
	}
	memo := func() (n int) {
		srv.cache.mu.RLock()
		defer srv.cache.mu.RUnlock()
		ts := srv.cache.keys["n1"].types[typeIndex(resourcev3.EndpointType)]
		ts.pushes.Range(func(k, v any) bool {
			n++
			if sp := v.(*sharedPush); k.(pushKey).sub.has("c") != (sp.resp != nil) {
				t.Errorf("memo for %v: response %v; want one exactly when c is subscribed (c changed)", k.(pushKey).sub.names, sp.resp)
			}
			return true
		})
		return n
	}
	// Streams 0-2 lack nothing of the last change; the push workers move
	// them to it through the shared push too.
	waitFor(t, "one shared push per distinct subscription", func() bool { return memo() == 2 })
	waitFor(t, "the callbacks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 8 // 4 first responses, 3 pushes of b, 1 of c
	})
	mu.Lock()
	defer mu.Unlock()
	for _, n := range seen {
		if n == "" {
			t.Errorf("a callback saw a response without its nonce: %v", seen)
		}
	}
}

// TestADSCodecEncodedDelta: the shared bytes plus a stream's nonce field
// decode to the response with that nonce; other messages are protobuf.
func TestADSCodecEncodedDelta(t *testing.T) {
	ts, err := buildTypeState(resourcev3.EndpointType, nil, edsSet([]string{"a", "b"}, nil).Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	resp := &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: "7", TypeUrl: resourcev3.EndpointType,
		Resources: []*discoverygrpc.Resource{ts.entries[0].deltaResource(), ts.entries[1].deltaResource()}, RemovedResources: []string{"gone"}}
	sp, err := newSharedPush(resp)
	if err != nil {
		t.Fatal(err)
	}
	codec := newADSCodec()
	for _, tc := range []struct{ name, nonce string }{
		{"short", "1"},
		{"long", "18446744073709551615"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bufs, err := codec.Marshal(newEncodedDelta(sp, tc.nonce))
			if err != nil {
				t.Fatal(err)
			}
			var got discoverygrpc.DeltaDiscoveryResponse
			if err := codec.Unmarshal(bufs, &got); err != nil {
				t.Fatal(err)
			}
			if want := withNonce(resp, tc.nonce); !proto.Equal(&got, want) {
				t.Errorf("decoded %v, want %v", &got, want)
			}
		})
	}
	bufs, err := codec.Marshal(withNonce(resp, "3"))
	if err != nil {
		t.Fatal(err)
	}
	var got discoverygrpc.DeltaDiscoveryResponse
	if err := codec.Unmarshal(bufs, &got); err != nil || !proto.Equal(&got, withNonce(resp, "3")) {
		t.Errorf("plain message: %v, %v", &got, err)
	}
}

// pushFixture is a cache (no push workers: the test drives kick) with
// assignments a, b under key k and a stream subscribed to both, up to
// date, whose sends are recorded.
func pushFixture(t *testing.T) (*resourceCache, *deltaConn, *[]any, func(addr string)) {
	t.Helper()
	c := newResourceCache(cachev3.IDHash{})
	c.push.max = 0
	ti := typeIndex(resourcev3.EndpointType)
	publish := func(addr string) {
		ts, err := buildTypeState(resourcev3.EndpointType, c.keysTypeLocked("k", ti), edsSet([]string{"a", "b"}, map[string]string{"a": addr}).Endpoints)
		if err != nil {
			t.Fatal(err)
		}
		var next [numTypes]*typeState
		next[ti] = ts
		c.mu.Lock()
		c.setLocked("k", next, addr)
		c.mu.Unlock()
	}
	publish("10.0.0.1")
	var sent []any
	st := &deltaConn{key: "k", srv: &deltaServer{cache: c}, send: func(m any) error { sent = append(sent, m); return nil }}
	c.register(st)
	if resp := c.deltaRequest(st, ti, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a", "b"}}); len(resp.GetResources()) != 2 {
		t.Fatalf("first response %v", resp)
	}
	st.types[ti].pending = ""
	publish("10.0.0.9")
	return c, st, &sent, publish
}

// keysTypeLocked is key's current state of type ti (nil: none); the
// caller needs no lock while nothing else runs.
func (c *resourceCache) keysTypeLocked(key string, ti int) *typeState {
	if k := c.keys[key]; k != nil {
		return k.types[ti]
	}
	return nil
}

// TestDeltaKick: a push worker's kick sends the shared push; one that
// finds the stream busy leaves the push to the holder; one on a stream
// whose unacknowledged bytes reach workerSendLimit sends nothing, and the
// handler (after the ACK) does.
func TestDeltaKick(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, c *resourceCache, st *deltaConn, sent *[]any, publish func(string))
	}{
		{"worker sends", func(t *testing.T, _ *resourceCache, st *deltaConn, sent *[]any, _ func(string)) {
			if err := st.kick(false, true); err != nil {
				t.Fatal(err)
			}
			if len(*sent) != 1 {
				t.Fatalf("sent %d, want 1", len(*sent))
			}
			if _, ok := (*sent)[0].(*encodedDelta); !ok {
				t.Errorf("sent %T, want the shared encoding", (*sent)[0])
			}
		}},
		{"busy: the holder pushes", func(t *testing.T, _ *resourceCache, st *deltaConn, sent *[]any, _ func(string)) {
			st.mu.Lock()
			if err := st.kick(false, true); err != nil {
				t.Fatal(err)
			}
			if len(*sent) != 0 || !st.dirty.Load() {
				t.Fatalf("sent %d dirty %v while the lock was held, want 0 true", len(*sent), st.dirty.Load())
			}
			st.mu.Unlock()
			if err := st.kick(true, false); err != nil { // what the handler does after unlocking
				t.Fatal(err)
			}
			if len(*sent) != 1 {
				t.Fatalf("sent %d after the holder's kick, want 1", len(*sent))
			}
		}},
		{"over the limit: the ACK's handler pushes", func(t *testing.T, _ *resourceCache, st *deltaConn, sent *[]any, _ func(string)) {
			lds := &st.types[typeIndex(resourcev3.ListenerType)]
			lds.open, lds.pending, lds.pendingBytes = true, "7", workerSendLimit
			if err := st.kick(false, true); err != nil {
				t.Fatal(err)
			}
			if len(*sent) != 0 {
				t.Fatalf("a worker sent %d with %d bytes unacknowledged", len(*sent), workerSendLimit)
			}
			st.mu.Lock()
			st.srv.cache.deltaRequest(st, typeIndex(resourcev3.ListenerType), &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResponseNonce: "7"})
			err := st.pushLocked(true)
			st.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if len(*sent) != 1 {
				t.Fatalf("sent %d after the ACK, want 1", len(*sent))
			}
		}},
		{"published again while queued: the worker pushes", func(t *testing.T, c *resourceCache, st *deltaConn, sent *[]any, publish func(string)) {
			c.push.enqueue(st)                           // queued, as a publish leaves it
			if err := st.kick(true, false); err != nil { // its handler pushes first
				t.Fatal(err)
			}
			st.types[typeIndex(resourcev3.EndpointType)].pending = "" // ACKed
			publish("10.0.0.10")                                      // st still sits in the queue
			c.push.mu.Lock()
			c.push.workers++
			c.push.mu.Unlock()
			c.push.work() // the worker that takes st
			if len(*sent) != 2 {
				t.Fatalf("sent %d, want 2 (the handler's, then the worker's for the second publish)", len(*sent))
			}
		}},
		{"a response sent while one is unacknowledged adds its bytes", func(t *testing.T, _ *resourceCache, st *deltaConn, _ *[]any, _ func(string)) {
			ti := typeIndex(resourcev3.ListenerType)
			resp := func() *discoverygrpc.DeltaDiscoveryResponse {
				return &discoverygrpc.DeltaDiscoveryResponse{TypeUrl: resourcev3.ListenerType, RemovedResources: []string{"x"}}
			}
			st.sentLocked(ti, resp())
			one := st.types[ti].pendingBytes
			st.sentLocked(ti, resp())
			if got := st.types[ti].pendingBytes; got != 2*one {
				t.Fatalf("pending bytes %d after two unacknowledged responses of %d", got, one)
			}
			st.srv.cache.deltaRequest(st, ti, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResponseNonce: st.types[ti].pending})
			st.sentLocked(ti, resp())
			if got := st.types[ti].pendingBytes; got != one {
				t.Fatalf("pending bytes %d after the ACK and one more response, want %d", got, one)
			}
		}},
		{"closed: nothing", func(t *testing.T, _ *resourceCache, st *deltaConn, sent *[]any, _ func(string)) {
			st.closed = true
			if err := st.kick(false, true); err != nil || len(*sent) != 0 {
				t.Fatalf("closed stream: sent %d, err %v", len(*sent), err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st, sent, publish := pushFixture(t)
			tc.run(t, c, st, sent, publish)
		})
	}
}

// BenchmarkDeltaPushShared: the per-stream cost of a push that streams
// share (one changed assignment of 1,000 subscribed): the memo lookup,
// the cursor, and the stream's encoding (nonce field) — what each of N
// streams pays per change besides gRPC's transport.
func BenchmarkDeltaPushShared(b *testing.B) {
	c, st, _, change := deltaBench(b, 1000)
	ti := typeIndex(resourcev3.EndpointType)
	synced := st.types[ti].synced
	c.mu.Lock()
	c.setLocked("k", change(1), "2")
	c.mu.Unlock()
	codec := newADSCodec()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st.types[ti].synced, st.types[ti].pending = synced, ""
		sp, nonce, err := c.deltaPushShared(st, ti)
		if err != nil || sp == nil || len(sp.resp.GetResources()) != 1 {
			b.Fatalf("push %d: %v %v", i, sp, err)
		}
		if _, err := codec.Marshal(newEncodedDelta(sp, nonce)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeltaPushOwnEncoding: the same push computed and encoded per
// stream (what every stream paid before the shared push).
func BenchmarkDeltaPushOwnEncoding(b *testing.B) {
	c, st, _, change := deltaBench(b, 1000)
	ti := typeIndex(resourcev3.EndpointType)
	synced := st.types[ti].synced
	c.mu.Lock()
	c.setLocked("k", change(1), "2")
	c.mu.Unlock()
	codec := newADSCodec()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st.types[ti].synced, st.types[ti].pending = synced, ""
		resp := c.deltaPush(st, ti)
		if len(resp.GetResources()) != 1 {
			b.Fatalf("push %d: %d resources, want 1", i, len(resp.GetResources()))
		}
		if _, err := codec.Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
}

package xds

import (
	"errors"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// deltaServer serves incremental ADS (DeltaAggregatedResources) straight
// from resourceCache, in place of go-control-plane's delta server, whose
// per-stream state is a map of every resource name the client was sent to
// its version, per type, rebuilt or copied per watch: at 1,000 sidecars
// subscribed to 1,000 clusters that was the largest part of the control
// plane's heap.
//
// Here a stream keeps, per type, a cursor: the typeState it last brought
// the client up to date with (synced) and the names it subscribes to. The
// client holds exactly the subscribed resources of synced, at synced's
// versions, so what it lacks of the current state is computed from the two
// states: when synced is the state just before the current one, that is
// the current state's changed names, O(changed) per change and client.
// Old states are immutable for the names and versions they hold, so a
// stream that lags several publishes behind diffs against its own cursor.
//
// Flow control: at most one response per type is unacknowledged; a
// publish that arrives meanwhile is sent when the ACK (or NACK) comes, as
// one response that brings the client to the newest state (so a slow
// client gets fewer, larger responses, not a queue). A request that
// changes the subscription is answered at once.
//
// Concurrency: each stream's handler goroutine receives and answers its
// requests; a publish queues the streams of its key for a few push workers
// (pusher, deltapush.go: GOMAXPROCS goroutines, started per publish), so a
// change costs no wake-up of 1,000 stream goroutines. A stream's cursor and
// sends are serialised by its mutex (deltaConn.mu); a worker never waits
// for it or for a send (deltaConn.kick, workerSendLimit). The cache's mu is
// held for writing to register a stream and to publish, and for reading
// while a response is computed (cheap: O(changed) in the steady state).
// Sends happen outside mu.
//
// Encoding: a stream that was up to date with the state before the current
// one, with the same subscription as others (subSets are interned), lacks
// what they lack: that response is computed and marshalled once per state
// and subscription (deltaPushShared, typeState.pushes) and each stream
// sends the shared bytes plus its own nonce field (adsCodec, codec.go).
type deltaServer struct {
	cache     *resourceCache
	callbacks serverv3.Callbacks // nil: none
	// sawResponses: callbacks looks at the responses sent, so a shared
	// push gets a per-stream copy for it (wantsResponses).
	sawResponses bool
	nextID       atomic.Int64
}

// deltaStreamIDBase keeps delta stream ids apart from go-control-plane's
// state-of-the-world stream ids (its own counter from 1): the callbacks
// see one id space.
const deltaStreamIDBase = 1 << 40

// adsServer is go-control-plane's server with Causeway's delta ADS.
type adsServer struct {
	serverv3.Server
	delta *deltaServer
}

// DeltaAggregatedResources serves one incremental ADS stream.
func (a adsServer) DeltaAggregatedResources(s discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.serve(s)
}

// deltaConn is one stream's state; registered under its key in the
// cache (keyState.streams) from its first request until it ends.
//
// mu serialises the stream's cursor and its sends between the stream's
// handler (requests) and the push workers (publishes): whoever holds it
// computes and sends. A publish never waits for it: a push worker that
// finds it held sets dirty and moves on, and the holder runs the push when
// it lets go (kick).
type deltaConn struct {
	id    int64
	key   string
	srv   *deltaServer    // nil in unit tests that drive the cursor directly
	send  func(any) error // the stream's SendMsg (adsCodec)
	dirty atomic.Bool     // a push is wanted (a publish changed a type under key)
	// queued: the stream is in the push workers' queue (pusher).
	queued atomic.Bool

	mu      sync.Mutex
	closed  bool   // the handler has returned: send no more
	sendErr error  // a push worker's failed send; the handler returns it
	nonce   uint64 // the last response's
	types   [numTypes]streamType
}

// sentLocked numbers resp (the next nonce) and marks it unacknowledged;
// nil stays nil.
func (st *deltaConn) sentLocked(ti int, resp *discoverygrpc.DeltaDiscoveryResponse) *discoverygrpc.DeltaDiscoveryResponse {
	if resp == nil {
		return nil
	}
	st.nonce++
	resp.Nonce = strconv.FormatUint(st.nonce, 10)
	t := &st.types[ti]
	if t.pending == "" {
		t.pendingBytes = 0
	}
	// A response sent while another is unacknowledged (a subscription
	// change is answered at once) adds to it: the ACK of the newer one
	// acknowledges both.
	t.pendingBytes += approxSize(resp)
	t.pending = resp.Nonce
	return resp
}

// approxSize bounds from above the bytes resp puts on the stream, close
// enough for workerSendLimit (the resources' bytes and names, plus slack).
func approxSize(resp *discoverygrpc.DeltaDiscoveryResponse) int {
	n := 64 + len(resp.GetSystemVersionInfo()) + len(resp.GetTypeUrl())
	for _, r := range resp.GetResources() {
		n += 32 + len(r.GetName()) + len(r.GetVersion()) + len(r.GetResource().GetValue()) + len(r.GetResource().GetTypeUrl())
	}
	for _, name := range resp.GetRemovedResources() {
		n += 8 + len(name)
	}
	return n
}

// workerSendLimit: a push worker sends on a stream only while the bytes of
// its unacknowledged responses are below this. grpc-go's Send blocks only
// when the stream's write quota (64 KiB of bytes queued but not yet
// written) is used up, and bytes not yet written are at most the
// unacknowledged ones (a client ACKs a response after receiving all of
// it), so a worker's Send never blocks on a slow client; a stream over the
// limit is pushed by its own handler when the ACK comes.
const workerSendLimit = 32 << 10

func (st *deltaConn) unackedBytesLocked() int {
	n := 0
	for ti := range numTypes {
		if st.types[ti].pending != "" {
			n += st.types[ti].pendingBytes
		}
	}
	return n
}

// streamType is a stream's cursor for one type.
type streamType struct {
	open         bool // the client has asked for this type
	wildcard     bool
	sub          *subSet    // explicit names (nil: none); shared by streams with the same set, names interned with the cache's
	synced       *typeState // the client holds sub (or all, wildcard) ∩ synced at synced's versions
	pending      string     // nonce of the unacknowledged response; "" none
	pendingBytes int        // approxSize of that response
	lastReq      *discoverygrpc.DeltaDiscoveryRequest
	answered     bool // a wildcard stream's first response (sent even when empty) went out
}

func (d *deltaServer) serve(s discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ctx := s.Context()
	st := &deltaConn{id: deltaStreamIDBase + d.nextID.Add(1), srv: d, send: s.SendMsg}
	var node *corev3.Node
	if d.callbacks != nil {
		if err := d.callbacks.OnDeltaStreamOpen(ctx, st.id, resourcev3.AnyType); err != nil {
			return err
		}
		defer func() { d.callbacks.OnDeltaStreamClosed(st.id, node) }()
	}
	registered := false
	defer func() {
		if registered {
			d.cache.unregister(st)
		}
		// A push worker may hold st (queued before unregister): it finds
		// the stream closed. Taking mu waits for a send in progress, so
		// none happens after the handler returns.
		st.mu.Lock()
		st.closed = true
		st.mu.Unlock()
	}()
	for {
		req, err := s.Recv()
		if err != nil {
			if e := st.takeSendErr(); e != nil {
				return e
			}
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if req.GetNode() != nil {
			node = req.GetNode()
		} else {
			req.Node = node
		}
		if d.callbacks != nil {
			if err := d.callbacks.OnStreamDeltaRequest(st.id, req); err != nil {
				return err
			}
		}
		ti := typeIndex(req.GetTypeUrl())
		if ti < 0 {
			continue // a type this server never serves: nothing will come
		}
		if !registered {
			st.key = d.cache.hash.ID(node)
			d.cache.register(st)
			registered = true
		}
		st.mu.Lock()
		err = st.sendErr
		if err == nil {
			if resp := d.cache.deltaRequest(st, ti, req); resp != nil {
				err = st.sendLocked(ti, resp)
			}
		}
		if err == nil {
			// The ACK may have freed a type a publish is waiting on.
			err = st.pushLocked(true)
		}
		st.mu.Unlock()
		if err != nil {
			return err
		}
		if err := st.kick(true, false); err != nil {
			return err
		}
	}
}

func (st *deltaConn) takeSendErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sendErr
}

func (st *deltaConn) sendLocked(ti int, resp *discoverygrpc.DeltaDiscoveryResponse) error {
	if st.closed {
		return nil
	}
	if cb := st.srv.callbacks; cb != nil {
		cb.OnStreamDeltaResponse(st.id, st.types[ti].lastReq, resp)
	}
	return st.send(resp)
}

// sendSharedLocked sends sp's encoded bytes with nonce (adsCodec).
func (st *deltaConn) sendSharedLocked(ti int, sp *sharedPush, nonce string) error {
	if st.closed {
		return nil
	}
	if st.srv.sawResponses {
		st.srv.callbacks.OnStreamDeltaResponse(st.id, st.types[ti].lastReq, withNonce(sp.resp, nonce))
	}
	return st.send(newEncodedDelta(sp, nonce))
}

// pushLocked sends, for every open type without an unacknowledged
// response, what the client lacks of the current state. From a push
// worker (handler false) it does nothing while the stream's
// unacknowledged bytes are at workerSendLimit (see there): the ACK's
// handler pushes.
func (st *deltaConn) pushLocked(handler bool) error {
	if st.closed || st.sendErr != nil || st.srv == nil {
		return nil
	}
	for ti := range numTypes {
		t := &st.types[ti]
		if !t.open || t.pending != "" {
			continue
		}
		if !handler && st.unackedBytesLocked() >= workerSendLimit {
			return nil
		}
		sp, nonce, err := st.srv.cache.deltaPushShared(st, ti)
		if err != nil {
			return err
		}
		if sp != nil {
			if sp.resp != nil {
				if err := st.sendSharedLocked(ti, sp, nonce); err != nil {
					return err
				}
			}
			continue
		}
		if resp := st.srv.cache.deltaPush(st, ti); resp != nil {
			if err := st.sendLocked(ti, resp); err != nil {
				return err
			}
		}
	}
	return nil
}

// kick runs a wanted push (want: ask for one) unless another goroutine
// holds mu, which then runs it when it lets go. handler: the caller is the
// stream's handler (its sends may block; a worker's must not). A worker's
// send error is kept for the handler (sendErr), which ends the stream with
// it at its next request; the stream gets no pushes meanwhile.
func (st *deltaConn) kick(handler, want bool) error {
	if want {
		st.dirty.Store(true)
	}
	for st.dirty.Load() {
		if !st.mu.TryLock() {
			return nil // the holder checks dirty after unlocking
		}
		var err error
		if st.dirty.Swap(false) {
			err = st.pushLocked(handler)
			if err != nil && !handler {
				st.sendErr = err
				err = nil
			}
		}
		st.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// register puts st under its key, so publishes wake it.
func (c *resourceCache) register(st *deltaConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keyLocked(st.key)
	if k.streams == nil {
		k.streams = map[*deltaConn]struct{}{}
	}
	k.streams[st] = struct{}{}
}

func (c *resourceCache) unregister(st *deltaConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.keys[st.key]; k != nil {
		delete(k.streams, st)
		if k.idle() {
			delete(c.keys, st.key)
		}
	}
}

// wakeLocked queues every delta stream under k for a push (pusher).
func (k *keyState) wakeLocked(p *pusher) {
	for st := range k.streams {
		p.enqueue(st)
	}
	p.start()
}

// deltaRequest applies req (an ACK, a NACK, a subscription change, or the
// type's first request) to st's cursor for type ti and returns the
// response to send now, if any.
func (c *resourceCache) deltaRequest(st *deltaConn, ti int, req *discoverygrpc.DeltaDiscoveryRequest) *discoverygrpc.DeltaDiscoveryResponse {
	c.mu.RLock() // st is this stream's own; the cache is only read
	defer c.mu.RUnlock()
	t := &st.types[ti]
	t.lastReq = req
	if n := req.GetResponseNonce(); n != "" && n == t.pending {
		t.pending, t.pendingBytes = "", 0 // ACK or NACK of the last response: the client holds it either way
	}
	var cur *typeState
	if k := c.keys[st.key]; k != nil {
		cur = k.types[ti]
	}
	first := !t.open
	wasWildcard := t.wildcard
	if first {
		t.open = true
		t.wildcard = len(req.GetResourceNamesSubscribe()) == 0
	}
	var add, drop []string
	for _, name := range req.GetResourceNamesSubscribe() {
		if name == "*" {
			t.wildcard = true
			continue
		}
		if cur != nil {
			if e, ok := cur.byName[name]; ok {
				name = e.name // intern: one string per name, not one per stream
			}
		}
		add = append(add, name)
	}
	for _, name := range req.GetResourceNamesUnsubscribe() {
		if name == "*" {
			t.wildcard = false
			continue
		}
		drop = append(drop, name)
	}
	var added []string // names newly subscribed, sorted
	if len(add) > 0 || len(drop) > 0 {
		var names []string
		names, added = applySub(t.sub, add, drop)
		if t.sub == nil || !slices.Equal(names, t.sub.names) {
			t.sub = c.subs.intern(names)
		}
	}
	initial := req.GetInitialResourceVersions()
	changesSub := first || len(added) > 0 || len(req.GetResourceNamesUnsubscribe()) > 0 || len(initial) > 0 || t.wildcard != wasWildcard
	if cur == nil || (!changesSub && t.pending != "") {
		return nil
	}
	if !changesSub && t.synced == cur {
		return nil
	}
	held := newHeld(t, wasWildcard || (first && t.wildcard), added, initial)
	if first {
		held.synced = nil // nothing held but the initial versions
	}
	resp := c.diffLocked(t, cur, held, ti, added)
	if resp == nil && t.wildcard && !t.answered {
		// The first wildcard response goes out even when empty, so the
		// client can finish initialising.
		resp = &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: cur.version, TypeUrl: typeOrder[ti]}
	}
	if t.wildcard && resp != nil {
		t.answered = true
	}
	return st.sentLocked(ti, resp)
}

// deltaPush is the response that brings st's type ti to the current
// state after a publish, or nil when it lacks nothing.
func (c *resourceCache) deltaPush(st *deltaConn, ti int) *discoverygrpc.DeltaDiscoveryResponse {
	c.mu.RLock() // st is this stream's own; the cache is only read
	defer c.mu.RUnlock()
	t := &st.types[ti]
	var cur *typeState
	if k := c.keys[st.key]; k != nil {
		cur = k.types[ti]
	}
	if cur == nil || t.synced == cur {
		return nil
	}
	resp := c.diffLocked(t, cur, newHeld(t, t.wildcard, nil, nil), ti, nil)
	if resp == nil && t.wildcard && !t.answered {
		resp = &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: cur.version, TypeUrl: typeOrder[ti]}
	}
	if t.wildcard && resp != nil {
		t.answered = true
	}
	return st.sentLocked(ti, resp)
}

// deltaPushShared is deltaPush for the common case, a stream that was up
// to date with the state just before the current one (and past its first
// wildcard response): its response depends only on the current state and
// the subscription, so it is computed and encoded once per state and
// subscription (cur.pushes) and shared by every such stream. sp is nil
// when the stream is not in that case (use deltaPush); sp.resp is nil when
// there is nothing to send (the cursor moved all the same).
func (c *resourceCache) deltaPushShared(st *deltaConn, ti int) (sp *sharedPush, nonce string, err error) {
	c.mu.RLock() // st is this stream's own; the cache is only read
	defer c.mu.RUnlock()
	t := &st.types[ti]
	var cur *typeState
	if k := c.keys[st.key]; k != nil {
		cur = k.types[ti]
	}
	if cur == nil || t.synced == nil || cur.prevID == "" || t.synced.id != cur.prevID || (t.wildcard && !t.answered) {
		return nil, "", nil
	}
	key := pushKey{sub: t.sub, wildcard: t.wildcard}
	if t.wildcard {
		key.sub = nil // a wildcard stream's explicit names do not matter
	}
	if v, ok := cur.pushes.Load(key); ok {
		sp = v.(*sharedPush)
	} else {
		scratch := streamType{wildcard: t.wildcard, sub: t.sub, synced: t.synced}
		if sp, err = newSharedPush(c.diffLocked(&scratch, cur, newHeld(&scratch, scratch.wildcard, nil, nil), ti, nil)); err != nil {
			return nil, "", err
		}
		if v, loaded := cur.pushes.LoadOrStore(key, sp); loaded {
			sp = v.(*sharedPush) // another stream computed it meanwhile: the same
		}
	}
	t.synced = cur
	if sp.resp == nil {
		return sp, "", nil
	}
	st.nonce++
	t.pending = strconv.FormatUint(st.nonce, 10)
	t.pendingBytes = len(sp.body) + 32
	return sp, t.pending, nil
}

// held answers what the client holds of a type before a response: the
// subscribed (before this request) resources of its cursor, or the
// versions it named when it (re)connected.
type held struct {
	synced      *typeState
	wasWildcard bool
	sub         *subSet
	added       []string // newly subscribed by this request, sorted
	initial     map[string]string
}

func newHeld(t *streamType, wasWildcard bool, added []string, initial map[string]string) held {
	return held{synced: t.synced, wasWildcard: wasWildcard, sub: t.sub, added: added, initial: initial}
}

func (h *held) version(name string) (string, bool) {
	if v, ok := h.initial[name]; ok {
		return v, true
	}
	if h.synced == nil {
		return "", false
	}
	if !h.wasWildcard {
		if !h.sub.has(name) {
			return "", false
		}
		if _, ok := slices.BinarySearch(h.added, name); ok {
			return "", false
		}
	}
	e, ok := h.synced.byName[name]
	if !ok {
		return "", false
	}
	return e.version, true
}

// diffLocked is what the client of t lacks of cur (changed or new
// resources it subscribes to, and removals of ones it holds), or nil for
// nothing; t's cursor moves to cur either way.
func (c *resourceCache) diffLocked(t *streamType, cur *typeState, h held, ti int, added []string) *discoverygrpc.DeltaDiscoveryResponse {
	var resp *discoverygrpc.DeltaDiscoveryResponse
	seen := map[string]struct{}(nil)
	consider := func(name string) {
		if !t.wildcard {
			if !t.sub.has(name) {
				return
			}
		}
		if seen != nil {
			if _, dup := seen[name]; dup {
				return
			}
			seen[name] = struct{}{}
		}
		hv, hok := h.version(name)
		if e, ok := cur.byName[name]; ok {
			if !hok || hv != e.version {
				if resp == nil {
					resp = &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: cur.version, TypeUrl: typeOrder[ti]}
				}
				resp.Resources = append(resp.Resources, e.deltaResource())
			}
		} else if hok {
			if resp == nil {
				resp = &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: cur.version, TypeUrl: typeOrder[ti]}
			}
			resp.RemovedResources = append(resp.RemovedResources, name)
		}
	}
	switch {
	case h.initial == nil && h.synced == cur && h.wasWildcard == t.wildcard:
		for _, name := range added { // only newly subscribed names can be lacking
			consider(name)
		}
	case h.initial == nil && h.synced != nil && cur.prevID != "" && h.synced.id == cur.prevID && h.wasWildcard == t.wildcard:
		if len(added) > 0 {
			seen = map[string]struct{}{}
		}
		for _, name := range cur.changed {
			consider(name)
		}
		for _, name := range added {
			consider(name)
		}
	case t.wildcard:
		seen = map[string]struct{}{}
		for _, e := range cur.entries {
			consider(e.name)
		}
		if h.synced != nil {
			for _, e := range h.synced.entries {
				consider(e.name) // removals
			}
		}
		for _, name := range sortedKeys(h.initial) {
			consider(name)
		}
	default:
		if t.sub != nil {
			for _, name := range t.sub.names {
				consider(name)
			}
		}
	}
	t.synced = cur
	return resp
}

func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// defaultGRPCOptions tune the ADS server for many idle streams with small
// messages; Options.GRPCOptions come after them and win.
//
//   - Static flow-control windows (1 MiB per stream, 16 MiB per
//     connection): setting them turns off grpc-go's BDP estimator, which
//     otherwise answers every ACK that follows a quiet period with a ping
//     of its own (one more write and one more read per client per change,
//     for a window that never needs to grow: the server receives only
//     small requests).
//
// (grpc-go already shares write buffers between connections by default.)
func defaultGRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(16 << 20),
		// Protobuf, with delta pushes encoded once for all streams
		// (codec.go). Options.GRPCOptions must not replace the codec.
		grpc.ForceServerCodecV2(newADSCodec()),
		// Stop returns once every stream handler has returned, so the
		// stream-closed callbacks (and the control plane's stream table)
		// have run by then.
		grpc.WaitForHandlers(true),
	}
}

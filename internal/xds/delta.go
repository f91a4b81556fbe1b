package xds

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
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
// Concurrency: one goroutine per stream receives, the stream's own
// goroutine decides and sends. The cache's mu is held for writing to
// register a stream and to publish, and for reading while a stream computes
// its response (cheap: O(changed) in the steady state), so the streams
// woken by a publish compute in parallel; a stream's cursor is written
// only by its own goroutine. Marshalling and sending happen outside mu. A publish wakes a
// stream through a one-slot channel and never blocks.
type deltaServer struct {
	cache     *resourceCache
	callbacks serverv3.Callbacks // nil: none
	nextID    atomic.Int64
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
type deltaConn struct {
	id    int64
	key   string
	wake  chan struct{} // one slot: a publish changed a type under key
	nonce uint64        // the last response's
	types [numTypes]streamType
}

// sentLocked numbers resp (the next nonce) and marks it unacknowledged;
// nil stays nil.
func (st *deltaConn) sentLocked(ti int, resp *discoverygrpc.DeltaDiscoveryResponse) *discoverygrpc.DeltaDiscoveryResponse {
	if resp == nil {
		return nil
	}
	st.nonce++
	resp.Nonce = strconv.FormatUint(st.nonce, 10)
	st.types[ti].pending = resp.Nonce
	return resp
}

// streamType is a stream's cursor for one type.
type streamType struct {
	open     bool // the client has asked for this type
	wildcard bool
	sub      *subSet    // explicit names (nil: none); shared by streams with the same set, names interned with the cache's
	synced   *typeState // the client holds sub (or all, wildcard) ∩ synced at synced's versions
	pending  string     // nonce of the unacknowledged response; "" none
	lastReq  *discoverygrpc.DeltaDiscoveryRequest
	answered bool // a wildcard stream's first response (sent even when empty) went out
}

func (d *deltaServer) serve(s discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ctx := s.Context()
	st := &deltaConn{id: deltaStreamIDBase + d.nextID.Add(1), wake: make(chan struct{}, 1)}
	var node *corev3.Node
	if d.callbacks != nil {
		if err := d.callbacks.OnDeltaStreamOpen(ctx, st.id, resourcev3.AnyType); err != nil {
			return err
		}
		defer func() { d.callbacks.OnDeltaStreamClosed(st.id, node) }()
	}
	reqs := make(chan *discoverygrpc.DeltaDiscoveryRequest, 8)
	recvErr := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			req, err := s.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	registered := false
	defer func() {
		if registered {
			d.cache.unregister(st)
		}
	}()
	send := func(ti int, resp *discoverygrpc.DeltaDiscoveryResponse) error {
		if d.callbacks != nil {
			d.callbacks.OnStreamDeltaResponse(st.id, st.types[ti].lastReq, resp)
		}
		return s.Send(resp)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case req := <-reqs:
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
			if resp := d.cache.deltaRequest(st, ti, req); resp != nil {
				if err := send(ti, resp); err != nil {
					return err
				}
			}
		case <-st.wake:
			for ti := range numTypes {
				if !st.types[ti].open || st.types[ti].pending != "" {
					continue
				}
				if resp := d.cache.deltaPush(st, ti); resp != nil {
					if err := send(ti, resp); err != nil {
						return err
					}
				}
			}
		}
	}
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

// wakeLocked tells every delta stream under k that a type changed.
func (k *keyState) wakeLocked() {
	for st := range k.streams {
		select {
		case st.wake <- struct{}{}:
		default:
		}
	}
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
		t.pending = "" // ACK or NACK of the last response: the client holds it either way
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
		// Stop returns once every stream handler has returned, so the
		// stream-closed callbacks (and the control plane's stream table)
		// have run by then.
		grpc.WaitForHandlers(true),
	}
}

package xds

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// resourceCache is the cache.Cache behind Server: go-control-plane's
// server (serverv3) speaks the protocol, state of the world and delta,
// and asks this cache for watches; the cache holds the published
// resources per snapshot key and answers the watches.
//
// It exists for one reason: go-control-plane's SnapshotCache marshals
// every resource again for every response (a fresh cachedResource per
// response), so a state-of-the-world change to one of 1,000 assignments
// re-marshals all 1,000 for every client, and its delta path rebuilds a
// full version map per watch and per type on every snapshot. Here:
//
//   - every resource is marshalled once when it is published (deterministic
//     bytes, the same for every key that publishes the same pointer) and an
//     unchanged resource keeps its entry, its *anypb.Any and its version
//     from one publish to the next;
//   - a resource's version is the SHA-256 of its bytes, so it is stable
//     across publishes and control-plane restarts (a reconnecting delta
//     client's initial_resource_versions match);
//   - a state-of-the-world response is a fresh DiscoveryResponse shell (the
//     server sets its nonce) over the shared, read-only *anypb.Any values;
//   - a delta watch that was up to date with the previous publish is
//     answered from the list of names that publish changed: O(changed),
//     not O(resources), per client.
//
// Incremental ADS streams do not use the watches: delta.go serves them
// from the cache's states with a cursor per stream and type (keyState.
// streams); the watches below serve state-of-the-world streams and the
// per-type delta services.
//
// Concurrency: mu guards everything. Responses are sent on the server's
// per-stream channels while mu is held; those channels are buffered for
// every type and a stream has at most one open watch per type, so the
// sends do not block (go-control-plane's SnapshotCache relies on the same).
//
// Delta subscriptions: the map a delta response hands the server as the
// client's returned resources is the stream's own map, updated in place
// with the versions sent (copying it per response would make every change
// cost O(resources) per client). That map belongs to one stream; the cache
// writes it only while it holds that stream's open watch and under mu, and
// the server touches it only after cancelling the watch (which takes mu)
// or after receiving the response, so the two never race.
type resourceCache struct {
	hash cachev3.NodeHash
	subs *subTable // delta streams' subscriptions, shared by content (deltasub.go)
	push *pusher   // sends delta streams' pushes after a publish (deltapush.go)

	mu      sync.RWMutex // delta streams compute their responses under RLock (delta.go)
	keys    map[string]*keyState
	nextID  int64
	stateID uint64 // numbers typeStates
}

// typeIndex numbers the five types the cache serves; -1 for any other.
func typeIndex(typeURL string) int {
	for i, t := range typeOrder {
		if t == typeURL {
			return i
		}
	}
	return -1
}

const numTypes = 5

type keyState struct {
	types [numTypes]*typeState
	sotw  [numTypes]map[int64]*sotwWatch
	delta [numTypes]map[int64]*deltaWatch
	// streams are the incremental ADS streams of this key (delta.go).
	streams map[*deltaConn]struct{}
}

func (k *keyState) idle() bool {
	if len(k.streams) > 0 {
		return false
	}
	for i := range numTypes {
		if k.types[i] != nil || len(k.sotw[i]) > 0 || len(k.delta[i]) > 0 {
			return false
		}
	}
	return true
}

// entry is one published resource, marshalled once.
type entry struct {
	name    string
	res     types.Resource // what was published: the same pointer again reuses the entry without marshalling
	any     *anypb.Any     // shared by every response; never modified
	version string         // SHA-256 of any.Value
	dres    *discoverygrpc.Resource
}

// deltaResource is e as a delta response's resource, built with the
// entry and shared by every response (read-only).
func (e *entry) deltaResource() *discoverygrpc.Resource { return e.dres }

func newEntry(name string, res types.Resource, a *anypb.Any, version string) *entry {
	return &entry{name: name, res: res, any: a, version: version,
		dres: &discoverygrpc.Resource{Name: name, Version: version, Resource: a}}
}

// typeState is one type's resources under one key.
type typeState struct {
	id      string   // unique in the cache: what a delta stream was last brought up to date with
	prevID  string   // the state changed is relative to ("" for none)
	version string   // state-of-the-world version of the whole set
	entries []*entry // sorted by name
	byName  map[string]*entry
	all     []*anypb.Any // entries' values in the same order, shared by full responses
	// changed names what differs from the state published before this one
	// under the same key: added, changed and removed names, sorted.
	changed []string
	// renamed: the set of names differs from the previous state's (only
	// then can a reference between types break).
	renamed bool
	// pushes memoises, per pushKey, the response of a delta stream that
	// was up to date with the state before this one (codec.go).
	pushes sync.Map // pushKey → *sharedPush
}

type sotwWatch struct {
	req *discoverygrpc.DiscoveryRequest
	sub cachev3.Subscription
	out chan cachev3.Response
}

type deltaWatch struct {
	req *discoverygrpc.DeltaDiscoveryRequest
	sub cachev3.Subscription
	out chan cachev3.DeltaResponse
}

// syncedKey is the entry of a delta stream's returned-resources map that
// holds the id of the state the stream was last brought up to date with
// (no resource has an empty name). It lives and dies with the stream's
// subscription, so an ACK (a request that changes no subscription) of a
// stream that is up to date costs O(1), and one that is one publish behind
// costs O(what that publish changed), instead of a walk over every
// subscribed resource.
const syncedKey = ""

func newResourceCache(hash cachev3.NodeHash) *resourceCache {
	return &resourceCache{hash: hash, keys: map[string]*keyState{}, subs: newSubTable(), push: newPusher()}
}

func (c *resourceCache) keyLocked(key string) *keyState {
	k := c.keys[key]
	if k == nil {
		k = &keyState{}
		c.keys[key] = k
	}
	return k
}

// buildTypeState turns rs into the next state of a type after prev (nil:
// none), reusing prev's entries for resources that did not change (same
// pointer, or same bytes). It returns prev itself when nothing changed.
// typeURL is the Any type URL of the values.
func buildTypeState(typeURL string, prev *typeState, rs []types.Resource) (*typeState, error) {
	if prev != nil && len(prev.entries) == len(rs) {
		same := true // the translator reuses unchanged messages: pointers decide
		for i, r := range rs {
			if prev.entries[i].res != r {
				same = false
				break
			}
		}
		if same {
			return prev, nil
		}
	}
	next := &typeState{entries: make([]*entry, 0, len(rs)), byName: make(map[string]*entry, len(rs))}
	for i, r := range rs {
		name := cachev3.GetResourceName(r)
		if name == "" {
			return nil, fmt.Errorf("%s resource %d (%T) has no name: every resource needs one", typeURL, i, r)
		}
		if _, dup := next.byName[name]; dup {
			return nil, fmt.Errorf("%s resource %q is published twice: names must be unique per type", typeURL, name)
		}
		var old *entry
		if prev != nil {
			old = prev.byName[name]
		}
		e := old
		if old == nil || old.res != r {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("%s resource %q: marshal: %w", typeURL, name, err)
			}
			if old != nil && bytes.Equal(old.any.Value, b) {
				// Same content, new pointer: keep the shared bytes and the
				// version, remember the pointer so its next publish is free.
				e = &entry{name: name, res: r, any: old.any, version: old.version, dres: old.dres}
			} else {
				e = newEntry(name, r, &anypb.Any{TypeUrl: typeURL, Value: b}, cachev3.HashResource(b))
			}
		}
		next.entries = append(next.entries, e)
		next.byName[name] = e
	}
	if !slices.IsSortedFunc(next.entries, compareEntries) {
		slices.SortFunc(next.entries, compareEntries)
	}
	if prev != nil && slices.EqualFunc(prev.entries, next.entries, func(a, b *entry) bool { return a.name == b.name && a.version == b.version }) {
		// Same content: keep prev's version, adopt the new pointers.
		prev.entries, prev.byName = next.entries, next.byName
		return prev, nil
	}
	next.all = make([]*anypb.Any, len(next.entries))
	for i, e := range next.entries {
		next.all[i] = e.any
	}
	next.renamed = prev == nil || !slices.EqualFunc(prev.entries, next.entries, func(a, b *entry) bool { return a.name == b.name })
	if prev != nil {
		next.prevID = prev.id
		next.changed = diffNames(prev, next)
	} else {
		next.changed = make([]string, len(next.entries))
		for i, e := range next.entries {
			next.changed[i] = e.name
		}
	}
	return next, nil
}

func compareEntries(a, b *entry) int {
	switch {
	case a.name < b.name:
		return -1
	case a.name > b.name:
		return 1
	}
	return 0
}

// diffNames are the names added, changed or removed from a to b, sorted.
func diffNames(a, b *typeState) []string {
	var out []string
	i, j := 0, 0
	for i < len(a.entries) || j < len(b.entries) {
		switch {
		case j == len(b.entries) || (i < len(a.entries) && a.entries[i].name < b.entries[j].name):
			out = append(out, a.entries[i].name) // removed
			i++
		case i == len(a.entries) || b.entries[j].name < a.entries[i].name:
			out = append(out, b.entries[j].name) // added
			j++
		default:
			if a.entries[i].version != b.entries[j].version {
				out = append(out, b.entries[j].name)
			}
			i++
			j++
		}
	}
	return out
}

// setLocked installs the new states of the changed types under key (nil
// entries of next are unchanged types) with version, and answers the open
// watches of those types.
func (c *resourceCache) setLocked(key string, next [numTypes]*typeState, version string) {
	k := c.keyLocked(key)
	for i, ts := range next {
		if ts == nil {
			continue
		}
		ts.version = version
		c.stateID++
		ts.id = strconv.FormatUint(c.stateID, 10)
		k.types[i] = ts
		for id, w := range k.sotw[i] {
			if w.req.GetVersionInfo() != ts.version {
				w.out <- sotwResponseFor(w.req, w.sub, ts)
				delete(k.sotw[i], id)
			}
		}
		for id, w := range k.delta[i] {
			if resp := deltaResponseFor(w.req, w.sub, ts, false); resp != nil {
				w.out <- resp
				delete(k.delta[i], id)
			}
		}
	}
	k.wakeLocked(c.push)
}

// forgetLocked drops key's resources; open watches stay open (their
// streams are closing) and get nothing more.
func (c *resourceCache) forgetLocked(key string) {
	k := c.keys[key]
	if k == nil {
		return
	}
	k.types = [numTypes]*typeState{}
	if k.idle() {
		delete(c.keys, key)
	}
}

// CreateWatch implements cache.ConfigWatcher for state-of-the-world
// streams: answer at once when the request's version is not the current
// one or it subscribes to a resource the stream has not been sent, else
// park the watch until a publish changes the type.
func (c *resourceCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	key := c.hash.ID(req.GetNode())
	ti := typeIndex(req.GetTypeUrl())
	c.mu.Lock()
	defer c.mu.Unlock()
	if ti < 0 {
		return func() {}, nil // a type this server never serves: nothing will come
	}
	k := c.keyLocked(key)
	if ts := k.types[ti]; ts != nil && (req.GetVersionInfo() != ts.version || unsentSubscribed(sub, ts)) {
		out <- sotwResponseFor(req, sub, ts)
		return func() {}, nil
	}
	c.nextID++
	id := c.nextID
	if k.sotw[ti] == nil {
		k.sotw[ti] = map[int64]*sotwWatch{}
	}
	k.sotw[ti][id] = &sotwWatch{req: req, sub: sub, out: out}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if k := c.keys[key]; k != nil {
			delete(k.sotw[ti], id)
			if k.idle() {
				delete(c.keys, key)
			}
		}
	}, nil
}

// unsentSubscribed: the stream subscribes to a resource that exists and
// that it was not sent (a new name at an unchanged version).
func unsentSubscribed(sub cachev3.Subscription, ts *typeState) bool {
	known := sub.ReturnedResources()
	if sub.IsWildcard() {
		for _, e := range ts.entries {
			if _, ok := known[e.name]; !ok {
				return true
			}
		}
		return false
	}
	for name := range sub.SubscribedResources() {
		if _, ok := known[name]; !ok {
			if _, ok := ts.byName[name]; ok {
				return true
			}
		}
	}
	return false
}

// sotwResponse is a state-of-the-world response over shared values.
type sotwResponse struct {
	req       *discoverygrpc.DiscoveryRequest
	version   string
	resources []*anypb.Any // shared and read-only
	returned  map[string]string
}

// sotwResponseFor is the subscribed subset of ts: the shared full list
// when the stream subscribes to every resource (or to all, by wildcard).
func sotwResponseFor(req *discoverygrpc.DiscoveryRequest, sub cachev3.Subscription, ts *typeState) *sotwResponse {
	r := &sotwResponse{req: req, version: ts.version, returned: make(map[string]string, len(ts.entries))}
	if sub.IsWildcard() {
		r.resources = ts.all
		for _, e := range ts.entries {
			r.returned[e.name] = ts.version
		}
		return r
	}
	subscribed := sub.SubscribedResources()
	var picked []*anypb.Any // nil while every entry so far is subscribed
	for i, e := range ts.entries {
		if _, ok := subscribed[e.name]; ok {
			r.returned[e.name] = ts.version
			if picked != nil {
				picked = append(picked, e.any)
			}
			continue
		}
		if picked == nil {
			picked = make([]*anypb.Any, i, len(subscribed))
			copy(picked, ts.all[:i])
		}
	}
	if picked == nil {
		r.resources = ts.all
	} else {
		r.resources = picked
	}
	return r
}

// GetDiscoveryResponse is a fresh shell each time: the server sets the
// nonce on what it gets, and the values under it are shared.
func (r *sotwResponse) GetDiscoveryResponse() (*discoverygrpc.DiscoveryResponse, error) {
	return &discoverygrpc.DiscoveryResponse{VersionInfo: r.version, Resources: r.resources, TypeUrl: r.req.GetTypeUrl()}, nil
}
func (r *sotwResponse) GetRequest() *discoverygrpc.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)                 { return r.version, nil }
func (r *sotwResponse) GetResponseVersion() string                  { return r.version }
func (r *sotwResponse) GetReturnedResources() map[string]string     { return r.returned }
func (r *sotwResponse) GetContext() context.Context                 { return context.Background() }

// CreateDeltaWatch implements cache.ConfigWatcher for delta streams:
// answer at once with what the client lacks (changed, new, removed
// resources of its subscription), else park the watch.
func (c *resourceCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	key := c.hash.ID(req.GetNode())
	ti := typeIndex(req.GetTypeUrl())
	c.mu.Lock()
	defer c.mu.Unlock()
	if ti < 0 {
		return func() {}, nil
	}
	k := c.keyLocked(key)
	ts := k.types[ti]
	if ts != nil {
		changesSubscription := len(req.GetResourceNamesSubscribe()) > 0 || len(req.GetResourceNamesUnsubscribe()) > 0 || len(req.GetInitialResourceVersions()) > 0
		if resp := deltaResponseFor(req, sub, ts, changesSubscription); resp != nil {
			out <- resp
			return func() {}, nil
		}
	}
	c.nextID++
	id := c.nextID
	if k.delta[ti] == nil {
		k.delta[ti] = map[int64]*deltaWatch{}
	}
	k.delta[ti][id] = &deltaWatch{req: req, sub: sub, out: out}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if k := c.keys[key]; k != nil {
			delete(k.delta[ti], id)
			if k.idle() {
				delete(c.keys, key)
			}
		}
	}, nil
}

// deltaResponseFor is what the client of sub lacks of ts, or nil when it
// lacks nothing (except the first wildcard request of a stream, answered
// even when empty so the client can finish initialising). Unless full,
// a stream whose synced state (syncedKey) is ts is up to date and one
// whose synced state is the one before ts lacks at most ts.changed. The
// stream's returned map is updated in place (see resourceCache).
func deltaResponseFor(req *discoverygrpc.DeltaDiscoveryRequest, sub cachev3.Subscription, ts *typeState, full bool) *deltaResponse {
	returned := sub.ReturnedResources()
	subscribed := sub.SubscribedResources()
	wildcard := sub.IsWildcard()
	first := wildcard && req.GetResponseNonce() == ""
	synced, hasSynced := returned[syncedKey]
	if !full && !first && hasSynced && synced == ts.id {
		return nil
	}
	r := &deltaResponse{req: req, version: ts.version, returned: returned}
	consider := func(name string) {
		if !wildcard {
			if _, ok := subscribed[name]; !ok {
				return
			}
		}
		prev, known := returned[name]
		if e, ok := ts.byName[name]; ok {
			if !known || prev != e.version {
				r.resources = append(r.resources, e.deltaResource())
				returned[name] = e.version
			}
		} else if known {
			r.removed = append(r.removed, name)
			delete(returned, name)
		}
	}
	switch {
	case !full && hasSynced && ts.prevID != "" && synced == ts.prevID:
		for _, name := range ts.changed {
			consider(name)
		}
	case wildcard:
		for _, e := range ts.entries {
			consider(e.name)
		}
		var gone []string
		for name := range returned {
			if _, ok := ts.byName[name]; !ok && name != syncedKey {
				gone = append(gone, name)
			}
		}
		slices.Sort(gone)
		for _, name := range gone {
			r.removed = append(r.removed, name)
			delete(returned, name)
		}
	default:
		wanted := make([]string, 0, len(subscribed))
		for name := range subscribed {
			if name != syncedKey {
				wanted = append(wanted, name)
			}
		}
		slices.Sort(wanted)
		for _, name := range wanted {
			consider(name)
		}
	}
	returned[syncedKey] = ts.id
	if len(r.resources) == 0 && len(r.removed) == 0 && !first {
		return nil
	}
	return r
}

// deltaResponse is a delta response over shared values.
type deltaResponse struct {
	req       *discoverygrpc.DeltaDiscoveryRequest
	version   string
	resources []*discoverygrpc.Resource // fresh wrappers over shared *anypb.Any
	removed   []string
	returned  map[string]string // the stream's own map (see resourceCache)
}

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoverygrpc.DeltaDiscoveryResponse, error) {
	return &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: r.version, Resources: r.resources,
		RemovedResources: r.removed, TypeUrl: r.req.GetTypeUrl()}, nil
}
func (r *deltaResponse) GetDeltaRequest() *discoverygrpc.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                     { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                            { return r.version }
func (r *deltaResponse) GetNextVersionMap() map[string]string                  { return r.returned }
func (r *deltaResponse) GetReturnedResources() map[string]string               { return r.returned }
func (r *deltaResponse) GetContext() context.Context                           { return context.Background() }

// Fetch implements cache.ConfigFetcher (REST xDS): the subscribed subset
// when the request's version is not the current one.
func (c *resourceCache) Fetch(_ context.Context, req *cachev3.Request) (cachev3.Response, error) {
	key := c.hash.ID(req.GetNode())
	ti := typeIndex(req.GetTypeUrl())
	c.mu.Lock()
	defer c.mu.Unlock()
	var ts *typeState
	if k := c.keys[key]; k != nil && ti >= 0 {
		ts = k.types[ti]
	}
	if ts == nil {
		return nil, fmt.Errorf("xds fetch: nothing published for %q type %s", key, req.GetTypeUrl())
	}
	if req.GetVersionInfo() == ts.version {
		return nil, &types.SkipFetchError{}
	}
	sub := fetchSubscription(req.GetResourceNames())
	return sotwResponseFor(req, sub, ts), nil
}

type fetchSubscription []string

func (f fetchSubscription) ReturnedResources() map[string]string { return nil }
func (f fetchSubscription) SubscribedResources() map[string]struct{} {
	m := make(map[string]struct{}, len(f))
	for _, n := range f {
		m[n] = struct{}{}
	}
	return m
}
func (f fetchSubscription) IsWildcard() bool { return len(f) == 0 || slices.Contains(f, "*") }

var _ cachev3.Cache = (*resourceCache)(nil)

package xdsclient

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/causewaymesh/causeway/proxy/config"
	clusterv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/cluster/v3"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
	endpointv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/endpoint/v3"
	listenerv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/listener/v3"
	routev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/route/v3"
	tlsv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/service/discovery/v3"
)

// Type URLs of the resources the client subscribes to.
const (
	ListenerTypeURL = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteTypeURL    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterTypeURL  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointTypeURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	SecretTypeURL   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// kind is one of the five resource types, in Snapshot.Version order.
type kind uint8

const (
	lds kind = iota
	rds
	cds
	eds
	sds
	numKinds
)

func (k kind) typeURL() string {
	switch k {
	case lds:
		return ListenerTypeURL
	case rds:
		return RouteTypeURL
	case cds:
		return ClusterTypeURL
	case eds:
		return EndpointTypeURL
	}
	return SecretTypeURL
}

func (k kind) String() string {
	return [...]string{"lds", "rds", "cds", "eds", "sds"}[k]
}

// wildcard reports whether k is subscribed without names, and whether a
// response replaces the whole set (state of the world for LDS and CDS).
func (k kind) wildcard() bool { return k == lds || k == cds }

func kindOf(typeURL string) (kind, bool) {
	for k := range numKinds {
		if k.typeURL() == typeURL {
			return k, true
		}
	}
	return 0, false
}

// entry is one accepted resource: its wire bytes (to skip translating an
// unchanged resource again) and its translation.
type entry struct {
	raw []byte
	val any
}

type typeState struct {
	version    string // last accepted
	nonce      string // last received on the current stream
	received   bool   // a response was accepted at least once
	resources  map[string]entry
	want       []string // sorted names subscribed to (rds, eds, sds)
	sent       bool     // a request went out on the current stream
	lastErr    string
	lastErrAt  time.Time
	lastUpdate time.Time
}

// state is everything the client knows. It is owned by the goroutine in
// Client.Run; nothing else touches it.
type state struct {
	static   *config.Snapshot
	local    []string // Options.LocalSecrets
	node     *corev3.Node
	log      *slog.Logger
	now      func() time.Time
	warming  time.Duration
	onUpdate func(*config.Snapshot)
	observer Observer

	types     [numKinds]typeState
	queue     []*discoveryv3.DiscoveryRequest // requests waiting for the sender
	nodeSent  bool
	connected bool

	dirty       bool // something changed since the last published snapshot
	warm        *time.Timer
	warmExpired bool
}

func newState(o *Options) *state {
	s := &state{
		static:   o.Static,
		local:    o.LocalSecrets,
		node:     o.Node,
		log:      o.Logger,
		now:      o.Now,
		warming:  o.WarmingTimeout,
		onUpdate: o.OnUpdate,
		observer: o.Observer,
		dirty:    true,
	}
	if s.static == nil {
		s.static = &config.Snapshot{}
	}
	for k := range s.types {
		s.types[k].resources = map[string]entry{}
	}
	s.resubscribe()
	return s
}

// onConnect starts a new stream: every subscription is sent again with the
// last accepted version, so the server can skip what the client has.
func (s *state) onConnect() {
	s.connected = true
	s.queue = s.queue[:0]
	s.nodeSent = false
	for k := range numKinds {
		ts := &s.types[k]
		ts.nonce, ts.sent = "", false
		if k.wildcard() || len(ts.want) > 0 {
			s.enqueue(k, nil)
		}
	}
}

func (s *state) onDisconnect() {
	s.connected = false
	s.queue = s.queue[:0]
}

// enqueue queues a request for k carrying the current subscription, the
// last accepted version and the last nonce; detail makes it a NACK.
func (s *state) enqueue(k kind, detail error) {
	ts := &s.types[k]
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   ts.version,
		TypeUrl:       k.typeURL(),
		ResponseNonce: ts.nonce,
	}
	if !k.wildcard() {
		req.ResourceNames = slices.Clone(ts.want)
	}
	if !s.nodeSent {
		req.Node = s.node
		s.nodeSent = true
	}
	if detail != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: detail.Error()}
	}
	ts.sent = true
	s.queue = append(s.queue, req)
}

// translate decodes and translates one resource of kind k.
func translate(k kind, a *anypb.Any) (string, any, error) {
	var (
		m   proto.Message
		run func() (string, any, error)
	)
	switch k {
	case lds:
		l := &listenerv3.Listener{}
		m, run = l, func() (string, any, error) { v, err := translateListener(l); return l.GetName(), v, err }
	case rds:
		r := &routev3.RouteConfiguration{}
		m, run = r, func() (string, any, error) { v, err := translateRouteConfig(r); return r.GetName(), v, err }
	case cds:
		c := &clusterv3.Cluster{}
		m, run = c, func() (string, any, error) { v, err := translateCluster(c); return c.GetName(), v, err }
	case eds:
		e := &endpointv3.ClusterLoadAssignment{}
		m, run = e, func() (string, any, error) { v, err := translateLoadAssignment(e); return e.GetClusterName(), v, err }
	default:
		x := &tlsv3.Secret{}
		m, run = x, func() (string, any, error) { v, err := translateSecret(x); return x.GetName(), v, err }
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return "", nil, fmt.Errorf("cannot decode %s: %w", a.GetTypeUrl(), err)
	}
	return run()
}

// handle applies one response: all of it, or (on any error) none of it.
func (s *state) handle(r *discoveryv3.DiscoveryResponse) {
	k, ok := kindOf(r.GetTypeUrl())
	if !ok {
		s.log.Warn("xds: ignoring response of a type never subscribed to", "type_url", r.GetTypeUrl())
		return
	}
	ts := &s.types[k]
	ts.nonce = r.GetNonce()
	next := make(map[string]entry, len(r.GetResources()))
	var errs []error
	for i, a := range r.GetResources() {
		if a.GetTypeUrl() != r.GetTypeUrl() {
			errs = append(errs, fmt.Errorf("resources[%d]: type %q in a %s response; send one type per response", i, a.GetTypeUrl(), k))
			continue
		}
		name, val, err := s.translateCached(k, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := next[name]; dup {
			errs = append(errs, fmt.Errorf("resources[%d]: duplicate %s resource %q; send each name once", i, k, name))
			continue
		}
		next[name] = entry{raw: a.GetValue(), val: val}
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		ts.lastErr, ts.lastErrAt = err.Error(), s.now()
		s.log.Warn("xds: rejecting response (NACK); keeping the last accepted resources",
			"type", k.String(), "version", r.GetVersionInfo(), "nonce", r.GetNonce(), "kept_version", ts.version, "error", err)
		s.enqueue(k, err)
		if s.observer != nil {
			s.observer.ConfigRejected(k.typeURL())
		}
		return
	}
	changed := ts.version != r.GetVersionInfo() || !ts.received
	if k.wildcard() {
		changed = changed || !sameEntries(ts.resources, next)
		ts.resources = next
	} else {
		// Incremental within the subscription: absence is not deletion;
		// names leave only when unsubscribed. Unrequested names are dropped.
		merged := make(map[string]entry, len(ts.resources)+len(next))
		for n, e := range ts.resources {
			merged[n] = e
		}
		for n, e := range next {
			if _, wanted := slices.BinarySearch(ts.want, n); !wanted {
				continue
			}
			if old, ok := merged[n]; !ok || old.val != e.val {
				changed = true
			}
			merged[n] = e
		}
		ts.resources = merged
	}
	ts.version, ts.received, ts.lastErr, ts.lastUpdate = r.GetVersionInfo(), true, "", s.now()
	s.log.Debug("xds: accepted response (ACK)", "type", k.String(), "version", ts.version, "resources", len(next))
	s.enqueue(k, nil)
	if s.observer != nil {
		s.observer.ConfigAccepted(k.typeURL(), ts.version)
	}
	if changed {
		s.dirty = true
	}
	s.resubscribe()
	s.maybePublish()
}

// translateCached translates a, reusing the previous translation when the
// resource's bytes did not change (so unchanged resources keep their
// pointers across snapshots).
func (s *state) translateCached(k kind, a *anypb.Any) (string, any, error) {
	name, val, err := translate(k, a)
	if err != nil {
		return name, nil, err
	}
	if old, ok := s.types[k].resources[name]; ok && bytes.Equal(old.raw, a.GetValue()) {
		return name, old.val, nil
	}
	return name, val, nil
}

func sameEntries(a, b map[string]entry) bool {
	if len(a) != len(b) {
		return false
	}
	for n, e := range a {
		if f, ok := b[n]; !ok || f.val != e.val {
			return false
		}
	}
	return true
}

// listeners merges static and dynamic listeners; dynamic ones win.
func (s *state) listeners() map[string]*config.Listener {
	m := make(map[string]*config.Listener)
	for _, l := range s.static.Listeners {
		m[l.Name] = l
	}
	for n, e := range s.types[lds].resources {
		m[n] = e.val.(*config.Listener)
	}
	return m
}

func (s *state) clusters() map[string]*config.Cluster {
	m := make(map[string]*config.Cluster)
	for n, c := range s.static.Clusters {
		m[n] = c
	}
	for n, e := range s.types[cds].resources {
		m[n] = e.val.(*config.Cluster)
	}
	return m
}

// references computes the RDS, EDS and SDS names that the listeners and
// clusters need.
func (s *state) references() (routes, endpoints, secrets []string) {
	rs, es, ss := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, l := range s.listeners() {
		if l.HTTP != nil && l.HTTP.RouteConfigName != "" {
			rs[l.HTTP.RouteConfigName] = true
		}
		if l.TLS != nil {
			ss[l.TLS.CertSecret] = true
			ss[l.TLS.ValidationSecret] = true
		}
	}
	for _, c := range s.clusters() {
		if c.Static == nil {
			es[c.EndpointsName()] = true
		}
		if c.TLS != nil {
			ss[c.TLS.CertSecret] = true
			ss[c.TLS.ValidationSecret] = true
		}
	}
	delete(ss, "")
	for _, n := range s.local {
		delete(ss, n) // provided by the process itself, never asked for
	}
	return sortedKeys(rs), sortedKeys(es), sortedKeys(ss)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// resubscribe updates the RDS, EDS and SDS subscriptions to what is
// referenced, drops resources no longer referenced, and queues requests
// for subscriptions that changed.
func (s *state) resubscribe() {
	r, e, x := s.references()
	for _, w := range [...]struct {
		k    kind
		want []string
	}{{rds, r}, {eds, e}, {sds, x}} {
		ts := &s.types[w.k]
		if slices.Equal(ts.want, w.want) {
			continue
		}
		ts.want = w.want
		for n := range ts.resources {
			if _, ok := slices.BinarySearch(w.want, n); !ok {
				delete(ts.resources, n)
				s.dirty = true
			}
		}
		// Never send an empty first request: it would mean wildcard.
		if s.connected && (ts.sent || len(w.want) > 0) {
			s.enqueue(w.k, nil)
		}
	}
}

// missing lists what the current configuration references but has not
// arrived yet.
func (s *state) missing() []string {
	var out []string
	for _, k := range [...]kind{lds, cds} {
		if !s.types[k].received {
			out = append(out, k.String())
		}
	}
	for _, k := range [...]kind{rds, eds, sds} {
		ts := &s.types[k]
		for _, n := range ts.want {
			if _, ok := ts.resources[n]; ok || s.staticHas(k, n) {
				continue
			}
			out = append(out, k.String()+":"+n)
		}
	}
	return out
}

func (s *state) staticHas(k kind, n string) bool {
	var ok bool
	switch k {
	case rds:
		_, ok = s.static.Routes[n]
	case eds:
		_, ok = s.static.Endpoints[n]
	case sds:
		_, ok = s.static.Secrets[n]
	}
	return ok
}

// warmC is the warming timer's channel, nil when no timer runs.
func (s *state) warmC() <-chan time.Time {
	if s.warm == nil {
		return nil
	}
	return s.warm.C
}

// expire is called when the warming timer fires: publish what there is.
func (s *state) expire() {
	s.warm = nil
	s.warmExpired = true
	s.log.Warn("xds: warming timed out; publishing without resources that never arrived", "missing", s.missing())
	s.maybePublish()
}

// maybePublish publishes a snapshot when something changed and everything
// referenced has arrived, or warming has timed out.
func (s *state) maybePublish() {
	if !s.dirty {
		return
	}
	if !s.warmExpired && len(s.missing()) > 0 {
		if s.warm == nil {
			s.warm = time.NewTimer(s.warming)
		}
		return
	}
	if s.warm != nil {
		s.warm.Stop()
		s.warm = nil
	}
	s.warmExpired, s.dirty = false, false
	s.onUpdate(s.build())
}

func (s *state) stop() {
	if s.warm != nil {
		s.warm.Stop()
		s.warm = nil
	}
}

// build assembles a complete snapshot. Static resources are merged under
// dynamic ones of the same name.
func (s *state) build() *config.Snapshot {
	ls := s.listeners()
	snap := &config.Snapshot{
		Version: fmt.Sprintf("lds=%s,rds=%s,cds=%s,eds=%s,sds=%s",
			s.types[lds].version, s.types[rds].version, s.types[cds].version, s.types[eds].version, s.types[sds].version),
		Listeners: make([]*config.Listener, 0, len(ls)),
		Routes:    make(map[string]*config.RouteConfig),
		Clusters:  s.clusters(),
		Endpoints: make(map[string]*config.LoadAssignment),
		Secrets:   make(map[string]*config.Secret),
	}
	for _, l := range ls {
		snap.Listeners = append(snap.Listeners, l)
	}
	sort.Slice(snap.Listeners, func(i, j int) bool { return snap.Listeners[i].Name < snap.Listeners[j].Name })
	for n, r := range s.static.Routes {
		snap.Routes[n] = r
	}
	for n, e := range s.types[rds].resources {
		snap.Routes[n] = e.val.(*config.RouteConfig)
	}
	for n, a := range s.static.Endpoints {
		snap.Endpoints[n] = a
	}
	for n, e := range s.types[eds].resources {
		snap.Endpoints[n] = e.val.(*config.LoadAssignment)
	}
	for n, x := range s.static.Secrets {
		snap.Secrets[n] = x
	}
	for n, e := range s.types[sds].resources {
		snap.Secrets[n] = e.val.(*config.Secret)
	}
	return snap
}

// status is the printable state for /config_dump and metrics.
func (s *state) status() *Status {
	st := &Status{Connected: s.connected, Types: make(map[string]TypeStatus, numKinds)}
	for k := range numKinds {
		ts := &s.types[k]
		st.Types[k.typeURL()] = TypeStatus{
			Version:       ts.version,
			LastUpdate:    ts.lastUpdate,
			LastError:     ts.lastErr,
			LastErrorTime: ts.lastErrAt,
			Connected:     s.connected,
			Subscribed:    slices.Clone(ts.want),
		}
	}
	return st
}

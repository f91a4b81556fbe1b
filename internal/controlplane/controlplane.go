package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/xds"
)

// Options configure a ControlPlane.
type Options struct {
	Cluster string // required: the cluster this control plane serves
	Network string
	// XDSAddress is the ADS listen address; default 127.0.0.1:0.
	XDSAddress string
	Translate  xds.TranslateOptions
	// Debounce is the least time between two pushes (default 100ms;
	// negative: none). A snapshot that arrives when the last push is at
	// least Debounce old is pushed at once; the snapshots that arrive
	// sooner wait for the end of that window, and only the newest of them
	// is pushed. An isolated change costs no wait; a burst costs at most
	// Debounce and is translated once.
	Debounce time.Duration
	// NewTimer makes the debounce timer; default time.NewTimer.
	NewTimer func(time.Duration) Timer
	// Now is the debounce's clock; default time.Now.
	Now func() time.Time
	// Registry receives the metrics; default a fresh registry.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Locate, when set, gives a proxy that sends no locality the locality
	// of its pod's node (xds.NodeFromProtoLocating): in Kubernetes mode,
	// discovery.Kubernetes. Nil: such a proxy is refused.
	Locate xds.PodLocator
}

// Timer is the part of *time.Timer the debounce uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type stdTimer struct{ *time.Timer }

func (t stdTimer) C() <-chan time.Time { return t.Timer.C }

// ControlPlane serves one cluster's model to its proxies.
type ControlPlane struct {
	o       Options
	srv     *xds.Server
	tr      *xds.Translator // remembers each class's translation per service
	metrics *metrics
	log     *slog.Logger

	notify    chan struct{}
	latest    chan *model.Snapshot // capacity 1: only the newest counts
	republish chan struct{}        // Republish's wake-up

	mu      sync.Mutex
	model   *model.Snapshot
	nodes   map[string]*nodeState // by node id
	classes map[string]int        // node class key -> connected nodes
	streams map[int64]string      // stream id -> node id ("" until known or when refused)
}

type nodeState struct {
	node    xds.Node
	streams int
	// acked is the last version the node ACKed, by short type (lds, cds,
	// ...): state-of-the-world requests carry it; delta requests do not.
	acked map[string]string
}

// New starts the ADS server; call Run to feed it.
func New(o Options) (*ControlPlane, error) {
	if o.Cluster == "" {
		return nil, errors.New("control plane: Cluster: required; name the cluster this control plane serves (--cluster)")
	}
	if o.Debounce == 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.NewTimer == nil {
		o.NewTimer = func(d time.Duration) Timer { return stdTimer{time.NewTimer(d)} }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Registry, o.Cluster)
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{
		o: o, metrics: m, log: o.Logger,
		notify: make(chan struct{}, 1), republish: make(chan struct{}, 1),
		latest: make(chan *model.Snapshot, 1),
		nodes:  map[string]*nodeState{}, streams: map[int64]string{}, classes: map[string]int{},
		tr: xds.NewTranslator(o.Translate),
	}
	c.srv, err = xds.NewServer(xds.Options{Address: o.XDSAddress, Callbacks: c.callbacks(), SnapshotKey: c.snapshotKey})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Addr is the ADS server's address.
func (c *ControlPlane) Addr() string { return c.srv.Addr() }

// Model returns the snapshot being served (nil before the first).
func (c *ControlPlane) Model() *model.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.model
}

// Offer hands a new snapshot to Run; only the newest offered before a push
// is translated. Safe from any goroutine; never blocks.
func (c *ControlPlane) Offer(s *model.Snapshot) {
	for {
		select {
		case c.latest <- s:
			return
		default:
			select {
			case <-c.latest:
			default:
			}
		}
	}
}

// Republish translates the served model again for every node and pushes
// what changed: for inputs outside the model, such as the trust bundles of
// TranslateOptions.MTLS. Safe from any goroutine; never blocks.
func (c *ControlPlane) Republish() {
	select {
	case c.republish <- struct{}{}:
	default:
	}
}

// Run runs src and pushes what it emits until ctx ends, then stops the ADS
// server. It returns ctx's error, or src's if src fails first.
func (c *ControlPlane) Run(ctx context.Context, src discovery.Source) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srcErr := make(chan error, 1)
	go func() { srcErr <- src.Run(ctx, c.Offer) }()
	err := c.loop(ctx, srcErr)
	cancel()
	if e := <-srcErr; err == nil && e != nil && !errors.Is(e, context.Canceled) {
		err = e
	}
	if e := c.srv.Stop(); e != nil && err == nil {
		err = e
	}
	return err
}

func (c *ControlPlane) loop(ctx context.Context, srcErr chan error) error {
	var (
		pending  *model.Snapshot
		since    time.Time
		lastPush time.Time // zero: none yet
		timer    Timer
		fire     <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return ctx.Err()
		case err := <-srcErr:
			srcErr <- err // Run reads it again
			if err == nil || errors.Is(err, context.Canceled) {
				<-ctx.Done()
				return ctx.Err()
			}
			return fmt.Errorf("control plane: source: %w", err)
		case s := <-c.latest:
			now := c.o.Now()
			if pending == nil {
				since = now
			}
			pending = s
			if timer != nil {
				continue // the window's end pushes the newest
			}
			if wait := c.o.Debounce - now.Sub(lastPush); c.o.Debounce < 0 || lastPush.IsZero() || wait <= 0 {
				// The window starts when the push starts: read the clock
				// before applying, so a change that arrives while the push
				// runs is measured against it.
				c.apply(ctx, pending, since, false)
				pending, lastPush = nil, now
			} else {
				timer = c.o.NewTimer(wait)
				fire = timer.C()
			}
		case <-fire:
			timer, fire = nil, nil
			start := c.o.Now()
			c.apply(ctx, pending, since, false)
			pending, lastPush = nil, start
		case <-c.republish:
			if m := c.Model(); m != nil {
				c.apply(ctx, m, c.o.Now(), true)
			}
		}
	}
}

// apply makes s the served model and pushes it to every node; unless
// force, an unchanged model pushes nothing.
func (c *ControlPlane) apply(ctx context.Context, s *model.Snapshot, since time.Time, force bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !force && c.model != nil && c.model.Equal(s) {
		return
	}
	c.model = s
	ids := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	memo := map[xds.Node]xds.Resources{}
	for _, id := range ids {
		n := c.nodes[id].node
		if _, done := memo[n.Class()]; done {
			continue // the class's snapshot is shared by its nodes
		}
		c.publishLocked(ctx, n, memo)
	}
	c.metrics.pushLatency.Observe(time.Since(since).Seconds())
	c.log.Info("model applied", "services", len(s.Services), "nodes", len(ids), "classes", len(memo), "took", time.Since(since))
}

// publishLocked translates (memoized per class) and publishes for one node.
func (c *ControlPlane) publishLocked(ctx context.Context, n xds.Node, memo map[xds.Node]xds.Resources) {
	if c.model == nil {
		return
	}
	class := n.Class()
	res, ok := memo[class]
	if !ok {
		var err error
		res, err = c.tr.Translate(c.model, n)
		if err != nil {
			// A bug (the translator produced an invalid resource): keep the
			// node on its last good resources.
			c.log.Error("translation produced invalid resources; node keeps its last good ones", "node", n.ID, "err", err)
			return
		}
		memo[class] = res
		c.metrics.setResources(res)
	}
	changed, err := c.srv.Publish(ctx, n.Key(), res)
	if err != nil {
		c.log.Error("publish failed", "node", n.ID, "err", err)
		return
	}
	for _, t := range changed {
		c.metrics.pushes.WithLabelValues(shortType(t)).Inc()
	}
}

func (c *ControlPlane) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error { return nil },
		StreamRequestFunc: func(id int64, req *discoverygrpc.DiscoveryRequest) error {
			return c.onRequest(id, req.GetNode(), req.GetTypeUrl(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil, req.GetVersionInfo())
		},
		StreamClosedFunc:    func(id int64, _ *corev3.Node) { c.onClosed(id) },
		DeltaStreamOpenFunc: func(context.Context, int64, string) error { return nil },
		StreamDeltaRequestFunc: func(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
			return c.onRequest(id, req.GetNode(), req.GetTypeUrl(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil, "")
		},
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { c.onClosed(id) },
	}
}

func (c *ControlPlane) onRequest(stream int64, pn *corev3.Node, typeURL, nackMsg string, nack bool, version string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, known := c.streams[stream]
	if !known {
		n, err := xds.NodeFromProtoLocating(pn, c.o.Cluster, c.o.Network, c.o.Locate)
		if err != nil {
			c.metrics.refused.Inc()
			c.log.Warn("xds client refused", "stream", stream, "err", err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		c.streams[stream] = n.ID
		id = n.ID
		served := c.classes[n.Key()] > 0
		st := c.nodes[n.ID]
		if st == nil {
			st = &nodeState{node: n}
			c.nodes[n.ID] = st
			c.classes[n.Key()]++
			c.metrics.connected.Inc()
		} else if st.node != n {
			c.log.Warn("a node id reconnected with different metadata; the newest wins", "node", n.ID)
			c.leaveClassLocked(st.node)
			c.classes[n.Key()]++
			st.node = n
		}
		st.streams++
		if !served { // a node of a class already served shares its snapshot
			c.publishLocked(context.Background(), st.node, map[xds.Node]xds.Resources{})
		}
	}
	if st := c.nodes[id]; st != nil && !nack && version != "" {
		if st.acked == nil {
			st.acked = map[string]string{}
		}
		st.acked[shortType(typeURL)] = version
	}
	if nack {
		c.metrics.nacks.WithLabelValues(shortType(typeURL), id).Inc()
		c.log.Warn("xds NACK", "node", id, "type", shortType(typeURL), "error", nackMsg)
	}
	return nil
}

func (c *ControlPlane) onClosed(stream int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.streams[stream]
	delete(c.streams, stream)
	if !ok {
		return
	}
	st := c.nodes[id]
	if st == nil {
		return
	}
	st.streams--
	if st.streams <= 0 {
		delete(c.nodes, id)
		c.leaveClassLocked(st.node)
		c.metrics.connected.Dec()
	}
}

// leaveClassLocked counts node n out of its class; the class's snapshot
// and translation memory are dropped with its last node.
func (c *ControlPlane) leaveClassLocked(n xds.Node) {
	key := n.Key()
	c.classes[key]--
	if c.classes[key] <= 0 {
		delete(c.classes, key)
		c.srv.Forget(key)
		c.tr.Forget(n)
	}
}

// snapshotKey is the xDS cache's key for a node: its class, so nodes of a
// class share one snapshot. A node that will be refused keeps its own id.
func (c *ControlPlane) snapshotKey(pn *corev3.Node) string {
	n, err := xds.NodeFromProtoLocating(pn, c.o.Cluster, c.o.Network, c.o.Locate)
	if err != nil {
		return pn.GetId()
	}
	return n.Key()
}

func shortType(t string) string {
	switch t {
	case resourcev3.ListenerType:
		return "lds"
	case resourcev3.RouteType:
		return "rds"
	case resourcev3.ClusterType:
		return "cds"
	case resourcev3.EndpointType:
		return "eds"
	case resourcev3.SecretType:
		return "sds"
	}
	return t
}

package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/causewaymesh/causeway/gateway"
	"github.com/causewaymesh/causeway/internal/model"
)

// Options configure a Controller. Config, or all of Kube, Gateway and MCS,
// is required.
type Options struct {
	// Config makes the clients left nil.
	Config  *rest.Config
	Kube    kubernetes.Interface
	Gateway gwclient.Interface
	MCS     mcsclient.Interface

	// ControllerName is the GatewayClass spec.controllerName owned;
	// default gateway.ControllerName.
	ControllerName string
	// Cluster labels the metrics and log lines.
	Cluster string

	// OnRoutes receives the route tables (sorted by
	// model.CompareRouteTables) each time they change; nil: none.
	OnRoutes func([]model.RouteTable)
	// Addresses reports the addresses a Gateway is reachable on (the
	// ingress proxy's); nil or empty: none, and the Gateway is
	// Programmed=False AddressNotAssigned. Called on Run's goroutine at
	// every reconcile; call Trigger when the answer changes.
	Addresses func(gw types.NamespacedName) []gatewayv1.GatewayStatusAddress

	// Debounce is the least time between two reconciles; default 50ms,
	// negative: none.
	Debounce time.Duration
	// RetryMin and RetryMax bound the exponential backoff after a failed
	// reconcile; defaults 200ms and 30s.
	RetryMin, RetryMax time.Duration
	// Resync is the informers' resync period (a reconcile each time);
	// 0 (default) disables it.
	Resync time.Duration
	// SyncTimeout bounds the wait for the first list of every cache;
	// default 2m.
	SyncTimeout time.Duration

	// Registerer receives the metrics; default a private registry.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Clock drives the debounce, the backoff and lastTransitionTime;
	// default the real clock.
	Clock clock.Clock
}

// Controller is the Gateway API controller of one cluster. Create it with
// New and start it with Run, once.
type Controller struct {
	o       Options
	ctrl    string
	log     *slog.Logger
	clock   clock.Clock
	metrics *metrics
	poke    chan struct{}

	// Owned by Run's goroutine.
	routes    []model.RouteTable
	published bool
	overlay   map[string]overlayEntry
}

// New checks o and returns a Controller; nothing is contacted until Run.
func New(o Options) (*Controller, error) {
	var errs []error
	if o.Config == nil && (o.Kube == nil || o.Gateway == nil || o.MCS == nil) {
		errs = append(errs, errors.New("gateway controller: Config, or Kube, Gateway and MCS: required; pass a rest.Config (e.g. from a kubeconfig)"))
	}
	ctrl := cmp.Or(o.ControllerName, gateway.ControllerName)
	if _, err := gateway.Translate(gateway.Input{ControllerName: ctrl}); err != nil {
		errs = append(errs, fmt.Errorf("gateway controller: ControllerName: %w", err))
	}
	if o.Resync < 0 {
		errs = append(errs, fmt.Errorf("gateway controller: Resync %s: must not be negative; use 0 to disable", o.Resync))
	}
	if o.RetryMin < 0 || o.RetryMax < 0 || (o.RetryMin > 0 && o.RetryMax > 0 && o.RetryMin > o.RetryMax) {
		errs = append(errs, fmt.Errorf("gateway controller: RetryMin %s, RetryMax %s: must be positive with RetryMin <= RetryMax (0 for the defaults)", o.RetryMin, o.RetryMax))
	}
	if o.Config != nil {
		var err error
		if o.Kube == nil {
			if o.Kube, err = kubernetes.NewForConfig(o.Config); err != nil {
				errs = append(errs, fmt.Errorf("gateway controller: Config (core client): %w", err))
			}
		}
		if o.Gateway == nil {
			if o.Gateway, err = gwclient.NewForConfig(o.Config); err != nil {
				errs = append(errs, fmt.Errorf("gateway controller: Config (Gateway API client): %w", err))
			}
		}
		if o.MCS == nil {
			if o.MCS, err = mcsclient.NewForConfig(o.Config); err != nil {
				errs = append(errs, fmt.Errorf("gateway controller: Config (MCS client): %w", err))
			}
		}
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(o.Registerer, o.Cluster)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Debounce == 0 {
		o.Debounce = 50 * time.Millisecond
	}
	if o.RetryMin == 0 {
		o.RetryMin = 200 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = max(30*time.Second, o.RetryMin)
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Controller{
		o: o, ctrl: ctrl, clock: o.Clock, metrics: m, poke: make(chan struct{}, 1),
		log:     o.Logger.With("component", "gateway-controller", "cluster", o.Cluster),
		overlay: map[string]overlayEntry{},
	}, nil
}

// Trigger asks for a reconcile; it never blocks and may be called from any
// goroutine. Informer callbacks call it.
func (c *Controller) Trigger() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// Run waits for the Gateway API CRDs, starts the informers, waits for their
// caches, reconciles once, then after each change until ctx ends. It
// returns ctx's error, or an error when the caches do not sync within
// SyncTimeout.
func (c *Controller) Run(ctx context.Context) error {
	res, err := c.discover(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inf, err := c.startInformers(ctx, res)
	if inf != nil {
		defer inf.shutdown()
	}
	if err != nil {
		return err
	}
	c.log.Info("gateway controller: caches synced", "controllerName", c.ctrl, "grpcRoutes", res.grpcRoutes, "tlsRoutes", res.tlsRoutes, "serviceImports", res.serviceImports)
	c.Trigger() // the first reconcile, even with nothing to do
	return c.loop(ctx, func(ctx context.Context) error { return c.reconcile(ctx, inf) })
}

// loop runs reconcile on each poke, at least Debounce apart, and again
// after a backoff when it fails. A poke during a backoff ends it early.
func (c *Controller) loop(ctx context.Context, reconcile func(context.Context) error) error {
	var (
		last     time.Time // start of the last reconcile
		timer    clock.Timer
		fire     <-chan time.Time
		backoff  bool // timer is a backoff, not a debounce window
		failures int
	)
	stop := func() {
		if timer != nil {
			timer.Stop()
		}
		timer, fire, backoff = nil, nil, false
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.poke:
			if timer != nil && !backoff {
				continue // the window's end reconciles
			}
			stop()
			if wait := c.o.Debounce - c.clock.Since(last); c.o.Debounce > 0 && !last.IsZero() && wait > 0 {
				timer = c.clock.NewTimer(wait)
				fire = timer.C()
				continue
			}
		case <-fire:
			timer, fire, backoff = nil, nil, false
		}
		last = c.clock.Now()
		err := reconcile(ctx)
		c.metrics.reconcileDuration.Observe(c.clock.Since(last).Seconds())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			c.metrics.reconciles.WithLabelValues("ok").Inc()
			failures = 0
			continue
		}
		c.metrics.reconciles.WithLabelValues("error").Inc()
		failures++
		d := backoffFor(c.o.RetryMin, c.o.RetryMax, failures)
		c.log.Error("gateway controller: reconcile failed; retrying", "err", err, "failures", failures, "retryIn", d)
		timer, backoff = c.clock.NewTimer(d), true
		fire = timer.C()
	}
}

// backoffFor is min·2^(failures-1), capped at max.
func backoffFor(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

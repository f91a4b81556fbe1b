package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/causewaymesh/causeway/gateway"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/testcluster"
)

const foreignController = "example.com/other-controller"

const baseYAML = `
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: mesh, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: other}
spec: {ports: [{name: http, port: 9090}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: causeway}
spec: {controllerName: causeway.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: foreign}
spec: {controllerName: example.com/other-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: causeway
  listeners: [{name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: foreign-gw, namespace: shop}
spec:
  gatewayClassName: foreign
  listeners: [{name: http, port: 80, protocol: HTTP}]
`

// route is an HTTPRoute in shop with the given parentRefs and backend.
func route(name, parents, backend, path string) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: shop}
spec:
  parentRefs: %s
  rules: [{matches: [{path: {type: PathPrefix, value: %s}}], backendRefs: [%s]}]
`, name, parents, path, backend)
}

const (
	toGW      = `[{name: gw}]`
	toWeb     = `{name: web, port: 8080}`
	grantYAML = `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: shop-to-api, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]
  to: [{group: "", kind: Service}]
`
)

// routesSeen records what OnRoutes was handed.
type routesSeen struct {
	mu    sync.Mutex
	calls int
	last  []model.RouteTable
	ch    chan struct{}
}

func (r *routesSeen) on(ts []model.RouteTable) {
	r.mu.Lock()
	r.calls++
	r.last = ts
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *routesSeen) get() (int, []model.RouteTable) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.last
}

// waitRoutes waits until OnRoutes has been handed tables for which ok holds.
func (r *routesSeen) wait(t *testing.T, ctx context.Context, what string, ok func([]model.RouteTable) bool) []model.RouteTable {
	t.Helper()
	for {
		_, last := r.get()
		if ok(last) {
			return last
		}
		select {
		case <-r.ch:
		case <-ctx.Done():
			t.Fatalf("OnRoutes: %s: not seen (last: %v)", what, last)
		}
	}
}

func table(ts []model.RouteTable, kind model.ParentKind, ns, name string) *model.RouteTable {
	for i := range ts {
		if ts[i].Parent.Kind == kind && ts[i].Parent.Namespace == ns && ts[i].Parent.Name == name {
			return &ts[i]
		}
	}
	return nil
}

func hasPath(t *model.RouteTable, route, path string) bool {
	if t == nil {
		return false
	}
	for _, vh := range t.VirtualHosts {
		for _, r := range vh.Routes {
			if r.Namespace == "shop" && r.Name == route && r.Path == path {
				return true
			}
		}
	}
	return false
}

// metric sums a counter over the series whose labels include match.
func metric(t testing.TB, reg *prometheus.Registry, name string, match map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// poll waits until get's object satisfies ok, returning it.
func poll[T any](t *testing.T, ctx context.Context, what string, get func(context.Context) (T, error), ok func(T) error) T {
	t.Helper()
	var (
		last    T
		lastErr error
	)
	err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		o, err := get(ctx)
		if err != nil {
			lastErr = err
			return false, nil
		}
		last, lastErr = o, ok(o)
		return lastErr == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: %v (last: %v)", what, lastErr, last)
	}
	return last
}

func findCond(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// expect checks that conds has typ with status, reason and generation.
func expect(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string, gen int64) error {
	c := findCond(conds, typ)
	switch {
	case c == nil:
		return fmt.Errorf("no %s condition in %v", typ, conds)
	case c.Status != status || c.Reason != reason || c.ObservedGeneration != gen:
		return fmt.Errorf("%s = %s/%s gen %d, want %s/%s gen %d (%s)", typ, c.Status, c.Reason, c.ObservedGeneration, status, reason, gen, c.Message)
	}
	return nil
}

// ourParent is the route's status entry with our controllerName.
func ourParent(r *gatewayv1.HTTPRoute) *gatewayv1.RouteParentStatus {
	for i, p := range r.Status.Parents {
		if p.ControllerName == gateway.ControllerName {
			return &r.Status.Parents[i]
		}
	}
	return nil
}

// routeConds waits for our parent entry of shop/name to satisfy the
// expectations (type, status, reason) at generation gen.
func routeConds(t *testing.T, ctx context.Context, gw gwclient.Interface, name string, gen int64, want ...[3]string) *gatewayv1.HTTPRoute {
	t.Helper()
	return poll(t, ctx, "HTTPRoute shop/"+name, func(ctx context.Context) (*gatewayv1.HTTPRoute, error) {
		return gw.GatewayV1().HTTPRoutes("shop").Get(ctx, name, metav1.GetOptions{})
	}, func(r *gatewayv1.HTTPRoute) error {
		p := ourParent(r)
		if p == nil {
			return errors.New("no status entry of ours")
		}
		var errs []error
		for _, w := range want {
			errs = append(errs, expect(p.Conditions, w[0], metav1.ConditionStatus(w[1]), w[2], gen))
		}
		return errors.Join(errs...)
	})
}

// skewClock is the real clock moved forward by skew, so that a
// lastTransitionTime written after a skew is told apart from an older one.
type skewClock struct {
	clock.RealClock
	skew atomic.Int64
}

func (c *skewClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *skewClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// TestController runs the controller against a real kube-apiserver with
// the Gateway API v1.6.3 experimental CRDs.
func TestController(t *testing.T) {
	testcluster.RequireBinaries(t, false) // a control plane only: no nodes or pods needed
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := testcluster.Start(t, testcluster.Options{GatewayAPIChannel: testcluster.ChannelExperimental})
	gw, err := gwclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, []byte(baseYAML)); err != nil {
		t.Fatal(err)
	}
	// A route shared with another controller's Gateway, whose status that
	// controller already wrote.
	if err := c.Apply(ctx, []byte(route("shared", `[{name: gw}, {name: foreign-gw}]`, toWeb, "/shared"))); err != nil {
		t.Fatal(err)
	}
	shared, err := gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "shared", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	foreignEntry := gatewayv1.RouteParentStatus{
		ParentRef:      shared.Spec.ParentRefs[1],
		ControllerName: foreignController,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", Message: "theirs",
			ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(time.Unix(1700000000, 0))}},
	}
	shared.Status.Parents = []gatewayv1.RouteParentStatus{foreignEntry}
	if _, err := gw.GatewayV1().HTTPRoutes("shop").UpdateStatus(ctx, shared, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	foreignClass, err := gw.GatewayV1().GatewayClasses().Get(ctx, "foreign", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	foreignGW, err := gw.GatewayV1().Gateways("shop").Get(ctx, "foreign-gw", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Start the controller.
	var addrMu sync.Mutex
	var addrs []gatewayv1.GatewayStatusAddress
	seen := &routesSeen{ch: make(chan struct{}, 1)}
	reg := prometheus.NewRegistry()
	clk := &skewClock{}
	ctl, err := New(Options{
		Config: c.Config, Cluster: "c1", OnRoutes: seen.on, Registerer: reg, Clock: clk,
		Addresses: func(n types.NamespacedName) []gatewayv1.GatewayStatusAddress {
			addrMu.Lock()
			defer addrMu.Unlock()
			if n != (types.NamespacedName{Namespace: "shop", Name: "gw"}) {
				return nil
			}
			return slices.Clone(addrs)
		},
		Debounce: 20 * time.Millisecond,
		Resync:   time.Second, // every cache resyncs every second: each one a no-op reconcile
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- ctl.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})

	t.Run("GatewayClass", func(t *testing.T) {
		gc := poll(t, ctx, "GatewayClass causeway", func(ctx context.Context) (*gatewayv1.GatewayClass, error) {
			return gw.GatewayV1().GatewayClasses().Get(ctx, "causeway", metav1.GetOptions{})
		}, func(gc *gatewayv1.GatewayClass) error {
			return expect(gc.Status.Conditions, "Accepted", "True", "Accepted", 1)
		})
		t.Logf("GatewayClass accepted %s after Run", time.Since(started).Round(time.Millisecond))
		if !equalStatus(gc.Status.SupportedFeatures, gateway.SupportedFeatures()) {
			t.Fatalf("supportedFeatures = %v, want %v", gc.Status.SupportedFeatures, gateway.SupportedFeatures())
		}
	})

	t.Run("Gateway without an address", func(t *testing.T) {
		poll(t, ctx, "Gateway shop/gw", func(ctx context.Context) (*gatewayv1.Gateway, error) {
			return gw.GatewayV1().Gateways("shop").Get(ctx, "gw", metav1.GetOptions{})
		}, func(g *gatewayv1.Gateway) error {
			if len(g.Status.Listeners) != 1 || g.Status.Listeners[0].AttachedRoutes != 1 || len(g.Status.Addresses) != 0 {
				return fmt.Errorf("listeners %+v addresses %v", g.Status.Listeners, g.Status.Addresses)
			}
			return errors.Join(expect(g.Status.Conditions, "Accepted", "True", "Accepted", 1),
				expect(g.Status.Conditions, "Programmed", "False", "AddressNotAssigned", 1),
				expect(g.Status.Listeners[0].Conditions, "Programmed", "True", "Programmed", 1))
		})
	})

	t.Run("shared route keeps the other controller's entry", func(t *testing.T) {
		r := routeConds(t, ctx, gw, "shared", 1, [3]string{"Accepted", "True", "Accepted"}, [3]string{"ResolvedRefs", "True", "ResolvedRefs"})
		if len(r.Status.Parents) != 2 || !equalStatus(r.Status.Parents[0], foreignEntry) {
			t.Fatalf("parents = %+v, want the foreign entry first, unchanged", r.Status.Parents)
		}
	})

	var validAccepted metav1.Time
	t.Run("routes", func(t *testing.T) {
		for _, y := range []string{
			route("valid", toGW, toWeb, "/valid"),
			route("missing", toGW, `{name: nope, port: 8080}`, "/missing"),
			route("cross", toGW, `{name: api, namespace: other, port: 9090}`, "/cross"),
			route("mesh", `[{group: "", kind: Service, name: mesh, port: 80}]`, toWeb, "/mesh"),
		} {
			if err := c.Apply(ctx, []byte(y)); err != nil {
				t.Fatal(err)
			}
		}
		v := routeConds(t, ctx, gw, "valid", 1, [3]string{"Accepted", "True", "Accepted"}, [3]string{"ResolvedRefs", "True", "ResolvedRefs"})
		validAccepted = findCond(ourParent(v).Conditions, "Accepted").LastTransitionTime
		routeConds(t, ctx, gw, "missing", 1, [3]string{"Accepted", "True", "Accepted"}, [3]string{"ResolvedRefs", "False", "BackendNotFound"})
		routeConds(t, ctx, gw, "cross", 1, [3]string{"Accepted", "True", "Accepted"}, [3]string{"ResolvedRefs", "False", "RefNotPermitted"})
		m := routeConds(t, ctx, gw, "mesh", 1, [3]string{"Accepted", "True", "Accepted"}, [3]string{"ResolvedRefs", "True", "ResolvedRefs"})
		if k := ourParent(m).ParentRef.Kind; k == nil || *k != "Service" {
			t.Fatalf("mesh parentRef %+v", ourParent(m).ParentRef)
		}
		seen.wait(t, ctx, "the Gateway table with /valid and the mesh table", func(ts []model.RouteTable) bool {
			g := table(ts, model.ParentGateway, "shop", "gw")
			return hasPath(g, "valid", "/valid") && hasPath(g, "shared", "/shared") && table(ts, model.ParentService, "shop", "mesh") != nil
		})
	})

	t.Run("ReferenceGrant", func(t *testing.T) {
		before := ourParent(routeConds(t, ctx, gw, "cross", 1, [3]string{"ResolvedRefs", "False", "RefNotPermitted"}))
		clk.skew.Add(int64(time.Hour))
		if err := c.Apply(ctx, []byte(grantYAML)); err != nil {
			t.Fatal(err)
		}
		after := ourParent(routeConds(t, ctx, gw, "cross", 1, [3]string{"Accepted", "True", "Accepted"}, [3]string{"ResolvedRefs", "True", "ResolvedRefs"}))
		if b, a := findCond(before.Conditions, "Accepted"), findCond(after.Conditions, "Accepted"); !a.LastTransitionTime.Equal(&b.LastTransitionTime) {
			t.Errorf("Accepted stayed True but its lastTransitionTime moved: %s -> %s", b.LastTransitionTime, a.LastTransitionTime)
		}
		if b, a := findCond(before.Conditions, "ResolvedRefs"), findCond(after.Conditions, "ResolvedRefs"); a.LastTransitionTime.Sub(b.LastTransitionTime.Time) < 59*time.Minute {
			t.Errorf("ResolvedRefs turned True but its lastTransitionTime is %s (was %s; the clock moved 1h)", a.LastTransitionTime, b.LastTransitionTime)
		}
	})

	t.Run("spec change", func(t *testing.T) {
		n, _ := seen.get()
		clk.skew.Add(int64(time.Hour))
		if err := c.Apply(ctx, []byte(route("valid", toGW, toWeb, "/valid-v2"))); err != nil {
			t.Fatal(err)
		}
		v := routeConds(t, ctx, gw, "valid", 2, [3]string{"Accepted", "True", "Accepted"}, [3]string{"ResolvedRefs", "True", "ResolvedRefs"})
		if a := findCond(ourParent(v).Conditions, "Accepted"); !a.LastTransitionTime.Equal(&validAccepted) {
			t.Errorf("lastTransitionTime moved without a status change: %s -> %s", validAccepted, a.LastTransitionTime)
		}
		seen.wait(t, ctx, "/valid-v2", func(ts []model.RouteTable) bool {
			return hasPath(table(ts, model.ParentGateway, "shop", "gw"), "valid", "/valid-v2")
		})
		if m, _ := seen.get(); m <= n {
			t.Fatalf("OnRoutes calls %d -> %d", n, m)
		}
	})

	t.Run("addresses", func(t *testing.T) {
		addrMu.Lock()
		addrs = []gatewayv1.GatewayStatusAddress{{Value: "127.0.0.1"}}
		addrMu.Unlock()
		ctl.Trigger()
		poll(t, ctx, "Gateway shop/gw programmed", func(ctx context.Context) (*gatewayv1.Gateway, error) {
			return gw.GatewayV1().Gateways("shop").Get(ctx, "gw", metav1.GetOptions{})
		}, func(g *gatewayv1.Gateway) error {
			if len(g.Status.Addresses) != 1 || g.Status.Addresses[0].Value != "127.0.0.1" || ptr.Deref(g.Status.Addresses[0].Type, "") != gatewayv1.IPAddressType {
				return fmt.Errorf("addresses %+v", g.Status.Addresses)
			}
			return expect(g.Status.Conditions, "Programmed", "True", "Programmed", 1)
		})
	})

	t.Run("parentRef removed", func(t *testing.T) {
		if err := c.Apply(ctx, []byte(route("shared", `[{name: foreign-gw}]`, toWeb, "/shared"))); err != nil {
			t.Fatal(err)
		}
		poll(t, ctx, "HTTPRoute shop/shared without our entry", func(ctx context.Context) (*gatewayv1.HTTPRoute, error) {
			return gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "shared", metav1.GetOptions{})
		}, func(r *gatewayv1.HTTPRoute) error {
			if len(r.Status.Parents) != 1 || !equalStatus(r.Status.Parents[0], foreignEntry) {
				return fmt.Errorf("parents %+v", r.Status.Parents)
			}
			return nil
		})
		seen.wait(t, ctx, "no /shared", func(ts []model.RouteTable) bool {
			return !hasPath(table(ts, model.ParentGateway, "shop", "gw"), "shared", "/shared")
		})
	})

	t.Run("the foreign class is untouched", func(t *testing.T) {
		gc, err := gw.GatewayV1().GatewayClasses().Get(ctx, "foreign", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g, err := gw.GatewayV1().Gateways("shop").Get(ctx, "foreign-gw", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if gc.ResourceVersion != foreignClass.ResourceVersion || !equalStatus(gc.Status, foreignClass.Status) ||
			g.ResourceVersion != foreignGW.ResourceVersion || !equalStatus(g.Status, foreignGW.Status) {
			t.Fatalf("written: class %s -> %s %+v; gateway %s -> %s %+v", foreignClass.ResourceVersion, gc.ResourceVersion, gc.Status, foreignGW.ResourceVersion, g.ResourceVersion, g.Status)
		}
	})

	t.Run("no-op resync writes nothing", func(t *testing.T) {
		ok := map[string]string{"result": "ok"}
		// Settle: no write for two reconciles in a row (a write storm
		// never settles).
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		writes := metric(t, reg, "causeway_gateway_status_writes_total", nil)
		for settled := 0; settled < 2; {
			r := metric(t, reg, "causeway_gateway_reconciles_total", ok)
			poll(t, ctx, fmt.Sprintf("a reconcile (status writes so far: %v; they must stop)", writes), func(context.Context) (float64, error) {
				return metric(t, reg, "causeway_gateway_reconciles_total", ok), nil
			}, func(n float64) error {
				if n <= r {
					return errors.New("no reconcile yet")
				}
				return nil
			})
			if w := metric(t, reg, "causeway_gateway_status_writes_total", nil); w == writes {
				settled++
			} else {
				settled, writes = 0, w
			}
		}
		// Three resyncs (Resync is 1s) and a Trigger: nothing written.
		r := metric(t, reg, "causeway_gateway_reconciles_total", ok)
		ctl.Trigger()
		poll(t, ctx, "three more reconciles", func(context.Context) (float64, error) {
			return metric(t, reg, "causeway_gateway_reconciles_total", ok), nil
		}, func(n float64) error {
			if n < r+3 {
				return fmt.Errorf("%v reconciles", n-r)
			}
			return nil
		})
		if w := metric(t, reg, "causeway_gateway_status_writes_total", nil); w != writes {
			t.Fatalf("status writes %v -> %v during no-op reconciles", writes, w)
		}
		t.Logf("status writes in total: %v ok, %v conflicts; reconciles %v ok, %v errors",
			metric(t, reg, "causeway_gateway_status_writes_total", ok), metric(t, reg, "causeway_gateway_status_writes_total", map[string]string{"result": "conflict"}),
			metric(t, reg, "causeway_gateway_reconciles_total", ok), metric(t, reg, "causeway_gateway_reconciles_total", map[string]string{"result": "error"}))
		if e := metric(t, reg, "causeway_gateway_errors_total", nil); e != 0 {
			t.Errorf("errors_total = %v", e)
		}
	})

	t.Run("latency", func(t *testing.T) {
		w, err := gw.GatewayV1().HTTPRoutes("shop").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		var lat []time.Duration
		for i := range 7 {
			name := fmt.Sprintf("lat-%d", i)
			start := time.Now()
			if err := c.Apply(ctx, []byte(route(name, toGW, toWeb, "/"+name))); err != nil {
				t.Fatal(err)
			}
			waitWatch(t, ctx, w, name)
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("route create -> status written (watch event), %d routes: p50 %s, min %s, max %s", len(lat), lat[len(lat)/2], lat[0], lat[len(lat)-1])
	})
}

// waitWatch reads w until shop/name has a status entry of ours.
func waitWatch(t *testing.T, ctx context.Context, w watch.Interface, name string) {
	t.Helper()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			if r, isRoute := ev.Object.(*gatewayv1.HTTPRoute); isRoute && r.Name == name && ourParent(r) != nil {
				return
			}
		case <-ctx.Done():
			t.Fatalf("HTTPRoute shop/%s: no status written", name)
		}
	}
}

// TestWaitsForCRDsThenConflicts starts the controller on an apiserver
// without any CRD: it waits, logging, until the Gateway API (standard
// channel) is installed, then runs without MCS ServiceImports. Then a
// route's status is written from a stale cached copy: the update
// conflicts, the controller reads the route again and writes a status that
// keeps what another writer wrote meanwhile.
func TestWaitsForCRDsThenConflicts(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := testcluster.Start(t, testcluster.Options{SkipCRDs: true})
	reg := prometheus.NewRegistry()
	ctl, err := New(Options{Config: c.Config, Registerer: reg, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ctl.Run(runCtx) }()
	stopped := false
	stopRun := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stopRun)
	poll(t, ctx, "discovery retries", func(context.Context) (float64, error) {
		return metric(t, reg, "causeway_gateway_errors_total", map[string]string{"stage": "discovery"}), nil
	}, func(n float64) error {
		if n < 2 {
			return errors.New("not retrying")
		}
		return nil
	})
	if err := c.ApplyFile(ctx, "../../manifests/crds/gateway-api/standard"); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, []byte(baseYAML+"---\n"+route("r", toGW, toWeb, "/"))); err != nil {
		t.Fatal(err)
	}
	gw := ctl.o.Gateway.GatewayV1()
	routeConds(t, ctx, ctl.o.Gateway, "r", 1, [3]string{"Accepted", "True", "Accepted"})
	stopRun()

	// A stale copy, then another controller writes.
	reg = prometheus.NewRegistry()
	if ctl, err = New(Options{Config: c.Config, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	routes := gw.HTTPRoutes("shop")
	stale, err := routes.Get(ctx, "r", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	theirs := stale.DeepCopy()
	theirs.Status.Parents = []gatewayv1.RouteParentStatus{{ParentRef: stale.Spec.ParentRefs[0], ControllerName: foreignController,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "False", Reason: "NotAllowedByListeners", Message: "theirs", LastTransitionTime: metav1.Now()}}}}
	if _, err := routes.UpdateStatus(ctx, theirs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ours := []gatewayv1.RouteParentStatus{{ParentRef: stale.Spec.ParentRefs[0], ControllerName: gateway.ControllerName,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", Message: "ours", ObservedGeneration: 1, LastTransitionTime: metav1.Now()}}}}
	err = writeRoutes(ctx, ctl, kindOps[*gatewayv1.HTTPRoute]{kind: "HTTPRoute",
		get: func(ctx context.Context, ns, name string) (*gatewayv1.HTTPRoute, error) {
			return routes.Get(ctx, name, metav1.GetOptions{})
		},
		update: func(ctx context.Context, o *gatewayv1.HTTPRoute) (*gatewayv1.HTTPRoute, error) {
			return routes.UpdateStatus(ctx, o, metav1.UpdateOptions{})
		}}, func(o *gatewayv1.HTTPRoute) *gatewayv1.RouteStatus { return &o.Status.RouteStatus }, (*gatewayv1.HTTPRoute).DeepCopy,
		[]*gatewayv1.HTTPRoute{stale}, []gateway.RouteStatus{{Namespace: "shop", Name: "r", Status: gatewayv1.RouteStatus{Parents: ours}}}, map[string]bool{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := routes.Get(ctx, "r", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Parents) != 2 || got.Status.Parents[0].ControllerName != foreignController || got.Status.Parents[1].ControllerName != gateway.ControllerName {
		t.Fatalf("parents = %+v", got.Status.Parents)
	}
	if n := metric(t, reg, "causeway_gateway_status_writes_total", map[string]string{"result": "conflict"}); n != 1 {
		t.Fatalf("conflicts = %v, want 1", n)
	}
	if len(got.ManagedFields) == 0 {
		t.Fatal("managedFields lost")
	}
}

package controller

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/causewaymesh/causeway/gateway"
)

// The ignores are client-go's and the test cluster's background
// goroutines (klog's flusher, idle HTTP connections, workqueue metrics),
// as in discovery's TestMain.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// TestLoop drives the debounce and the backoff with a fake clock.
func TestLoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc := clocktesting.NewFakeClock(time.Unix(1000, 0))
	m, err := newMetrics(prometheus.NewRegistry(), "t")
	if err != nil {
		t.Fatal(err)
	}
	const debounce, retryMin, retryMax = 100 * time.Millisecond, time.Second, 3 * time.Second
	c := &Controller{o: Options{Debounce: debounce, RetryMin: retryMin, RetryMax: retryMax}, clock: fc, metrics: m,
		poke: make(chan struct{}, 1), log: slog.New(slog.DiscardHandler)}
	calls := make(chan struct{})
	results := make(chan error)
	done := make(chan error, 1)
	go func() {
		done <- c.loop(ctx, func(context.Context) error {
			calls <- struct{}{}
			return <-results
		})
	}()
	// call expects one reconcile and answers it with err.
	call := func(what string, err error) {
		t.Helper()
		select {
		case <-calls:
			results <- err
		case <-ctx.Done():
			t.Fatalf("%s: no reconcile", what)
		}
	}
	// waiting expects the loop to be waiting on a timer, without a
	// reconcile.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	waiting := func(what string) {
		t.Helper()
		for !fc.HasWaiters() {
			select {
			case <-calls:
				t.Fatalf("%s: reconciled, want a wait", what)
			case <-ctx.Done():
				t.Fatalf("%s: the loop set no timer", what)
			case <-tick.C:
			}
		}
	}

	c.Trigger()
	call("an isolated change is handled at once", nil)
	c.Trigger()
	waiting("a change within the window")
	c.Trigger() // coalesced into the same window
	fc.Step(debounce)
	call("the window's end", nil)

	fc.Step(time.Minute)
	c.Trigger()
	call("a change after a quiet minute", errors.New("boom"))
	waiting("backoff after one failure")
	fc.Step(retryMin - time.Millisecond)
	waiting("backoff not over")
	fc.Step(time.Millisecond)
	call("retry after RetryMin", errors.New("boom"))
	waiting("second backoff")
	fc.Step(2*retryMin - time.Millisecond)
	waiting("second backoff doubles")
	fc.Step(time.Millisecond)
	call("retry after 2·RetryMin", errors.New("boom"))
	waiting("third backoff (4s)")
	c.Trigger() // a change ends the backoff; it waits for the debounce window only
	waiting("a change within the window after a failure")
	fc.Step(debounce)
	call("the change is handled at the window's end, not after the backoff", nil)

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("loop: %v", err)
	}
}

func TestBackoffFor(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{{1, 200 * time.Millisecond}, {2, 400 * time.Millisecond}, {3, 800 * time.Millisecond}, {8, 25600 * time.Millisecond}, {9, 30 * time.Second}, {1000, 30 * time.Second}}
	for _, tt := range tests {
		if got := backoffFor(200*time.Millisecond, 30*time.Second, tt.failures); got != tt.want {
			t.Errorf("backoffFor(%d) = %s, want %s", tt.failures, got, tt.want)
		}
	}
}

func cond(typ string, st metav1.ConditionStatus, reason string, gen int64, ltt time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: st, Reason: reason, ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(ltt), Message: reason}
}

func TestMergeRouteParents(t *testing.T) {
	const ours, theirs = "causeway.dev/gateway-controller", "example.com/other"
	old, now := time.Unix(100, 0), time.Unix(200, 0)
	gw := func(name string) gatewayv1.ParentReference {
		return gatewayv1.ParentReference{Name: gatewayv1.ObjectName(name)}
	}
	defaulted := func(name string) gatewayv1.ParentReference {
		return gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group(gatewayv1.GroupName)), Kind: ptr.To(gatewayv1.Kind("Gateway")), Namespace: ptr.To(gatewayv1.Namespace("shop")), Name: gatewayv1.ObjectName(name)}
	}
	rps := func(p gatewayv1.ParentReference, ctrl string, conds ...metav1.Condition) gatewayv1.RouteParentStatus {
		return gatewayv1.RouteParentStatus{ParentRef: p, ControllerName: gatewayv1.GatewayController(ctrl), Conditions: conds}
	}
	accepted := func(st metav1.ConditionStatus, gen int64, ltt time.Time) metav1.Condition {
		return cond("Accepted", st, "Accepted", gen, ltt)
	}
	tests := []struct {
		name         string
		stored, ours []gatewayv1.RouteParentStatus
		want         []gatewayv1.RouteParentStatus
		changed      bool
	}{
		{"nothing", nil, nil, []gatewayv1.RouteParentStatus{}, false},
		{"new entry", nil, []gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 1, now))},
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 1, now))}, true},
		{"same status keeps the stored time: no change",
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 1, old))},
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 1, now))},
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 1, old))}, false},
		{"defaulted parentRef matches",
			[]gatewayv1.RouteParentStatus{rps(defaulted("a"), ours, accepted("True", 1, old))},
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 2, now))},
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 2, old))}, true},
		{"status change takes the new time",
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 1, old))},
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("False", 2, now))},
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("False", 2, now))}, true},
		{"other controllers' entries kept first, ours removed when gone",
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 1, old)), rps(gw("x"), theirs, accepted("True", 7, old))},
			nil,
			[]gatewayv1.RouteParentStatus{rps(gw("x"), theirs, accepted("True", 7, old))}, true},
		{"stable order: theirs then ours",
			[]gatewayv1.RouteParentStatus{rps(gw("x"), theirs, accepted("False", 7, old)), rps(gw("a"), ours, accepted("True", 1, old))},
			[]gatewayv1.RouteParentStatus{rps(gw("a"), ours, accepted("True", 1, now))},
			[]gatewayv1.RouteParentStatus{rps(gw("x"), theirs, accepted("False", 7, old)), rps(gw("a"), ours, accepted("True", 1, old))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := mergeRouteParents(tt.stored, tt.ours, ours, "shop")
			if changed != tt.changed || !equalStatus(got, tt.want) || got == nil {
				t.Fatalf("got %+v changed=%v, want %+v changed=%v", got, changed, tt.want, tt.changed)
			}
		})
	}
}

func TestWithAddresses(t *testing.T) {
	st := gateway.GatewayStatus{Namespace: "shop", Name: "gw", Status: gatewayv1.GatewayStatus{Conditions: []metav1.Condition{
		cond("Accepted", "True", "Accepted", 3, time.Unix(1, 0)), cond("Programmed", "True", "Programmed", 3, time.Unix(1, 0))}}}
	invalid := gateway.GatewayStatus{Namespace: "shop", Name: "gw", Status: gatewayv1.GatewayStatus{Conditions: []metav1.Condition{
		cond("Programmed", "False", "Invalid", 3, time.Unix(1, 0))}}}
	tests := []struct {
		name       string
		in         gateway.GatewayStatus
		addrs      []gatewayv1.GatewayStatusAddress
		wantReason string
		wantAddrs  int
	}{
		{"no address", st, nil, "AddressNotAssigned", 0},
		{"an address", st, []gatewayv1.GatewayStatusAddress{{Value: "127.0.0.1"}}, "Programmed", 1},
		{"invalid stays invalid", invalid, nil, "Invalid", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := withAddresses(tt.in, tt.addrs)
			p := got.Conditions[len(got.Conditions)-1]
			if p.Reason != tt.wantReason || len(got.Addresses) != tt.wantAddrs || p.ObservedGeneration != 3 {
				t.Fatalf("got %+v", got)
			}
			if tt.wantAddrs > 0 && (got.Addresses[0].Type == nil || *got.Addresses[0].Type != gatewayv1.IPAddressType) {
				t.Fatalf("address type not defaulted: %+v", got.Addresses)
			}
			if tt.in.Status.Conditions[len(tt.in.Status.Conditions)-1].Reason == "AddressNotAssigned" {
				t.Fatal("the input was modified")
			}
		})
	}
}

func TestMergeGatewayStatusKeepsListenerTimes(t *testing.T) {
	old, now := time.Unix(100, 0), time.Unix(200, 0)
	stored := gatewayv1.GatewayStatus{Listeners: []gatewayv1.ListenerStatus{{Name: "http", Conditions: []metav1.Condition{cond("Accepted", "True", "Accepted", 1, old)}}}}
	desired := gatewayv1.GatewayStatus{Listeners: []gatewayv1.ListenerStatus{
		{Name: "https", Conditions: []metav1.Condition{cond("Accepted", "True", "Accepted", 1, now)}},
		{Name: "http", Conditions: []metav1.Condition{cond("Accepted", "True", "Accepted", 1, now)}}}}
	got := mergeGatewayStatus(stored, desired)
	if !got.Listeners[1].Conditions[0].LastTransitionTime.Time.Equal(old) || !got.Listeners[0].Conditions[0].LastTransitionTime.Time.Equal(now) {
		t.Fatalf("got %+v", got.Listeners)
	}
	if !desired.Listeners[1].Conditions[0].LastTransitionTime.Time.Equal(now) {
		t.Fatal("desired was modified")
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no client", Options{}, "Config, or Kube, Gateway and MCS: required"},
		{"bad controller name", Options{ControllerName: "nodomain"}, "ControllerName"},
		{"negative resync", Options{Resync: -1}, "Resync -1ns: must not be negative"},
		{"backoff", Options{RetryMin: time.Minute, RetryMax: time.Second}, "RetryMin 1m0s, RetryMax 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want %q", err, tt.want)
			}
		})
	}
}

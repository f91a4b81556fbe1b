package controller

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/causewaymesh/causeway/gateway"
)

// BenchmarkNoopReconcile is the cost of a reconcile that finds every
// status already right (a resync): list, Translate, compare, no write.
// The fake clientset is only a sentinel: a write fails the benchmark.
func BenchmarkNoopReconcile(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) { benchNoop(b, n) })
	}
}

func benchNoop(b *testing.B, n int) {
	now := time.Unix(1700000000, 0)
	class := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "causeway", Generation: 1}, Spec: gatewayv1.GatewayClassSpec{ControllerName: gateway.ControllerName}}
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "shop", Generation: 1}, Spec: gatewayv1.GatewaySpec{GatewayClassName: "causeway",
		Listeners: []gatewayv1.Listener{{Name: "http", Port: 8080, Protocol: gatewayv1.HTTPProtocolType}}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
	var routes []*gatewayv1.HTTPRoute
	for i := range n {
		routes = append(routes, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("r%d", i), Namespace: "shop", Generation: 1},
			Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}},
				Rules: []gatewayv1.HTTPRouteRule{{
					Matches:     []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To(fmt.Sprintf("/r%d", i))}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: ptr.To(gatewayv1.PortNumber(8080))}}}},
				}}}})
	}
	// The statuses a first reconcile would have written.
	out, err := gateway.Translate(gateway.Input{Now: now, GatewayClasses: []gatewayv1.GatewayClass{*class}, Gateways: []gatewayv1.Gateway{*gw},
		HTTPRoutes: values(routes), Services: []corev1.Service{*svc}})
	if err != nil || len(out.HTTPRoutes) != n {
		b.Fatalf("Translate: %v, %d route statuses", err, len(out.HTTPRoutes))
	}
	class.Status = mergeClassStatus(class.Status, out.GatewayClasses[0].Status)
	gw.Status = mergeGatewayStatus(gw.Status, withAddresses(out.Gateways[0], nil))
	for _, st := range out.HTTPRoutes {
		for _, r := range routes {
			if r.Name == st.Name {
				r.Status.Parents, _ = mergeRouteParents(nil, st.Status.Parents, gateway.ControllerName, "shop")
			}
		}
	}

	idx := func(objs ...any) cache.Indexer {
		ix := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := ix.Add(o); err != nil {
				b.Fatal(err)
			}
		}
		return ix
	}
	routeObjs := make([]any, len(routes))
	for i, r := range routes {
		routeObjs[i] = r
	}
	s := &informerSet{
		classes: gwlisters.NewGatewayClassLister(idx(class)), gateways: gwlisters.NewGatewayLister(idx(gw)),
		httpRoutes: gwlisters.NewHTTPRouteLister(idx(routeObjs...)), grants: gwlisters.NewReferenceGrantLister(idx()),
		services:   func() ([]*corev1.Service, error) { return []*corev1.Service{svc}, nil },
		namespaces: func() ([]*corev1.Namespace, error) { return nil, nil },
		secrets:    func() ([]*corev1.Secret, error) { return nil, nil },
	}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, "")
	if err != nil {
		b.Fatal(err)
	}
	c := &Controller{o: Options{Gateway: gwfake.NewClientset()}, ctrl: gateway.ControllerName, clock: clock.RealClock{}, metrics: m,
		log: slog.New(slog.DiscardHandler), overlay: map[string]overlayEntry{}}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.reconcile(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if w := metric(b, reg, "causeway_gateway_status_writes_total", nil); w != 0 {
		b.Fatalf("a no-op reconcile sent %v status writes", w)
	}
}

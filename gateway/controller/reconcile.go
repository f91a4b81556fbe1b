package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/causewaymesh/causeway/gateway"
	"github.com/causewaymesh/causeway/internal/model"
)

// snapshot is the caches' contents for one reconcile: the cached objects
// (pointers into the informers' stores, only read) and the Input built
// from them.
type snapshot struct {
	classes    []*gatewayv1.GatewayClass
	gateways   []*gatewayv1.Gateway
	httpRoutes []*gatewayv1.HTTPRoute
	grpcRoutes []*gatewayv1.GRPCRoute
	tlsRoutes  []*gatewayv1.TLSRoute
	in         gateway.Input
}

func (s *informerSet) snapshot() (*snapshot, error) {
	var (
		sn   snapshot
		errs []error
		err  error
	)
	all := labels.Everything()
	sn.classes, err = s.classes.List(all)
	errs = append(errs, err)
	sn.gateways, err = s.gateways.List(all)
	errs = append(errs, err)
	sn.httpRoutes, err = s.httpRoutes.List(all)
	errs = append(errs, err)
	if s.grpcRoutes != nil {
		sn.grpcRoutes, err = s.grpcRoutes.List(all)
		errs = append(errs, err)
	}
	if s.tlsRoutes != nil {
		sn.tlsRoutes, err = s.tlsRoutes.List(all)
		errs = append(errs, err)
	}
	grants, err := s.grants.List(all)
	errs = append(errs, err)
	services, err := s.services()
	errs = append(errs, err)
	namespaces, err := s.namespaces()
	errs = append(errs, err)
	secrets, err := s.secrets()
	errs = append(errs, err)
	var imports []*mcsv1alpha1.ServiceImport
	if s.imports != nil {
		imports, err = s.imports.List(all)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("gateway controller: listing the informer caches: %w", err)
	}
	sn.in = gateway.Input{
		GatewayClasses: values(sn.classes), Gateways: values(sn.gateways),
		HTTPRoutes: values(sn.httpRoutes), GRPCRoutes: values(sn.grpcRoutes), TLSRoutes: values(sn.tlsRoutes),
		ReferenceGrants: values(grants), Services: values(services), ServiceImports: values(imports),
		Namespaces: values(namespaces), Secrets: values(secrets),
	}
	return &sn, nil
}

// values copies the structs (shallowly: Translate only reads them).
func values[T any](ps []*T) []T {
	out := make([]T, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

// reconcile translates the caches' contents, publishes the route tables
// and writes the statuses that differ.
func (c *Controller) reconcile(ctx context.Context, s *informerSet) error {
	sn, err := s.snapshot()
	if err != nil {
		c.metrics.errors.WithLabelValues("list").Inc()
		return err
	}
	sn.in.ControllerName = c.ctrl
	sn.in.Now = c.clock.Now()
	out, err := gateway.Translate(sn.in)
	if err != nil {
		return fmt.Errorf("gateway controller: %w", err) // New checked the only cause
	}
	c.publish(out.Routes)
	visited := map[string]bool{}
	err = c.writeStatuses(ctx, sn, &out, visited)
	for k := range c.overlay {
		if !visited[k] {
			delete(c.overlay, k)
		}
	}
	return err
}

// publish hands the tables to OnRoutes when they changed.
func (c *Controller) publish(routes []model.RouteTable) {
	c.metrics.routeTables.Set(float64(len(routes)))
	if c.published && slices.EqualFunc(c.routes, routes, model.RouteTable.Equal) {
		return
	}
	c.routes, c.published = routes, true
	c.log.Info("gateway controller: route tables changed", "tables", len(routes))
	if c.o.OnRoutes != nil {
		c.o.OnRoutes(routes)
	}
}

func (c *Controller) writeStatuses(ctx context.Context, sn *snapshot, out *gateway.Output, visited map[string]bool) error {
	var errs []error
	gw := c.o.Gateway.GatewayV1()

	ours := map[string]bool{}
	classes := byKey(sn.classes)
	classOps := kindOps[*gatewayv1.GatewayClass]{kind: "GatewayClass",
		get: func(ctx context.Context, _, name string) (*gatewayv1.GatewayClass, error) {
			return gw.GatewayClasses().Get(ctx, name, metav1.GetOptions{})
		},
		update: func(ctx context.Context, o *gatewayv1.GatewayClass) (*gatewayv1.GatewayClass, error) {
			return gw.GatewayClasses().UpdateStatus(ctx, o, metav1.UpdateOptions{})
		}}
	for _, st := range out.GatewayClasses {
		cached := classes[st.Name]
		if cached == nil || string(cached.Spec.ControllerName) != c.ctrl {
			continue
		}
		ours[st.Name] = true
		errs = append(errs, writeStatus(ctx, c, classOps, cached, visited, func(o *gatewayv1.GatewayClass) (*gatewayv1.GatewayClass, bool) {
			if string(o.Spec.ControllerName) != c.ctrl {
				return o, false
			}
			merged := mergeClassStatus(o.Status, st.Status)
			if equalStatus(o.Status, merged) {
				return o, false
			}
			n := o.DeepCopy()
			n.Status = merged
			return n, true
		}))
	}

	gateways := byKey(sn.gateways)
	gwOps := kindOps[*gatewayv1.Gateway]{kind: "Gateway",
		get: func(ctx context.Context, ns, name string) (*gatewayv1.Gateway, error) {
			return gw.Gateways(ns).Get(ctx, name, metav1.GetOptions{})
		},
		update: func(ctx context.Context, o *gatewayv1.Gateway) (*gatewayv1.Gateway, error) {
			return gw.Gateways(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
		}}
	for _, st := range out.Gateways {
		cached := gateways[st.Namespace+"/"+st.Name]
		if cached == nil || !ours[string(cached.Spec.GatewayClassName)] {
			continue
		}
		var addrs []gatewayv1.GatewayStatusAddress
		if c.o.Addresses != nil {
			addrs = c.o.Addresses(types.NamespacedName{Namespace: st.Namespace, Name: st.Name})
		}
		desired := withAddresses(st, addrs)
		errs = append(errs, writeStatus(ctx, c, gwOps, cached, visited, func(o *gatewayv1.Gateway) (*gatewayv1.Gateway, bool) {
			if o.Spec.GatewayClassName != cached.Spec.GatewayClassName {
				return o, false // moved to another class since the snapshot; the next reconcile decides
			}
			merged := mergeGatewayStatus(o.Status, desired)
			if equalStatus(o.Status, merged) {
				return o, false
			}
			n := o.DeepCopy()
			n.Status = merged
			return n, true
		}))
	}

	errs = append(errs,
		writeRoutes(ctx, c, kindOps[*gatewayv1.HTTPRoute]{kind: "HTTPRoute",
			get: func(ctx context.Context, ns, name string) (*gatewayv1.HTTPRoute, error) {
				return gw.HTTPRoutes(ns).Get(ctx, name, metav1.GetOptions{})
			},
			update: func(ctx context.Context, o *gatewayv1.HTTPRoute) (*gatewayv1.HTTPRoute, error) {
				return gw.HTTPRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			}}, func(o *gatewayv1.HTTPRoute) *gatewayv1.RouteStatus { return &o.Status.RouteStatus },
			(*gatewayv1.HTTPRoute).DeepCopy, sn.httpRoutes, out.HTTPRoutes, visited),
		writeRoutes(ctx, c, kindOps[*gatewayv1.GRPCRoute]{kind: "GRPCRoute",
			get: func(ctx context.Context, ns, name string) (*gatewayv1.GRPCRoute, error) {
				return gw.GRPCRoutes(ns).Get(ctx, name, metav1.GetOptions{})
			},
			update: func(ctx context.Context, o *gatewayv1.GRPCRoute) (*gatewayv1.GRPCRoute, error) {
				return gw.GRPCRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			}}, func(o *gatewayv1.GRPCRoute) *gatewayv1.RouteStatus { return &o.Status.RouteStatus },
			(*gatewayv1.GRPCRoute).DeepCopy, sn.grpcRoutes, out.GRPCRoutes, visited),
		writeRoutes(ctx, c, kindOps[*gatewayv1.TLSRoute]{kind: "TLSRoute",
			get: func(ctx context.Context, ns, name string) (*gatewayv1.TLSRoute, error) {
				return gw.TLSRoutes(ns).Get(ctx, name, metav1.GetOptions{})
			},
			update: func(ctx context.Context, o *gatewayv1.TLSRoute) (*gatewayv1.TLSRoute, error) {
				return gw.TLSRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			}}, func(o *gatewayv1.TLSRoute) *gatewayv1.RouteStatus { return &o.Status.RouteStatus },
			(*gatewayv1.TLSRoute).DeepCopy, sn.tlsRoutes, out.TLSRoutes, visited),
	)
	return errors.Join(errs...)
}

func byKey[T metav1.Object](objs []T) map[string]T {
	m := make(map[string]T, len(objs))
	for _, o := range objs {
		if o.GetNamespace() == "" {
			m[o.GetName()] = o
		} else {
			m[o.GetNamespace()+"/"+o.GetName()] = o
		}
	}
	return m
}

// writeRoutes makes the entries with our controllerName in every cached
// route's status.parents what Translate says (none for routes it did not
// report), keeping other controllers' entries.
func writeRoutes[T statusObject](ctx context.Context, c *Controller, ops kindOps[T], status func(T) *gatewayv1.RouteStatus, deepCopy func(T) T,
	cached []T, desired []gateway.RouteStatus, visited map[string]bool) error {
	want := make(map[string][]gatewayv1.RouteParentStatus, len(desired))
	for _, d := range desired {
		want[d.Namespace+"/"+d.Name] = d.Status.Parents
	}
	var errs []error
	for _, obj := range cached {
		ours := want[obj.GetNamespace()+"/"+obj.GetName()]
		errs = append(errs, writeStatus(ctx, c, ops, obj, visited, func(o T) (T, bool) {
			merged, changed := mergeRouteParents(status(o).Parents, ours, c.ctrl, o.GetNamespace())
			if !changed {
				return o, false
			}
			n := deepCopy(o)
			status(n).Parents = merged
			return n, true
		}))
	}
	return errors.Join(errs...)
}

// statusObject is a pointer to a Kubernetes object.
type statusObject interface {
	metav1.Object
	runtime.Object
}

// kindOps reads and writes the status of one kind.
type kindOps[T statusObject] struct {
	kind   string
	get    func(ctx context.Context, namespace, name string) (T, error)
	update func(ctx context.Context, obj T) (T, error)
}

// overlayEntry is an object this controller wrote while the cache still
// held the version at fromRV: until the cache moves past fromRV, the
// written object is the fresher one (this avoids a conflicting write when
// the next reconcile runs before the watch delivers our own write).
type overlayEntry struct {
	fromRV string
	obj    any
}

const maxWriteAttempts = 5

// writeStatus writes desire(obj)'s status when desire reports a change,
// retrying conflicts on a fresh read. desire must not modify its argument.
func writeStatus[T statusObject](ctx context.Context, c *Controller, ops kindOps[T], cached T, visited map[string]bool, desire func(T) (T, bool)) error {
	ns, name := cached.GetNamespace(), cached.GetName()
	key := ops.kind + " " + ns + "/" + name
	if ns == "" {
		key = ops.kind + " " + name
	}
	visited[key] = true
	obj := cached
	if e, ok := c.overlay[key]; ok {
		if e.fromRV == cached.GetResourceVersion() {
			obj = e.obj.(T)
		} else {
			delete(c.overlay, key)
		}
	}
	for attempt := 1; ; attempt++ {
		next, changed := desire(obj)
		if !changed {
			return nil
		}
		written, err := ops.update(ctx, next)
		switch {
		case err == nil:
			c.metrics.statusWrites.WithLabelValues(ops.kind, "ok").Inc()
			c.overlay[key] = overlayEntry{fromRV: cached.GetResourceVersion(), obj: written}
			c.log.Debug("gateway controller: status written", "object", key, "resourceVersion", written.GetResourceVersion())
			return nil
		case apierrors.IsNotFound(err):
			c.metrics.statusWrites.WithLabelValues(ops.kind, "gone").Inc()
			return nil
		case apierrors.IsConflict(err) && attempt < maxWriteAttempts:
			c.metrics.statusWrites.WithLabelValues(ops.kind, "conflict").Inc()
			fresh, err := ops.get(ctx, ns, name)
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				c.metrics.errors.WithLabelValues("read").Inc()
				return fmt.Errorf("%s: reading it after a conflicting status write: %w", key, err)
			}
			obj = fresh
		default:
			c.metrics.statusWrites.WithLabelValues(ops.kind, "error").Inc()
			c.metrics.errors.WithLabelValues("status").Inc()
			return fmt.Errorf("%s: writing status (attempt %d): %w", key, attempt, err)
		}
	}
}

// withAddresses is the Gateway status to write: Translate's, with the
// addresses, and Programmed=False AddressNotAssigned when there are none
// (Translate reports Programmed=True as soon as a listener is programmed;
// it does not know the addresses).
func withAddresses(st gateway.GatewayStatus, addrs []gatewayv1.GatewayStatusAddress) gatewayv1.GatewayStatus {
	s := st.Status
	s.Conditions = slices.Clone(s.Conditions)
	s.Addresses = nil
	for _, a := range addrs {
		if a.Type == nil {
			t := gatewayv1.IPAddressType // the CRD's default
			a.Type = &t
		}
		s.Addresses = append(s.Addresses, a)
	}
	if len(s.Addresses) > 0 {
		return s
	}
	for i := range s.Conditions {
		cnd := &s.Conditions[i]
		if cnd.Type == string(gatewayv1.GatewayConditionProgrammed) && cnd.Status == metav1.ConditionTrue {
			cnd.Status = metav1.ConditionFalse
			cnd.Reason = string(gatewayv1.GatewayReasonAddressNotAssigned)
			cnd.Message = fmt.Sprintf("Gateway %s/%s: listeners are programmed but no address is assigned yet; it is reported once the ingress proxy serving the Gateway listens (%s)",
				st.Namespace, st.Name, cnd.Message)
		}
	}
	return s
}

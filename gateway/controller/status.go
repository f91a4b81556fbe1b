package controller

import (
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The merge functions below are pure: they return the status to write
// given the stored one and Translate's, without modifying either. Each
// condition keeps the stored lastTransitionTime when its status did not
// change, so comparing the result with the stored status (equalStatus)
// ignores lastTransitionTime as it should.

// equalStatus compares statuses semantically (nil and empty slices are
// equal, times by instant).
func equalStatus[T any](a, b T) bool { return equality.Semantic.DeepEqual(a, b) }

// mergeConditions returns desired with the stored lastTransitionTime of
// every condition whose type is stored with the same status.
func mergeConditions(stored, desired []metav1.Condition) []metav1.Condition {
	out := slices.Clone(desired)
	for i := range out {
		if s := meta.FindStatusCondition(stored, out[i].Type); s != nil && s.Status == out[i].Status {
			out[i].LastTransitionTime = s.LastTransitionTime
		}
	}
	return out
}

// mergeClassStatus: an owned GatewayClass's status is entirely ours.
func mergeClassStatus(stored, desired gatewayv1.GatewayClassStatus) gatewayv1.GatewayClassStatus {
	out := desired
	out.Conditions = mergeConditions(stored.Conditions, desired.Conditions)
	return out
}

// mergeGatewayStatus: an owned Gateway's status is entirely ours;
// listeners are matched by name.
func mergeGatewayStatus(stored, desired gatewayv1.GatewayStatus) gatewayv1.GatewayStatus {
	out := desired
	out.Conditions = mergeConditions(stored.Conditions, desired.Conditions)
	out.Listeners = slices.Clone(desired.Listeners)
	for i := range out.Listeners {
		l := &out.Listeners[i]
		if j := slices.IndexFunc(stored.Listeners, func(s gatewayv1.ListenerStatus) bool { return s.Name == l.Name }); j >= 0 {
			l.Conditions = mergeConditions(stored.Listeners[j].Conditions, l.Conditions)
		}
	}
	return out
}

// mergeRouteParents returns the route's status.parents with other
// controllers' entries as stored (in their order) followed by ours
// (Translate's, in its order), and whether that differs from stored.
// routeNS is the route's namespace (a parentRef's default namespace).
func mergeRouteParents(stored, ours []gatewayv1.RouteParentStatus, ctrl, routeNS string) ([]gatewayv1.RouteParentStatus, bool) {
	out := make([]gatewayv1.RouteParentStatus, 0, len(stored)+len(ours)) // never nil: parents is required
	for _, p := range stored {
		if string(p.ControllerName) != ctrl {
			out = append(out, p)
		}
	}
	for _, d := range ours {
		j := slices.IndexFunc(stored, func(s gatewayv1.RouteParentStatus) bool {
			return string(s.ControllerName) == ctrl && sameParent(s.ParentRef, d.ParentRef, routeNS)
		})
		if j >= 0 {
			d.Conditions = mergeConditions(stored[j].Conditions, d.Conditions)
		}
		out = append(out, d)
	}
	return out, !equalStatus(stored, out)
}

// sameParent compares parentRefs with the API's defaults applied (group
// gateway.networking.k8s.io, kind Gateway, the route's namespace).
func sameParent(a, b gatewayv1.ParentReference, routeNS string) bool {
	norm := func(p gatewayv1.ParentReference) [6]string {
		group, kind, ns := gatewayv1.GroupName, "Gateway", routeNS
		if p.Group != nil {
			group = string(*p.Group)
		}
		if p.Kind != nil {
			kind = string(*p.Kind)
		}
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		var section, port string
		if p.SectionName != nil {
			section = string(*p.SectionName)
		}
		if p.Port != nil {
			port = strconv.Itoa(int(*p.Port))
		}
		return [6]string{group, kind, ns, string(p.Name), section, port}
	}
	return norm(a) == norm(b)
}

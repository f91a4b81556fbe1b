package xds

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/causewaymesh/causeway/internal/model"
)

// PodLocator finds the locality of a Kubernetes pod: the topology labels
// of the node it runs on. The control plane in Kubernetes mode passes
// discovery's (discovery.Kubernetes.PodLocality), so a sidecar needs no
// --locality: as istiod does, a node that sends none and whose id is
// <pod>.<namespace> gets its pod's node's region, zone and subzone.
//
// PodLocality is called on the xDS stream's goroutine when a stream opens
// (and by the snapshot key function), so it must be cheap: a read of
// informer caches. Its error names the pod or node that is missing, or the
// label to set.
type PodLocator interface {
	PodLocality(namespace, pod string) (model.Locality, error)
}

// NodeFromProtoLocating is NodeFromProto for a control plane that derives
// a missing locality with loc (nil: none is derived, as NodeFromProto).
func NodeFromProtoLocating(n *corev3.Node, cluster, network string, loc PodLocator) (Node, error) {
	return nodeFromProto(n, cluster, network, loc)
}

// locateNode derives n's locality with loc when n sent none. problem is
// "" when there was nothing to derive or the derivation succeeded; else
// why n cannot have one, naming the pod and the label to set.
func locateNode(n *Node, loc PodLocator) (problem string) {
	if loc == nil || n.Locality != (model.Locality{}) {
		return ""
	}
	pod, ns, ok := strings.Cut(n.ID, ".")
	if !ok || pod == "" || ns == "" || strings.Contains(ns, ".") {
		return fmt.Sprintf("node.locality is empty and node.id %q is not <pod>.<namespace>, so it cannot be derived from the pod's node: set --locality region/zone[/subzone] on the proxy", n.ID)
	}
	if n.Namespace != "" && ns != n.Namespace {
		return fmt.Sprintf("node.locality is empty and node.id %q names namespace %q, not the node's metadata namespace %q: set --node-id <pod>.<namespace> or --locality on the proxy", n.ID, ns, n.Namespace)
	}
	l, err := loc.PodLocality(ns, pod)
	if err != nil {
		return fmt.Sprintf("node.locality is empty and cannot be derived: %v", err)
	}
	n.Locality = l
	return ""
}

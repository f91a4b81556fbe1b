package discovery

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	listersv1 "k8s.io/client-go/listers/core/v1"

	"github.com/causewaymesh/causeway/internal/model"
)

// ErrNoLocality wraps every reason PodLocality has no answer.
var ErrNoLocality = errors.New("no locality")

// podNodeListers are the Pod and Node caches of a running Kubernetes
// source, published once they have synced.
type podNodeListers struct {
	pods  listersv1.PodLister
	nodes listersv1.NodeLister
}

// PodLocality returns the locality of pod namespace/name as Build gives its
// endpoints one: the labels topology.kubernetes.io/region, /zone and
// topology.causeway.dev/subzone of the Node it runs on, else the pod's
// causeway.dev/locality annotation. Region and zone are required. It
// reads Run's informer caches (no apiserver call) and is safe for
// concurrent use; before Run has synced them it fails. The control plane
// uses it for proxies that send no locality (xds.PodLocator).
func (k *Kubernetes) PodLocality(namespace, name string) (model.Locality, error) {
	l := k.located.Load()
	if l == nil {
		return model.Locality{}, fmt.Errorf("%w: pod %s/%s: the control plane's Kubernetes caches have not synced yet; the proxy retries", ErrNoLocality, namespace, name)
	}
	return podLocality(l.pods, l.nodes, namespace, name)
}

func podLocality(pods listersv1.PodLister, nodes listersv1.NodeLister, namespace, name string) (model.Locality, error) {
	pod, err := pods.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return model.Locality{}, fmt.Errorf("%w: pod %s/%s not found (not created yet, or the proxy's --node-id is not <pod>.<namespace>)", ErrNoLocality, namespace, name)
	}
	if err != nil {
		return model.Locality{}, fmt.Errorf("%w: pod %s/%s: %w", ErrNoLocality, namespace, name, err)
	}
	fromNode := model.Locality{}
	nodeName := pod.Spec.NodeName
	var node *corev1.Node
	if nodeName != "" {
		if node, err = nodes.Get(nodeName); err == nil {
			fromNode = model.Locality{Region: node.Labels[LabelRegion], Zone: node.Labels[LabelZone], SubZone: node.Labels[LabelSubZone]}
		}
	}
	l := fromNode
	if l == (model.Locality{}) {
		if a, ok := pod.Annotations[AnnotationLocality]; ok {
			l = ParseLocality(a)
		}
	}
	if l.Region != "" && l.Zone != "" {
		return l, nil
	}
	switch {
	case nodeName == "":
		return model.Locality{}, fmt.Errorf("%w: pod %s/%s is not scheduled (no spec.nodeName) and has no annotation %s: wait for scheduling, or annotate the pod %s=<region>/<zone>", ErrNoLocality, namespace, name, AnnotationLocality, AnnotationLocality)
	case node == nil:
		return model.Locality{}, fmt.Errorf("%w: node %q of pod %s/%s not found (%v), and the pod has no annotation %s=<region>/<zone>", ErrNoLocality, nodeName, namespace, name, err, AnnotationLocality)
	}
	missing := LabelZone
	if l.Region == "" {
		missing = LabelRegion
	}
	return model.Locality{}, fmt.Errorf("%w: node %q of pod %s/%s has no label %s: label the node (kubectl label node %s %s=<value>) or annotate the pod %s=<region>/<zone>", ErrNoLocality, nodeName, namespace, name, missing, nodeName, missing, AnnotationLocality)
}

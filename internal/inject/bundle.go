package inject

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// The trust bundle ConfigMaps. The injected sidecar mounts
// Config.TrustBundleConfigMap of its own namespace (a pod can mount no
// other namespace's), so the Server publishes it, with the roots of
// CABundle under TrustBundleKey, into every namespace but
// BundleSkippedNamespaces, as Istio's istiod does with istio-ca-root-cert.
// A pod whose ConfigMap is not there yet waits in ContainerCreating (the
// volume is not optional), which is right: without the roots its sidecar
// cannot authenticate the SVID issuer.

// BundleSkippedNamespaces get no trust bundle ConfigMap: Kubernetes' own.
var BundleSkippedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// LabelManagedBy marks the objects the injector writes.
const LabelManagedBy = "app.kubernetes.io/managed-by"

// bundleResyncFactor: every namespace's ConfigMap is applied again every
// bundleResyncFactor × ServerOptions.Resync (10 minutes by default), so a
// deleted or edited one comes back.
const bundleResyncFactor = 10

// ApplyTrustBundle sets ConfigMap Config.Inject.TrustBundleConfigMap of
// namespace ns to CABundle (key TrustBundleKey), by server-side apply as
// FieldManager: created when missing, left as it is when equal.
func (s *Server) ApplyTrustBundle(ctx context.Context, ns string) error {
	if s.o.Client == nil {
		return errors.New("inject: ApplyTrustBundle: no Client")
	}
	name := s.o.Config.Inject.TrustBundleConfigMap
	ac := corev1ac.ConfigMap(name, ns).
		WithLabels(map[string]string{LabelManagedBy: FieldManager}).
		WithData(map[string]string{TrustBundleKey: string(s.CABundle())})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.o.Client.CoreV1().ConfigMaps(ns).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("inject: applying the trust bundle ConfigMap %s/%s (needs create and patch on configmaps; install manifests/ first): %w", ns, name, err)
	}
	return nil
}

// bundleLoop publishes the trust bundle ConfigMap into each namespace when
// the namespace appears, into all of them after each renewal (a new root)
// and every bundleResyncFactor × Resync. Namespace events only enqueue the
// name; one worker applies, retrying failures with backoff.
func (s *Server) bundleLoop(ctx context.Context) {
	f := informers.NewSharedInformerFactoryWithOptions(s.o.Client, 0, informers.WithTransform(func(o any) (any, error) {
		if m, ok := o.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return o, nil
	}))
	nsInf := f.Core().V1().Namespaces()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, s.o.Resync))
	enqueue := func(o any) {
		if ns, ok := o.(*corev1.Namespace); ok {
			q.Add(ns.Name)
		}
	}
	if _, err := nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue}); err != nil {
		s.o.Logger.Error("inject: namespace informer for the trust bundle ConfigMaps; none is published", "err", err)
		return
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	var worker sync.WaitGroup
	defer worker.Wait() // after q.ShutDown (defers run last first)
	defer q.ShutDown()
	lister := nsInf.Lister()
	worker.Go(func() { // q.ShutDown ends it
		for {
			ns, quit := q.Get()
			if quit {
				return
			}
			s.publishBundle(ctx, q, lister.Get, ns)
			q.Done(ns)
		}
	})
	if !cache.WaitForCacheSync(ctx.Done(), nsInf.Informer().HasSynced) {
		return
	}
	all := func() {
		l, _ := lister.List(labels.Everything()) // a cache read: no error
		for _, ns := range l {
			q.Add(ns.Name)
		}
	}
	t := time.NewTicker(bundleResyncFactor * s.o.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.bundleKick:
			all()
		case <-t.C:
			all()
		}
	}
}

// publishBundle applies the ConfigMap in namespace name when the namespace
// takes one; a failure is retried with backoff.
func (s *Server) publishBundle(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], get func(string) (*corev1.Namespace, error), name string) {
	ns, err := get(name)
	if apierrors.IsNotFound(err) || err == nil && (ns.Status.Phase == corev1.NamespaceTerminating || ns.DeletionTimestamp != nil) || slices.Contains(BundleSkippedNamespaces, name) {
		q.Forget(name)
		return
	}
	if err := s.ApplyTrustBundle(ctx, name); err != nil {
		if ctx.Err() == nil {
			s.o.Logger.Warn("inject: publishing the trust bundle; injected pods of the namespace wait for it", "namespace", name, "err", err)
			q.AddRateLimited(name)
		}
		return
	}
	q.Forget(name)
}

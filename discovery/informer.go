package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust/policy"
)

// Kubernetes is the Source that watches a kube-apiserver with client-go
// shared informers on Namespaces, Services, EndpointSlices, Nodes, Pods and
// (when the MCS CRD is served) multicluster.x-k8s.io/v1alpha1
// ServiceExports, and (when Causeway's CRD is served) AuthorizationPolicies
// through a dynamic informer.
//
// Informer callbacks (add, update, delete — including the
// cache.DeletedFinalStateUnknown tombstones a relist produces) only poke a
// one-slot coalescing channel. Run's goroutine is the only reconciler: on
// each poke it lists all six caches, drops objects that fail the same
// checks the folder source applies (reported by Problems), calls Build and
// emits when the snapshot differs (model.Snapshot.Equal) from the last one.
// A burst of events therefore costs one rebuild. The first snapshot is
// emitted after every cache has synced.
//
// Watches that break (an apiserver restart, a timeout, "resource version
// too old") are resumed by client-go's reflectors, which relist when they
// must; a relist that finds an object gone delivers a tombstone, which is
// just another poke here, so nothing is lost or duplicated: the model is
// always a function of the caches.
type Kubernetes struct {
	o KubernetesOptions

	poke chan struct{}
	// located is set once Run's caches have synced (PodLocality,
	// podlocality.go).
	located atomic.Pointer[podNodeListers]

	// memo and valid are rebuild's (Run's goroutine): the services built
	// last time and the validation of each cached object, by pointer, so
	// a change rebuilds and revalidates only what changed.
	memo  BuildMemo
	valid map[any][]FieldProblem

	mu       sync.Mutex
	problems []Problem
}

// KubernetesOptions configure a Kubernetes source. Either Config, or
// Client (and optionally MCS), is required.
type KubernetesOptions struct {
	BuildOptions
	// Config is used to make Client and MCS when they are nil.
	Config *rest.Config
	Client kubernetes.Interface
	MCS    mcsclient.Interface
	// Dynamic reads Causeway's own resources (AuthorizationPolicies); made
	// from Config when nil. Without either, policies are not watched.
	Dynamic dynamic.Interface
	// ServiceExports: when the apiserver does not serve
	// multicluster.x-k8s.io/v1alpha1 serviceexports at Run's start, the
	// source runs without them (nothing is exported) and logs a warning.
	// Set RequireServiceExports to make that an error instead.
	RequireServiceExports bool
	// Resync is the informers' resync period; 0 (default) disables resync.
	Resync time.Duration
	// SyncTimeout bounds the wait for the first full list; default 2m.
	SyncTimeout time.Duration
	// OnProblems, when set, is called on Run's goroutine with the complete
	// current problem list each time it changes.
	OnProblems func([]Problem)
	Logger     *slog.Logger
}

// NewKubernetes checks o and returns a source; nothing is contacted until
// Run.
func NewKubernetes(o KubernetesOptions) (*Kubernetes, error) {
	var errs []error
	if o.Cluster == "" {
		errs = append(errs, errors.New("kubernetes source: Cluster: required; name the cluster the apiserver serves"))
	}
	if o.Client == nil && o.Config == nil {
		errs = append(errs, errors.New("kubernetes source: Config or Client: required; pass a rest.Config (e.g. from a kubeconfig)"))
	}
	if o.Resync < 0 {
		errs = append(errs, fmt.Errorf("kubernetes source: Resync %s: must not be negative", o.Resync))
	}
	if o.Client == nil && o.Config != nil {
		c, err := kubernetes.NewForConfig(o.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("kubernetes source: Config: %w", err))
		}
		o.Client = c
	}
	if o.MCS == nil && o.Config != nil {
		c, err := mcsclient.NewForConfig(o.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("kubernetes source: Config (MCS client): %w", err))
		}
		o.MCS = c
	}
	if o.Dynamic == nil && o.Config != nil {
		c, err := dynamic.NewForConfig(o.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("kubernetes source: Config (dynamic client): %w", err))
		}
		o.Dynamic = c
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Kubernetes{o: o, poke: make(chan struct{}, 1)}, nil
}

// Problems returns the objects currently left out of the model and why.
func (k *Kubernetes) Problems() []Problem {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.problems)
}

// enqueue is every informer callback: it never blocks and never reads the
// object, so tombstones need no unwrapping.
func (k *Kubernetes) enqueue() {
	select {
	case k.poke <- struct{}{}:
	default:
	}
}

type listers struct {
	namespaces func() ([]*corev1.Namespace, error)
	services   func() ([]*corev1.Service, error)
	slices     func() ([]*discoveryv1.EndpointSlice, error)
	nodes      func() ([]*corev1.Node, error)
	pods       func() ([]*corev1.Pod, error)
	exports    func() ([]*mcsv1alpha1.ServiceExport, error)
	policies   func() ([]*policy.AuthorizationPolicy, error)
}

// Run starts the informers, waits for their caches, emits the first
// snapshot, then one snapshot per effective change until ctx ends.
func (k *Kubernetes) Run(ctx context.Context, emit func(*model.Snapshot)) error {
	withExports, err := k.servesServiceExports()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	strip := informers.WithTransform(stripManagedFields)
	kf := informers.NewSharedInformerFactoryWithOptions(k.o.Client, k.o.Resync, strip)
	var (
		mf mcsinformers.SharedInformerFactory
		df dynamicinformer.DynamicSharedInformerFactory
	)
	defer func() {
		cancel()
		kf.Shutdown()
		if mf != nil {
			mf.Shutdown()
		}
		if df != nil {
			df.Shutdown()
		}
	}()

	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.enqueue() },
		UpdateFunc: func(_, _ any) { k.enqueue() },
		DeleteFunc: func(any) { k.enqueue() }, // object or cache.DeletedFinalStateUnknown
	}
	var add []error
	watch := func(name string, inf cache.SharedIndexInformer) {
		if _, err := inf.AddEventHandler(h); err != nil {
			add = append(add, fmt.Errorf("kubernetes source: %s informer: %w", name, err))
		}
	}
	core, disc := kf.Core().V1(), kf.Discovery().V1()
	watch("Namespace", core.Namespaces().Informer())
	watch("Service", core.Services().Informer())
	watch("EndpointSlice", disc.EndpointSlices().Informer())
	watch("Node", core.Nodes().Informer())
	watch("Pod", core.Pods().Informer())
	l := listers{
		namespaces: func() ([]*corev1.Namespace, error) { return core.Namespaces().Lister().List(labels.Everything()) },
		services:   func() ([]*corev1.Service, error) { return core.Services().Lister().List(labels.Everything()) },
		slices: func() ([]*discoveryv1.EndpointSlice, error) {
			return disc.EndpointSlices().Lister().List(labels.Everything())
		},
		nodes:    func() ([]*corev1.Node, error) { return core.Nodes().Lister().List(labels.Everything()) },
		pods:     func() ([]*corev1.Pod, error) { return core.Pods().Lister().List(labels.Everything()) },
		exports:  func() ([]*mcsv1alpha1.ServiceExport, error) { return nil, nil },
		policies: func() ([]*policy.AuthorizationPolicy, error) { return nil, nil },
	}
	if k.o.Dynamic != nil && k.servesPolicies() {
		df = dynamicinformer.NewDynamicSharedInformerFactory(k.o.Dynamic, k.o.Resync)
		inf := df.ForResource(policy.GroupVersionResource())
		watch(policy.Kind, inf.Informer())
		l.policies = func() ([]*policy.AuthorizationPolicy, error) { return listPolicies(inf.Lister()) }
	}
	if withExports {
		mf = mcsinformers.NewSharedInformerFactoryWithOptions(k.o.MCS, k.o.Resync, mcsinformers.WithTransform(stripManagedFields))
		se := mf.Multicluster().V1alpha1().ServiceExports()
		watch("ServiceExport", se.Informer())
		l.exports = func() ([]*mcsv1alpha1.ServiceExport, error) { return se.Lister().List(labels.Everything()) }
	}
	if err := errors.Join(add...); err != nil {
		return err
	}

	kf.Start(ctx.Done())
	if mf != nil {
		mf.Start(ctx.Done())
	}
	if df != nil {
		df.Start(ctx.Done())
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, k.o.SyncTimeout)
	synced := kf.WaitForCacheSync(syncCtx.Done())
	if mf != nil {
		for t, ok := range mf.WaitForCacheSync(syncCtx.Done()) {
			synced[t] = ok
		}
	}
	var notSynced []string
	if df != nil {
		for gvr, ok := range df.WaitForCacheSync(syncCtx.Done()) {
			if !ok {
				notSynced = append(notSynced, gvr.String())
			}
		}
	}
	syncCancel()
	for t, ok := range synced {
		if !ok {
			notSynced = append(notSynced, t.String())
		}
	}
	if len(notSynced) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		slices.Sort(notSynced)
		return fmt.Errorf("kubernetes source: caches of %v not synced within %s; check the apiserver address and that the credentials may list and watch them", notSynced, k.o.SyncTimeout)
	}

	k.located.Store(&podNodeListers{pods: core.Pods().Lister(), nodes: core.Nodes().Lister()})
	defer k.located.Store(nil)
	var last *model.Snapshot
	k.enqueue() // the first snapshot, even when empty
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-k.poke:
		}
		s, err := k.rebuild(&l)
		if err != nil {
			return err
		}
		// Only the services BuildWith rebuilt are validated again (last
		// was valid; the others are the same slices).
		if err := s.ValidateChanged(last); err != nil {
			// Build only sees validated objects, so this is a bug.
			k.o.Logger.Error("kubernetes source: the model built from the apiserver is invalid (a bug); keeping the last good snapshot", "err", err)
			continue
		}
		if last != nil && last.Equal(s) {
			continue
		}
		last = s
		emit(s)
	}
}

// servesPolicies asks the apiserver's discovery whether Causeway's
// AuthorizationPolicy CRD is installed; without it no policy applies.
func (k *Kubernetes) servesPolicies() bool {
	rl, err := k.o.Client.Discovery().ServerResourcesForGroupVersion(policy.APIVersion)
	if err == nil {
		for _, r := range rl.APIResources {
			if r.Name == policy.Resource {
				return true
			}
		}
	}
	k.o.Logger.Warn("kubernetes source: the apiserver does not serve AuthorizationPolicies; install manifests/crds/causeway to use them", "groupVersion", policy.APIVersion, "err", err)
	return false
}

// listPolicies converts the dynamic cache's objects. An object that does
// not convert is returned as a policy that fails validation (an empty
// action), so it is reported rather than silently dropped.
func listPolicies(l cache.GenericLister) ([]*policy.AuthorizationPolicy, error) {
	objs, err := l.List(labels.Everything())
	out := make([]*policy.AuthorizationPolicy, 0, len(objs))
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		p := &policy.AuthorizationPolicy{}
		if cerr := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, p); cerr != nil {
			p = &policy.AuthorizationPolicy{}
			p.Name, p.Namespace = u.GetName(), u.GetNamespace()
		}
		out = append(out, p)
	}
	return out, err
}

// servesServiceExports asks the apiserver's discovery whether the MCS
// ServiceExport resource exists.
func (k *Kubernetes) servesServiceExports() (bool, error) {
	gv := mcsv1alpha1.SchemeGroupVersion.String()
	rl, err := k.o.Client.Discovery().ServerResourcesForGroupVersion(gv)
	if err == nil {
		for _, r := range rl.APIResources {
			if r.Name == "serviceexports" {
				return true, nil
			}
		}
	}
	if k.o.RequireServiceExports {
		return false, fmt.Errorf("kubernetes source: the apiserver does not serve %s serviceexports (%v); install the MCS API CRDs (sigs.k8s.io/mcs-api) or unset RequireServiceExports", gv, err)
	}
	k.o.Logger.Warn("kubernetes source: the apiserver does not serve MCS serviceexports; no service is exported", "groupVersion", gv, "err", err)
	return false, nil
}

// keepValid lists one cache and keeps the objects that pass validate; the
// others go to report.
func keepValid[T named](report func(string, named, []FieldProblem) bool, kind string, list func() ([]T, error), validate func(T) []FieldProblem, seen, next map[any][]FieldProblem) ([]T, error) {
	all, err := list()
	var out []T
	for _, o := range all {
		fps, ok := seen[o] // the same cached object: the same verdict
		if !ok {
			fps = validate(o)
		}
		next[o] = fps
		if report(kind, o, fps) {
			out = append(out, o)
		}
	}
	return out, err
}

// rebuild lists every cache and builds the snapshot. Objects that fail
// validation are left out and reported; the lists are the caches' own
// pointers and are only read.
func (k *Kubernetes) rebuild(l *listers) (*model.Snapshot, error) {
	var (
		objs     Objects
		problems []Problem
		errs     []error
	)
	report := func(kind string, m named, fps []FieldProblem) bool {
		if len(fps) == 0 {
			return true
		}
		obj := kind + " " + m.GetName()
		if ns := m.GetNamespace(); ns != "" {
			obj = kind + " " + ns + "/" + m.GetName()
		}
		for _, fp := range fps {
			problems = append(problems, Problem{File: "apiserver", Object: obj, Field: fp.Field, Message: fp.Reason + " (object left out of the model)"})
		}
		return false
	}
	var err error
	seen, next := k.valid, make(map[any][]FieldProblem, len(k.valid))
	objs.Namespaces, err = keepValid(report, "Namespace", l.namespaces, validateNamespace, seen, next)
	errs = append(errs, err)
	objs.Services, err = keepValid(report, "Service", l.services, validateService, seen, next)
	errs = append(errs, err)
	objs.EndpointSlices, err = keepValid(report, "EndpointSlice", l.slices, validateEndpointSlice, seen, next)
	errs = append(errs, err)
	objs.Nodes, err = keepValid(report, "Node", l.nodes, validateNode, seen, next)
	errs = append(errs, err)
	objs.Pods, err = keepValid(report, "Pod", l.pods, validatePod, seen, next)
	errs = append(errs, err)
	objs.ServiceExports, err = keepValid(report, "ServiceExport", l.exports, validateServiceExport, seen, next)
	errs = append(errs, err)
	objs.AuthorizationPolicies, err = keepValid(report, policy.Kind, l.policies, validateAuthorizationPolicy, seen, next)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kubernetes source: listing the informer caches: %w", err)
	}
	k.valid = next
	// Listers return map order; Build's output is canonical, but sort the
	// slices too so that "first one wins" choices inside Build (a Pod IP
	// shared by two pods) do not depend on map order.
	byKey := func(a, b named) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	}
	slices.SortFunc(objs.Namespaces, func(a, b *corev1.Namespace) int { return byKey(a, b) })
	slices.SortFunc(objs.Services, func(a, b *corev1.Service) int { return byKey(a, b) })
	slices.SortFunc(objs.EndpointSlices, func(a, b *discoveryv1.EndpointSlice) int { return byKey(a, b) })
	slices.SortFunc(objs.Nodes, func(a, b *corev1.Node) int { return byKey(a, b) })
	slices.SortFunc(objs.Pods, func(a, b *corev1.Pod) int { return byKey(a, b) })
	slices.SortFunc(objs.ServiceExports, func(a, b *mcsv1alpha1.ServiceExport) int { return byKey(a, b) })
	slices.SortFunc(problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Object, b.Object), cmp.Compare(a.Field, b.Field))
	})
	k.setProblems(problems)
	return BuildWith(&objs, k.o.BuildOptions, &k.memo), nil
}

// stripManagedFields drops metadata.managedFields (often most of an
// object's bytes) before the informers store an object.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// named is what the metav1 objects share that rebuild needs.
type named interface {
	GetNamespace() string
	GetName() string
}

func (k *Kubernetes) setProblems(ps []Problem) {
	k.mu.Lock()
	same := slices.Equal(ps, k.problems)
	k.problems = ps
	k.mu.Unlock()
	if same {
		return
	}
	for _, p := range ps {
		k.o.Logger.Warn("kubernetes source: not applied", "object", p.Object, "field", p.Field, "problem", p.Message)
	}
	if k.o.OnProblems != nil {
		k.o.OnProblems(slices.Clone(ps))
	}
}

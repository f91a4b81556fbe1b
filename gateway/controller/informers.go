package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1alpha1"
)

// resources says which optional resources the apiserver serves.
type resources struct {
	grpcRoutes, tlsRoutes, serviceImports bool
}

// discover waits until the apiserver serves the required Gateway API
// resources (checking again with backoff) and reports the optional ones.
func (c *Controller) discover(ctx context.Context) (resources, error) {
	gv := gatewayv1.GroupVersion.String()
	for failures := 1; ; failures++ {
		served, err := c.served(gv)
		missing := slices.DeleteFunc([]string{"gatewayclasses", "gateways", "httproutes", "referencegrants"}, func(r string) bool { return served[r] })
		if err == nil && len(missing) == 0 {
			r := resources{grpcRoutes: served["grpcroutes"], tlsRoutes: served["tlsroutes"]}
			mcs, _ := c.served(mcsv1alpha1.SchemeGroupVersion.String())
			r.serviceImports = mcs["serviceimports"]
			for _, o := range []struct {
				name string
				ok   bool
			}{{gv + " grpcroutes", r.grpcRoutes}, {gv + " tlsroutes", r.tlsRoutes}, {mcsv1alpha1.SchemeGroupVersion.String() + " serviceimports", r.serviceImports}} {
				if !o.ok {
					c.log.Warn("gateway controller: the apiserver does not serve an optional resource; running without it (restart after installing its CRD)", "resource", o.name)
				}
			}
			return r, nil
		}
		c.metrics.errors.WithLabelValues("discovery").Inc()
		d := backoffFor(c.o.RetryMin, c.o.RetryMax, failures)
		c.log.Warn("gateway controller: waiting for the Gateway API CRDs; install sigs.k8s.io/gateway-api v1.6.3 (standard or experimental channel)",
			"groupVersion", gv, "missing", missing, "err", err, "retryIn", d)
		t := c.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return resources{}, ctx.Err()
		case <-t.C():
		}
	}
}

func (c *Controller) served(gv string) (map[string]bool, error) {
	rl, err := c.o.Kube.Discovery().ServerResourcesForGroupVersion(gv)
	if err != nil {
		return nil, fmt.Errorf("discovery of %s: %w", gv, err)
	}
	out := map[string]bool{}
	for _, r := range rl.APIResources {
		out[r.Name] = true
	}
	return out, nil
}

// informerSet holds the started factories and their listers. Listers of
// resources not served are nil.
type informerSet struct {
	factories []interface{ Shutdown() }

	classes    gwlisters.GatewayClassLister
	gateways   gwlisters.GatewayLister
	httpRoutes gwlisters.HTTPRouteLister
	grpcRoutes gwlisters.GRPCRouteLister
	tlsRoutes  gwlisters.TLSRouteLister
	grants     gwlisters.ReferenceGrantLister
	services   func() ([]*corev1.Service, error)
	namespaces func() ([]*corev1.Namespace, error)
	secrets    func() ([]*corev1.Secret, error)
	imports    mcslisters.ServiceImportLister
}

func (s *informerSet) shutdown() {
	for _, f := range s.factories {
		f.Shutdown()
	}
}

// startInformers starts every informer and waits for the caches. The
// returned set is non-nil whenever informers were started (shut it down).
func (c *Controller) startInformers(ctx context.Context, res resources) (*informerSet, error) {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.Trigger() },
		UpdateFunc: func(_, _ any) { c.Trigger() },
		DeleteFunc: func(any) { c.Trigger() }, // object or cache.DeletedFinalStateUnknown
	}
	var errs []error
	watch := func(name string, inf cache.SharedIndexInformer) {
		if _, err := inf.AddEventHandler(h); err != nil {
			errs = append(errs, fmt.Errorf("gateway controller: %s informer: %w", name, err))
		}
	}
	kf := informers.NewSharedInformerFactoryWithOptions(c.o.Kube, c.o.Resync, informers.WithTransform(strip))
	gf := gwinformers.NewSharedInformerFactoryWithOptions(c.o.Gateway, c.o.Resync, gwinformers.WithTransform(strip))
	s := &informerSet{factories: []interface{ Shutdown() }{kf, gf}}

	g := gf.Gateway().V1()
	watch("GatewayClass", g.GatewayClasses().Informer())
	watch("Gateway", g.Gateways().Informer())
	watch("HTTPRoute", g.HTTPRoutes().Informer())
	watch("ReferenceGrant", g.ReferenceGrants().Informer())
	s.classes, s.gateways, s.httpRoutes, s.grants = g.GatewayClasses().Lister(), g.Gateways().Lister(), g.HTTPRoutes().Lister(), g.ReferenceGrants().Lister()
	if res.grpcRoutes {
		watch("GRPCRoute", g.GRPCRoutes().Informer())
		s.grpcRoutes = g.GRPCRoutes().Lister()
	}
	if res.tlsRoutes {
		watch("TLSRoute", g.TLSRoutes().Informer())
		s.tlsRoutes = g.TLSRoutes().Lister()
	}
	core := kf.Core().V1()
	watch("Service", core.Services().Informer())
	watch("Namespace", core.Namespaces().Informer())
	watch("Secret", core.Secrets().Informer())
	s.services = func() ([]*corev1.Service, error) { return core.Services().Lister().List(labels.Everything()) }
	s.namespaces = func() ([]*corev1.Namespace, error) { return core.Namespaces().Lister().List(labels.Everything()) }
	s.secrets = func() ([]*corev1.Secret, error) { return core.Secrets().Lister().List(labels.Everything()) }
	var mf mcsinformers.SharedInformerFactory
	if res.serviceImports {
		mf = mcsinformers.NewSharedInformerFactoryWithOptions(c.o.MCS, c.o.Resync, mcsinformers.WithTransform(strip))
		s.factories = append(s.factories, mf)
		si := mf.Multicluster().V1alpha1().ServiceImports()
		watch("ServiceImport", si.Informer())
		s.imports = si.Lister()
	}
	if err := errors.Join(errs...); err != nil {
		return s, err
	}

	kf.Start(ctx.Done())
	gf.Start(ctx.Done())
	if mf != nil {
		mf.Start(ctx.Done())
	}
	syncCtx, cancel := context.WithTimeout(ctx, c.o.SyncTimeout)
	defer cancel()
	var notSynced []string
	collect := func(m map[any]bool) {
		for t, ok := range m {
			if !ok {
				notSynced = append(notSynced, fmt.Sprint(t))
			}
		}
	}
	collect(anyKeys(kf.WaitForCacheSync(syncCtx.Done())))
	collect(anyKeys(gf.WaitForCacheSync(syncCtx.Done())))
	if mf != nil {
		collect(anyKeys(mf.WaitForCacheSync(syncCtx.Done())))
	}
	if len(notSynced) > 0 {
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		slices.Sort(notSynced)
		return s, fmt.Errorf("gateway controller: caches of %v not synced within %s; check the apiserver address and that the credentials may list and watch them", notSynced, c.o.SyncTimeout)
	}
	return s, nil
}

func anyKeys[K comparable](m map[K]bool) map[any]bool {
	out := make(map[any]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// strip drops what Translate never reads before an informer stores an
// object: metadata.managedFields everywhere, and a Secret's data (only its
// metadata and type matter; keys are not kept in these caches). Of a
// kubernetes.io/tls Secret whose pair does not parse, empty tls.crt and
// tls.key placeholders are kept, so Translate reports it malformed.
func strip(obj any) (any, error) {
	if s, ok := obj.(*corev1.Secret); ok {
		bad := s.Type == corev1.SecretTypeTLS && !validPair(s.Data)
		s.Data, s.StringData = nil, nil
		if bad {
			s.Data = map[string][]byte{corev1.TLSCertKey: {}, corev1.TLSPrivateKeyKey: {}}
		}
	}
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func validPair(data map[string][]byte) bool {
	_, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	return err == nil
}

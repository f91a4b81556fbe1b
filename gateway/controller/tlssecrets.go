package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// TLSSecrets keeps the certificates of kubernetes.io/tls Secrets for the
// ingress proxies' HTTPS listeners (internal/xds.IngressOptions.TLSSecret).
// Unlike the Controller's caches it holds key material: only Secrets of
// type kubernetes.io/tls are watched, and only pairs that parse
// (tls.X509KeyPair) are kept. Safe for concurrent use; Run once.
type TLSSecrets struct {
	kube     kubernetes.Interface
	onChange func()

	mu    sync.RWMutex
	pairs map[string]tlsPair // by namespace/name
}

type tlsPair struct{ cert, key []byte }

// NewTLSSecrets watches kube's TLS Secrets once Run starts. onChange, when
// not nil, is called after each change (e.g. controlplane.Republish).
func NewTLSSecrets(kube kubernetes.Interface, onChange func()) *TLSSecrets {
	return &TLSSecrets{kube: kube, onChange: onChange, pairs: map[string]tlsPair{}}
}

// Get returns the PEM certificate chain and key of Secret ns/name; ok
// false when it is missing, not kubernetes.io/tls, or its pair does not
// parse.
func (s *TLSSecrets) Get(ns, name string) (cert, key []byte, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.pairs[ns+"/"+name]
	return p.cert, p.key, ok
}

// Run watches until ctx ends. It returns once the first list is in (or
// fails to arrive within syncTimeout), keeping the watch running in the
// background until ctx ends; wait on the returned channel for it to stop.
func (s *TLSSecrets) Run(ctx context.Context, syncTimeout time.Duration) (<-chan struct{}, error) {
	f := informers.NewSharedInformerFactoryWithOptions(s.kube, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)).String()
		}))
	inf := f.Core().V1().Secrets().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.set(o, false) },
		UpdateFunc: func(_, o any) { s.set(o, false) },
		DeleteFunc: func(o any) { s.set(o, true) },
	}); err != nil {
		return nil, fmt.Errorf("gateway TLS secrets informer: %w", err)
	}
	f.Start(ctx.Done())
	done := make(chan struct{})
	go func() {
		<-ctx.Done()
		f.Shutdown()
		close(done)
	}()
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		return done, fmt.Errorf("gateway TLS secrets: cache not synced within %s; check that the credentials may list and watch Secrets", syncTimeout)
	}
	return done, nil
}

func (s *TLSSecrets) set(o any, deleted bool) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o, deleted = t.Obj, true
	}
	sec, ok := o.(*corev1.Secret)
	if !ok {
		return
	}
	k := sec.Namespace + "/" + sec.Name
	var p tlsPair
	keep := false
	if !deleted && sec.Type == corev1.SecretTypeTLS {
		p = tlsPair{cert: sec.Data[corev1.TLSCertKey], key: sec.Data[corev1.TLSPrivateKeyKey]}
		_, err := tls.X509KeyPair(p.cert, p.key)
		keep = err == nil
	}
	s.mu.Lock()
	old, had := s.pairs[k]
	if keep {
		s.pairs[k] = p
	} else {
		delete(s.pairs, k)
	}
	s.mu.Unlock()
	changed := had != keep || (keep && (string(old.cert) != string(p.cert) || string(old.key) != string(p.key)))
	if changed && s.onChange != nil {
		s.onChange()
	}
}

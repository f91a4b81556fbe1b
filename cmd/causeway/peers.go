package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kdiscovery "k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/internal/controlplane"
)

// peerLinks turns the --peer flags and the Peer objects (the folder's
// documents, or the apiserver's Peers) into the federation's peers: every
// change of the objects calls Federation.SetPeers with the flags and the
// objects together. A bad or conflicting object is a problem of its own;
// the other links keep serving.
//
// Concurrency: every method is safe from any goroutine; changes are
// applied in the order they arrive, under the mutex.
type peerLinks struct {
	cluster string
	td      spiffeid.TrustDomain
	flags   []controlplane.FederationPeer
	origin  func(*peerapi.Peer) string
	log     *slog.Logger

	mu       sync.Mutex
	fed      *controlplane.Federation // nil until attach
	objs     []*peerapi.Peer
	problems []controlplane.PeerProblem
	applyErr error
}

// attach starts applying to fed.
func (l *peerLinks) attach(fed *controlplane.Federation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fed = fed
	l.applyLocked()
}

// setObjects replaces the Peer objects (FolderOptions.OnPeers).
func (l *peerLinks) setObjects(objs []*peerapi.Peer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.objs = objs
	l.applyLocked()
}

func (l *peerLinks) applyLocked() {
	peers, problems := controlplane.CombinePeers(l.cluster, l.td, l.flags, l.objs, l.origin)
	l.problems = problems
	for _, p := range problems {
		l.log.Warn("federation: Peer not applied", "peer", p.Name, "problem", p.Err)
	}
	if l.fed == nil {
		return
	}
	l.applyErr = l.fed.SetPeers(peers)
	if l.applyErr != nil {
		l.log.Error("federation: applying the peers", "err", l.applyErr)
	}
}

// Problems are why Peer objects were not applied, one line each.
func (l *peerLinks) Problems() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, p := range l.problems {
		out = append(out, p.Error())
	}
	if l.applyErr != nil {
		out = append(out, l.applyErr.Error())
	}
	return out
}

// sourceProblems are Problems as the source reports them (admin /problems
// and /status, `causeway status`).
func (l *peerLinks) sourceProblems() []discovery.Problem {
	var out []discovery.Problem
	for _, p := range l.Problems() {
		out = append(out, discovery.Problem{File: "federation links", Message: p})
	}
	return out
}

// statuses are the statuses of the Peer objects, by name.
func (l *peerLinks) statuses(old func(name string) *peerapi.PeerStatus, now time.Time) map[string]peerapi.PeerStatus {
	l.mu.Lock()
	objs, problems, fed := slices.Clone(l.objs), slices.Clone(l.problems), l.fed
	l.mu.Unlock()
	var links []controlplane.PeerLinkStatus
	if fed != nil {
		links = fed.PeerLinks()
	}
	out := map[string]peerapi.PeerStatus{}
	for _, o := range objs {
		var ls *controlplane.PeerLinkStatus
		var problem error
		for _, p := range problems {
			if p.Name == o.Name {
				problem = p.Err
			}
		}
		if problem == nil {
			for i := range links {
				if links[i].Peer.Cluster == o.Spec.Cluster {
					ls = &links[i]
				}
			}
		}
		out[o.Name] = controlplane.PeerObjectStatus(old(o.Name), o.Generation, ls, problem, now)
	}
	return out
}

// writeLinks is the Peer objects' part of the admin /federation page: one
// line per Peer with its status (what kubernetes mode writes on the
// object).
func (l *peerLinks) writeLinks(w io.Writer) {
	st := l.statuses(func(string) *peerapi.PeerStatus { return nil }, time.Now())
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s := st[n]
		fmt.Fprintf(w, "peer %s", n)
		for _, c := range s.Conditions {
			fmt.Fprintf(w, " %s=%s", c.Type, c.Status)
		}
		last := "-"
		if s.LastSync != nil {
			last = s.LastSync.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, " last-sync=%s bundle-sequence=%d exported=%d imported=%d imported-endpoints=%d last-error=%q\n",
			last, s.BundleSequence, s.ExportedServices, s.ImportedServices, s.ImportedEndpoints, s.LastError)
	}
}

// watchPeers feeds l from the apiserver's Peers and writes their status
// every interval, until ctx ends. Without the Peer CRD installed it logs
// once and returns nil.
func watchPeers(ctx context.Context, rc *rest.Config, l *peerLinks, interval time.Duration, log *slog.Logger) error {
	dc, err := kdiscovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return fmt.Errorf("federation: Peers: %w", err)
	}
	if _, err := dc.ServerResourcesForGroupVersion(peerapi.APIVersion); err != nil {
		log.Warn("federation: the Peer CRD is not installed (kubectl apply --server-side -k manifests/crds); links come from --peer only", "err", err)
		return nil
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("federation: Peers: %w", err)
	}
	gvr := peerapi.GroupVersionResource()
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := f.ForResource(gvr).Informer()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke}); err != nil {
		return fmt.Errorf("federation: Peers: %w", err)
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	current := map[string]*peerapi.Peer{}
	read := func() {
		var objs []*peerapi.Peer
		current = map[string]*peerapi.Peer{}
		for _, o := range inf.GetStore().List() {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			p := &peerapi.Peer{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, p); err != nil {
				log.Warn("federation: Peer does not decode", "peer", u.GetName(), "err", err)
				continue
			}
			current[p.Name] = p
			spec := *p // the link is the spec; the status is ours
			spec.Status = peerapi.PeerStatus{}
			objs = append(objs, &spec)
		}
		l.setObjects(objs)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	read()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			read()
		case <-tick.C:
		}
		old := func(n string) *peerapi.PeerStatus {
			if p := current[n]; p != nil {
				return &p.Status
			}
			return nil
		}
		for name, st := range l.statuses(old, time.Now()) {
			p := current[name]
			if p == nil || equality.Semantic.DeepEqual(p.Status, st) {
				continue
			}
			p.Status = st
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
			if err != nil {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			u.SetAPIVersion(peerapi.APIVersion)
			u.SetKind(peerapi.Kind)
			if _, err := dyn.Resource(gvr).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: "causeway-control-plane"}); err != nil {
				log.Warn("federation: writing the Peer's status", "peer", name, "err", err)
			}
		}
	}
}

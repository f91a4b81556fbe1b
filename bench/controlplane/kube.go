package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/testcluster"
)

// Source modes (-source).
const (
	sourceOffer      = "offer"      // the bench offers snapshots (controlplane.Offer)
	sourceKubernetes = "kubernetes" // a real kube-apiserver, the informer source and a Merger
)

// kubeBench is -source kubernetes: a real etcd and kube-apiserver
// (internal/testcluster, no nodes components: the bench writes Services and
// EndpointSlices itself), the model's objects in it, and a writer client.
type kubeBench struct {
	cluster *testcluster.Cluster
	client  kubernetes.Interface
	slices  []*discoveryv1.EndpointSlice // by service index: the last written
	started time.Duration                // the cluster's start (etcd, apiserver, CRDs)
	created time.Duration                // creating the objects
}

// zoneNodes are the 3 Nodes the endpoints run on, one per zone of
// snapshotOf, with the topology labels discovery.Build reads.
var zoneNodes = [3]struct{ name, zone string }{{"bench-z1", "z1"}, {"bench-z2", "z2"}, {"bench-z3", "z3"}} // read-only

// startKube starts the cluster and creates the Namespaces, Nodes, Services
// and EndpointSlices of snapshotOf(c), parallel at most 32 at a time. On
// error everything it started is stopped.
func startKube(ctx context.Context, c config, logf func(string, ...any)) (_ *kubeBench, err error) {
	t0 := time.Now()
	cl, err := testcluster.New(ctx, testcluster.Options{Name: "cp-bench", GatewayAPIChannel: testcluster.ChannelNone,
		ReadyTimeout: 120 * time.Second, Logf: logf})
	if err != nil {
		return nil, fmt.Errorf("-source kubernetes: %w", err)
	}
	kb := &kubeBench{cluster: cl, started: time.Since(t0)}
	defer func() {
		if err != nil {
			kb.close()
		}
	}()
	// The writer: no client-side rate limit (client-go's default, 5 QPS,
	// would make the setup take minutes).
	rc := rest.CopyConfig(cl.Config)
	rc.QPS, rc.Burst = -1, 0
	if kb.client, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("-source kubernetes: client: %w", err)
	}
	t1 := time.Now()
	snap := snapshotOf(c)
	for _, n := range zoneNodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name,
			Labels: map[string]string{discovery.LabelRegion: "r1", discovery.LabelZone: n.zone}}}
		if _, err := kb.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("-source kubernetes: create Node %s: %w", n.name, err)
		}
	}
	for _, ns := range snap.Namespaces {
		if _, err := kb.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("-source kubernetes: create Namespace %s: %w", ns, err)
		}
	}
	kb.slices = make([]*discoveryv1.EndpointSlice, len(snap.Services))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, 32)
	for i := range snap.Services {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sl, err := kb.createService(ctx, c, i, &snap.Services[i])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			kb.slices[i] = sl
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("-source kubernetes: %d of %d services not created: %w", len(errs), len(snap.Services), errs[0])
	}
	kb.created = time.Since(t1)
	logf("kubernetes: cluster started in %s, %d services and EndpointSlices created in %s", kb.started.Round(time.Millisecond), len(snap.Services), kb.created.Round(time.Millisecond))
	return kb, nil
}

// createService creates sv's Service and its one EndpointSlice (endpoint j
// on the Node of zone j%3, as snapshotOf places it).
func (kb *kubeBench) createService(ctx context.Context, c config, i int, sv *model.Service) (*discoveryv1.EndpointSlice, error) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: sv.Namespace, Name: sv.Name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}}}
	if _, err := kb.client.CoreV1().Services(sv.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create Service %s/%s: %w", sv.Namespace, sv.Name, err)
	}
	name, port, proto, ready := "http", int32(8080), corev1.ProtocolTCP, true
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: sv.Namespace, Name: sv.Name + "-bench",
			Labels: map[string]string{discoveryv1.LabelServiceName: sv.Name, discoveryv1.LabelManagedBy: "causeway-bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	for j := range c.eps {
		node := zoneNodes[j%3].name
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{addrOf(c, i, j)}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	out, err := kb.client.DiscoveryV1().EndpointSlices(sv.Namespace).Create(ctx, sl, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create EndpointSlice %s/%s: %w", sv.Namespace, sl.Name, err)
	}
	return out, nil
}

// source is the discovery source `causeway control-plane --source
// kubernetes` runs (cmd/causeway/controlplane.go): the informer source
// behind a Merger (which it always has in Kubernetes mode); the MCS writer
// is left out. The Kubernetes source is also the PodLocator.
func (kb *kubeBench) source(logger *slog.Logger) (*controlplane.Merger, *discovery.Kubernetes, error) {
	bo := discovery.BuildOptions{Cluster: clusterName, Network: "net1", TrustDomain: "bench.local"}
	k, err := discovery.NewKubernetes(discovery.KubernetesOptions{Config: kb.cluster.Config, BuildOptions: bo, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	m, err := controlplane.NewMerger(controlplane.MergerOptions{Local: k, Cluster: clusterName, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return m, k, nil
}

// change replaces the address of the last endpoint of service svc's
// EndpointSlice with addr (one Update).
func (kb *kubeBench) change(ctx context.Context, svc int, addr string) error {
	sl := kb.slices[svc].DeepCopy()
	sl.Endpoints[len(sl.Endpoints)-1].Addresses = []string{addr}
	out, err := kb.client.DiscoveryV1().EndpointSlices(sl.Namespace).Update(ctx, sl, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update EndpointSlice %s/%s: %w", sl.Namespace, sl.Name, err)
	}
	kb.slices[svc] = out
	return nil
}

func (kb *kubeBench) close() {
	if kb.cluster != nil {
		_ = kb.cluster.Close()
	}
}

// childStats are the CPU time (utime+stime) and peak RSS (VmHWM) of this
// process's children named etcd and kube-apiserver, by name, from /proc.
func childStats() map[string]procStat {
	out := map[string]procStat{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	me := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, ps, ok := readProcStat(pid, me)
		if !ok || (name != "etcd" && name != "kube-apiserver") {
			continue
		}
		o := out[name]
		o.cpu += ps.cpu
		o.hwm += ps.hwm
		out[name] = o
	}
	return out
}

type procStat struct {
	cpu time.Duration
	hwm uint64
}

// readProcStat reads /proc/pid/stat and status when pid's parent is ppid.
// Clock ticks are taken as 100 Hz (USER_HZ on Linux).
func readProcStat(pid, ppid int) (string, procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", procStat{}, false
	}
	s := string(b)
	lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if lp < 0 || rp < lp {
		return "", procStat{}, false
	}
	name := s[lp+1 : rp]
	f := strings.Fields(s[rp+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return "", procStat{}, false
	}
	if p, _ := strconv.Atoi(f[1]); p != ppid {
		return "", procStat{}, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps := procStat{cpu: time.Duration(ut+st) * 10 * time.Millisecond}
	if sb, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status")); err == nil {
		for _, l := range strings.Split(string(sb), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				ps.hwm = kb << 10
			}
		}
	}
	return name, ps, true
}

// modelComplete reports whether s holds every service of c with all its
// endpoints (the apiserver's own "kubernetes" Service has none here).
func modelComplete(s *model.Snapshot, c config) bool {
	if s == nil {
		return false
	}
	full := 0
	for _, sv := range s.Services {
		if len(sv.Endpoints) == c.eps {
			full++
		}
	}
	return full == c.services
}

// testclusterVersion names the binaries' Kubernetes version in the report.
const testclusterVersion = testcluster.Version

// stampedSource passes on its source's snapshots and records the wall-clock
// time (Unix ns) of the last one: with one change in flight and no other
// writes, the time the change's model left the Merger for the control plane.
type stampedSource struct {
	src  discovery.Source
	last atomic.Int64
}

func (s *stampedSource) Run(ctx context.Context, emit func(*model.Snapshot)) error {
	return s.src.Run(ctx, func(m *model.Snapshot) {
		s.last.Store(time.Now().UnixNano())
		emit(m)
	})
}

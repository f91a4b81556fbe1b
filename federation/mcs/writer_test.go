package mcs_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/federation/mcs"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/testcluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// eastYAML is cluster east: cart is exported (port http 80), db is not,
// ghost is a ServiceExport without a Service, and legacy is a
// ServiceImport someone else made.
const eastYAML = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: 80, appProtocol: http}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  ports: [{port: 5432}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: ghost, namespace: shop}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: legacy, namespace: shop}
spec:
  type: ClusterSetIP
  ports: [{name: old, port: 1, protocol: TCP}]
`

// peerImports is what the federation hands the control plane: services
// exported by peers, endpoints labelled with their cluster.
func peerImports(svcs ...model.Service) *federation.Imports {
	slices.SortFunc(svcs, func(a, b model.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return &federation.Imports{Services: svcs}
}

func imported(ns, name, cluster string, ports ...model.ServicePort) model.Service {
	sv := peerSvc(name, []string{cluster}, ports...)
	sv.Namespace = ns
	return sv
}

// east is one cluster's control plane side as `causeway control-plane
// --source kubernetes` wires it: discovery tapped by the writer, a Merger
// serving the merge, imports handed to both.
type east struct {
	t      *testing.T
	c      *testcluster.Cluster
	mcs    mcsclient.Interface
	reg    *prometheus.Registry
	w      *mcs.Writer
	merger *controlplane.Merger
	served atomic.Pointer[model.Snapshot]
	cancel context.CancelFunc
	done   chan struct{}
}

func startEast(t *testing.T, c *testcluster.Cluster, im *federation.Imports, grace time.Duration) *east {
	t.Helper()
	e := &east{t: t, c: c, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	var err error
	if e.mcs, err = mcsclient.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	k, err := discovery.NewKubernetes(discovery.KubernetesOptions{Config: c.Config,
		BuildOptions: discovery.BuildOptions{Cluster: "east", Network: "net1", TrustDomain: "east.local"}})
	if err != nil {
		t.Fatal(err)
	}
	if e.w, err = mcs.NewWriter(mcs.Options{Cluster: "east", Config: c.Config, Resync: time.Second, StartGrace: grace, Registerer: e.reg}); err != nil {
		t.Fatal(err)
	}
	if e.merger, err = controlplane.NewMerger(controlplane.MergerOptions{Local: e.w.Source(k), Cluster: "east"}); err != nil {
		t.Fatal(err)
	}
	e.setImports(im)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	errs := make(chan error, 2)
	go func() { errs <- e.w.Run(ctx) }()
	go func() {
		errs <- e.merger.Run(ctx, func(s *model.Snapshot) { e.served.Store(s) })
	}()
	go func() {
		defer close(e.done)
		for range 2 {
			if err := <-errs; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("east: %v", err)
			}
		}
	}()
	return e
}

func (e *east) setImports(im *federation.Imports) {
	e.merger.SetImports(im)
	e.w.SetImports(im)
}

func (e *east) stop() {
	e.cancel()
	<-e.done
}

// counter sums a counter of the writer's registry.
func (e *east) counter(name string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// eventually polls cond until it returns nil or ctx ends.
func eventually(ctx context.Context, t *testing.T, what string, cond func() error) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		err := cond()
		if err == nil {
			return
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, last)
		case <-tick.C:
		}
	}
}

func (e *east) serviceImport(ctx context.Context, name string) (*mcsv1alpha1.ServiceImport, error) {
	return e.mcs.MulticlusterV1alpha1().ServiceImports("shop").Get(ctx, name, metav1.GetOptions{})
}

// wantImport checks ServiceImport shop/name: ours, the VIP the served
// model gives the service, the ports and the clusters.
func (e *east) wantImport(ctx context.Context, name string, ports string, clusters ...string) func() error {
	return func() error {
		o, err := e.serviceImport(ctx, name)
		if err != nil {
			return err
		}
		served := e.served.Load()
		if served == nil {
			return errors.New("no model served yet")
		}
		i := slices.IndexFunc(served.Services, func(s model.Service) bool { return s.Namespace == "shop" && s.Name == name })
		if i < 0 {
			return fmt.Errorf("shop/%s not in the served model", name)
		}
		vip := served.Services[i].ClustersetIP
		var ps []string
		for _, p := range o.Spec.Ports {
			ps = append(ps, fmt.Sprintf("%s:%d/%s", p.Name, p.Port, p.Protocol))
		}
		var cs []string
		for _, c := range o.Status.Clusters {
			cs = append(cs, c.Cluster)
		}
		got := fmt.Sprintf("type=%s ips=%v ports=%s clusters=%v label=%s", o.Spec.Type, o.Spec.IPs, strings.Join(ps, ","), cs, o.Labels[mcs.ManagedByLabel])
		want := fmt.Sprintf("type=ClusterSetIP ips=[%s] ports=%s clusters=%v label=%s", vip, ports, clusters, mcs.ManagedByValue)
		if vip == "" || got != want {
			return fmt.Errorf("ServiceImport shop/%s:\n got %s\nwant %s", name, got, want)
		}
		return nil
	}
}

func (e *east) wantGone(ctx context.Context, name string) func() error {
	return func() error {
		_, err := e.serviceImport(ctx, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("ServiceImport shop/%s: still there (err %v)", name, err)
	}
}

// wantCondition checks a condition of ServiceExport shop/name; msg must
// be contained in its message.
func (e *east) wantCondition(ctx context.Context, name, typ string, status metav1.ConditionStatus, reason, msg string) func() error {
	return func() error {
		se, err := e.mcs.MulticlusterV1alpha1().ServiceExports("shop").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		c := meta.FindStatusCondition(se.Status.Conditions, typ)
		if c == nil {
			return fmt.Errorf("ServiceExport shop/%s: no %s condition in %+v", name, typ, se.Status.Conditions)
		}
		if c.Status != status || c.Reason != reason || !strings.Contains(c.Message, msg) || c.ObservedGeneration != se.Generation {
			return fmt.Errorf("ServiceExport shop/%s %s: %s/%s %q (generation %d of %d), want %s/%s containing %q",
				name, typ, c.Status, c.Reason, c.Message, c.ObservedGeneration, se.Generation, status, reason, msg)
		}
		return nil
	}
}

// ownedImports are the names of the ServiceImports carrying the label.
func (e *east) ownedImports(ctx context.Context) ([]string, error) {
	l, err := e.mcs.MulticlusterV1alpha1().ServiceImports("").List(ctx, metav1.ListOptions{LabelSelector: mcs.ManagedByLabel + "=" + mcs.ManagedByValue})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range l.Items {
		out = append(out, o.Namespace+"/"+o.Name)
	}
	slices.Sort(out)
	return out, nil
}

func TestWriterAgainstAPIServer(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	c := testcluster.Start(t, testcluster.Options{Name: "east"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.Apply(ctx, []byte(eastYAML)); err != nil {
		t.Fatal(err)
	}
	http80 := port("http", 80, model.TCP)
	// west exports cart on 8080 (a conflict with east's 80), north exports
	// pay, west exports legacy (whose ServiceImport is not ours) and a
	// service in a namespace east does not have.
	conflicting := peerImports(
		imported("shop", "cart", "west", port("http", 8080, model.TCP)),
		imported("shop", "pay", "north", http80),
		imported("shop", "legacy", "west", http80),
		imported("nowhere", "x", "west", http80),
	)
	e := startEast(t, c, conflicting, 0)
	defer func() { e.stop() }()

	t.Run("conflict appears", func(t *testing.T) {
		eventually(ctx, t, "Conflict on shop/cart", e.wantCondition(ctx, "cart", "Conflict", metav1.ConditionTrue, "PortConflict",
			`service shop/cart ports["http"]: port is 80 in east but 8080 in west; east (this cluster) wins here`))
		eventually(ctx, t, "Valid on shop/cart", e.wantCondition(ctx, "cart", "Valid", metav1.ConditionTrue, "Valid", ""))
		eventually(ctx, t, "Ready on shop/cart", e.wantCondition(ctx, "cart", "Ready", metav1.ConditionTrue, "Exported", "exported by east, west"))
		eventually(ctx, t, "Valid on shop/ghost", e.wantCondition(ctx, "ghost", "Valid", metav1.ConditionFalse, "NoService", "no Service shop/ghost"))
		eventually(ctx, t, "ServiceImport shop/cart", e.wantImport(ctx, "cart", "http:80/TCP", "east", "west"))
		eventually(ctx, t, "ServiceImport shop/pay", e.wantImport(ctx, "pay", "http:80/TCP", "north"))
	})
	t.Run("kubectl reads the condition", func(t *testing.T) {
		kubectl := filepath.Join("..", "..", "bin", "kubectl")
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "-n", "shop", "get", "serviceexport", "cart",
			"-o", `jsonpath={.status.conditions[?(@.type=="Conflict")].reason}`).CombinedOutput()
		if err != nil || string(out) != "PortConflict" {
			t.Fatalf("kubectl get serviceexport cart: %q, %v; want PortConflict", out, err)
		}
	})
	t.Run("foreign ServiceImport and missing namespace are left alone", func(t *testing.T) {
		o, err := e.serviceImport(ctx, "legacy")
		if err != nil {
			t.Fatal(err)
		}
		if len(o.Spec.Ports) != 1 || o.Spec.Ports[0].Name != "old" || len(o.Status.Clusters) != 0 {
			t.Errorf("ServiceImport shop/legacy was modified: %+v", o.Spec)
		}
		eventually(ctx, t, "problem for shop/legacy", func() error {
			for _, p := range e.w.Problems() {
				if strings.Contains(p.Error(), "ServiceImport shop/legacy: exists without label") {
					return nil
				}
			}
			return fmt.Errorf("problems %v: want one about shop/legacy", e.w.Problems())
		})
		if got, err := e.ownedImports(ctx); err != nil || !slices.Equal(got, []string{"shop/cart", "shop/pay"}) {
			t.Errorf("owned ServiceImports: %v, %v; want shop/cart, shop/pay", got, err)
		}
	})
	t.Run("no writes when nothing changes", func(t *testing.T) {
		writes, passes := e.counter("causeway_mcs_writes_total"), e.counter("causeway_mcs_reconciles_total")
		e.setImports(conflicting) // the same imports again
		eventually(ctx, t, "three more passes (resync)", func() error {
			if n := e.counter("causeway_mcs_reconciles_total"); n < passes+3 {
				return fmt.Errorf("%v passes since, want 3", n-passes)
			}
			return nil
		})
		if got := e.counter("causeway_mcs_writes_total"); got != writes {
			t.Errorf("writes: %v after idle passes, want %v (no write storms)", got, writes)
		}
	})
	// The same port as east's: number, protocol and appProtocol.
	httpApp := http80
	httpApp.AppProtocol = "http"
	fixed := peerImports(
		imported("shop", "cart", "west", httpApp),
		imported("shop", "pay", "north", http80),
		imported("shop", "legacy", "west", http80),
	)
	t.Run("conflict cleared", func(t *testing.T) {
		e.setImports(fixed)
		eventually(ctx, t, "Conflict cleared on shop/cart", e.wantCondition(ctx, "cart", "Conflict", metav1.ConditionFalse, "NoConflicts", "defines it alike"))
		eventually(ctx, t, "ServiceImport shop/cart", e.wantImport(ctx, "cart", "http:80/TCP", "east", "west"))
	})
	t.Run("link flaps", func(t *testing.T) {
		cart, err := e.serviceImport(ctx, "cart")
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			e.setImports(nil) // the peers' imports withdrawn
			eventually(ctx, t, "shop/cart exported by east alone", e.wantImport(ctx, "cart", "http:80/TCP", "east"))
			eventually(ctx, t, "shop/pay withdrawn", e.wantGone(ctx, "pay"))
			e.setImports(fixed)
			eventually(ctx, t, "shop/pay back", e.wantImport(ctx, "pay", "http:80/TCP", "north"))
			eventually(ctx, t, "shop/cart by both", e.wantImport(ctx, "cart", "http:80/TCP", "east", "west"))
		}
		if got, err := e.ownedImports(ctx); err != nil || !slices.Equal(got, []string{"shop/cart", "shop/pay"}) {
			t.Errorf("owned ServiceImports after flaps: %v, %v; want shop/cart, shop/pay", got, err)
		}
		if now, err := e.serviceImport(ctx, "cart"); err != nil || now.UID != cart.UID {
			t.Errorf("ServiceImport shop/cart was re-created by the flaps (err %v)", err)
		}
	})
	t.Run("restart adopts and cleans up", func(t *testing.T) {
		e.stop()
		// A ServiceImport a previous run left behind (its service gone
		// while the control plane was down).
		stale := &mcsv1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "stale",
			Labels: map[string]string{mcs.ManagedByLabel: mcs.ManagedByValue}},
			Spec: mcsv1alpha1.ServiceImportSpec{Type: mcsv1alpha1.ClusterSetIP, Ports: []mcsv1alpha1.ServicePort{{Port: 1, Protocol: "TCP"}}}}
		if _, err := e.mcs.MulticlusterV1alpha1().ServiceImports("shop").Create(ctx, stale, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cart, err := e.serviceImport(ctx, "cart")
		if err != nil {
			t.Fatal(err)
		}
		const grace = 3 * time.Second
		started := time.Now()
		e = startEast(t, c, fixed, grace)
		// Within the start grace the stale one is kept (the links may not
		// have caught up yet); everything else is in place.
		eventually(ctx, t, "two passes", func() error {
			if n := e.counter("causeway_mcs_reconciles_total"); n < 2 {
				return fmt.Errorf("%v passes", n)
			}
			return nil
		})
		_, err = e.serviceImport(ctx, "stale")
		switch {
		case time.Since(started) >= grace:
			t.Logf("two passes took longer than the grace (%v): not checking that it keeps shop/stale", grace)
		case err != nil:
			t.Errorf("ServiceImport shop/stale within the start grace: %v; want it kept", err)
		}
		eventually(ctx, t, "stale withdrawn after the grace", e.wantGone(ctx, "stale"))
		eventually(ctx, t, "shop/cart kept", e.wantImport(ctx, "cart", "http:80/TCP", "east", "west"))
		if now, err := e.serviceImport(ctx, "cart"); err != nil || now.UID != cart.UID || now.ResourceVersion != cart.ResourceVersion {
			t.Errorf("ServiceImport shop/cart was rewritten by the restart (err %v)", err)
		}
	})
	t.Run("unexported everywhere", func(t *testing.T) {
		if err := e.mcs.MulticlusterV1alpha1().ServiceExports("shop").Delete(ctx, "cart", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.setImports(peerImports(imported("shop", "legacy", "west", http80)))
		eventually(ctx, t, "shop/cart withdrawn", e.wantGone(ctx, "cart"))
		eventually(ctx, t, "shop/pay withdrawn", e.wantGone(ctx, "pay"))
		if got, err := e.ownedImports(ctx); err != nil || len(got) != 0 {
			t.Errorf("owned ServiceImports: %v, %v; want none", got, err)
		}
		if _, err := e.serviceImport(ctx, "legacy"); err != nil {
			t.Errorf("ServiceImport shop/legacy (not ours): %v; want it untouched", err)
		}
	})
}

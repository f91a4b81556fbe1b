package discovery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/testcluster"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/runner"
	"github.com/causewaymesh/causeway/trust/policy"
)

// sharedYAML is applied to the apiserver and written to the folder. The
// Services have no selector, so no controller writes slices for them; the
// EndpointSlices carry explicit endpoints, nodes and zones. The Pod (bound
// to a kwok node) gives web's first endpoint an identity via targetRef.
const sharedYAML = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web-sa, namespace: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop}
spec:
  nodeName: r1-a
  serviceAccountName: web-sa
  containers: [{name: web, image: web}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80, appProtocol: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.1.0.1]
  nodeName: r1-a
  zone: a
  targetRef: {kind: Pod, name: web-0, namespace: shop}
- addresses: [10.1.0.2]
  nodeName: r1-b
  zone: b
  conditions: {ready: false, serving: true, terminating: true}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{name: grpc, port: 9090, appProtocol: grpc}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: grpc, port: 9090}]
endpoints:
- addresses: [10.2.0.1]
  zone: b
  nodeName: r1-b
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: api, namespace: shop}
`

// nodesYAML is what kwok registered for testcluster.ZonalNodes("r1", "a",
// "b"), reduced to the labels Build reads; it goes to the folder only.
const nodesYAML = `apiVersion: v1
kind: Node
metadata: {name: r1-a, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: a}}
---
apiVersion: v1
kind: Node
metadata: {name: r1-b, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: b}}
`

var buildOpts = discovery.BuildOptions{Cluster: "east", Network: "net1", TrustDomain: "east.local"}

// onlyShop normalises a snapshot to the objects both sources share. A real
// apiserver also holds namespaces default, kube-system, kube-public and
// kube-node-lease and the default/kubernetes Service, which the folder does
// not. Everything else the apiserver defaults (clusterIP, targetPort,
// protocol TCP, Pod fields, kwok's extra node labels and pod IP) does not
// reach the model, so nothing else needs normalising.
func onlyShop(s *model.Snapshot) *model.Snapshot {
	c := *s
	c.Namespaces = slices.DeleteFunc(slices.Clone(s.Namespaces), func(n string) bool { return n != "shop" })
	c.Services = slices.DeleteFunc(slices.Clone(s.Services), func(v model.Service) bool { return v.Namespace != "shop" })
	for i := range c.Services {
		c.Services[i].ClusterIP = "" // allocated by the apiserver; the folder has none
	}
	return &c
}

type kubeRun struct {
	src   *discovery.Kubernetes
	snaps chan *model.Snapshot
	last  *model.Snapshot
	stop  func()
}

func runKubernetes(t *testing.T, ctx context.Context, c *testcluster.Cluster) *kubeRun {
	t.Helper()
	src, err := discovery.NewKubernetes(discovery.KubernetesOptions{Config: c.Config, BuildOptions: buildOpts, RequireServiceExports: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	k := &kubeRun{src: src, snaps: make(chan *model.Snapshot, 64)}
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(s *model.Snapshot) {
			select {
			case k.snaps <- s:
			case <-ctx.Done():
			}
		})
	}()
	k.stop = func() {
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			t.Errorf("Kubernetes.Run: %v", err)
		}
	}
	t.Cleanup(k.stop)
	return k
}

// next returns the next emitted snapshot.
func (k *kubeRun) next(t *testing.T, ctx context.Context, what string) *model.Snapshot {
	t.Helper()
	select {
	case s := <-k.snaps:
		k.last = s
		return s
	case <-ctx.Done():
		t.Fatalf("waiting for a snapshot with %s: %v (last: %v)", what, ctx.Err(), k.last)
		return nil
	}
}

// waitFor reads snapshots until cond holds.
func (k *kubeRun) waitFor(t *testing.T, ctx context.Context, what string, cond func(*model.Snapshot) bool) *model.Snapshot {
	t.Helper()
	for {
		if s := k.next(t, ctx, what); cond(s) {
			return s
		}
	}
}

func service(s *model.Snapshot, ns, name string) *model.Service {
	for i := range s.Services {
		if s.Services[i].Namespace == ns && s.Services[i].Name == name {
			return &s.Services[i]
		}
	}
	return nil
}

// TestKubernetesSource runs the informer source against a real
// kube-apiserver with two kwok nodes in zones a and b.
func TestKubernetesSource(t *testing.T) {
	testcluster.RequireBinaries(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := testcluster.Start(t, testcluster.Options{Nodes: testcluster.ZonalNodes("r1", "a", "b"), GatewayAPIChannel: testcluster.ChannelNone})
	if err := c.Apply(ctx, []byte(sharedYAML)); err != nil {
		t.Fatal(err)
	}
	k := runKubernetes(t, ctx, c)

	t.Run("same model as the folder", func(t *testing.T) {
		dir := t.TempDir()
		for name, y := range map[string]string{"shared.yaml": sharedYAML, "nodes.yaml": nodesYAML} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(y), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		f, err := discovery.NewFolder(discovery.FolderOptions{Dir: dir, BuildOptions: buildOpts})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := f.Scan()
		if ps := f.Problems(); len(ps) > 0 {
			t.Fatalf("folder problems: %v", ps)
		}
		want = onlyShop(want)
		// Apply ran before Run, so the first snapshot should already hold
		// everything; wait a little in case a cache lagged, then diff.
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		var got *model.Snapshot
		for got == nil {
			select {
			case s := <-k.snaps:
				k.last = s
				if onlyShop(s).Equal(want) {
					got = s
				}
			case <-wctx.Done():
				var last *model.Snapshot
				if k.last != nil {
					last = onlyShop(k.last)
				}
				t.Fatalf("models differ (-folder +kubernetes):\n%s", cmp.Diff(want, last))
			}
		}
		if len(service(got, "shop", "web").Endpoints) != 2 || !service(got, "shop", "api").Exported ||
			service(got, "shop", "web").Endpoints[0].Identity != "spiffe://east.local/ns/shop/sa/web-sa" ||
			service(got, "shop", "web").Endpoints[0].Locality != (model.Locality{Region: "r1", Zone: "a"}) {
			t.Fatalf("the shared model lacks what the YAML says:\n%v", got)
		}
		if service(got, "default", "kubernetes") == nil {
			t.Errorf("the apiserver's default/kubernetes Service is missing from the Kubernetes model:\n%v", got)
		}
	})

	slices := c.Clientset.DiscoveryV1().EndpointSlices("shop")
	t.Run("no-op change emits nothing", func(t *testing.T) {
		// An annotation the model does not read, then a real change: the
		// next snapshot must be the real change.
		patch := []byte(`{"metadata":{"annotations":{"note":"irrelevant"}}}`)
		if _, err := c.Clientset.CoreV1().Services("shop").Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Clientset.CoreV1().Services("shop").Patch(ctx, "api", types.MergePatchType, []byte(`{"spec":{"ports":[{"name":"grpc","port":9091,"appProtocol":"grpc"}]}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		s := k.next(t, ctx, "api on 9091")
		if p := service(s, "shop", "api").Ports; len(p) != 1 || p[0].Port != 9091 {
			t.Fatalf("first snapshot after a no-op and a port change: api ports %v, want [9091] (the no-op must not emit)", p)
		}
	})
	t.Run("scale: add an endpoint", func(t *testing.T) {
		sl, err := slices.Get(ctx, "web-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ep := sl.Endpoints[0].DeepCopy()
		ep.Addresses, ep.TargetRef = []string{"10.1.0.3"}, nil
		sl.Endpoints = append(sl.Endpoints, *ep)
		if _, err := slices.Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		k.waitFor(t, ctx, "3 web endpoints", func(s *model.Snapshot) bool {
			return len(service(s, "shop", "web").Endpoints) == 3
		})
	})
	t.Run("AuthorizationPolicies are watched", func(t *testing.T) {
		pol := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": policy.APIVersion, "kind": policy.Kind,
			"metadata": map[string]any{"name": "web-readers", "namespace": "shop"},
			"spec": map[string]any{"action": "Allow", "targetRefs": []any{map[string]any{"kind": "Service", "name": "web"}},
				"rules": []any{map[string]any{"from": []any{map[string]any{"namespace": "shop"}}}}},
		}}
		res := c.Dynamic.Resource(policy.GroupVersionResource()).Namespace("shop")
		if _, err := res.Create(ctx, pol, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s := k.waitFor(t, ctx, "the policy in the model", func(s *model.Snapshot) bool { return len(s.Policies) == 1 })
		if p := s.Policies[0]; p.Name != "web-readers" || p.Action != model.AuthzAllow || len(p.Services) != 1 || p.Rules[0].From[0].Namespace != "shop" {
			t.Fatalf("policy in the model: %+v", p)
		}
		if err := res.Delete(ctx, "web-readers", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		k.waitFor(t, ctx, "the policy gone", func(s *model.Snapshot) bool { return len(s.Policies) == 0 })
	})
	t.Run("apiserver restart: nothing lost or duplicated, watches resume", func(t *testing.T) {
		want := service(k.last, "shop", "web").Endpoints
		if len(want) != 3 {
			t.Fatalf("before the restart web has %d endpoints, want 3", len(want))
		}
		// Every snapshot the source emits from here on must keep the three
		// endpoints exactly once until the change made after the restart.
		check := func(s *model.Snapshot) {
			t.Helper()
			seen := map[string]int{}
			for _, e := range service(s, "shop", "web").Endpoints {
				seen[e.Address]++
			}
			for _, e := range want {
				if seen[e.Address] != 1 {
					t.Fatalf("endpoint %s appears %d times in a snapshot emitted across the restart:\n%v", e.Address, seen[e.Address], s)
				}
			}
		}
		down := func() {
			// While the apiserver is down the source keeps its last model:
			// whatever it emits (nothing, normally) still has every endpoint.
			for {
				select {
				case s := <-k.snaps:
					k.last = s
					check(s)
				default:
					return
				}
			}
		}
		if err := c.RestartAPIServer(ctx, 5*time.Second, down); err != nil {
			t.Fatal(err)
		}
		// The watches resume: a change made after the restart arrives.
		sl, err := slices.Get(ctx, "web-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ep := sl.Endpoints[0].DeepCopy()
		ep.Addresses, ep.TargetRef = []string{"10.1.0.4"}, nil
		sl.Endpoints = append(sl.Endpoints, *ep)
		if _, err := slices.Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := k.waitFor(t, ctx, "4 web endpoints after the restart", func(s *model.Snapshot) bool {
			check(s)
			return len(service(s, "shop", "web").Endpoints) == 4
		})
		check(got)
	})
	t.Run("delete the service", func(t *testing.T) {
		if err := c.Clientset.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		k.waitFor(t, ctx, "web gone", func(s *model.Snapshot) bool { return service(s, "shop", "web") == nil })
	})
}

// deployment is echo-basic (a real process per pod, run by the harness in
// the pod's network namespace with the kwok-assigned IP) pinned to zone.
func deployment(name, zone string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: shop}
spec:
  replicas: %d
  selector: {matchLabels: {app: web, zone: %s}}
  template:
    metadata: {labels: {app: web, zone: %s}}
    spec:
      nodeSelector: {topology.kubernetes.io/zone: %s}
      containers:
      - name: web
        image: registry.k8s.io/gateway-api/echo-basic:v1.6.3
        env: [{name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]
        ports: [{containerPort: 3000}]
`, name, replicas, zone, zone, zone)
}

// waitPods waits until n real pods whose "namespace/name" starts with
// prefix answer HTTP on their IP, port 3000.
func waitPods(t *testing.T, ctx context.Context, c *testcluster.Cluster, prefix string, n int) {
	t.Helper()
	direct := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		up := 0
		for key, ip := range c.RealPodIPs() {
			if !strings.HasPrefix(key, prefix) {
				continue
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+net.JoinHostPort(ip.String(), "3000")+"/", nil)
			if resp, err := direct.Do(req); err == nil {
				resp.Body.Close()
				up++
			}
		}
		if up == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d real pods %s* to answer: %d do (%v)", n, prefix, up, ctx.Err())
		case <-tick.C:
		}
	}
}

// TestSidecarFollowsTheApiserver is issue 4's acceptance scenario: a
// Service and Deployments of real pods (kwok pods whose IPs the harness
// serves with echo-basic processes) in zones a and b; a real causeway
// sidecar in zone a, connected to internal/controlplane fed by the
// Kubernetes source, routes to them and follows scale-up, a drained zone
// and the Service's deletion, observed in traffic. The apiserver refuses
// loopback EndpointSlice addresses, hence real pods rather than 127.0.0.1
// backends; their 198.18/15 addresses never leave the machine.
func TestSidecarFollowsTheApiserver(t *testing.T) {
	testcluster.RequireBinaries(t, true)
	testcluster.RequireRealPods(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := testcluster.Start(t, testcluster.Options{Nodes: testcluster.ZonalNodes("r1", "a", "b"), GatewayAPIChannel: testcluster.ChannelNone,
		RealPods: []testcluster.RealPod{{Namespace: "shop", Selector: "app=web", Command: []string{"echo-basic"}}}})
	y := "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 8080, targetPort: 3000}]\n---\n" +
		deployment("web-a", "a", 1) + "---\n" + deployment("web-b", "b", 1)
	if err := c.Apply(ctx, []byte(y)); err != nil {
		t.Fatal(err)
	}
	// As below for scale-up: no traffic before the processes listen.
	waitPods(t, ctx, c, "shop/web-a-", 1)
	waitPods(t, ctx, c, "shop/web-b-", 1)
	src, err := discovery.NewKubernetes(discovery.KubernetesOptions{Config: c.Config, BuildOptions: buildOpts})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.New(controlplane.Options{Cluster: "east", Network: "net1", Debounce: 10 * time.Millisecond,
		Translate: xds.TranslateOptions{EphemeralPorts: true}})
	if err != nil {
		t.Fatal(err)
	}
	cpCtx, cpCancel := context.WithCancel(ctx)
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Run(cpCtx, src) }()
	defer func() { cpCancel(); <-cpDone }()

	cfg := runner.DefaultConfig()
	cfg.XDS, cfg.Admin, cfg.NodeID = cp.Addr(), "127.0.0.1:0", "client.shop"
	cfg.Workload, cfg.Namespace, cfg.Cluster, cfg.Network, cfg.Locality = "client", "shop", "east", "net1", "r1/a"
	cfg.AccessLog, cfg.DrainTimeout = "off", 2*time.Second
	p, err := runner.Start(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()

	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v (model:\n%v)", what, ctx.Err(), cp.Model())
			case <-tick.C:
			}
		}
	}
	var outbound string
	waitUntil("listener outbound_8080", func() bool {
		if a := p.Proxy.ListenerAddr("outbound_8080"); a != nil {
			outbound = a.String()
			return true
		}
		return false
	})
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	// spread makes n calls and counts answers by Deployment (web-a, web-b
	// from the pod name echo-basic reports) or "error"/status.
	spread := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+outbound+"/", nil)
			req.Host = "web.shop.svc.cluster.local"
			resp, err := hc.Do(req)
			if err != nil {
				seen["error"]++
				continue
			}
			var body struct {
				Pod string `json:"pod"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			switch {
			case err != nil || resp.StatusCode != 200:
				seen[fmt.Sprintf("status %d", resp.StatusCode)]++
			default:
				seen[body.Pod]++
			}
		}
		return seen
	}
	byZone := func(m map[string]int) (a, b, other, pods int) {
		for k, v := range m {
			switch {
			case strings.HasPrefix(k, "web-a-"):
				a += v
				pods++
			case strings.HasPrefix(k, "web-b-"):
				b += v
			default:
				other += v
			}
		}
		return
	}
	start := time.Now()
	waitUntil("traffic to zone a", func() bool { a, _, _, _ := byZone(spread(1)); return a == 1 })
	t.Logf("first answer through the sidecar %v after its listener appeared", time.Since(start).Round(time.Millisecond))
	if a, b, o, _ := byZone(spread(20)); a != 20 {
		t.Fatalf("one pod per zone: a=%d b=%d other=%d, want all 20 in zone a (the sidecar's)", a, b, o)
	}

	scale := func(name string, n int) {
		t.Helper()
		patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
		if _, err := c.Clientset.AppsV1().Deployments("shop").Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	scale("web-a", 2)
	readyIn := func(zone string) int {
		n := 0
		if svc := service(cp.Model(), "shop", "web"); svc != nil {
			for _, e := range svc.Endpoints {
				if e.Ready && e.Locality.Zone == zone {
					n++
				}
			}
		}
		return n
	}
	waitUntil("2 ready zone-a endpoints in the model", func() bool { return readyIn("a") == 2 })
	t.Logf("scale-up reached the model after %v", time.Since(start).Round(time.Millisecond))
	// kwok marks a pod Ready before the harness's echo-basic process
	// listens (there is no readiness probe); traffic in that window would
	// be refused and trip the sidecar's outlier detection (30s ejection).
	// So wait, without traffic through the sidecar, for both zone-a pods
	// to answer directly.
	waitPods(t, ctx, c, "shop/web-a-", 2)
	waitUntil("both zone-a pods to answer", func() bool { _, _, _, pods := byZone(spread(20)); return pods == 2 })
	t.Logf("scale-up seen in traffic after %v", time.Since(start).Round(time.Millisecond))
	if a, b, o, _ := byZone(spread(40)); a != 40 {
		t.Fatalf("after scale-up: a=%d b=%d other=%d, want all 40 in zone a", a, b, o)
	}

	start = time.Now()
	scale("web-a", 0)
	waitUntil("zone a drained: all traffic to zone b", func() bool { _, b, _, _ := byZone(spread(10)); return b == 10 })
	t.Logf("zone drain seen in traffic after %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := c.Clientset.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil("listener outbound_8080 to go", func() bool { return p.Proxy.ListenerAddr("outbound_8080") == nil })
	t.Logf("Service deletion reached the sidecar after %v", time.Since(start).Round(time.Millisecond))
	if service(cp.Model(), "default", "kubernetes") == nil {
		t.Errorf("the control plane's model lacks default/kubernetes:\n%v", cp.Model())
	}
}

func TestNewKubernetesErrors(t *testing.T) {
	tests := []struct {
		name string
		o    discovery.KubernetesOptions
		want []string
	}{
		{"nothing", discovery.KubernetesOptions{}, []string{"Cluster: required", "Config or Client: required"}},
		{"negative resync", discovery.KubernetesOptions{BuildOptions: buildOpts, Resync: -time.Second, Config: nil}, []string{"Resync -1s: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := discovery.NewKubernetes(tt.o)
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("error %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

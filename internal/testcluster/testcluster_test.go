package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
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

// fakeBins writes shell scripts named like the real binaries into a
// directory, so that failure paths run without `make testbins`.
func fakeBins(t *testing.T, script string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestStartErrors checks that bad input fails fast with an error that names
// the cause.
func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name    string
		opts    Options
		wantIs  error
		wantSub []string
	}{
		{
			name:    "missing binary",
			opts:    Options{BinDir: t.TempDir()},
			wantIs:  ErrBinaryMissing,
			wantSub: []string{"etcd not found", "make testbins"},
		},
		{
			name:    "missing node binary",
			opts:    Options{BinDir: fakeBins(t, "exit 1", "etcd", "kube-apiserver"), Nodes: ZonalNodes("r", "a")},
			wantIs:  ErrBinaryMissing,
			wantSub: []string{"kube-controller-manager not found"},
		},
		{
			name:    "port in use",
			opts:    Options{BinDir: fakeBins(t, "exit 1", "etcd", "kube-apiserver"), APIServerPort: busyPort},
			wantIs:  ErrPortInUse,
			wantSub: []string{strconv.Itoa(busyPort)},
		},
		{
			name:    "component exits",
			opts:    Options{BinDir: fakeBins(t, "echo etcd: bad flag >&2; exit 3", "etcd", "kube-apiserver"), SkipCRDs: true},
			wantIs:  ErrNotReady,
			wantSub: []string{"etcd exited", "exit status 3", "etcd: bad flag"},
		},
		{
			name:    "component exits: port taken",
			opts:    Options{BinDir: fakeBins(t, "echo 'listen tcp 127.0.0.1:1: bind: address already in use' >&2; exit 1", "etcd", "kube-apiserver"), SkipCRDs: true},
			wantIs:  ErrPortInUse,
			wantSub: []string{"etcd exited", "address already in use"},
		},
		{
			name:    "component never ready",
			opts:    Options{BinDir: fakeBins(t, "echo starting; exec sleep 60", "etcd", "kube-apiserver"), SkipCRDs: true, ReadyTimeout: 500 * time.Millisecond},
			wantIs:  ErrNotReady,
			wantSub: []string{"etcd did not become ready within 500ms", "starting"},
		},
		{
			name:    "bad channel",
			opts:    Options{GatewayAPIChannel: "beta"},
			wantSub: []string{`GatewayAPIChannel "beta"`},
		},
		{
			name:    "real pods without nodes",
			opts:    Options{RealPods: []RealPod{{Command: []string{"x"}}}},
			wantSub: []string{"RealPods needs Options.Nodes"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			c, err := New(ctx, tc.opts)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded, want an error")
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("New took %v to fail", d)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q is not %v", err, tc.wantIs)
			}
			for _, s := range tc.wantSub {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestAddressRanges(t *testing.T) {
	pods := netip.MustParsePrefix("198.18.0.0/16")
	svcs := netip.MustParsePrefix("198.19.0.0/16")
	for i := 0; i < MaxSlots; i++ {
		p, s := podCIDR(i), serviceCIDR(i)
		if !pods.Contains(p.Addr()) || !svcs.Contains(s.Addr()) {
			t.Errorf("slot %d: %s %s outside 198.18.0.0/15", i, p, s)
		}
		for j := 0; j < i; j++ {
			if podCIDR(j).Overlaps(p) || serviceCIDR(j).Overlaps(s) {
				t.Errorf("slot %d overlaps slot %d", i, j)
			}
		}
	}
}

// TestThreeClusters is the acceptance test: three clusters at once, a
// Deployment and a Service in each, EndpointSlices with kwok pod IPs, and,
// as root, real echo-basic processes answering HTTP on those IPs.
func TestThreeClusters(t *testing.T) {
	RequireBinaries(t, true)
	real := CanRunRealPods() == nil
	if !real {
		t.Logf("real pods disabled: %v", CanRunRealPods())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const n = 3
	clusters := make([]*Cluster, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := Options{
				Name:  fmt.Sprintf("c%d", i),
				Nodes: ZonalNodes(fmt.Sprintf("region-%d", i), "a", "b"),
				Logf:  t.Logf,
			}
			if real {
				opts.RealPods = []RealPod{{Namespace: "demo", Selector: "app=web", Command: []string{"echo-basic"}}}
			}
			clusters[i], errs[i] = New(ctx, opts)
		}()
	}
	wg.Wait()
	for _, c := range clusters {
		if c != nil {
			t.Cleanup(func() {
				if t.Failed() {
					c.opts.KeepDir = true
					c.logFailure(t)
				}
				if err := c.Close(); err != nil {
					t.Errorf("close %s: %v", c.Name, err)
				}
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clusters ready in %v", n, time.Since(start).Round(time.Millisecond))

	for _, c := range clusters {
		if err := applyDemo(ctx, c); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	for _, c := range clusters {
		ips := waitEndpoints(ctx, t, c, 2)
		t.Logf("%s: EndpointSlice demo/web has %v (pod range %s)", c.Name, ips, c.PodCIDR)
		for _, ip := range ips {
			if !c.PodCIDR.Contains(ip) {
				t.Errorf("%s: endpoint %s outside the cluster's pod range %s", c.Name, ip, c.PodCIDR)
			}
		}
		if real {
			for _, ip := range ips {
				waitEcho(ctx, t, c, ip)
			}
		}
	}
	var total uint64
	for _, c := range clusters {
		total += c.MemoryRSS()
	}
	t.Logf("memory of %d clusters (RSS of all processes): %d MiB", n, total>>20)
	if !real {
		t.Skip("real pods not checked: " + CanRunRealPods().Error())
	}
}

func applyDemo(ctx context.Context, c *Cluster) error {
	cs := c.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	labels := map[string]string{"app": "web"}
	replicas := int32(2)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "demo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "web",
					Image: "registry.k8s.io/gateway-api/echo-basic:v1.6.3",
					Env: []corev1.EnvVar{{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{
						FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}},
					Ports: []corev1.ContainerPort{{ContainerPort: 3000}},
				}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("demo").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "demo"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)}},
		},
	}
	_, err := cs.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{})
	return err
}

// waitEndpoints waits until the Service's EndpointSlices list want ready
// addresses and returns them.
func waitEndpoints(ctx context.Context, t *testing.T, c *Cluster, want int) []netip.Addr {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last []netip.Addr
	for {
		slices, err := c.Clientset.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err == nil {
			last = last[:0]
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready {
						for _, a := range e.Addresses {
							if ip, err := netip.ParseAddr(a); err == nil {
								last = append(last, ip)
							}
						}
					}
				}
			}
			if len(last) == want {
				return last
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: EndpointSlices of demo/web have %v, want %d ready addresses (last error %v)", c.Name, last, want, err)
		case <-tick.C:
		}
	}
}

// waitEcho waits until echo-basic answers on ip:3000 and checks it reports
// its own pod.
func waitEcho(ctx context.Context, t *testing.T, c *Cluster, ip netip.Addr) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + net.JoinHostPort(ip.String(), "3000") + "/hello"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			var body struct {
				Path      string `json:"path"`
				Namespace string `json:"namespace"`
				Pod       string `json:"pod"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err == nil {
				if body.Path != "/hello" || body.Namespace != "demo" || !strings.HasPrefix(body.Pod, "web-") {
					t.Errorf("%s: %s answered %+v", c.Name, url, body)
				}
				pods := c.RealPodIPs()
				if got := pods["demo/"+body.Pod]; got != ip {
					t.Errorf("%s: %s answered as pod %s, whose IP is %v", c.Name, url, body.Pod, got)
				}
				t.Logf("%s: real pod %s answered on %s", c.Name, body.Pod, url)
				return
			}
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no HTTP answer from %s: %v", c.Name, url, last)
		case <-tick.C:
		}
	}
}

// TestControlPlane starts etcd and kube-apiserver only and checks the
// version stamp, the CRDs and the kubeconfig.
func TestControlPlane(t *testing.T) {
	RequireBinaries(t, false)
	start := time.Now()
	c := Start(t, Options{})
	t.Logf("control plane with CRDs ready in %v, RSS %d MiB", time.Since(start).Round(time.Millisecond), c.MemoryRSS()>>20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	v, err := c.Clientset.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != Version {
		t.Errorf("server version %q, want %q (is -ldflags -X ...gitVersion set in hack/testbins/build.sh?)", v.GitVersion, Version)
	}
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"},
		{Group: "gateway.networking.k8s.io", Version: "v1alpha2", Resource: "tcproutes"},
		{Group: "gateway.networking.x-k8s.io", Version: "v1alpha1", Resource: "xmeshes"},
		{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"},
		{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"},
	} {
		if _, err := c.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("list %s: %v", gvr, err)
		}
	}
	// A custom resource through Apply: the CRD's schema is enforced.
	err = c.Apply(ctx, []byte(`
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: causeway
spec:
  controllerName: causeway.dev/gateway-controller
`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Apply(ctx, []byte(`
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: bad
spec: {}
`))
	if err == nil || !strings.Contains(err.Error(), "controllerName") {
		t.Errorf("applying a GatewayClass without controllerName: got %v, want a validation error", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("kubeconfig %s does not work: %v", c.Kubeconfig, err)
	}
}

// TestSweep checks that namespaces and links left by a killed run (of a
// slot nobody holds) are removed, and those of a held slot are not.
func TestSweep(t *testing.T) {
	RequireRealPods(t)
	held, err := acquireSlot(-1)
	if err != nil {
		t.Fatal(err)
	}
	defer held.release()
	free := -1
	for i := MaxSlots - 1; i >= 0; i-- {
		if s, err := tryLockSlot(i); err == nil && s != nil {
			free = i
			s.release()
			break
		}
	}
	if free < 0 {
		t.Skip("no free slot")
	}
	ip := netip.AddrFrom4([4]byte{198, 18, byte(16*free + 15), 250})
	left, err := setupPodNet(netnsPrefix(free)+"leftover", hostVethPrefix(free)+"99", ip)
	if err != nil {
		t.Fatal(err)
	}
	keep, err := setupPodNet(netnsPrefix(held.index)+"live", hostVethPrefix(held.index)+"99", podCIDR(held.index).Addr().Next())
	if err != nil {
		left.teardown()
		t.Fatal(err)
	}
	defer keep.teardown()
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	if netnsExists(left.ns) || linkExists(left.hostVeth) {
		t.Errorf("Sweep left %s / %s of free slot %d", left.ns, left.hostVeth, free)
	}
	if !netnsExists(keep.ns) || !linkExists(keep.hostVeth) {
		t.Errorf("Sweep removed %s / %s of held slot %d", keep.ns, keep.hostVeth, held.index)
	}
}

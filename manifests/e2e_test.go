package manifests

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/causewaymesh/causeway/internal/inject"
	"github.com/causewaymesh/causeway/internal/testcluster"
	"github.com/causewaymesh/causeway/trust"
)

// TestTwoClustersEndToEnd is the two-cluster end-to-end test in Kubernetes
// mode (issue 9): two harness clusters (real kube-apiserver, kwok nodes),
// each installed with kubectl apply -k and running the real `causeway
// control-plane` against its apiserver, federated with the other, serving
// the injection webhook, xDS and the SVID issuer on the cluster's HostIP
// (an address of the host in the cluster's pod range, which pods reach).
//
// Pods in labelled namespaces are injected by the real webhook; the
// harness runs them as real processes in network namespaces, as a kubelet
// would run the stored Pod spec: the app, the injected init container
// (causeway-proxy init) and the injected causeway-proxy sidecar with
// exactly the injected args and env, the projected service-account token
// (minted with the TokenRequest API) and the trust bundle ConfigMap the
// control plane publishes into the namespace. The harness supplies only
// what a node would: the binary that stands for the image's entrypoint,
// and the volumes' paths. The sidecars send no locality: the control
// plane derives it from their pod's node's topology labels.
//
// Each cluster runs its east-west gateway (causeway-proxy east-west, on its
// HostIP, port 15443, announced with --eastwest-address); the clusters are
// on different networks (net-east, net-west), so west's control plane
// imports east's endpoints as behind that gateway and the client's sidecar
// dials the gateway (checked in its access log), never east's pod IPs.
//
// Steps: (1) sidecars of injected pods in both clusters are ready (xDS
// configuration applied) with an SVID of their cluster's trust domain;
// (2) an unmodified client (curl) in a pod of west calls
// http://echo.shop.svc.clusterset.local/: causeway-init's rules (the
// injected init container) send its DNS query and its connection to its
// sidecar (capture mode, as the injected runAsUser 1337), which answers
// the name with the ServiceImport VIP and routes the request, over mTLS
// (east's sidecar is STRICT; the client's sidecar verifies east's SPIFFE
// ID), through east's east-west gateway, to east's pod;
// (3) west gets its own echo pod; east's is deleted; the call still
// succeeds, answered by west.
func TestTwoClustersEndToEnd(t *testing.T) {
	t.Parallel()
	start := time.Now()
	testcluster.RequireBinaries(t, true)
	testcluster.RequireRealPods(t)
	for _, tool := range []string{"curl", "iptables-save", "setpriv", "ss", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (curl, iptables, util-linux, iproute2, libc-bin)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := buildCauseway(ctx, t)
	proxyBin := buildBinary(ctx, t, "causeway-proxy")
	appBin := buildBinary(ctx, t, "demoapp", "./internal/up/demoapp")
	// The sidecars run as the injected runAsUser (1337): they must reach
	// the binaries and the trust bundles.
	if err := os.Chmod(filepath.Dir(proxyBin), 0o755); err != nil {
		t.Fatal(err)
	}
	shared, err := os.MkdirTemp("", "causeway-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}

	type member struct {
		name     string
		c        *testcluster.Cluster
		ip       string
		root     *x509.Certificate
		rootFile string
	}
	members := []*member{{name: "east"}, {name: "west"}}
	var wg sync.WaitGroup
	for _, m := range members {
		m.rootFile = filepath.Join(shared, m.name+"-ca.crt")
		// Both injected containers run the proxy image; Binary stands
		// for its entrypoint (causeway-proxy). Nothing else is added:
		// the args, env and volumes are the stored Pod spec's.
		sidecar := testcluster.RealContainer{Name: inject.ProxyContainerName, Binary: proxyBin}
		capture := testcluster.RealContainer{Name: inject.InitContainerName, Binary: proxyBin}
		opts := testcluster.Options{
			Name: m.name, Nodes: testcluster.ZonalNodes("r1", "a"), GatewayAPIChannel: testcluster.ChannelNone,
			RealPods: []testcluster.RealPod{
				{
					Namespace: "shop", Selector: "app=echo",
					// The app serves its declared containerPort, 8080
					// (the injected --inbound-ports 8080=127.0.0.1:8080).
					Command:    []string{appBin, "-addr", "127.0.0.1:8080", "-service", "echo", "-where", m.name + "/a/echo"},
					Containers: []testcluster.RealContainer{capture, sidecar},
				},
				{
					Namespace: "shop", Selector: "app=client",
					Command:    []string{"sleep", "infinity"},
					Containers: []testcluster.RealContainer{capture, sidecar},
				},
			},
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.c = testcluster.Start(t, opts)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	kbin := requireKubectl(t)
	installErrs := make([]error, len(members))
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			installErrs[i] = installCauseway(ctx, kubectl{bin: kbin, kubeconfig: m.c.Kubeconfig, cacheDir: t.TempDir()})
		}()
	}
	wg.Wait()
	if err := errors.Join(installErrs...); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		m.ip = m.c.HostIP().String()
		m.root = createCASecret(ctx, t, m.c.Clientset, m.name+".local")
		if err := os.WriteFile(m.rootFile, trust.CertsPEM([]*x509.Certificate{m.root}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("clusters installed in %v", time.Since(start).Round(time.Millisecond))

	for i, m := range members {
		peer := members[1-i]
		args := controlPlaneArgsAt(ctx, t, m.c, m.ip)
		args = append(args,
			"--cluster="+m.name, "--network=net-"+m.name, "--trust-domain="+m.name+".local",
			"--injector-hosts="+m.ip,
			"--injector-control-plane="+m.ip+":15010",
			// The sidecars reach the SVID issuer on the HostIP too,
			// through their env ($(VAR) as the kubelet expands it).
			"--injector-svid-issuer=$("+testcluster.HostIPEnv+"):15012",
			"--federation-listen="+m.ip+":15014",
			fmt.Sprintf("--peer=cluster=%s,trust-domain=%s.local,federation=%s:15014,bundle=https://%s:15013/,bundle-file=%s",
				peer.name, peer.name, peer.ip, peer.ip, peer.rootFile),
		)
		// Its east-west gateway (below), where peers on the other
		// network reach its pods.
		args = append(args, "--eastwest-address="+m.ip+":15443")
		t.Logf("%s: causeway %s", m.name, strings.Join(args, " "))
		startProcess(ctx, t, bin, args)
		pointWebhookAt(ctx, t, m.c.Clientset, m.ip+":15017")
		waitInjecting(ctx, t, m.c.Clientset, m.root)
	}
	east, west := members[0], members[1]

	// Each cluster's east-west gateway, on the host at its HostIP (it
	// stands for the gateway Deployment's pod, which the harness does
	// not run: it has no injected sidecar to match).
	for _, m := range members {
		startProcess(ctx, t, proxyBin, []string{"east-west", "--xds=" + m.ip + ":15010", "--inbound-ip=" + m.ip,
			"--admin=" + m.ip + ":15020", "--cluster=" + m.name, "--network=net-" + m.name,
			"--workload=causeway-eastwest", "--namespace=" + namespace, "--locality=r1/a", "--drain-delay=0s", "--drain-timeout=1s"})
	}

	// shop/echo in both clusters, exported; one replica in east, none in
	// west yet; a client pod in west.
	for _, m := range members {
		replicas := int32(0)
		if m == east {
			replicas = 1
		}
		createEcho(ctx, t, m.c, replicas)
	}
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Labels: map[string]string{"app": "client"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "client", Image: "client:1"}}},
	}
	if _, err := west.c.Clientset.CoreV1().Pods("shop").Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// (1) Injected pods run app and sidecar; the sidecars have their
	// configuration and an SVID.
	step := time.Now()
	eastEcho := waitRealPod(ctx, t, east.c, "app=echo")
	waitSidecar(ctx, t, east.c, eastEcho, "spiffe://east.local/ns/shop/sa/default", "echo.shop.svc.cluster.local:80", podIP(ctx, t, east.c.Clientset, eastEcho))
	waitSidecar(ctx, t, west.c, "client", "spiffe://west.local/ns/shop/sa/default", "echo.shop.svc.clusterset.local:80")
	for _, p := range []struct {
		c    *testcluster.Cluster
		name string
	}{{east.c, eastEcho}, {west.c, "client"}} {
		checkCapture(ctx, t, p.c, p.name)
	}
	t.Logf("step 1: injected pods run with ready sidecars holding SVIDs in %v", time.Since(step).Round(time.Millisecond))

	// (2) West's client calls the clusterset name; east answers.
	step = time.Now()
	if out, err := west.c.PodExec(ctx, "shop", "client", "getent", "hosts", "echo.shop.svc.clusterset.local"); err != nil {
		t.Errorf("resolving echo.shop.svc.clusterset.local in west's client pod (DNS captured by its sidecar): %v", err)
	} else {
		t.Logf("echo.shop.svc.clusterset.local resolves, in west's client pod, to %s", strings.TrimSpace(string(out)))
	}
	call := func() (string, error) {
		out, err := west.c.PodExec(ctx, "shop", "client", "curl", "-sS", "-m", "3", "-D", "-", "-o", "/dev/null",
			"http://echo.shop.svc.clusterset.local/")
		if err != nil {
			return "", err
		}
		s := string(out)
		if !strings.Contains(s, " 200") {
			return "", fmt.Errorf("answer not 200:\n%s", s)
		}
		return s, nil
	}
	servedBy := func(want string) func() error {
		return func() error {
			s, err := call()
			if err != nil {
				return err
			}
			if !strings.Contains(strings.ToLower(s), "x-served-by: "+want) {
				return fmt.Errorf("answer not served by %s:\n%s", want, s)
			}
			return nil
		}
	}
	waitFor(ctx, t, "west's client to reach east's echo", servedBy("east/a/"))
	// The client's sidecar logged it: upstream east's gateway, the
	// server's verified identity east's workload.
	accessLog := filepath.Join(west.c.Dir, "pods", "shop_client."+inject.ProxyContainerName+".log")
	if err := findAccessLog(accessLog, func(e accessEntry) bool {
		return e.ResponseCode == 200 && e.UpstreamHost == east.ip+":15443" && e.DestinationIdentity == "spiffe://east.local/ns/shop/sa/default"
	}); err != nil {
		t.Errorf("the client's sidecar logged no call through east's gateway (%s:15443) to spiffe://east.local/ns/shop/sa/default: %v", east.ip, err)
	}
	t.Logf("step 2: west's client reached east's echo through east's east-west gateway in %v", time.Since(step).Round(time.Millisecond))
	// Plaintext to east's pod is refused by its STRICT sidecar: the call
	// above was mTLS.
	if out, err := exec.CommandContext(ctx, "curl", "-sS", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
		"http://"+podIP(ctx, t, east.c.Clientset, eastEcho)+":8080/").CombinedOutput(); err == nil && strings.TrimSpace(string(out)) == "200" {
		t.Errorf("plaintext to east's echo pod was answered 200: its sidecar is not STRICT")
	}

	// (3) Failover: west gets a local echo; east's is deleted; calls keep
	// succeeding, answered by west.
	step = time.Now()
	scale(ctx, t, west.c.Clientset, 1)
	westEcho := waitRealPod(ctx, t, west.c, "app=echo")
	waitSidecar(ctx, t, west.c, westEcho, "spiffe://west.local/ns/shop/sa/default", podIP(ctx, t, west.c.Clientset, westEcho))
	scale(ctx, t, east.c.Clientset, 0)
	waitFor(ctx, t, "west's client to fail over to west's echo", servedBy("west/a/"))
	for i := 0; i < 5; i++ {
		if err := servedBy("west/a/")(); err != nil {
			t.Errorf("call %d after failover: %v", i, err)
		}
	}
	t.Logf("step 3: failover to west's echo after east's was deleted in %v", time.Since(step).Round(time.Millisecond))
	t.Logf("TestTwoClustersEndToEnd: %v in all", time.Since(start).Round(time.Millisecond))
}

// installCauseway applies the CRDs and the dev overlay, as installDev does.
func installCauseway(ctx context.Context, k kubectl) error {
	for _, args := range [][]string{
		{"apply", "--server-side", "--field-manager=" + fieldManager, "-k", "crds"},
		{"wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"},
		{"apply", "--server-side", "--field-manager=" + fieldManager, "-k", filepath.Join("overlays", "dev")},
	} {
		if _, _, err := k.run(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// createEcho creates Deployment, Service and ServiceExport shop/echo.
func createEcho(ctx context.Context, t *testing.T, c *testcluster.Cluster, replicas int32) {
	t.Helper()
	d := appDeployment("echo", nil)
	d.Spec.Replicas = &replicas
	if _, err := c.Clientset.AppsV1().Deployments("shop").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := c.Clientset.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	export := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
		"metadata": map[string]any{"name": "echo", "namespace": "shop"},
	}}
	gvr := schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"}
	if _, err := c.Dynamic.Resource(gvr).Namespace("shop").Create(ctx, export, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func scale(ctx context.Context, t *testing.T, cs kubernetes.Interface, replicas int32) {
	t.Helper()
	s, err := cs.AppsV1().Deployments("shop").GetScale(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if _, err := cs.AppsV1().Deployments("shop").UpdateScale(ctx, "echo", s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitRealPod waits for an injected pod matching selector in shop to run
// as a real pod and returns its name.
func waitRealPod(ctx context.Context, t *testing.T, c *testcluster.Cluster, selector string) string {
	t.Helper()
	name := ""
	waitFor(ctx, t, "a real pod "+selector+" in "+c.Name, func() error {
		l, err := c.Clientset.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		for _, p := range l.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if !isInjected(&p) {
				return fmt.Errorf("pod %s is not injected", p.Name)
			}
			if _, ok := c.RealPodIPs()["shop/"+p.Name]; ok {
				name = p.Name
				return nil
			}
		}
		return errors.New("no running real pod yet")
	})
	return name
}

// waitSidecar waits for the sidecar of real pod shop/name to be ready, to
// hold an SVID with id and to have a configuration from xDS that mentions
// every string of config (a cluster name, the inbound listener's pod IP).
func waitSidecar(ctx context.Context, t *testing.T, c *testcluster.Cluster, name, id string, config ...string) {
	t.Helper()
	waitFor(ctx, t, "the sidecar of "+c.Name+"/shop/"+name+" to be ready with SVID "+id+" and configuration", func() error {
		if out, err := c.PodExec(ctx, "shop", name, "curl", "-sS", "-m", "2", "-f", "http://127.0.0.1:15000/ready"); err != nil {
			return fmt.Errorf("not ready: %v %s", err, out)
		}
		out, err := c.PodExec(ctx, "shop", name, "curl", "-sS", "-m", "2", "-f", "http://127.0.0.1:15000/config_dump")
		if err != nil {
			return err
		}
		for _, want := range append([]string{id}, config...) {
			if !strings.Contains(string(out), want) {
				return fmt.Errorf("config_dump has no %s:\n%.3000s", want, out)
			}
		}
		return nil
	})
}

// checkCapture checks that causeway-init installed the capture rules in
// real pod shop/name, exempting the sidecar's UID, and that the sidecar
// holds the capture sockets as that UID (1337, the injected runAsUser).
func checkCapture(ctx context.Context, t *testing.T, c *testcluster.Cluster, name string) {
	t.Helper()
	out, err := c.PodExec(ctx, "shop", name, "iptables-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-A OUTPUT -j CAUSEWAY_OUTPUT", "--uid-owner 1337 -j RETURN", "--to-ports 15001", "--to-ports 15006", "--to-ports 15053"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s/shop/%s: the nat table has no %q:\n%s", c.Name, name, want, out)
		}
	}
	out, err = c.PodExec(ctx, "shop", name, "ss", "-Hltne", "sport = :15001")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "127.0.0.1:15001") || !strings.Contains(string(out), "uid:1337") {
		t.Errorf("%s/shop/%s: no listener on 127.0.0.1:15001 owned by UID 1337: %s", c.Name, name, out)
	}
}

// accessEntry is the part of a sidecar's access log line the test reads.
type accessEntry struct {
	ResponseCode        int    `json:"response_code"`
	UpstreamHost        string `json:"upstream_host"`
	DestinationIdentity string `json:"destination_identity"`
}

// findAccessLog returns nil if an access log line of the sidecar log at
// path satisfies match.
func findAccessLog(path string, match func(accessEntry) bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `"response_code"`) {
			continue
		}
		n++
		var e accessEntry
		if json.Unmarshal([]byte(line), &e) == nil && match(e) {
			return nil
		}
	}
	return fmt.Errorf("none of %d access log lines in %s matches", n, path)
}

func podIP(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	p, err := cs.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Status.PodIP
}

// builtBinaries are cmd/<name> binaries built once per test binary, in
// causewayBinary's directory (TestMain removes it).
var builtBinaries sync.Map // name -> *builtBinary

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// buildBinary builds ./cmd/<name>, or the package pkg when given (its
// binary is still called name), once per test binary.
func buildBinary(ctx context.Context, t *testing.T, name string, pkg ...string) string {
	t.Helper()
	src := "./cmd/" + name
	if len(pkg) > 0 {
		src = pkg[0]
	}
	buildCauseway(ctx, t) // makes the directory
	v, _ := builtBinaries.LoadOrStore(name, &builtBinary{})
	b := v.(*builtBinary)
	b.once.Do(func() {
		b.path = filepath.Join(causewayBinary.dir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.path, src)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", src, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

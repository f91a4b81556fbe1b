package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/federation/mcs"
	"github.com/causewaymesh/causeway/internal/testcluster"
	"github.com/causewaymesh/causeway/trust"
)

// TestControlPlaneWritesMCSObjects: `causeway control-plane --source
// kubernetes` on a real apiserver writes the ServiceImport of an exported
// Service with the VIP its served model (/model) gives it, and the
// ServiceExport's Ready condition; unexported, the ServiceImport goes.
// Loopback 127.62.1.1.
func TestControlPlaneWritesMCSObjects(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	c := testcluster.Start(t, testcluster.Options{Name: "mcs", GatewayAPIChannel: testcluster.ChannelNone})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.Apply(ctx, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
`)); err != nil {
		t.Fatal(err)
	}
	mc, err := mcsclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}

	const ip = "127.62.1.1"
	startProcess(t, filepath.Join(t.TempDir(), "east.log"), "control-plane", "--source", "kubernetes", "--kubeconfig", c.Kubeconfig, "--cluster", "east",
		"--xds", ip+":15010", "--admin", ip+":15011")

	eventually(t, ctx, "ServiceImport shop/cart with the served VIP", func() error {
		model, err := adminGet(ip, "/model")
		if err != nil {
			return err
		}
		si, err := mc.MulticlusterV1alpha1().ServiceImports("shop").Get(ctx, "cart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(si.Spec.IPs) != 1 || !strings.Contains(model, "clusterset-ip="+si.Spec.IPs[0]) {
			return fmt.Errorf("ServiceImport ips %v: want the clusterset-ip /model serves:\n%s", si.Spec.IPs, model)
		}
		if len(si.Spec.Ports) != 1 || si.Spec.Ports[0].Port != 80 || len(si.Status.Clusters) != 1 || si.Status.Clusters[0].Cluster != "east" ||
			si.Labels[mcs.ManagedByLabel] != mcs.ManagedByValue {
			return fmt.Errorf("ServiceImport: %+v %+v labels %v; want port 80, clusters [east], managed-by label", si.Spec, si.Status, si.Labels)
		}
		return nil
	})
	eventually(t, ctx, "ServiceExport shop/cart Ready", func() error {
		se, err := mc.MulticlusterV1alpha1().ServiceExports("shop").Get(ctx, "cart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(se.Status.Conditions, "Ready") || !meta.IsStatusConditionFalse(se.Status.Conditions, "Conflict") {
			return fmt.Errorf("conditions %+v: want Ready True, Conflict False", se.Status.Conditions)
		}
		return nil
	})
	if err := mc.MulticlusterV1alpha1().ServiceExports("shop").Delete(ctx, "cart", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "ServiceImport shop/cart withdrawn", func() error {
		_, err := mc.MulticlusterV1alpha1().ServiceImports("shop").Get(ctx, "cart", metav1.GetOptions{})
		if errors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v)", err)
	})
}

// startProcess runs `causeway args...` (this test binary, TestMain) until
// the test ends; its output goes to logPath, printed if the test failed.
func startProcess(t *testing.T, logPath string, args ...string) {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execMainEnv+"=1")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	log.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		timer := time.AfterFunc(5*time.Second, func() { _ = cmd.Process.Kill() })
		_ = cmd.Wait()
		timer.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s:\n%s", filepath.Base(logPath), b)
		}
	})
}

// cartYAML is a cluster's exported cart on port, with one endpoint.
func cartYAML(port int, addr string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: %d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-1, namespace: shop, labels: {kubernetes.io/service-name: cart}}
addressType: IPv4
endpoints: [{addresses: [%s], conditions: {ready: true}}]
ports: [{name: http, port: 9000}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
`, port, addr)
}

// TestTwoControlPlanesMCS: two clusters, each with its own apiserver and
// `causeway control-plane --source kubernetes --mtls`, federated both
// ways, export shop/cart with different ports (east 80, west 8080). Each
// ServiceExport gets Conflict=True PortConflict naming both clusters and
// both values, each from its own view; each cluster's ServiceImport lists
// both clusters with its served VIP. West fixes its port: cleared on
// both. Unexported everywhere: both ServiceImports deleted. Loopback
// 127.62.2.1 (east), 127.62.3.1 (west).
func TestTwoControlPlanesMCS(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	ips := map[string]string{"east": "127.62.2.1", "west": "127.62.3.1"}
	ports := map[string]int{"east": 80, "west": 8080}
	other := map[string]string{"east": "west", "west": "east"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	clusters := map[string]*testcluster.Cluster{}
	clients := map[string]mcsclient.Interface{}
	for _, name := range []string{"east", "west"} {
		c := testcluster.Start(t, testcluster.Options{Name: name, GatewayAPIChannel: testcluster.ChannelNone})
		clusters[name] = c
		addr := "10.62.1.1"
		if name == "west" {
			addr = "10.62.2.1"
		}
		if err := c.Apply(ctx, []byte(cartYAML(ports[name], addr))); err != nil {
			t.Fatal(err)
		}
		mc, err := mcsclient.NewForConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		clients[name] = mc
		ca, err := trust.NewSelfSignedCA(spiffeid.RequireTrustDomainFromString(name+".local"), trust.CAOptions{Validity: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.WriteFiles(filepath.Join(dir, name, "ca")); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"east", "west"} {
		ip, peer := ips[name], other[name]
		startProcess(t, filepath.Join(dir, name+".log"), "control-plane", "--source", "kubernetes", "--kubeconfig", clusters[name].Kubeconfig,
			"--cluster", name, "--network", "flat", "--xds", ip+":15010", "--admin", ip+":15011", "--mtls",
			"--ca-dir", filepath.Join(dir, name, "ca"), "--svid-listen", ip+":15012", "--bundle-listen", ip+":15013", "--federation-listen", ip+":15014",
			"--peer", fmt.Sprintf("cluster=%s,trust-domain=%s.local,federation=%s:15014,bundle=https://%s:15013/,bundle-file=%s",
				peer, peer, ips[peer], ips[peer], filepath.Join(dir, peer, "ca", trust.CACertFile)))
	}

	conflict := func(name string, status metav1.ConditionStatus, reason, msg string) func() error {
		return func() error {
			se, err := clients[name].MulticlusterV1alpha1().ServiceExports("shop").Get(ctx, "cart", metav1.GetOptions{})
			if err != nil {
				return err
			}
			c := meta.FindStatusCondition(se.Status.Conditions, "Conflict")
			if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, msg) {
				return fmt.Errorf("%s: ServiceExport shop/cart Conflict %+v, want %s/%s containing %q", name, c, status, reason, msg)
			}
			return nil
		}
	}
	serviceImport := func(name string, port int32) func() error {
		return func() error {
			model, err := adminGet(ips[name], "/model")
			if err != nil {
				return err
			}
			si, err := clients[name].MulticlusterV1alpha1().ServiceImports("shop").Get(ctx, "cart", metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			var cs []string
			for _, c := range si.Status.Clusters {
				cs = append(cs, c.Cluster)
			}
			if len(si.Spec.IPs) != 1 || !strings.Contains(model, "clusterset-ip="+si.Spec.IPs[0]) || len(si.Spec.Ports) != 1 ||
				si.Spec.Ports[0].Port != port || strings.Join(cs, ",") != "east,west" {
				return fmt.Errorf("%s: ServiceImport shop/cart ips %v ports %+v clusters %v; want the served VIP, port %d, clusters east,west\nmodel:\n%s",
					name, si.Spec.IPs, si.Spec.Ports, cs, port, model)
			}
			return nil
		}
	}
	eventually(t, ctx, "east's conflict", conflict("east", metav1.ConditionTrue, "PortConflict",
		`service shop/cart ports["http"]: port is 80 in east but 8080 in west; east (this cluster) wins here`))
	eventually(t, ctx, "west's conflict", conflict("west", metav1.ConditionTrue, "PortConflict",
		`service shop/cart ports["http"]: port is 8080 in west but 80 in east; west (this cluster) wins here`))
	eventually(t, ctx, "east's ServiceImport", serviceImport("east", 80))
	eventually(t, ctx, "west's ServiceImport", serviceImport("west", 8080))

	// West fixes its port.
	if err := clusters["west"].Apply(ctx, []byte(cartYAML(80, "10.62.2.1"))); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"east", "west"} {
		eventually(t, ctx, name+"'s conflict cleared", conflict(name, metav1.ConditionFalse, "NoConflicts", "defines it alike"))
		eventually(t, ctx, name+"'s ServiceImport", serviceImport(name, 80))
	}

	// Unexported everywhere.
	for _, name := range []string{"east", "west"} {
		if err := clients[name].MulticlusterV1alpha1().ServiceExports("shop").Delete(ctx, "cart", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"east", "west"} {
		eventually(t, ctx, name+"'s ServiceImport withdrawn", func() error {
			_, err := clients[name].MulticlusterV1alpha1().ServiceImports("shop").Get(ctx, "cart", metav1.GetOptions{})
			if errors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("%s: still there (err %v)", name, err)
		})
	}
}

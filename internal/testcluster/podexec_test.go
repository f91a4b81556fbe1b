package testcluster

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// TestPodExec execs, through the apiserver and kwok, a command in each real
// pod of a Deployment and checks that it sees the pod's network namespace
// (the pod IP on its eth0) and namespace.
func TestPodExec(t *testing.T) {
	RequireBinaries(t, true)
	RequireRealPods(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := Start(t, Options{Name: "podexec", Nodes: ZonalNodes("region-0", "a"),
		RealPods: []RealPod{{Namespace: "demo", Selector: "app=web", Command: []string{"echo-basic"}}}})
	stop, err := c.StartPodExec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := applyDemo(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(ctx, t, c, 2)
	pods, err := c.Clientset.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		cmd := []string{"sh", "-c", `echo "ns=$POD_NAMESPACE"; ip -n "$` + PodExecNetnsEnv + `" -4 -o addr show eth0`}
		var out string
		tick := time.NewTicker(200 * time.Millisecond)
		for {
			out, err = podExec(ctx, c, p.Namespace, p.Name, cmd)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("exec in %s/%s: %v", p.Namespace, p.Name, err)
			case <-tick.C:
			}
		}
		tick.Stop()
		if !strings.Contains(out, "ns=demo\n") || !strings.Contains(out, " "+p.Status.PodIP+"/") {
			t.Errorf("exec in %s/%s (IP %s): output %q lacks ns=demo or the pod IP", p.Namespace, p.Name, p.Status.PodIP, out)
		}
	}
}

// podExec runs cmd in container "web" of pod ns/name through pods/exec.
func podExec(ctx context.Context, c *Cluster, ns, name string, cmd []string) (string, error) {
	req := c.Clientset.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "web", Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return "", err
	}
	return stdout.String(), nil
}

package testcluster

import (
	"context"
	_ "embed"
	"fmt"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// pods/exec into real pods. The apiserver forwards a pod's exec to its
// node's kubelet, here kwok, which runs the command on the host when an
// Exec object (kwok.x-k8s.io/v1alpha1, named like the pod) says so. With
// RealPods, the harness installs the Exec CRD, starts kwok with
// --enable-crds=Exec, and StartPodExec keeps one Exec per running real pod
// whose environment names the pod's network namespace
// (PodExecNetnsEnv), its namespace (POD_NAMESPACE) and the admin
// kubeconfig (PodExecKubeconfigEnv). The command runs as root on the host,
// as a child of kwok, looked up in kwok's PATH (the PATH of the process
// that started the cluster): it must enter the namespace itself, as
// internal/testcluster/echoclient/client does with `ip netns exec`.
// TESTCLUSTER_EXEC_LOG names a file, <Dir>/pods/<ns>_<pod>.exec.log, where
// the command may write its errors (the suite drops an exec's stderr).

// PodExecNetnsEnv and PodExecKubeconfigEnv are set in the environment of
// every command exec'd in a real pod.
const (
	PodExecNetnsEnv      = "TESTCLUSTER_POD_NETNS"
	PodExecKubeconfigEnv = "TESTCLUSTER_KUBECONFIG"
)

//go:embed kwokcrds/kwok.x-k8s.io_execs.yaml
var kwokExecCRD []byte

var kwokExecGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "execs"}

// kwokExecArgs installs kwok's Exec CRD, waits until it is Established and
// returns the kwok flags that enable it. Called before kwok starts when
// the cluster has RealPods.
func (c *Cluster) kwokExecArgs(ctx context.Context) ([]string, error) {
	objs, err := DecodeYAML(kwokExecCRD)
	if err != nil {
		return nil, fmt.Errorf("kwok Exec CRD: %w", err)
	}
	for _, o := range objs {
		if err := c.applier.applyOne(ctx, o); err != nil {
			return nil, fmt.Errorf("kwok Exec CRD: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, o := range objs {
		for {
			got, err := c.Dynamic.Resource(crdGVR).Get(ctx, o.GetName(), metav1.GetOptions{})
			if err == nil && crdEstablished(got) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("kwok CRD %s not Established within %v (last error: %v)", o.GetName(), c.opts.ReadyTimeout, err)
			case <-tick.C:
			}
		}
	}
	return []string{"--enable-crds=Exec"}, nil
}

// StartPodExec makes pods/exec work for every real pod of the cluster:
// until ctx ends or stop is called, it creates the kwok Exec object of each
// real pod once the pod runs (polling every 200ms). Only clusters with
// RealPods support it.
func (c *Cluster) StartPodExec(ctx context.Context) (stop func(), err error) {
	if c.pods == nil {
		return nil, fmt.Errorf("cluster %s: StartPodExec needs real pods (Options.RealPods)", c.Name)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		made := map[string]string{} // pod key -> pod UID whose Exec exists
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			c.pods.mu.Lock()
			type pod struct{ ns, name, uid, netns string }
			var todo []pod
			for key, rp := range c.pods.running {
				if made[key] == rp.uid || rp.net == nil {
					continue
				}
				ns, name := splitKey(key)
				todo = append(todo, pod{ns, name, rp.uid, rp.net.ns})
			}
			c.pods.mu.Unlock()
			for _, p := range todo {
				if err := c.putExec(ctx, p.ns, p.name, p.netns); err != nil {
					if ctx.Err() == nil {
						c.logf("testcluster %s: pod exec for %s/%s: %v (retrying)", c.Name, p.ns, p.name, err)
					}
					continue
				}
				made[p.ns+"/"+p.name] = p.uid
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

func splitKey(key string) (ns, name string) {
	for i := range len(key) {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}

// putExec creates or replaces the Exec object of pod ns/name.
func (c *Cluster) putExec(ctx context.Context, ns, name, netns string) error {
	env := []any{
		map[string]any{"name": PodExecNetnsEnv, "value": netns},
		map[string]any{"name": PodExecKubeconfigEnv, "value": c.Kubeconfig},
		map[string]any{"name": "POD_NAMESPACE", "value": ns},
		map[string]any{"name": "POD_NAME", "value": name},
		map[string]any{"name": "TESTCLUSTER_EXEC_LOG", "value": filepath.Join(c.Dir, "pods", ns+"_"+name+".exec.log")},
	}
	o := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Exec",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"execs": []any{
			map[string]any{"local": map[string]any{"envs": env}},
		}},
	}}
	r := c.Dynamic.Resource(kwokExecGVR).Namespace(ns)
	err := r.Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete old Exec %s/%s: %w", ns, name, err)
	}
	if _, err := r.Create(ctx, o, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Exec %s/%s: %w", ns, name, err)
	}
	return nil
}

package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// RealPod selects pods that run as real processes. A pod matches when it is
// in Namespace (any if empty), its labels match Selector (all if empty) and
// its first container's image starts with ImagePrefix (any if empty). The
// first matching RealPod wins.
//
// Once kwok has given a matching pod its IP and phase Running, the harness
// creates a network namespace holding that IP and runs Command in it, with
// the container's env (values, fieldRefs, secret and config map keys)
// resolved, plus POD_NAME, POD_NAMESPACE, POD_IP and Env. Output goes to
// Cluster.Dir/pods/<namespace>_<name>.log. The process and namespace are
// removed when the pod is deleted or the cluster closes. A process that
// exits is not restarted.
type RealPod struct {
	Namespace   string
	Selector    string
	ImagePrefix string
	// Command is the argv; a bare argv[0] without a slash is looked up in
	// the binary directory first (e.g. "echo-basic"), then in $PATH.
	Command []string
	Env     []string
	// Containers run the pod's init containers and native sidecars
	// (realcontainers.go) before Command.
	Containers []RealContainer
}

type realPodMatcher struct {
	RealPod
	sel labels.Selector
}

// podRunner is a small kubelet for real pods: an informer enqueues pod keys;
// one goroutine reconciles them.
type podRunner struct {
	c        *Cluster
	matchers []realPodMatcher
	lister   listersv1.PodLister
	queue    workqueue.TypedDelayingInterface[string]
	cancel   context.CancelFunc
	done     chan struct{}
	stopped  chan struct{} // closed by close, before it stops processes

	mu      sync.Mutex
	running map[string]*runningPod // by namespace/name
	next    int                    // veth counter
}

// errNotYet marks a pod that cannot start yet (a secret or config map it
// uses does not exist yet); its key is retried shortly.
var errNotYet = errors.New("not yet")

type runningPod struct {
	stopping chan struct{} // closed before the harness stops the process
	uid      string
	net      *podNet
	proc     *process
	sidecars []*process // stopped after proc
}

func startPodRunner(c *Cluster) (*podRunner, error) {
	r := &podRunner{
		c:       c,
		queue:   workqueue.NewTypedDelayingQueue[string](),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		running: map[string]*runningPod{},
	}
	for i, rp := range c.opts.RealPods {
		sel, err := labels.Parse(rp.Selector)
		if err != nil {
			return nil, fmt.Errorf("RealPods[%d].Selector %q: %w", i, rp.Selector, err)
		}
		r.matchers = append(r.matchers, realPodMatcher{RealPod: rp, sel: sel})
	}
	factory := informers.NewSharedInformerFactory(c.Clientset, 0)
	inf := factory.Core().V1().Pods()
	r.lister = inf.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	factory.Start(ctx.Done())
	syncCtx, syncCancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.Informer().HasSynced) {
		cancel()
		factory.Shutdown()
		return nil, errors.New("pod informer did not sync")
	}
	go func() {
		defer close(r.done)
		defer factory.Shutdown()
		for {
			key, quit := r.queue.Get()
			if quit {
				return
			}
			if err := r.sync(ctx, key); errors.Is(err, errNotYet) {
				r.queue.AddAfter(key, 250*time.Millisecond)
			} else if err != nil {
				c.logf("testcluster %s: real pod %s: %v", c.Name, key, err)
			}
			r.queue.Done(key)
		}
	}()
	return r, nil
}

func (r *podRunner) match(p *corev1.Pod) *realPodMatcher {
	for i := range r.matchers {
		m := &r.matchers[i]
		if m.Namespace != "" && m.Namespace != p.Namespace {
			continue
		}
		if !m.sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if m.ImagePrefix != "" && (len(p.Spec.Containers) == 0 || !strings.HasPrefix(p.Spec.Containers[0].Image, m.ImagePrefix)) {
			continue
		}
		return m
	}
	return nil
}

// sync makes the process of pod key match the pod: started once it is
// Running with an IP, stopped when it is gone, deleting or replaced.
func (r *podRunner) sync(ctx context.Context, key string) error {
	if ctx.Err() != nil {
		return nil // closing: close stops what runs
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	pod, err := r.lister.Pods(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	r.mu.Lock()
	rp := r.running[key]
	r.mu.Unlock()
	want := pod != nil && pod.DeletionTimestamp == nil && pod.Status.PodIP != "" &&
		pod.Status.Phase == corev1.PodRunning
	var m *realPodMatcher
	if want {
		m = r.match(pod)
		want = m != nil
	}
	if rp != nil && (!want || string(pod.UID) != rp.uid) {
		r.stopPod(key, rp)
		rp = nil
	}
	if !want || rp != nil {
		return nil
	}
	return r.startPod(ctx, key, pod, m)
}

func (r *podRunner) stopPod(key string, rp *runningPod) {
	close(rp.stopping)
	rp.proc.stop(5 * time.Second)
	for _, p := range rp.sidecars {
		p.stop(5 * time.Second)
	}
	if err := rp.net.teardown(); err != nil {
		r.c.logf("testcluster %s: real pod %s: teardown: %v", r.c.Name, key, err)
	}
	r.mu.Lock()
	delete(r.running, key)
	r.mu.Unlock()
}

func (r *podRunner) startPod(ctx context.Context, key string, pod *corev1.Pod, m *realPodMatcher) error {
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil {
		return fmt.Errorf("pod IP %q: %w", pod.Status.PodIP, err)
	}
	if !r.c.PodCIDR.Contains(ip) {
		return fmt.Errorf("pod IP %s is outside the cluster's pod range %s; refusing to route it", ip, r.c.PodCIDR)
	}
	argv := append([]string(nil), m.Command...)
	if !strings.Contains(argv[0], "/") {
		if p, err := binPath(r.c.binDir, argv[0]); err == nil {
			argv[0] = p
		}
	}
	podDir := filepath.Join(r.c.Dir, "pods", pod.Namespace+"_"+pod.Name)
	mounts, err := r.materializeVolumes(ctx, pod, podDir)
	if err != nil {
		return err
	}
	env, err := r.podEnv(ctx, pod)
	if err != nil {
		return err
	}
	env = append(env, m.Env...)
	for i, kv := range env {
		env[i] = rewriteMountPath(kv, mounts)
	}

	r.mu.Lock()
	n := r.next
	r.next++
	r.mu.Unlock()
	nsName := netnsPrefix(r.c.Slot) + sanitize(pod.Namespace+"-"+pod.Name)
	if len(nsName) > 200 {
		nsName = nsName[:200]
	}
	pn, err := setupPodNet(nsName, fmt.Sprintf("%s%d", hostVethPrefix(r.c.Slot), n), ip)
	if err != nil {
		return err
	}
	sidecars, err := r.startContainers(ctx, pod, m, nsName, podDir)
	if err != nil {
		pn.teardown()
		return err
	}
	logPath := podDir + ".log"
	full := append([]string{"ip", "netns", "exec", nsName}, argv...)
	proc, err := startProcess("pod "+key, logPath, full, env)
	if err != nil {
		for _, p := range sidecars {
			p.stop(5 * time.Second)
		}
		pn.teardown()
		return err
	}
	rp := &runningPod{stopping: make(chan struct{}), uid: string(pod.UID), net: pn, proc: proc, sidecars: sidecars}
	r.mu.Lock()
	r.running[key] = rp
	r.mu.Unlock()
	r.c.logf("testcluster %s: real pod %s runs %s on %s", r.c.Name, key, filepath.Base(argv[0]), ip)
	go func() {
		select {
		case <-proc.done:
			r.c.logf("testcluster %s: real pod %s: process exited (%v); log %s ends:\n%s", r.c.Name, key, proc.err, logPath, logTail(logPath, 5))
		case <-r.stopped:
		case <-rp.stopping:
		}
	}()
	return nil
}

// podEnv resolves the first container's env as the kubelet would, for the
// sources a test needs, and adds POD_NAME, POD_NAMESPACE and POD_IP.
func (r *podRunner) podEnv(ctx context.Context, pod *corev1.Pod) ([]string, error) {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"POD_NAME=" + pod.Name,
		"POD_NAMESPACE=" + pod.Namespace,
		"POD_IP=" + pod.Status.PodIP,
	}
	if len(pod.Spec.Containers) == 0 {
		return env, nil
	}
	for _, e := range pod.Spec.Containers[0].Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
			continue
		}
		v, err := r.envFrom(ctx, pod, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		env = append(env, e.Name+"="+v)
	}
	return env, nil
}

func (r *podRunner) envFrom(ctx context.Context, pod *corev1.Pod, src *corev1.EnvVarSource) (string, error) {
	switch {
	case src.FieldRef != nil:
		switch f := src.FieldRef.FieldPath; f {
		case "metadata.name":
			return pod.Name, nil
		case "metadata.namespace":
			return pod.Namespace, nil
		case "metadata.uid":
			return string(pod.UID), nil
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, nil
		case "status.podIP":
			return pod.Status.PodIP, nil
		case "status.hostIP":
			return pod.Status.HostIP, nil
		default:
			if k, ok := strings.CutPrefix(f, "metadata.labels['"); ok {
				return pod.Labels[strings.TrimSuffix(k, "']")], nil
			}
			if k, ok := strings.CutPrefix(f, "metadata.annotations['"); ok {
				return pod.Annotations[strings.TrimSuffix(k, "']")], nil
			}
			return "", fmt.Errorf("fieldRef %q is not supported by the harness", f)
		}
	case src.SecretKeyRef != nil:
		s, err := r.c.Clientset.CoreV1().Secrets(pod.Namespace).Get(ctx, src.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", notYet(err)
		}
		return string(s.Data[src.SecretKeyRef.Key]), nil
	case src.ConfigMapKeyRef != nil:
		cm, err := r.c.Clientset.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", notYet(err)
		}
		return cm.Data[src.ConfigMapKeyRef.Key], nil
	}
	return "", errors.New("resourceFieldRef is not supported by the harness")
}

// close stops the reconciler, then every process and namespace.
func (r *podRunner) close() error {
	close(r.stopped)
	r.cancel()
	r.queue.ShutDown()
	<-r.done
	r.mu.Lock()
	keys := make([]string, 0, len(r.running))
	for k := range r.running {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	var errs []error
	for _, k := range keys {
		r.mu.Lock()
		rp := r.running[k]
		r.mu.Unlock()
		rp.proc.stop(5 * time.Second)
		for _, p := range rp.sidecars {
			p.stop(5 * time.Second)
		}
		errs = append(errs, rp.net.teardown())
		r.mu.Lock()
		delete(r.running, k)
		r.mu.Unlock()
	}
	return errors.Join(errs...)
}

// RealPodIPs returns the IPs of the real pods whose processes are running,
// by "namespace/name".
func (c *Cluster) RealPodIPs() map[string]netip.Addr {
	out := map[string]netip.Addr{}
	if c.pods == nil {
		return out
	}
	c.pods.mu.Lock()
	defer c.pods.mu.Unlock()
	for k, rp := range c.pods.running {
		if !rp.proc.exited() {
			out[k] = rp.net.ip
		}
	}
	return out
}

func notYet(err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: %v", errNotYet, err)
	}
	return err
}

// materializeVolumes writes the secret and config map volumes the first
// container mounts into podDir/volumes/<volume>/<key>, and returns the
// container's mount paths mapped to those directories. Other volume types
// become empty directories.
func (r *podRunner) materializeVolumes(ctx context.Context, pod *corev1.Pod, podDir string) (map[string]string, error) {
	mounts := map[string]string{}
	if len(pod.Spec.Containers) == 0 {
		return mounts, nil
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range pod.Spec.Containers[0].VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			continue
		}
		dir := filepath.Join(podDir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		data := map[string][]byte{}
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			s, err := r.c.Clientset.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, notYet(fmt.Errorf("volume %s: %w", v.Name, err))
			}
			data, items = s.Data, v.Secret.Items
		case v.ConfigMap != nil:
			cm, err := r.c.Clientset.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, notYet(fmt.Errorf("volume %s: %w", v.Name, err))
			}
			for k, d := range cm.Data {
				data[k] = []byte(d)
			}
			items = v.ConfigMap.Items
		}
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			b, ok := data[it.Key]
			if !ok {
				return nil, notYet(fmt.Errorf("volume %s: key %q missing", v.Name, it.Key))
			}
			f := filepath.Join(dir, filepath.Clean("/"+it.Path))
			if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
				return nil, err
			}
			if err := os.WriteFile(f, b, 0o600); err != nil {
				return nil, err
			}
		}
		mounts[strings.TrimSuffix(vm.MountPath, "/")] = filepath.Join(dir, vm.SubPath)
	}
	return mounts, nil
}

// rewriteMountPath points an env value under a container mount path at the
// materialized directory: "CERT=/etc/secret-volume/crt" becomes
// "CERT=<pod dir>/volumes/secret-volume/crt".
func rewriteMountPath(kv string, mounts map[string]string) string {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return kv
	}
	for mp, dir := range mounts {
		if v == mp {
			return k + "=" + dir
		}
		if rest, ok := strings.CutPrefix(v, mp+"/"); ok {
			return k + "=" + filepath.Join(dir, rest)
		}
	}
	return kv
}

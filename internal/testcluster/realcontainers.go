package testcluster

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RealContainer runs one of a real pod's init containers (a native sidecar,
// restartPolicy Always, or a run-to-completion init step) as a process in
// the pod's network namespace, before the pod's Command. An init container
// matches when its name is Name. Its argv is Binary followed by the
// container's command and args, then ExtraArgs, with $(VAR) references
// expanded from the container's env as the kubelet does. Env is the
// container's env resolved (values, fieldRefs, secret and config map keys),
// POD_* and the RealContainer's Env; values under a mount path of the
// container point at the materialized volume (secrets, config maps and
// projected service-account tokens, which the harness mints with the
// TokenRequest API for the pod's service account, bound to the pod).
//
// The process runs as the container's securityContext.runAsUser (and
// runAsGroup), through setpriv, when that is set and not 0.
//
// A run-to-completion container must exit 0 within 30 seconds or the pod
// is not started (and retried). A sidecar is started, then the next
// container; it is stopped after the pod's Command. Init containers
// without a matching RealContainer are skipped.
type RealContainer struct {
	Name string
	// Binary is a path, or a bare name looked up in the binary directory
	// first, then in $PATH.
	Binary string
	// TrimArgs are leading args of the container's command and args that
	// the image's entrypoint would consume (e.g. "init" choosing the
	// program): they are dropped when they are there.
	TrimArgs  []string
	ExtraArgs []string
	Env       []string
}

// HostIPEnv is set, in the env of every RealContainer, to the cluster's
// HostIP.
const HostIPEnv = "TESTCLUSTER_HOST_IP"

// hostIP is the address of slot s on the host that every real pod of the
// slot reaches: the last usable address of the slot's pod range, which no
// node's pod CIDR (the first /24s of the range) hands out.
func hostIP(s int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(16*s + 15), 254})
}

// HostIP is an address of this host, in the cluster's pod range, that the
// cluster's real pods reach (through their default route): servers that
// stand for in-cluster components (a control plane, a gateway) listen on
// it. Only clusters with RealPods have it.
func (c *Cluster) HostIP() netip.Addr { return hostIP(c.Slot) }

// setupHostLink puts HostIP on a veth whose peer lives in a namespace of
// its own (dummy links need a kernel module that may be missing). The
// names start with the slot's prefixes, so sweepSlot deletes both.
func setupHostLink(s int) error {
	pn := &podNet{ns: netnsPrefix(s) + "hostip", hostVeth: hostVethPrefix(s) + "gw"}
	if err := pn.teardown(); err != nil {
		return err
	}
	if err := ipCmd("", "netns", "add", pn.ns); err != nil {
		return err
	}
	host := fmt.Sprintf("link add %[1]s type veth peer name eth0 netns %[2]s\naddr add %[3]s/32 dev %[1]s\nlink set %[1]s up\n", pn.hostVeth, pn.ns, hostIP(s))
	if err := ipCmd(host, "-batch", "-"); err != nil {
		pn.teardown()
		return err
	}
	if err := ipCmd("", "-n", pn.ns, "link", "set", "eth0", "up"); err != nil {
		pn.teardown()
		return err
	}
	return nil
}

// PodExec runs argv in the network namespace of the running real pod
// namespace/name (as root, on the host's filesystem) and returns its
// combined output.
func (c *Cluster) PodExec(ctx context.Context, namespace, name string, argv ...string) ([]byte, error) {
	if c.pods == nil {
		return nil, fmt.Errorf("cluster %s has no real pods (Options.RealPods)", c.Name)
	}
	key := namespace + "/" + name
	c.pods.mu.Lock()
	rp := c.pods.running[key]
	c.pods.mu.Unlock()
	if rp == nil {
		return nil, fmt.Errorf("pod %s is not running as a real pod in cluster %s", key, c.Name)
	}
	return execCommand(ctx, append([]string{"ip", "netns", "exec", rp.net.ns}, argv...))
}

func execCommand(ctx context.Context, argv []string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// startContainers runs the pod's init containers that m names, in order:
// run-to-completion ones to their end, sidecars started and returned.
func (r *podRunner) startContainers(ctx context.Context, pod *corev1.Pod, m *realPodMatcher, nsName, podDir string) ([]*process, error) {
	var sidecars []*process
	stopAll := func() {
		for _, p := range sidecars {
			p.stop(5 * time.Second)
		}
	}
	for _, ctr := range pod.Spec.InitContainers {
		var rc *RealContainer
		for i := range m.Containers {
			if m.Containers[i].Name == ctr.Name {
				rc = &m.Containers[i]
				break
			}
		}
		if rc == nil {
			continue
		}
		argv, env, err := r.containerArgv(ctx, pod, &ctr, rc, podDir)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("container %s: %w", ctr.Name, err)
		}
		full := []string{"ip", "netns", "exec", nsName}
		if sc := ctr.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser != 0 {
			g := *sc.RunAsUser
			if sc.RunAsGroup != nil {
				g = *sc.RunAsGroup
			}
			full = append(full, "setpriv", "--reuid="+strconv.FormatInt(*sc.RunAsUser, 10), "--regid="+strconv.FormatInt(g, 10), "--clear-groups", "--")
		}
		full = append(full, argv...)
		logPath := podDir + "." + ctr.Name + ".log"
		p, err := startProcess("pod "+pod.Namespace+"/"+pod.Name+" container "+ctr.Name, logPath, full, env)
		if err != nil {
			stopAll()
			return nil, err
		}
		if ctr.RestartPolicy != nil && *ctr.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars = append(sidecars, p)
			r.c.logf("testcluster %s: real pod %s/%s: sidecar %s runs %s", r.c.Name, pod.Namespace, pod.Name, ctr.Name, filepath.Base(argv[0]))
			continue
		}
		t := time.NewTimer(30 * time.Second)
		select {
		case <-p.done:
			t.Stop()
		case <-t.C:
			p.stop(time.Second)
		}
		if p.err != nil {
			stopAll()
			return nil, fmt.Errorf("init container %s: %w", ctr.Name, p.exitError())
		}
		r.c.logf("testcluster %s: real pod %s/%s: init container %s done", r.c.Name, pod.Namespace, pod.Name, ctr.Name)
	}
	return sidecars, nil
}

// containerArgv resolves ctr's argv and env for rc.
func (r *podRunner) containerArgv(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container, rc *RealContainer, podDir string) ([]string, []string, error) {
	mounts, err := r.materializeMounts(ctx, pod, ctr, podDir)
	if err != nil {
		return nil, nil, err
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"POD_NAME=" + pod.Name,
		"POD_NAMESPACE=" + pod.Namespace,
		"POD_IP=" + pod.Status.PodIP,
		HostIPEnv + "=" + hostIP(r.c.Slot).String(),
	}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
			continue
		}
		v, err := r.envFrom(ctx, pod, e.ValueFrom)
		if err != nil {
			return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		env = append(env, e.Name+"="+v)
	}
	env = append(env, rc.Env...)
	vars := map[string]string{}
	for i, kv := range env {
		env[i] = rewriteMountPath(kv, mounts)
		k, v, _ := strings.Cut(env[i], "=")
		vars[k] = v
	}
	bin := rc.Binary
	if !strings.Contains(bin, "/") {
		if p, err := binPath(r.c.binDir, bin); err == nil {
			bin = p
		}
	}
	args := append(append([]string(nil), ctr.Command...), ctr.Args...)
	for _, a := range rc.TrimArgs {
		if len(args) > 0 && args[0] == a {
			args = args[1:]
		}
	}
	argv := []string{bin}
	for _, a := range append(args, rc.ExtraArgs...) {
		argv = append(argv, expandVars(a, vars))
	}
	return argv, env, nil
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandVars replaces $(VAR) with vars' value; unknown references stay, as
// the kubelet leaves them.
func expandVars(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := vars[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

// materializeMounts writes the volumes ctr mounts: secrets and config maps
// as materializeVolumes does, projected service-account tokens minted
// with the TokenRequest API. Directories are 0755 and files 0644 so that
// a container running as another UID reads them (as the kubelet does for
// projected tokens shared by containers of different users).
func (r *podRunner) materializeMounts(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container, podDir string) (map[string]string, error) {
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]string{}
	for _, vm := range ctr.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			continue
		}
		dir := filepath.Join(podDir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		// Every ancestor up to the temporary directory, for other UIDs.
		for d := filepath.Dir(dir); strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil {
				_ = os.Chmod(d, fi.Mode().Perm()|0o011)
			}
		}
		files := map[string][]byte{}
		switch {
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken == nil {
					continue
				}
				tok, err := r.mintToken(ctx, pod, src.ServiceAccountToken)
				if err != nil {
					return nil, fmt.Errorf("volume %s: %w", v.Name, err)
				}
				files[src.ServiceAccountToken.Path] = []byte(tok)
			}
		case v.Secret != nil:
			s, err := r.c.Clientset.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, notYet(fmt.Errorf("volume %s: %w", v.Name, err))
			}
			for k, b := range s.Data {
				files[k] = b
			}
		case v.ConfigMap != nil:
			cm, err := r.c.Clientset.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, notYet(fmt.Errorf("volume %s: %w", v.Name, err))
			}
			for k, d := range cm.Data {
				files[k] = []byte(d)
			}
		}
		for p, b := range files {
			f := filepath.Join(dir, filepath.Clean("/"+p))
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(f, b, 0o644); err != nil {
				return nil, err
			}
		}
		mounts[strings.TrimSuffix(vm.MountPath, "/")] = filepath.Join(dir, vm.SubPath)
	}
	return mounts, nil
}

// mintToken asks the apiserver for a token of pod's service account with
// src's audience and lifetime, bound to the pod, as the kubelet does.
func (r *podRunner) mintToken(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tok, err := r.c.Clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", notYet(fmt.Errorf("token of service account %s/%s: %w", pod.Namespace, sa, err))
	}
	return tok.Status.Token, nil
}

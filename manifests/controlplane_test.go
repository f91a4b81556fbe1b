package manifests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/causewaymesh/causeway/internal/inject"
)

// controlPlaneIP is where the control plane process of
// TestControlPlaneBinaryInjects listens (this package's loopback block),
// on the ports the Deployment names.
const controlPlaneIP = "127.240.9.3"

// TestControlPlaneBinaryInjects runs the real `causeway control-plane`
// process with exactly the args of the installed control plane Deployment
// (config map references resolved, listen addresses moved from the pod's
// :150xx to loopback) and a kubeconfig holding a token of the service
// account causeway-system/causeway: the flags, the RBAC and the root CA
// Secret are what a cluster would give it. The real apiserver calls its
// webhook for a Deployment's pod; stopped, pods are still admitted
// (failurePolicy Ignore) and it exits 0.
func TestControlPlaneBinaryInjects(t *testing.T) {
	t.Parallel() // each has its own clusters and loopback addresses
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := buildCauseway(ctx, t)
	c, root := installDev(ctx, t, "cp-binary")
	cs := c.Clientset

	// The args of the installed Deployment, and a kubeconfig with the
	// service account's token, as the pod would have it mounted.
	args := controlPlaneArgsAt(ctx, t, c, controlPlaneIP)
	args = append(args, "--injector-hosts="+controlPlaneIP+","+inject.DefaultServingHost)
	t.Logf("causeway %s", strings.Join(args, " "))
	cp := startProcess(ctx, t, bin, args)

	pointWebhookAt(ctx, t, cs, controlPlaneIP+":15017")
	waitInjecting(ctx, t, cs, root)

	if _, err := cs.AppsV1().Deployments("shop").Create(ctx, appDeployment("web", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitStoredPod(ctx, t, cs, "shop", "app=web")
	if got := containerNames(p.Spec.InitContainers); !slices.Equal(got, []string{inject.InitContainerName, inject.ProxyContainerName}) {
		t.Fatalf("stored pod's init containers %v, want [causeway-init causeway-proxy]", got)
	}
	if proxy := p.Spec.InitContainers[1]; proxy.Image != "causeway-proxy:dev" || !slices.Contains(proxy.Args, "--cluster=dev") || !slices.Contains(proxy.Args, "--xds=causeway.causeway-system.svc:15010") {
		t.Errorf("sidecar image %q args %q", proxy.Image, proxy.Args)
	}

	if code := cp.stop(); code != 0 {
		t.Errorf("causeway control-plane exited %d after SIGTERM, want 0", code)
	}
	p, err := cs.CoreV1().Pods("shop").Create(ctx, appPod("while-down"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod creation with the control plane down: %v (failurePolicy Ignore admits it)", err)
	}
	if isInjected(p) {
		t.Error("pod created with the control plane down is injected")
	}
	t.Logf("TestControlPlaneBinaryInjects: %v in all", time.Since(start).Round(time.Millisecond))
}

// causewayBinary is cmd/causeway built once for the package's tests (a
// link takes tens of seconds on a busy machine); TestMain removes dir.
var causewayBinary struct {
	once      sync.Once
	dir, path string
	took      time.Duration
	err       error
}

// buildCauseway builds cmd/causeway from this repository, once.
func buildCauseway(ctx context.Context, t *testing.T) string {
	t.Helper()
	b := &causewayBinary
	b.once.Do(func() {
		start := time.Now()
		if b.dir, b.err = os.MkdirTemp("", "causeway-manifests-test-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "causeway")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.path, "./cmd/causeway")
		cmd.Dir = ".." // tests run in manifests/
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/causeway: %w\n%s", err, out)
		}
		b.took = time.Since(start)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	t.Logf("cmd/causeway built in %v (once per test binary)", b.took.Round(time.Millisecond))
	return b.path
}

// installedControlPlaneArgs are the installed control plane Deployment's
// args with $(VAR) references resolved from its config map and every
// listen address ":port" moved to ip.
func installedControlPlaneArgs(ctx context.Context, t *testing.T, cs kubernetes.Interface, ip string) []string {
	t.Helper()
	ctr := container(installedDeployment(ctx, t, cs), "control-plane")
	vars := containerVars(ctx, t, cs, ctr)
	var args []string
	for _, a := range ctr.Args {
		for name, v := range vars {
			a = strings.ReplaceAll(a, "$("+name+")", v)
		}
		if name, port, ok := strings.Cut(a, "=:"); ok && strings.HasPrefix(name, "--") {
			a = name + "=" + ip + ":" + port
		}
		args = append(args, a)
	}
	return args
}

// process is a started command whose output is logged at the end.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	once sync.Once
	code int
	t    *testing.T
}

func startProcess(ctx context.Context, t *testing.T, bin string, args []string) *process {
	t.Helper()
	p := &process{cmd: exec.CommandContext(ctx, bin, args...), out: &syncBuffer{}, t: t}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("causeway control-plane output:\n%s", p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *process) stop() int {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if err != nil && p.code == 0 {
			p.code = -1
		}
	})
	return p.code
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Command client is the echo client the Gateway API conformance suite's
// mesh tests exec in a mesh pod (package echoclient has the protocol).
// The harness runs it through kwok's Exec on the host: with
// TESTCLUSTER_POD_NETNS set it re-executes itself in that network
// namespace (ip netns exec), so its traffic is the pod's and the pod's
// sidecar captures it. Service names (<svc>, <svc>.<ns>, <svc>.<ns>.svc,
// <svc>.<ns>.svc.cluster.local; <ns> defaults to POD_NAMESPACE) resolve
// to the Service's cluster IP, read through the apiserver of
// TESTCLUSTER_KUBECONFIG: the harness runs no cluster DNS.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/causewaymesh/causeway/internal/testcluster/echoclient"
)

// Environment the harness's kwok Exec objects set.
const (
	envNetns      = "TESTCLUSTER_POD_NETNS"
	envKubeconfig = "TESTCLUSTER_KUBECONFIG"
	envNamespace  = "POD_NAMESPACE"
	// envLog, if set, is a file that gets a copy of every error (the
	// suite discards an exec's stderr).
	envLog = "TESTCLUSTER_EXEC_LOG"
	// envResolved carries "<host>=<ip>" from the host side (which
	// reaches the apiserver) to the re-executed client in the pod.
	envResolved = "ECHOCLIENT_RESOLVED"
)

// fail reports err on stderr and in envLog's file.
func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	if p := os.Getenv(envLog); p != "" {
		if f, ferr := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); ferr == nil {
			fmt.Fprintf(f, "%s %q: %v\n", time.Now().UTC().Format(time.RFC3339Nano), os.Args[1:], err)
			f.Close()
		}
	}
}

func main() {
	a, err := echoclient.ParseArgs(os.Args[1:])
	if err != nil {
		fail(err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if ns := os.Getenv(envNetns); ns != "" {
		u, _ := url.Parse(a.URL) // ParseArgs checked it
		ip, err := newResolver()(ctx, u.Hostname())
		if err != nil {
			fail(err)
			os.Exit(1)
		}
		os.Exit(reexec(ns, u.Hostname()+"="+ip))
	}
	hc := echoclient.NewHTTPClient(newResolver(), 10*time.Second)
	if err := echoclient.Run(ctx, hc, a, os.Stdout); err != nil {
		fail(err)
		os.Exit(1)
	}
}

// reexec runs this binary again inside network namespace ns, without
// envNetns, with envResolved set to resolved, and returns its exit code.
func reexec(ns, resolved string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: own path: %v\n", err)
		return 1
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envNetns+"=") {
			env = append(env, kv)
		}
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, self}, os.Args[1:]...)...)
	env = append(env, envResolved+"="+resolved)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fail(fmt.Errorf("client: ip netns exec %s: %w", ns, err))
		return 1
	}
	return 0
}

// newResolver resolves IP literals as themselves and service names
// through the apiserver.
func newResolver() echoclient.Resolver {
	return func(ctx context.Context, host string) (string, error) {
		if ip, err := netip.ParseAddr(host); err == nil {
			return ip.String(), nil
		}
		if h, ip, ok := strings.Cut(os.Getenv(envResolved), "="); ok && h == host {
			return ip, nil
		}
		svc, ns := serviceName(host, os.Getenv(envNamespace))
		if svc == "" {
			return "", fmt.Errorf("client: host %q is neither an IP nor a service name (<svc>[.<ns>[.svc[.cluster.local]]])", host)
		}
		kc := os.Getenv(envKubeconfig)
		if kc == "" {
			return "", fmt.Errorf("client: resolve %q: %s is not set (the harness's kubeconfig)", host, envKubeconfig)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			return "", fmt.Errorf("client: %s=%s: %w", envKubeconfig, kc, err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return "", err
		}
		s, err := cs.CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("client: resolve %q: service %s/%s: %w", host, ns, svc, err)
		}
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == "None" {
			return "", fmt.Errorf("client: resolve %q: service %s/%s has no cluster IP", host, ns, svc)
		}
		return s.Spec.ClusterIP, nil
	}
}

// serviceName splits a cluster-local DNS name into service and namespace.
func serviceName(host, defaultNS string) (svc, ns string) {
	host = strings.TrimSuffix(strings.TrimSuffix(host, "."), ".cluster.local")
	host = strings.TrimSuffix(host, ".svc")
	parts := strings.Split(host, ".")
	switch len(parts) {
	case 1:
		return parts[0], defaultNS
	case 2:
		return parts[0], parts[1]
	}
	return "", ""
}

package testcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Version is the Kubernetes version of the binaries the harness expects.
const Version = "v1.37.2"

// Gateway API CRD channels for Options.GatewayAPIChannel.
const (
	ChannelExperimental = "experimental"
	ChannelStandard     = "standard"
	ChannelNone         = "none"
)

// Options configures one cluster. The zero value is a control plane only
// (etcd + kube-apiserver) with the Gateway API (experimental channel), MCS API
// and Causeway CRDs installed.
type Options struct {
	// Name names the cluster in its kubeconfig and in errors. Default
	// "cluster-<slot>".
	Name string
	// Nodes are kwok (simulated) nodes. If any are given, the cluster also
	// runs kube-controller-manager, kube-scheduler and kwok, so that
	// Deployments become Running pods with IPs from the node's pod CIDR.
	Nodes []Node
	// RealPods selects pods that run as real processes in their own network
	// namespace (needs root, iproute2 and Nodes).
	RealPods []RealPod
	// BinDir holds the binaries. Default $CAUSEWAY_TESTBINS, else the
	// repository's bin/.
	BinDir string
	// ManifestsDir is the repository's manifests/ folder. Default: found
	// from the working directory.
	ManifestsDir string
	// GatewayAPIChannel is ChannelExperimental (default), ChannelStandard
	// or ChannelNone.
	GatewayAPIChannel string
	// SkipCRDs installs no CRDs at all.
	SkipCRDs bool
	// APIServerPort pins kube-apiserver's port on 127.0.0.1; 0 picks a free
	// one. A pinned port that is taken fails fast with ErrPortInUse.
	APIServerPort int
	// ReadyTimeout bounds the wait for each component. Default 60s.
	ReadyTimeout time.Duration
	// Dir is the scratch directory. Default: a new directory under
	// os.TempDir(), removed by Close unless KeepDir is set.
	Dir     string
	KeepDir bool
	// Logf receives progress lines. Default: none (Start uses t.Logf).
	Logf func(format string, args ...any)
}

// Node is one kwok node. Region and Zone become the
// topology.kubernetes.io/region and /zone labels.
type Node struct {
	Name   string
	Region string
	Zone   string
	Labels map[string]string
}

// ZonalNodes returns one node per zone, named "<region>-<zone>".
func ZonalNodes(region string, zones ...string) []Node {
	nodes := make([]Node, 0, len(zones))
	for _, z := range zones {
		nodes = append(nodes, Node{Name: region + "-" + z, Region: region, Zone: z})
	}
	return nodes
}

// Cluster is a running cluster. Fields are read-only.
type Cluster struct {
	Name string
	// Slot is this cluster's machine-wide slot; it fixes PodCIDR and
	// ServiceCIDR.
	Slot        int
	PodCIDR     netip.Prefix
	ServiceCIDR netip.Prefix
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string
	Clientset  kubernetes.Interface
	Dynamic    dynamic.Interface
	// Dir holds certificates, etcd data, logs (Dir/logs) and real pods'
	// output (Dir/pods).
	Dir string

	opts      Options
	binDir    string
	slot      *slot
	pki       *pki
	procs     processGroup
	pods      *podRunner
	applier   *applier
	logf      func(string, ...any)
	etcdURL   string
	server    string
	kwokPort  int
	apiPort   int
	apiserver *process

	closeOnce sync.Once
	closeErr  error
}

// Start starts a cluster for a test and stops it in t.Cleanup. It fails the
// test (t.Fatal) if the cluster cannot start.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.opts.KeepDir = true
			c.logFailure(t)
		}
		if err := c.Close(); err != nil {
			t.Errorf("testcluster: close %s: %v", c.Name, err)
		}
	})
	return c
}

// New starts a cluster. The caller must Close it. On error everything
// already started has been stopped.
//
// The components' ports are picked free a moment before they bind them, so
// another process (a test of another package, run in parallel) can take
// one in between; such a start (ErrPortInUse, with no port pinned in
// opts) is tried again, up to three times in all.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	for attempt := 1; ; attempt++ {
		c, err := newOnce(ctx, opts)
		if err == nil || !errors.Is(err, ErrPortInUse) || opts.APIServerPort != 0 || attempt == 3 || ctx.Err() != nil {
			return c, err
		}
		if opts.Logf != nil {
			opts.Logf("testcluster: %v; starting again on other ports", err)
		}
	}
}

func newOnce(ctx context.Context, opts Options) (c *Cluster, err error) {
	start := time.Now()
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if opts.GatewayAPIChannel == "" {
		opts.GatewayAPIChannel = ChannelExperimental
	}
	switch opts.GatewayAPIChannel {
	case ChannelExperimental, ChannelStandard, ChannelNone:
	default:
		return nil, fmt.Errorf("Options.GatewayAPIChannel %q: want %q, %q or %q", opts.GatewayAPIChannel, ChannelExperimental, ChannelStandard, ChannelNone)
	}
	if len(opts.RealPods) > 0 && len(opts.Nodes) == 0 {
		return nil, errors.New("Options.RealPods needs Options.Nodes: pods only get IPs on kwok nodes")
	}
	for i, n := range opts.Nodes {
		if n.Name == "" {
			return nil, fmt.Errorf("Options.Nodes[%d].Name is empty", i)
		}
	}
	if len(opts.RealPods) > 0 {
		if err := CanRunRealPods(); err != nil {
			return nil, fmt.Errorf("Options.RealPods: %w", err)
		}
		for i, rp := range opts.RealPods {
			if len(rp.Command) == 0 {
				return nil, fmt.Errorf("Options.RealPods[%d].Command is empty", i)
			}
		}
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}

	binDir, err := resolveBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	need := []string{"etcd", "kube-apiserver"}
	if len(opts.Nodes) > 0 {
		need = append(need, "kube-controller-manager", "kube-scheduler", "kwok")
	}
	for _, n := range need {
		if _, err := binPath(binDir, n); err != nil {
			return nil, err
		}
	}
	if opts.APIServerPort != 0 {
		if err := checkPortFree(opts.APIServerPort, "Options.APIServerPort (kube-apiserver)"); err != nil {
			return nil, err
		}
	}

	sl, err := acquireSlot(-1)
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "cluster-" + strconv.Itoa(sl.index)
	}
	c = &Cluster{
		Name:        opts.Name,
		Slot:        sl.index,
		PodCIDR:     podCIDR(sl.index),
		ServiceCIDR: serviceCIDR(sl.index),
		opts:        opts,
		binDir:      binDir,
		slot:        sl,
		logf:        logf,
	}
	defer func() {
		if err != nil {
			if cerr := c.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleanup: %v)", err, cerr)
			}
			if c.Dir != "" && c.opts.KeepDir {
				err = fmt.Errorf("%w (files kept in %s)", err, c.Dir)
			}
			c = nil
		}
	}()
	if CanRunRealPods() == nil {
		if err := sweepSlot(sl.index); err != nil {
			return c, fmt.Errorf("sweep leftovers of slot %d: %w", sl.index, err)
		}
	}

	if opts.Dir != "" {
		c.Dir = opts.Dir
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			return c, err
		}
	} else if c.Dir, err = os.MkdirTemp("", "testcluster-"+sanitize(opts.Name)+"-"); err != nil {
		return c, err
	}
	for _, d := range []string{"logs", "pods", "etcd"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return c, err
		}
	}
	if c.pki, err = newPKI(filepath.Join(c.Dir, "pki"), opts.Name); err != nil {
		return c, fmt.Errorf("cluster %s: certificates: %w", opts.Name, err)
	}

	if err := c.startEtcd(ctx); err != nil {
		return c, fmt.Errorf("cluster %s: %w", opts.Name, err)
	}
	if err := c.startAPIServer(ctx); err != nil {
		return c, fmt.Errorf("cluster %s: %w", opts.Name, err)
	}
	logf("testcluster %s: kube-apiserver ready at %s after %v", opts.Name, c.server, time.Since(start).Round(time.Millisecond))

	// CRDs and the node components come up in parallel.
	var wg sync.WaitGroup
	var crdErr, nodeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		crdErr = c.installCRDs(ctx)
		logf("testcluster %s: CRDs established after %v", opts.Name, time.Since(start).Round(time.Millisecond))
	}()
	if len(opts.Nodes) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodeErr = c.startNodeComponents(ctx)
			logf("testcluster %s: nodes Ready after %v", opts.Name, time.Since(start).Round(time.Millisecond))
		}()
	}
	wg.Wait()
	if err := errors.Join(crdErr, nodeErr); err != nil {
		return c, fmt.Errorf("cluster %s: %w", opts.Name, err)
	}
	if len(opts.RealPods) > 0 {
		if err := setupHostLink(c.Slot); err != nil { // realcontainers.go
			return c, fmt.Errorf("cluster %s: real pods: host address: %w", opts.Name, err)
		}
		if c.pods, err = startPodRunner(c); err != nil {
			return c, fmt.Errorf("cluster %s: real pods: %w", opts.Name, err)
		}
	}
	logf("testcluster %s: ready after %v (slot %d, pods %s, services %s, kubeconfig %s)",
		opts.Name, time.Since(start).Round(time.Millisecond), c.Slot, c.PodCIDR, c.ServiceCIDR, c.Kubeconfig)
	return c, nil
}

// Close stops every process, deletes the real pods' namespaces and the
// scratch directory (unless KeepDir), and releases the slot. It is
// idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		if c.pods != nil {
			errs = append(errs, c.pods.close())
		}
		c.procs.stopAll(10 * time.Second)
		if c.slot != nil && CanRunRealPods() == nil {
			errs = append(errs, sweepSlot(c.slot.index))
		}
		if c.Dir != "" && !c.opts.KeepDir && c.opts.Dir == "" {
			errs = append(errs, os.RemoveAll(c.Dir))
		}
		c.slot.release()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// LogPath returns the path of a component's log ("etcd", "kube-apiserver",
// "kube-controller-manager", "kube-scheduler", "kwok").
func (c *Cluster) LogPath(component string) string {
	return filepath.Join(c.Dir, "logs", component+".log")
}

func (c *Cluster) logFailure(t testing.TB) {
	t.Logf("testcluster %s: test failed; files kept in %s", c.Name, c.Dir)
	for _, comp := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		p := c.LogPath(comp)
		if _, err := os.Stat(p); err == nil {
			t.Logf("testcluster %s: %s log ends:\n%s", c.Name, comp, logTail(p, 10))
		}
	}
}

func (c *Cluster) env() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	bin, _ := binPath(c.binDir, "etcd")
	cport, err := freePort()
	if err != nil {
		return err
	}
	pport, err := freePort()
	if err != nil {
		return err
	}
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(cport)
	peer := "http://127.0.0.1:" + strconv.Itoa(pport)
	p, err := startProcess("etcd", c.LogPath("etcd"), []string{bin,
		"--name=default",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + c.etcdURL,
		"--advertise-client-urls=" + c.etcdURL,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
		"--unsafe-no-fsync",
		"--log-level=warn",
		"--quota-backend-bytes=" + strconv.Itoa(1<<30),
	}, c.env())
	if err != nil {
		return err
	}
	c.procs.add(p)
	hc := &http.Client{Timeout: time.Second}
	return p.waitReady(ctx, c.opts.ReadyTimeout, func(ctx context.Context) error {
		return httpOK(ctx, hc, c.etcdURL+"/health", "")
	})
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	port := c.opts.APIServerPort
	var err error
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	c.apiPort = port
	c.server = "https://127.0.0.1:" + strconv.Itoa(port)
	if err = c.launchAPIServer(ctx); err != nil {
		return err
	}

	c.Config = &rest.Config{
		Host:            c.server,
		BearerToken:     c.pki.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.caCert},
		QPS:             100,
		Burst:           200,
		UserAgent:       "testcluster/" + runtime.Version(),
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Name, c.server, c.pki.caCert, c.pki.token); err != nil {
		return err
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return err
	}
	// The harness's own applies need no deprecation warnings in test logs.
	quiet := rest.CopyConfig(c.Config)
	quiet.WarningHandler = rest.NoWarnings{}
	qdyn, err := dynamic.NewForConfig(quiet)
	if err != nil {
		return err
	}
	c.applier = newApplier(c.Clientset.Discovery(), qdyn)
	return nil
}

// launchAPIServer starts kube-apiserver on c.apiPort and waits for /readyz.
func (c *Cluster) launchAPIServer(ctx context.Context) error {
	bin, _ := binPath(c.binDir, "kube-apiserver")
	port := c.apiPort
	p, err := startProcess("kube-apiserver", c.LogPath("kube-apiserver"), []string{bin,
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.Dir, "pki"),
		"--tls-cert-file=" + c.pki.serverCert,
		"--tls-private-key-file=" + c.pki.serverKey,
		"--client-ca-file=" + c.pki.caFile,
		"--token-auth-file=" + c.pki.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.pki.saPub,
		"--service-account-signing-key-file=" + c.pki.saKey,
		"--service-cluster-ip-range=" + c.ServiceCIDR.String(),
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--kubelet-preferred-address-types=InternalIP",
	}, c.env())
	if err != nil {
		return err
	}
	c.procs.add(p)
	c.apiserver = p
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.caCert)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	return p.waitReady(ctx, c.opts.ReadyTimeout, func(ctx context.Context) error {
		return httpOK(ctx, hc, c.server+"/readyz", c.pki.token)
	})
}

// RestartAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after
// grace) and starts it again on the same address with the same flags,
// returning once it is ready. Clients keep working: the address and
// credentials do not change; their watches break and must resume. down,
// if not nil, runs while the apiserver is stopped.
func (c *Cluster) RestartAPIServer(ctx context.Context, grace time.Duration, down func()) error {
	old := c.apiserver
	if old == nil {
		return errors.New("testcluster: RestartAPIServer: the apiserver was never started")
	}
	c.procs.remove(old)
	old.stop(grace)
	if down != nil {
		down()
	}
	if err := c.launchAPIServer(ctx); err != nil {
		return fmt.Errorf("testcluster %s: restarting kube-apiserver: %w", c.Name, err)
	}
	return nil
}

// startNodeComponents starts kube-controller-manager, kube-scheduler and
// kwok, creates the nodes and waits until they are Ready with a pod CIDR and
// the default service account exists (pods are not admitted before).
func (c *Cluster) startNodeComponents(ctx context.Context) error {
	kcm, _ := binPath(c.binDir, "kube-controller-manager")
	sched, _ := binPath(c.binDir, "kube-scheduler")
	kwok, _ := binPath(c.binDir, "kwok")
	kcmProc, err := startProcess("kube-controller-manager", c.LogPath("kube-controller-manager"), []string{kcm,
		"--kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--cluster-name=" + c.Name,
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + c.PodCIDR.String(),
		"--node-cidr-mask-size=24",
		"--service-cluster-ip-range=" + c.ServiceCIDR.String(),
		"--service-account-private-key-file=" + c.pki.saKey,
		"--root-ca-file=" + c.pki.caFile,
		"--use-service-account-credentials=false",
	}, c.env())
	if err != nil {
		return err
	}
	c.procs.add(kcmProc)
	schedProc, err := startProcess("kube-scheduler", c.LogPath("kube-scheduler"), []string{sched,
		"--kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	}, c.env())
	if err != nil {
		return err
	}
	c.procs.add(schedProc)
	if c.kwokPort, err = freePort(); err != nil {
		return err
	}
	kwokConfig := filepath.Join(c.Dir, "kwok.yaml")
	if err := writeKwokConfig(kwokConfig); err != nil {
		return err
	}
	var kwokExtra []string
	if len(c.opts.RealPods) > 0 { // pods/exec (podexec.go)
		if kwokExtra, err = c.kwokExecArgs(ctx); err != nil {
			return err
		}
	}
	kwokProc, err := startProcess("kwok", c.LogPath("kwok"), append([]string{kwok,
		"--kubeconfig=" + c.Kubeconfig,
		"--config=" + kwokConfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		"--node-ip=127.0.0.1",
		"--node-port=" + strconv.Itoa(c.kwokPort),
		"--server-address=127.0.0.1:" + strconv.Itoa(c.kwokPort),
		"--cidr=" + c.PodCIDR.String(),
		// Without leases kube-controller-manager marks the nodes NotReady
		// (and their pods not Ready) every node-monitor-grace-period.
		"--node-lease-duration-seconds=40",
	}, kwokExtra...), c.env())
	if err != nil {
		return err
	}
	c.procs.add(kwokProc)

	for _, n := range c.opts.Nodes {
		if _, err := c.Clientset.CoreV1().Nodes().Create(ctx, kwokNode(n), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
	}
	// kwok sets Ready, kube-controller-manager the pod CIDR and the default
	// service account. Which process to blame depends on what is missing.
	var missing string
	check := func(ctx context.Context) error {
		nodes, err := c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Items {
			if n.Spec.PodCIDR == "" {
				missing = "kube-controller-manager"
				return fmt.Errorf("node %s has no pod CIDR yet", n.Name)
			}
			if !nodeReady(&n) {
				missing = "kwok"
				return fmt.Errorf("node %s is not Ready yet", n.Name)
			}
		}
		if _, err := c.Clientset.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			missing = "kube-controller-manager"
			if apierrors.IsNotFound(err) {
				return errors.New("service account default/default does not exist yet")
			}
			return err
		}
		return nil
	}
	// Wait on the process most likely at fault, but fail fast if any exits.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := func(p *process) {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}
	go watch(schedProc)
	go watch(kwokProc)
	err = kcmProc.waitReady(ctx, c.opts.ReadyTimeout, check)
	for _, p := range []*process{schedProc, kwokProc} {
		if p.exited() {
			return p.exitError()
		}
	}
	if err != nil && missing == "kwok" && !kcmProc.exited() {
		return fmt.Errorf("kwok did not make the nodes Ready within %v: %w; log %s ends:\n%s",
			c.opts.ReadyTimeout, ErrNotReady, kwokProc.logPath, logTail(kwokProc.logPath, 25))
	}
	return err
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func httpOK(ctx context.Context, hc *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func writeKubeconfig(path, name, server string, ca []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[name+"-admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name + "-admin"}
	cfg.CurrentContext = name
	return clientcmd.WriteToFile(*cfg, path)
}

// resolveBinDir returns dir, else $CAUSEWAY_TESTBINS, else <repo>/bin.
func resolveBinDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if d := os.Getenv("CAUSEWAY_TESTBINS"); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("find the binaries: %w; set Options.BinDir or $CAUSEWAY_TESTBINS", err)
	}
	return filepath.Join(root, "bin"), nil
}

// repoRoot walks up from the working directory to the go.mod of module
// github.com/causewaymesh/causeway.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/causewaymesh/causeway\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of module github.com/causewaymesh/causeway above the working directory")
		}
		dir = parent
	}
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

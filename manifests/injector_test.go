package manifests

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/causewaymesh/causeway/internal/inject"
	"github.com/causewaymesh/causeway/internal/testcluster"
	"github.com/causewaymesh/causeway/internal/trustplane"
	"github.com/causewaymesh/causeway/trust"
)

// injectorAddr is where the test's injector listens: this package's
// loopback block (127.240.0.0/16), a fixed port.
const injectorAddr = "127.240.9.1:15017"

// TestInjectorOnRealCluster installs Causeway with kubectl apply -k (CRDs,
// the dev overlay), then runs the control plane's injector
// (inject.Server, what `causeway control-plane --injector-listen` runs)
// with the --injector-* flags of the installed Deployment, as the control
// plane's service account (impersonated, so the RBAC of base/rbac.yaml is
// what it gets). The real kube-apiserver calls it for the pods
// kube-controller-manager creates. Checked on the stored objects: the
// caBundle the server applies, a labelled Deployment's pods injected, the
// opt-out annotation, idempotence, a pod spec the injector refuses
// (admitted unchanged, with a warning and an Event) and failurePolicy
// Ignore (the injector down: pods are still created, without a sidecar).
func TestInjectorOnRealCluster(t *testing.T) {
	t.Parallel() // each has its own clusters and loopback addresses
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, root := installDev(ctx, t, "injector")
	cs := c.Clientset

	// The injector's flags, as the installed Deployment passes them.
	cfg := installedInjectorConfig(ctx, t, cs)
	if cfg.Listen != ":15017" || cfg.WebhookConfiguration != "causeway-injector" || !slices.Equal(cfg.Hosts, []string{inject.DefaultServingHost}) {
		t.Errorf("installed injector: listen %q, webhook config %q, hosts %v", cfg.Listen, cfg.WebhookConfiguration, cfg.Hosts)
	}
	// Loopback instead of the pod's :15017, and the IP the apiserver dials.
	cfg.Listen = injectorAddr
	cfg.Hosts = append(cfg.Hosts, strings.Split(injectorAddr, ":")[0])
	cfg.Inject.Cluster = "dev"

	// The control plane's identity: its service account, impersonated.
	cpConfig := rest.CopyConfig(c.Config)
	cpConfig.Impersonate = rest.ImpersonationConfig{UserName: controlPlaneSA}
	cpClient, err := kubernetes.NewForConfig(cpConfig)
	if err != nil {
		t.Fatal(err)
	}
	srv := startInjector(ctx, t, cfg, cpClient)
	pointWebhookAt(ctx, t, cs, injectorAddr)
	waitInjecting(ctx, t, cs, root)

	t.Run("labelled Deployment injected", func(t *testing.T) {
		step := time.Now()
		for _, ns := range []string{"shop", "plain"} {
			if _, err := cs.AppsV1().Deployments(ns).Create(ctx, appDeployment("web", nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		p := waitStoredPod(ctx, t, cs, "shop", "app=web")
		t.Logf("injected pod stored in %v", time.Since(step).Round(time.Millisecond))
		if got := containerNames(p.Spec.InitContainers); !slices.Equal(got, []string{inject.InitContainerName, inject.ProxyContainerName}) {
			t.Fatalf("init containers %v, want [causeway-init causeway-proxy]", got)
		}
		proxy := p.Spec.InitContainers[1]
		if proxy.Image != "causeway-proxy:dev" {
			t.Errorf("sidecar image %q, want the config map's proxy-image causeway-proxy:dev", proxy.Image)
		}
		// Everything a real node needs (issue 9): no locality (the
		// control plane derives it from the node's labels).
		for _, arg := range []string{"--xds=causeway.causeway-system.svc:15010", "--cluster=dev",
			"--svid-issuer=causeway.causeway-system.svc:15012", "--svid-token-file=$(" + inject.EnvTokenPath + ")",
			"--trust-domain=dev.local", "--trust-bundle=$(" + inject.EnvTrustBundle + ")", "--capture",
			"--inbound-ip=$(POD_IP)", "--inbound-ports=8080=127.0.0.1:8080"} {
			if !slices.Contains(proxy.Args, arg) {
				t.Errorf("sidecar args %q lack %q", proxy.Args, arg)
			}
		}
		if init := p.Spec.InitContainers[0]; len(init.Args) == 0 || init.Args[0] != "init" || !slices.Contains(init.Args, "--capture-dns") {
			t.Errorf("init container args %q: want causeway-proxy's init subcommand with --capture-dns", init.Args)
		}
		if p.Annotations[inject.AnnotationInjected] == "" {
			t.Errorf("no %s annotation", inject.AnnotationInjected)
		}
		if plain := waitStoredPod(ctx, t, cs, "plain", "app=web"); isInjected(plain) || len(plain.Spec.InitContainers) != 0 {
			t.Errorf("pod in the unlabelled namespace was injected: %v", containerNames(plain.Spec.InitContainers))
		}
	})

	t.Run("trust bundle published", func(t *testing.T) {
		// The injector, as the control plane's service account, keeps
		// the ConfigMap the sidecars mount in every namespace.
		want := string(trust.CertsPEM([]*x509.Certificate{root}))
		for _, ns := range []string{"shop", "plain", "default"} {
			waitFor(ctx, t, "the trust bundle ConfigMap in "+ns, func() error {
				cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, inject.DefaultTrustBundleConfigMap, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if cm.Data[inject.TrustBundleKey] != want {
					return fmt.Errorf("%s: %q, want the root CA", inject.TrustBundleKey, cm.Data[inject.TrustBundleKey])
				}
				return nil
			})
		}
		if _, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, inject.DefaultTrustBundleConfigMap, metav1.GetOptions{}); err == nil {
			t.Error("the trust bundle was published into kube-system")
		}
	})

	t.Run("opt-out annotation", func(t *testing.T) {
		d := appDeployment("legacy", map[string]string{inject.AnnotationInject: "false"})
		if _, err := cs.AppsV1().Deployments("shop").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if p := waitStoredPod(ctx, t, cs, "shop", "app=legacy"); isInjected(p) || len(p.Spec.InitContainers) != 0 {
			t.Errorf("opted-out pod injected: %v", containerNames(p.Spec.InitContainers))
		}
	})

	t.Run("idempotent", func(t *testing.T) {
		// A pod that is already injected (causeway inject -f output, a
		// pod re-created from a stored spec) goes through unchanged.
		injected := waitStoredPod(ctx, t, cs, "shop", "app=web")
		again := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "again", Annotations: injected.Annotations},
			Spec:       *injected.Spec.DeepCopy(),
		}
		again.Spec.NodeName = ""
		p, err := cs.CoreV1().Pods("shop").Create(ctx, again, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := containerNames(p.Spec.InitContainers), containerNames(injected.Spec.InitContainers); !slices.Equal(got, want) {
			t.Errorf("re-admitted injected pod: init containers %v, want %v", got, want)
		}
		if len(p.Spec.Volumes) != len(injected.Spec.Volumes) || p.Annotations[inject.AnnotationInjected] != injected.Annotations[inject.AnnotationInjected] {
			t.Errorf("re-admitted injected pod changed: volumes %d (want %d), annotation %q", len(p.Spec.Volumes), len(injected.Spec.Volumes), p.Annotations[inject.AnnotationInjected])
		}
	})

	t.Run("unhandled pod spec admitted with a warning and an Event", func(t *testing.T) {
		// An app listening on the sidecar's outbound capture port: the
		// injector refuses it, the pod is admitted as it is.
		warnings := &warnings{}
		wcfg := rest.CopyConfig(c.Config)
		wcfg.WarningHandler = warnings
		wcs, err := kubernetes.NewForConfig(wcfg)
		if err != nil {
			t.Fatal(err)
		}
		bad := appPod("clash")
		bad.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: inject.DefaultOutboundPort}}
		p, err := wcs.CoreV1().Pods("shop").Create(ctx, bad, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating a pod the injector refuses: %v (it must be admitted)", err)
		}
		if isInjected(p) || len(p.Spec.InitContainers) != 0 {
			t.Errorf("refused pod was changed: init containers %v", containerNames(p.Spec.InitContainers))
		}
		if !slices.ContainsFunc(warnings.get(), func(w string) bool {
			return strings.Contains(w, "sidecar not injected") && strings.Contains(w, "15001")
		}) {
			t.Errorf("warnings %q, want one saying the sidecar was not injected because of port 15001", warnings.get())
		}
		// The same spec in a Deployment: the pod kube-controller-manager
		// creates has no name yet, so the Event is about its ReplicaSet,
		// where `kubectl describe deployment` users look.
		d := appDeployment("clash", nil)
		d.Spec.Template.Spec.Containers[0].Ports = bad.Spec.Containers[0].Ports
		if _, err := cs.AppsV1().Deployments("shop").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if p := waitStoredPod(ctx, t, cs, "shop", "app=clash"); isInjected(p) || len(p.Spec.InitContainers) != 0 {
			t.Errorf("refused Deployment pod was changed: init containers %v", containerNames(p.Spec.InitContainers))
		}
		for _, kind := range []string{"Pod", "ReplicaSet"} {
			waitFor(ctx, t, "the Warning Event about "+kind+" clash", func() error {
				evs, err := cs.EventsV1().Events("shop").List(ctx, metav1.ListOptions{})
				if err != nil {
					return err
				}
				for _, e := range evs.Items {
					if e.Reason == inject.EventReasonNotInjected && e.Regarding.Kind == kind && strings.HasPrefix(e.Regarding.Name, "clash") && e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, "15001") {
						if e.ReportingController != inject.FieldManager {
							return fmt.Errorf("event reportingController %q, want %q", e.ReportingController, inject.FieldManager)
						}
						return nil
					}
				}
				return fmt.Errorf("no %s event about %s clash among %d events", inject.EventReasonNotInjected, kind, len(evs.Items))
			})
		}
	})

	t.Run("failurePolicy Ignore: injector down", func(t *testing.T) {
		srv.stop()
		step := time.Now()
		p, err := cs.CoreV1().Pods("shop").Create(ctx, appPod("while-down"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("pod creation with the injector down: %v (failurePolicy Ignore admits it)", err)
		}
		if isInjected(p) {
			t.Error("pod created while the injector was down is injected")
		}
		t.Logf("pod admitted, without a sidecar, with the injector down in %v", time.Since(step).Round(time.Millisecond))
	})
	t.Logf("TestInjectorOnRealCluster: %v in all", time.Since(start).Round(time.Millisecond))
}

// installDev starts a cluster with one node and installs Causeway as
// docs/install.md says: kubectl apply -k of the CRDs and the dev overlay,
// and the root CA Secret. It returns the root certificate.
func installDev(ctx context.Context, t *testing.T, name string) (*testcluster.Cluster, *x509.Certificate) {
	t.Helper()
	testcluster.RequireBinaries(t, true)
	kbin := requireKubectl(t)
	start := time.Now()
	c := testcluster.Start(t, testcluster.Options{Name: name, Nodes: testcluster.ZonalNodes("r1", "a"), GatewayAPIChannel: testcluster.ChannelNone})
	t.Logf("cluster ready in %v", time.Since(start).Round(time.Millisecond))
	k := kubectl{bin: kbin, kubeconfig: c.Kubeconfig, cacheDir: t.TempDir()}
	step := time.Now()
	for _, args := range [][]string{
		{"apply", "--server-side", "--field-manager=" + fieldManager, "-k", "crds"},
		{"wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"},
		{"apply", "--server-side", "--field-manager=" + fieldManager, "-k", filepath.Join("overlays", "dev")},
	} {
		if _, _, err := k.run(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("kubectl apply -k crds, overlays/dev in %v", time.Since(step).Round(time.Millisecond))
	// The root CA Secret, as docs/install.md has the installer create it.
	return c, createCASecret(ctx, t, c.Clientset, "dev.local")
}

// pointWebhookAt points the installed webhook configuration at the
// injector on addr. The apiserver cannot reach the Service
// causeway-injector here (no kube-proxy; its endpoints would be kwok's fake
// pod IPs); the rest of the configuration (selector, rules, failurePolicy,
// ...) stays as installed.
func pointWebhookAt(ctx context.Context, t *testing.T, cs kubernetes.Interface, addr string) {
	t.Helper()
	url := "https://" + addr + inject.WebhookPath
	patch := fmt.Sprintf(`[{"op":"remove","path":"/webhooks/0/clientConfig/service"},{"op":"add","path":"/webhooks/0/clientConfig/url","value":%q}]`, url)
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, "causeway-injector", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitInjecting waits for the injector to apply the caBundle (the root of
// the Secret), creates namespaces shop (labelled) and plain, and waits
// until the apiserver, which picks configuration changes up
// asynchronously, returns a dry-run pod in shop injected.
func waitInjecting(ctx context.Context, t *testing.T, cs kubernetes.Interface, root *x509.Certificate) {
	t.Helper()
	step := time.Now()
	waitFor(ctx, t, "the injector to apply the caBundle", func() error {
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "causeway-injector", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := string(mwc.Webhooks[0].ClientConfig.CABundle); got != string(trust.CertsPEM([]*x509.Certificate{root})) {
			return fmt.Errorf("caBundle %q, want the root CA", got)
		}
		return nil
	})
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{inject.LabelInject: inject.NamespaceEnabled}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "the webhook to take effect", func() error {
		p, err := cs.CoreV1().Pods("shop").Create(ctx, appPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if !isInjected(p) {
			return errors.New("dry-run pod not injected yet")
		}
		return nil
	})
	t.Logf("caBundle applied and webhook effective in %v", time.Since(step).Round(time.Millisecond))
}

// createCASecret makes a root CA and stores it as the Secret
// causeway-system/causeway-ca; it returns the root certificate.
func createCASecret(ctx context.Context, t *testing.T, cs kubernetes.Interface, td string) *x509.Certificate {
	t.Helper()
	ca, err := trust.NewSelfSignedCA(spiffeid.RequireTrustDomainFromString(td), trust.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{}
	for _, f := range []string{trust.CACertFile, trust.CAKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		data[f] = b
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "causeway-ca", Namespace: namespace}, Data: data}
	if _, err := cs.CoreV1().Secrets(namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ca.Certificate()
}

// installedInjectorConfig parses the --injector-* args of the installed
// control plane Deployment, with $(VAR) references resolved from its
// config map, as `causeway control-plane` would.
func installedInjectorConfig(ctx context.Context, t *testing.T, cs kubernetes.Interface) inject.WebhookConfig {
	t.Helper()
	ctr := container(installedDeployment(ctx, t, cs), "control-plane")
	vars := containerVars(ctx, t, cs, ctr)
	var args []string
	for _, a := range ctr.Args {
		if !strings.HasPrefix(a, "--injector-") {
			continue
		}
		for name, v := range vars {
			a = strings.ReplaceAll(a, "$("+name+")", v)
		}
		args = append(args, a)
	}
	cfg := inject.DefaultWebhookConfig()
	fs := flag.NewFlagSet("causeway control-plane", flag.ContinueOnError)
	cfg.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("the installed Deployment's injector flags %q: %v", args, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the installed Deployment's injector flags %q: %v", args, err)
	}
	return cfg
}

// installedDeployment is the control plane Deployment as installed.
func installedDeployment(ctx context.Context, t *testing.T, cs kubernetes.Interface) *appsv1.Deployment {
	t.Helper()
	dep, err := cs.AppsV1().Deployments(namespace).Get(ctx, "causeway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if container(dep, "control-plane") == nil {
		t.Fatal("the installed Deployment causeway has no container control-plane")
	}
	return dep
}

// containerVars resolves ctr's config map env, as the kubelet does for
// $(VAR) references in args.
func containerVars(ctx context.Context, t *testing.T, cs kubernetes.Interface, ctr *corev1.Container) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.ConfigMapKeyRef
		cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vars[e.Name] = cm.Data[ref.Key]
	}
	return vars
}

// injectorServer runs an inject.Server until stop.
type injectorServer struct {
	once   sync.Once
	cancel context.CancelFunc
	done   chan error
	t      *testing.T
}

func startInjector(ctx context.Context, t *testing.T, cfg inject.WebhookConfig, cp kubernetes.Interface) *injectorServer {
	t.Helper()
	s, err := inject.NewServer(inject.ServerOptions{
		Config: cfg,
		Root:   trustplane.SecretRoot(ctx, cp.CoreV1(), namespace+"/causeway-ca"),
		Client: cp,
		Resync: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	is := &injectorServer{cancel: cancel, done: make(chan error, 1), t: t}
	go func() { is.done <- s.Run(rctx) }()
	t.Cleanup(is.stop)
	return is
}

func (s *injectorServer) stop() {
	s.once.Do(func() {
		s.cancel()
		if err := <-s.done; err != nil {
			s.t.Errorf("injector: %v", err)
		}
	})
}

func appPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
}

func appDeployment(name string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: name, Image: name + ":1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
}

func isInjected(p *corev1.Pod) bool { return p.Annotations[inject.AnnotationInjected] != "" }

func containerNames(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

func waitStoredPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, selector string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	waitFor(ctx, t, "a pod "+selector+" in "+ns, func() error {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		if len(l.Items) == 0 {
			return errors.New("no pod yet")
		}
		pod = &l.Items[0]
		return nil
	})
	return pod
}

// waitFor polls cond every 100ms until it returns nil or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() error) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

type warnings struct {
	mu sync.Mutex
	w  []string
}

func (r *warnings) HandleWarningHeader(code int, agent, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w = append(r.w, text)
}

func (r *warnings) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.w)
}

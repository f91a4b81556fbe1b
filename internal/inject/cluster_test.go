package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/causewaymesh/causeway/internal/testcluster"
	"github.com/causewaymesh/causeway/trust"
)

// webhookServer serves a Handler over TLS on 127.0.0.1 with a serving
// certificate from the built-in CA.
type webhookServer struct {
	url      string
	caBundle []byte
	srv      *http.Server
	mu       sync.Mutex
	done     chan error // nil once stopped
}

func startWebhook(t *testing.T, h http.Handler) *webhookServer {
	t.Helper()
	ca, err := trust.NewSelfSignedCA(spiffeid.RequireTrustDomainFromString("inject.test"), trust.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	caCert, caKey, err := trust.LoadCAFiles(dir+"/"+trust.CACertFile, dir+"/"+trust.CAKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := IssueServingCert(caCert, caKey, nil, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/inject", h)
	ws := &webhookServer{
		url:      "https://" + ln.Addr().String() + "/inject",
		caBundle: ca.BundlePEM(),
		srv: &http.Server{
			Handler:           mux,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			ReadHeaderTimeout: 5 * time.Second,
		},
		done: make(chan error, 1),
	}
	go func() { ws.done <- ws.srv.ServeTLS(ln, "", "") }()
	t.Cleanup(ws.stop)
	return ws
}

func (w *webhookServer) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done == nil {
		return
	}
	_ = w.srv.Close()
	<-w.done
	w.done = nil
}

// TestWebhookOnRealCluster registers the Handler with a real kube-apiserver
// and checks the pods kube-controller-manager creates for a Deployment.
func TestWebhookOnRealCluster(t *testing.T) {
	testcluster.RequireBinaries(t, true)
	t0 := time.Now()
	c := testcluster.Start(t, testcluster.Options{Nodes: testcluster.ZonalNodes("r1", "a"), SkipCRDs: true})
	t.Logf("cluster ready in %v", time.Since(t0).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := c.Clientset

	reg := prometheus.NewRegistry()
	h, err := NewHandler(testConfig(), HandlerOptions{
		Registerer: reg,
		Namespaces: NamespaceFunc(func(ctx context.Context, name string) (*corev1.Namespace, error) {
			return cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ws := startWebhook(t, h)

	for _, ns := range []*corev1.Namespace{
		namespace("meshed", map[string]string{LabelInject: NamespaceEnabled}),
		namespace("plain", nil),
	} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	webhook := webhookConfig(ws)
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, webhook, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The apiserver picks the configuration up asynchronously: wait until a
	// dry-run pod in the labelled namespace comes back injected.
	tw := time.Now()
	waitFor(ctx, t, "the webhook configuration to take effect", func() error {
		p, err := cs.CoreV1().Pods("meshed").Create(ctx, testPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if !injected(p) {
			return errors.New("dry-run pod not injected yet")
		}
		return nil
	})
	t.Logf("webhook effective in %v", time.Since(tw).Round(time.Millisecond))

	td := time.Now()
	for _, ns := range []string{"meshed", "plain"} {
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, testDeployment("web"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	meshedPod := waitPod(ctx, t, cs, "meshed", "app=web")
	t.Logf("injected Deployment pod stored in %v", time.Since(td).Round(time.Millisecond))
	plainPod := waitPod(ctx, t, cs, "plain", "app=web")

	// The stored pod (created by kube-controller-manager's ReplicaSet
	// controller, admitted through the webhook) carries the data plane.
	names := func(cs []corev1.Container) []string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return n
	}
	if got := names(meshedPod.Spec.InitContainers); !slices.Equal(got, []string{InitContainerName, ProxyContainerName}) {
		t.Errorf("meshed pod init containers = %v, want [causeway-init causeway-proxy]", got)
	}
	if meshedPod.Annotations[AnnotationInjected] == "" {
		t.Errorf("meshed pod has no %s annotation", AnnotationInjected)
	}
	if p := meshedPod.Spec.Containers[0].ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/app-health/web/readyz" || p.HTTPGet.Port.IntVal != DefaultAdminPort {
		t.Errorf("meshed pod readiness probe not rewritten: %+v", p)
	}
	if !slices.ContainsFunc(meshedPod.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == TokenVolumeName && v.Projected != nil && v.Projected.Sources[0].ServiceAccountToken.Audience == DefaultTokenAudience
	}) {
		t.Errorf("meshed pod has no projected %s volume with audience %s", TokenVolumeName, DefaultTokenAudience)
	}
	// Re-running Pod over what the apiserver stored changes nothing.
	if again, skipped, err := Pod(meshedPod, namespace("meshed", map[string]string{LabelInject: NamespaceEnabled}), testConfig()); err != nil || !strings.Contains(skipped, "already injected") || again.Spec.InitContainers[0].Name != InitContainerName {
		t.Errorf("re-injecting the stored pod: skipped %q, err %v", skipped, err)
	}
	if len(plainPod.Spec.InitContainers) != 0 || plainPod.Annotations[AnnotationInjected] != "" || len(plainPod.Spec.Containers) != 1 {
		t.Errorf("plain pod was touched: init %v, containers %v, annotations %v", names(plainPod.Spec.InitContainers), names(plainPod.Spec.Containers), plainPod.Annotations)
	}

	// A hostNetwork pod that asked for injection is admitted with a warning.
	warnings := &warningRecorder{}
	wcfg := rest.CopyConfig(c.Config)
	wcfg.WarningHandler = warnings
	wcs, err := kubernetes.NewForConfig(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	hn := testPod("hostnet")
	hn.Spec.HostNetwork = true
	p, err := wcs.CoreV1().Pods("meshed").Create(ctx, hn, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if injected(p) || !slices.ContainsFunc(warnings.get(), func(w string) bool { return strings.Contains(w, "hostNetwork") }) {
		t.Errorf("hostNetwork pod: injected=%v, warnings %q; want not injected with a hostNetwork warning", injected(p), warnings.get())
	}
	if got := testutil.ToFloat64(h.metrics.admissions.WithLabelValues(resultSkipped, skipHostNetwork)); got != 1 {
		t.Errorf("skipped host_network admissions = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.metrics.admissions.WithLabelValues(resultInjected, "")); got < 2 {
		t.Errorf("injected admissions = %v, want at least 2 (dry run and the Deployment's pod)", got)
	}

	// With the webhook down, failurePolicy Ignore still admits pods.
	ws.stop()
	ts := time.Now()
	p, err = cs.CoreV1().Pods("meshed").Create(ctx, testPod("while-down"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod creation with the webhook down: %v (failurePolicy Ignore should admit it)", err)
	}
	if injected(p) {
		t.Error("pod created while the webhook was down is injected")
	}
	t.Logf("pod admitted with the webhook down in %v", time.Since(ts).Round(time.Millisecond))
	t.Logf("total %v", time.Since(t0).Round(time.Millisecond))
}

// webhookConfig is the MutatingWebhookConfiguration a deployment of the
// injector registers (see docs/injection.md), pointing at ws.
func webhookConfig(ws *webhookServer) *admissionregistrationv1.MutatingWebhookConfiguration {
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	scope := admissionregistrationv1.NamespacedScope
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "causeway-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.causeway.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &ws.url, CABundle: ws.caBundle},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &ignore,
			ReinvocationPolicy:      &never,
			TimeoutSeconds:          ptr(int32(5)),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{LabelInject: NamespaceEnabled}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope,
				},
			}},
		}},
	}
}

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
}

func testDeployment(name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: name, Image: "web:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/healthz", Port: intstr.FromString("http"),
					}}},
				}}},
			},
		},
	}
}

func waitPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, selector string) *corev1.Pod {
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

type warningRecorder struct {
	mu sync.Mutex
	w  []string
}

func (r *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w = append(r.w, fmt.Sprintf("%d %s", code, text))
}

func (r *warningRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.w)
}

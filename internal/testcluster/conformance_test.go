package testcluster

import (
	"context"
	"crypto/tls"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	xv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	"sigs.k8s.io/gateway-api/conformance"
	"sigs.k8s.io/gateway-api/conformance/tests"
	conformanceconfig "sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// conformanceControllerName is the controller name of the stand-in below.
const conformanceControllerName = "testcluster.causeway.dev/conformance-stand-in"

// TestGatewayAPIConformanceSetup runs the Gateway API conformance suite
// v1.6.3's Setup against a harness cluster: the suite applies its base
// manifests, and their pods (echo-basic backends, as real processes when
// root) become Ready through kwok. There is no Gateway implementation here
// yet: a stand-in marks the GatewayClass Accepted and the Gateways Accepted
// and Programmed, which is all Setup checks. Running the suite's tests
// against Causeway is the Gateway API issue's job; this proves the harness
// can host it.
func TestGatewayAPIConformanceSetup(t *testing.T) {
	RequireBinaries(t, true)
	opts := Options{Name: "conformance", Nodes: ZonalNodes("region-0", "a", "b")}
	real := CanRunRealPods() == nil
	if real {
		opts.RealPods = []RealPod{{ImagePrefix: "registry.k8s.io/gateway-api/echo-basic", Command: []string{"echo-basic"}}}
	} else {
		t.Logf("echo-basic backends stay simulated: %v", CanRunRealPods())
	}
	start := time.Now()
	c := Start(t, opts)

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme,
		gatewayv1.Install, v1alpha2.Install, v1alpha3.Install, xv1alpha1.Install,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	ctrllog.SetLogger(logr.Discard()) // controller-runtime insists on a logger
	cl, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		standIn(ctx, cl)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	gwc := &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: "causeway-conformance"},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: conformanceControllerName},
	}
	if err := cl.Create(ctx, gwc); err != nil {
		t.Fatal(err)
	}

	timeouts := conformanceconfig.DefaultTimeoutConfig()
	timeouts.NamespacesMustBeReady = 90 * time.Second
	timeouts.GWCMustBeAccepted = 30 * time.Second
	cs, err := suite.NewConformanceTestSuite(suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     gwc.Name,
			SupportedFeatures:    []features.FeatureName{features.SupportGateway, features.SupportHTTPRoute},
			CleanupBaseResources: false, // the cluster goes away
			TimeoutConfig:        timeouts,
			Mode:                 "default",
		},
		Client:     cl,
		Clientset:  c.Clientset,
		RestConfig: c.Config,
		ManifestFS: []fs.FS{&conformance.Manifests},
	})
	if err != nil {
		t.Fatalf("conformance suite: %v", err)
	}
	cs.Setup(t, tests.ConformanceTests)
	t.Logf("conformance Setup done %v after start", time.Since(start).Round(time.Millisecond))

	// Every echo-basic pod of the base manifests runs for real.
	if real {
		pods, err := c.Clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, p := range pods.Items {
			if len(p.Spec.Containers) > 0 && strings.HasPrefix(p.Spec.Containers[0].Image, "registry.k8s.io/gateway-api/echo-basic") {
				want = append(want, p.Namespace+"/"+p.Name)
			}
		}
		var missing []string
		ok := waitUntil(ctx, func() bool {
			running := c.RealPodIPs()
			missing = missing[:0]
			for _, k := range want {
				if _, ok := running[k]; !ok {
					missing = append(missing, k)
				}
			}
			return len(missing) == 0
		})
		if !ok {
			for _, k := range missing {
				ns, name, _ := strings.Cut(k, "/")
				t.Errorf("echo-basic pod %s is not running as a process; its log ends:\n%s", k, logTail(filepath.Join(c.Dir, "pods", ns+"_"+name+".log"), 10))
			}
			t.FailNow()
		}
		// The TLS backends got their secret volume: they serve TLS.
		tlsPods, err := c.Clientset.CoreV1().Pods("gateway-conformance-infra").List(ctx, metav1.ListOptions{LabelSelector: "app=tls-backend"})
		if err != nil || len(tlsPods.Items) == 0 {
			t.Fatalf("tls-backend pods: %v (%d)", err, len(tlsPods.Items))
		}
		addr := net.JoinHostPort(tlsPods.Items[0].Status.PodIP, "8443")
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS to tls-backend at %s: %v", addr, err)
		}
		t.Logf("tls-backend at %s serves TLS with a certificate for %v", addr, conn.ConnectionState().PeerCertificates[0].DNSNames)
		conn.Close()
		t.Logf("%d echo-basic pods run as real processes; RSS of the cluster %d MiB", len(want), c.MemoryRSS()>>20)
	}
}

// standIn plays the Gateway controller for Setup: GatewayClasses with its
// controller name get Accepted, their Gateways Accepted and Programmed.
func standIn(ctx context.Context, cl client.Client) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var classes gatewayv1.GatewayClassList
		if err := cl.List(ctx, &classes); err == nil {
			mine := map[string]bool{}
			for i := range classes.Items {
				gwc := &classes.Items[i]
				if gwc.Spec.ControllerName != conformanceControllerName {
					continue
				}
				mine[gwc.Name] = true
				if setCondition(&gwc.Status.Conditions, gwc.Generation, string(gatewayv1.GatewayClassConditionStatusAccepted)) {
					_ = cl.Status().Update(ctx, gwc)
				}
			}
			var gws gatewayv1.GatewayList
			if err := cl.List(ctx, &gws); err == nil {
				for i := range gws.Items {
					gw := &gws.Items[i]
					if !mine[string(gw.Spec.GatewayClassName)] {
						continue
					}
					a := setCondition(&gw.Status.Conditions, gw.Generation, string(gatewayv1.GatewayConditionAccepted))
					p := setCondition(&gw.Status.Conditions, gw.Generation, string(gatewayv1.GatewayConditionProgrammed))
					if a || p {
						_ = cl.Status().Update(ctx, gw)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// setCondition sets condition typ True at generation gen; it reports
// whether anything changed.
func setCondition(conds *[]metav1.Condition, gen int64, typ string) bool {
	if c := meta.FindStatusCondition(*conds, typ); c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == gen {
		return false
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: metav1.ConditionTrue, Reason: typ, ObservedGeneration: gen,
		Message: "set by the testcluster conformance stand-in",
	})
	return true
}

// waitUntil polls cond until it holds (true) or ctx ends (false).
func waitUntil(ctx context.Context, cond func() bool) bool {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

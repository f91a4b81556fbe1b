package inject

import (
	"encoding/json"
	"flag"
	"github.com/causewaymesh/causeway/proxy/admin"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

func testConfig() Config {
	c := DefaultConfig()
	c.Image = "ghcr.io/causewaymesh/causeway-proxy:test"
	c.ControlPlane = "causeway.causeway-system.svc:15010"
	c.Cluster = "east"
	c.Network = "net1"
	c.Version = "v0.0.0-test"
	return c
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

var (
	meshed = namespace("shop", map[string]string{LabelInject: NamespaceEnabled})
	plain  = namespace("plain", nil)
)

func mustPod(t testing.TB, y string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(y), &p); err != nil {
		t.Fatalf("test pod does not decode: %v\n%s", err, y)
	}
	return &p
}

const basicPod = `
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  containers:
  - name: web
    image: web:1
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /healthz, port: http}
      timeoutSeconds: 2
`

// podCases are the golden cases: testdata/pod/<name>.yaml holds the result.
var podCases = []struct {
	name string
	ns   *corev1.Namespace
	pod  string
	// skip is a substring of the expected skip reason; "" means injected.
	skip string
}{
	{name: "namespace-label", ns: meshed, pod: basicPod},
	{name: "annotation-opt-in", ns: plain, pod: `
metadata: {name: api-0, namespace: plain, annotations: {causeway.dev/inject: "true"}}
spec:
  containers: [{name: api, image: api:1}]
`},
	{name: "unknown-namespace-annotation", ns: nil, pod: `
metadata: {name: api-0, annotations: {causeway.dev/inject: "true"}}
spec:
  containers: [{name: api, image: api:1}]
`},
	{name: "opt-out", ns: meshed, skip: "opt-out", pod: `
metadata: {name: batch, namespace: shop, annotations: {causeway.dev/inject: "false"}}
spec:
  containers: [{name: batch, image: batch:1}]
`},
	{name: "not-selected", ns: plain, skip: "not selected", pod: `
metadata: {name: web, namespace: plain}
spec:
  containers: [{name: web, image: web:1}]
`},
	{name: "unknown-namespace-not-selected", ns: nil, skip: "not selected", pod: `
metadata: {name: web}
spec:
  containers: [{name: web, image: web:1}]
`},
	{name: "host-network", ns: meshed, skip: "hostNetwork", pod: `
metadata: {name: agent, namespace: shop}
spec:
  hostNetwork: true
  containers: [{name: agent, image: agent:1}]
`},
	{name: "exclusions", ns: meshed, pod: `
metadata:
  name: db-client
  namespace: shop
  annotations:
    causeway.dev/exclude-inbound-ports: "9090, 8080"
    causeway.dev/exclude-outbound-ports: "5432,5432,3306"
    causeway.dev/exclude-outbound-cidrs: "10.1.2.3/8,fd00::/8"
spec:
  containers: [{name: app, image: app:1}]
`},
	{name: "probes", ns: meshed, pod: `
metadata: {name: probes, namespace: shop}
spec:
  containers:
  - name: web
    image: web:1
    ports: [{name: http, containerPort: 8080}, {name: grpc, containerPort: 9090}]
    livenessProbe:
      httpGet: {path: /live, port: 8080, scheme: HTTPS, httpHeaders: [{name: X-Probe, value: "1"}]}
      periodSeconds: 7
    readinessProbe:
      tcpSocket: {port: http}
    startupProbe:
      grpc: {port: 9090, service: health}
      failureThreshold: 30
  - name: worker
    image: worker:1
    livenessProbe:
      exec: {command: [/bin/true]}
    readinessProbe:
      httpGet: {path: /ready, port: "8081"}
`},
	{name: "probes-not-rewritten", ns: meshed, pod: `
metadata: {name: raw, namespace: shop, annotations: {causeway.dev/rewrite-app-probes: "false"}}
spec:
  containers:
  - name: web
    image: web:1
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
`},
	{name: "existing-init-and-volumes", ns: meshed, pod: `
metadata: {name: migrate, namespace: shop, annotations: {team: payments}}
spec:
  securityContext: {runAsUser: 1000, fsGroup: 2000}
  initContainers: [{name: migrate, image: migrate:1}]
  containers: [{name: app, image: app:1, volumeMounts: [{name: data, mountPath: /data}]}]
  volumes: [{name: data, emptyDir: {}}]
`},
}

func TestPodGolden(t *testing.T) {
	cfg := testConfig()
	for _, tc := range podCases {
		t.Run(tc.name, func(t *testing.T) {
			in := mustPod(t, tc.pod)
			before := in.DeepCopy()
			got, skipped, err := Pod(in, tc.ns, cfg)
			if err != nil {
				t.Fatalf("Pod: %v", err)
			}
			if diff := cmp.Diff(before, in); diff != "" {
				t.Fatalf("Pod modified its input (-before +after):\n%s", diff)
			}
			switch {
			case tc.skip == "" && skipped != "":
				t.Fatalf("skipped %q, want injected", skipped)
			case tc.skip != "" && !strings.Contains(skipped, tc.skip):
				t.Fatalf("skipped = %q, want it to contain %q", skipped, tc.skip)
			case tc.skip != "":
				if diff := cmp.Diff(in, got); diff != "" {
					t.Fatalf("skipped pod changed (-in +out):\n%s", diff)
				}
			}
			out, err := yaml.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if skipped != "" {
				out = append([]byte("# skipped: "+skipped+"\n"), out...)
			}
			golden(t, filepath.Join("testdata", "pod", tc.name+".yaml"), out)
		})
	}
}

// TestPodIdempotent injects every golden case twice: the second pass must
// change nothing.
func TestPodIdempotent(t *testing.T) {
	cfg := testConfig()
	for _, tc := range podCases {
		t.Run(tc.name, func(t *testing.T) {
			once, _, err := Pod(mustPod(t, tc.pod), tc.ns, cfg)
			if err != nil {
				t.Fatal(err)
			}
			twice, skipped, err := Pod(once, tc.ns, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(once, twice); diff != "" {
				t.Fatalf("second injection changed the pod (-once +twice):\n%s", diff)
			}
			if tc.skip == "" && !strings.Contains(skipped, "already injected") {
				t.Fatalf("second injection: skipped = %q, want already injected", skipped)
			}
		})
	}
}

func TestPodShape(t *testing.T) {
	got, _, err := Pod(mustPod(t, podCases[8].pod), meshed, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Spec.InitContainers); n != 2 || got.Spec.InitContainers[0].Name != InitContainerName || got.Spec.InitContainers[1].Name != ProxyContainerName {
		t.Fatalf("init containers: want [causeway-init causeway-proxy], got %d: %v", n, got.Spec.InitContainers)
	}
	proxy := got.Spec.InitContainers[1]
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("sidecar restartPolicy = %v, want Always (native sidecar)", proxy.RestartPolicy)
	}
	if u := proxy.SecurityContext.RunAsUser; u == nil || *u != DefaultProxyUID {
		t.Errorf("sidecar runAsUser = %v, want %d", u, DefaultProxyUID)
	}
	caps := got.Spec.InitContainers[0].SecurityContext.Capabilities.Add
	if diff := cmp.Diff([]corev1.Capability{"NET_ADMIN", "NET_RAW"}, caps); diff != "" {
		t.Errorf("init capabilities (-want +got):\n%s", diff)
	}
	var probes map[string]AppProbe
	for _, e := range proxy.Env {
		if e.Name == EnvAppProbes {
			if err := json.Unmarshal([]byte(e.Value), &probes); err != nil {
				t.Fatalf("%s: %v", EnvAppProbes, err)
			}
		}
	}
	want := map[string]AppProbe{
		"/app-health/web/livez":     {HTTPGet: &AppHTTPGet{Path: "/live", Port: 8080, Scheme: "HTTPS", HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "1"}}}},
		"/app-health/web/readyz":    {TCPSocket: &AppTCPSocket{Port: 8080}},
		"/app-health/web/startupz":  {GRPC: &AppGRPC{Port: 9090, Service: "health"}},
		"/app-health/worker/readyz": {HTTPGet: &AppHTTPGet{Path: "/ready", Port: 8081}},
	}
	if diff := cmp.Diff(want, probes); diff != "" {
		t.Errorf("%s (-want +got):\n%s", EnvAppProbes, diff)
	}
	// The sidecar reads the same variable: its parser must accept what the
	// injector writes, with the same ports.
	for _, e := range proxy.Env {
		if e.Name != EnvAppProbes {
			continue
		}
		side, err := admin.ParseAppProbes(e.Value)
		if err != nil {
			t.Fatalf("the sidecar refuses the injector's %s: %v", EnvAppProbes, err)
		}
		if len(side) != len(want) || side["/app-health/web/livez"].HTTPGet.Port != 8080 || side["/app-health/web/startupz"].GRPC.Service != "health" ||
			side["/app-health/web/livez"].HTTPGet.HTTPHeaders[0].Name != "X-Probe" {
			t.Errorf("the sidecar reads the probes differently: %+v", side)
		}
	}
	if EnvAppProbes != admin.AppProbesEnv {
		t.Errorf("injector writes %s, sidecar reads %s", EnvAppProbes, admin.AppProbesEnv)
	}
	web := got.Spec.Containers[0]
	for name, p := range map[string]*corev1.Probe{"liveness": web.LivenessProbe, "readiness": web.ReadinessProbe, "startup": web.StartupProbe} {
		if p.HTTPGet == nil || p.HTTPGet.Port.IntVal != DefaultAdminPort || !strings.HasPrefix(p.HTTPGet.Path, AppHealthPrefix+"web/") || p.TCPSocket != nil || p.GRPC != nil {
			t.Errorf("web %s probe not rewritten to the admin port: %+v", name, p.ProbeHandler)
		}
	}
	if web.StartupProbe.FailureThreshold != 30 || web.LivenessProbe.PeriodSeconds != 7 {
		t.Errorf("probe timing fields were not kept: %+v %+v", web.StartupProbe, web.LivenessProbe)
	}
	if got.Spec.Containers[1].LivenessProbe.Exec == nil {
		t.Errorf("exec probe was rewritten")
	}
}

func TestPodErrors(t *testing.T) {
	tests := []struct {
		name, pod, want string
		cfg             func(*Config)
	}{
		{name: "bad inject annotation", want: `annotation causeway.dev/inject: "yes": want "true" or "false"`, pod: `
metadata: {name: p, namespace: shop, annotations: {causeway.dev/inject: "yes"}}
spec: {containers: [{name: a, image: a}]}`},
		{name: "bad rewrite annotation", want: `causeway.dev/rewrite-app-probes: "no"`, pod: `
metadata: {name: p, namespace: shop, annotations: {causeway.dev/rewrite-app-probes: "no"}}
spec: {containers: [{name: a, image: a}]}`},
		{name: "bad port list", want: `causeway.dev/exclude-inbound-ports: "80,http": "http" is not a port`, pod: `
metadata: {name: p, namespace: shop, annotations: {causeway.dev/exclude-inbound-ports: "80,http"}}
spec: {containers: [{name: a, image: a}]}`},
		{name: "bad cidr", want: `"10.0.0.0" is not a CIDR`, pod: `
metadata: {name: p, namespace: shop, annotations: {causeway.dev/exclude-outbound-cidrs: "10.0.0.0"}}
spec: {containers: [{name: a, image: a}]}`},
		{name: "unknown named port", want: `spec.containers[0] (a).readinessProbe: httpGet.port: named port "web" is not among the container's ports`, pod: `
metadata: {name: p, namespace: shop}
spec: {containers: [{name: a, image: a, readinessProbe: {httpGet: {port: web}}}]}`},
		{name: "reserved port", want: "spec.containers[0] (a).ports[0].containerPort 15001 is the sidecar's outbound capture port", pod: `
metadata: {name: p, namespace: shop}
spec: {containers: [{name: a, image: a, ports: [{containerPort: 15001}]}]}`},
		{name: "proxy uid", want: "runs as UID 1337, the proxy's UID", pod: `
metadata: {name: p, namespace: shop}
spec: {securityContext: {runAsUser: 1337}, containers: [{name: a, image: a}]}`},
		{name: "reserved volume", want: `spec.volumes[0].name "causeway-token" is reserved`, pod: `
metadata: {name: p, namespace: shop}
spec: {containers: [{name: a, image: a}], volumes: [{name: causeway-token, emptyDir: {}}]}`},
		{name: "reserved init name", want: `spec.initContainers[0].name "causeway-init" is reserved`, pod: `
metadata: {name: p, namespace: shop}
spec: {initContainers: [{name: causeway-init, image: x}], containers: [{name: a, image: a}]}`},
		{name: "bad config", want: "Config.Image (--proxy-image) is empty", cfg: func(c *Config) { c.Image = "" }, pod: basicPod},
		{name: "bad config ports", want: "Config.OutboundPort 15000: same port as Config.AdminPort", cfg: func(c *Config) { c.OutboundPort = 15000 }, pod: basicPod},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			got, _, err := Pod(mustPod(t, tc.pod), meshed, cfg)
			if err == nil {
				t.Fatalf("Pod: no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
			if got != nil {
				t.Fatalf("patched = %v, want nil with an error", got)
			}
		})
	}
	if _, _, err := Pod(nil, meshed, testConfig()); err == nil {
		t.Fatal("Pod(nil): no error")
	}
}

// TestConfigHash: the recorded hash follows the Config but not its Version.
func TestConfigHash(t *testing.T) {
	a, b := testConfig(), testConfig()
	b.Version = "other"
	if a.Hash() != b.Hash() {
		t.Fatal("Hash depends on Version")
	}
	b.ProxyUID = 1400
	if a.Hash() == b.Hash() {
		t.Fatal("Hash ignores ProxyUID")
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func BenchmarkPod(b *testing.B) {
	cfg := testConfig()
	pod := mustPod(b, podCases[8].pod)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Pod(pod, meshed, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestConfigFlags(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	cfg.Flags(fs)
	err := fs.Parse([]string{"--proxy-image=p:1", "--control-plane=cp:15010", "--proxy-admin-port=16000",
		"--proxy-cpu-limit=", "--proxy-memory-request=32Mi", "--proxy-uid=2000"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Resources.Limits[corev1.ResourceCPU]; ok || cfg.AdminPort != 16000 || cfg.ProxyUID != 2000 ||
		cfg.Resources.Requests.Memory().String() != "32Mi" || cfg.Image != "p:1" {
		t.Fatalf("flags not applied: %+v", cfg)
	}
	for _, bad := range [][]string{{"--proxy-admin-port=0"}, {"--proxy-cpu-request=lots"}} {
		fs := flag.NewFlagSet("inject", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := DefaultConfig()
		c.Flags(fs)
		if err := fs.Parse(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	c := DefaultConfig()
	c.Image, c.ControlPlane = "p", "cp:1"
	c.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("1Gi")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "memory request 1Gi exceeds its limit 256Mi") {
		t.Errorf("request above limit: %v", err)
	}
}

package inject

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// sidecarOf returns the injected sidecar and init container of pod.
func sidecarOf(t *testing.T, pod string, cfg Config) (proxy, init corev1.Container, out *corev1.Pod) {
	t.Helper()
	got, skipped, err := Pod(mustPod(t, pod), meshed, cfg)
	if err != nil || skipped != "" {
		t.Fatalf("Pod: %v %s", err, skipped)
	}
	return got.Spec.InitContainers[1], got.Spec.InitContainers[0], got
}

func argValue(args []string, flag string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
		if a == flag {
			return "", true
		}
	}
	return "", false
}

// TestSidecarArgs: the injected sidecar carries everything a real node
// needs (issue 9): SVID issuer, token file, trust domain, bundle, capture,
// inbound ports from the declared containerPorts minus the excluded ones;
// no locality (the control plane derives it from the node).
func TestSidecarArgs(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		pod  string
		want map[string]string // flag -> value; "-" means absent
	}{
		{name: "defaults", pod: basicPod, want: map[string]string{
			"--svid-issuer":           DefaultSVIDIssuer,
			"--svid-token-file":       "$(" + EnvTokenPath + ")",
			"--trust-domain":          "east.local", // <cluster>.local
			"--trust-bundle":          "$(" + EnvTrustBundle + ")",
			"--capture":               "",
			"--capture-outbound-port": "15001",
			"--capture-inbound-port":  "15006",
			"--inbound-ip":            "$(POD_IP)",
			"--inbound-ports":         "8080=127.0.0.1:8080",
			"--locality":              "-",
		}},
		{name: "issuer from the env and an explicit trust domain", pod: basicPod,
			cfg:  func(c *Config) { c.SVIDIssuer, c.TrustDomain = "$(HOST_IP):15012", "corp.example" },
			want: map[string]string{"--svid-issuer": "$(HOST_IP):15012", "--trust-domain": "corp.example"}},
		{name: "no mesh mTLS", pod: basicPod, cfg: func(c *Config) { c.SVIDIssuer = "" },
			want: map[string]string{"--svid-issuer": "-", "--trust-bundle": "-", "--trust-domain": "-", "--capture": ""}},
		{name: "ports: TCP only, deduplicated, sorted, exclusions honoured", want: map[string]string{"--inbound-ports": "7070=127.0.0.1:7070,8080=127.0.0.1:8080"}, pod: `
metadata: {name: p, namespace: shop, annotations: {causeway.dev/exclude-inbound-ports: "9090"}}
spec:
  containers:
  - {name: a, image: a, ports: [{containerPort: 8080}, {containerPort: 9090}, {containerPort: 53, protocol: UDP}]}
  - {name: b, image: b, ports: [{containerPort: 8080, protocol: TCP}, {containerPort: 7070}]}`},
		{name: "no ports: no inbound listeners", want: map[string]string{"--inbound-ip": "-", "--inbound-ports": "-"}, pod: `
metadata: {name: p, namespace: shop}
spec: {containers: [{name: a, image: a}]}`},
		{name: "every port excluded", want: map[string]string{"--inbound-ip": "-", "--inbound-ports": "-"}, pod: `
metadata: {name: p, namespace: shop, annotations: {causeway.dev/exclude-inbound-ports: "8080"}}
spec: {containers: [{name: a, image: a, ports: [{containerPort: 8080}]}]}`},
		{name: "capture ports follow the config", cfg: func(c *Config) { c.InboundPort, c.OutboundPort = 16006, 16001 }, pod: basicPod,
			want: map[string]string{"--capture-inbound-port": "16006", "--capture-outbound-port": "16001"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			proxy, _, _ := sidecarOf(t, tc.pod, cfg)
			for flag, want := range tc.want {
				got, ok := argValue(proxy.Args, flag)
				switch {
				case want == "-" && ok:
					t.Errorf("%s=%s, want it absent", flag, got)
				case want != "-" && (!ok || got != want):
					t.Errorf("%s = %q (present %v), want %q\nargs: %q", flag, got, ok, want, proxy.Args)
				}
			}
		})
	}
}

// TestInitArgs: causeway-proxy init captures DNS (clusterset.local names).
func TestInitArgs(t *testing.T) {
	_, init, _ := sidecarOf(t, basicPod, testConfig())
	if init.Args[0] != "init" || !slices.Contains(init.Args, "--capture-dns") {
		t.Errorf("init args %q: want \"init\" first and --capture-dns", init.Args)
	}
}

// TestTrustBundleVolume: the bundle is the ConfigMap the control plane
// publishes, mounted read-only where EnvTrustBundle points.
func TestTrustBundleVolume(t *testing.T) {
	cfg := testConfig()
	cfg.TrustBundleConfigMap = "roots"
	proxy, _, pod := sidecarOf(t, basicPod, cfg)
	i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == TrustBundleVolumeName })
	if i < 0 {
		t.Fatalf("no volume %s: %v", TrustBundleVolumeName, pod.Spec.Volumes)
	}
	want := &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "roots"}, Items: []corev1.KeyToPath{{Key: TrustBundleKey, Path: TrustBundleKey}}}
	if diff := cmp.Diff(want, pod.Spec.Volumes[i].ConfigMap); diff != "" {
		t.Errorf("bundle volume (-want +got):\n%s", diff)
	}
	if !slices.ContainsFunc(proxy.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == TrustBundleVolumeName && m.MountPath == TrustBundleMountPath && m.ReadOnly
	}) {
		t.Errorf("sidecar mounts %v, want %s at %s", proxy.VolumeMounts, TrustBundleVolumeName, TrustBundleMountPath)
	}
	if !slices.ContainsFunc(proxy.Env, func(e corev1.EnvVar) bool {
		return e.Name == EnvTrustBundle && e.Value == TrustBundleMountPath+"/"+TrustBundleKey
	}) {
		t.Errorf("sidecar env has no %s", EnvTrustBundle)
	}

	cfg.SVIDIssuer = ""
	_, _, pod = sidecarOf(t, basicPod, cfg)
	if slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == TrustBundleVolumeName }) {
		t.Errorf("without an SVID issuer the pod still gets the bundle volume")
	}
}

func TestSVIDConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		pod  string
		want string
	}{
		{"no trust domain", func(c *Config) { c.Cluster, c.TrustDomain = "", "" }, basicPod, "Config.TrustDomain (--trust-domain) is empty and there is no Config.Cluster"},
		{"bad trust domain", func(c *Config) { c.TrustDomain = "Not A Domain" }, basicPod, `Config.TrustDomain "Not A Domain" (--trust-domain)`},
		{"bad issuer", func(c *Config) { c.SVIDIssuer = "causeway" }, basicPod, `Config.SVIDIssuer "causeway" (--svid-issuer): want host:port`},
		{"no bundle configmap", func(c *Config) { c.TrustBundleConfigMap = "" }, basicPod, "Config.TrustBundleConfigMap (--trust-bundle-configmap) is empty"},
		{"bad bundle configmap", func(c *Config) { c.TrustBundleConfigMap = "Roots!" }, basicPod, `Config.TrustBundleConfigMap "Roots!"`},
		{"reserved bundle volume", nil, `
metadata: {name: p, namespace: shop}
spec: {containers: [{name: a, image: a}], volumes: [{name: causeway-trust-bundle, emptyDir: {}}]}`, `spec.volumes[0].name "causeway-trust-bundle" is reserved for the sidecar's trust bundle`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			_, _, err := Pod(mustPod(t, tc.pod), meshed, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// Without SVIDs no trust domain is needed.
	cfg := testConfig()
	cfg.Cluster, cfg.SVIDIssuer = "", ""
	if _, _, err := Pod(mustPod(t, basicPod), meshed, cfg); err != nil {
		t.Errorf("no SVID issuer, no cluster: %v", err)
	}
}

package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names Causeway reads and writes on pods and namespaces.
const (
	// LabelInject on a Namespace, with value NamespaceEnabled, selects its
	// pods for injection.
	LabelInject      = "causeway.dev/inject"
	NamespaceEnabled = "enabled"
	// AnnotationInject on a pod, "true" or "false", selects or opts out the
	// pod whatever its namespace says.
	AnnotationInject = "causeway.dev/inject"
	// AnnotationInjected records an injection: {"version":...,"configHash":...}.
	AnnotationInjected = "causeway.dev/injected"
	// Traffic-capture exclusions, comma-separated, passed to causeway-init.
	AnnotationExcludeInboundPorts  = "causeway.dev/exclude-inbound-ports"
	AnnotationExcludeOutboundPorts = "causeway.dev/exclude-outbound-ports"
	AnnotationExcludeOutboundCIDRs = "causeway.dev/exclude-outbound-cidrs"
	// AnnotationRewriteAppProbes "false" keeps application probes as they
	// are (they then hit the app port through inbound capture).
	AnnotationRewriteAppProbes = "causeway.dev/rewrite-app-probes"

	ProxyContainerName = "causeway-proxy"
	InitContainerName  = "causeway-init"
	TokenVolumeName    = "causeway-token"
	TokenMountPath     = "/var/run/secrets/causeway/tokens"
	TokenFile          = "token"
	// EnvAppProbes, on the sidecar, holds the original target of every
	// rewritten probe as JSON: {"/app-health/<container>/<kind>": AppProbe}.
	EnvAppProbes = "CAUSEWAY_APP_PROBES"
	// EnvTokenPath, on the sidecar, is the path of the projected token.
	EnvTokenPath = "CAUSEWAY_TOKEN_PATH"
	// The trust bundle: Config.TrustBundleConfigMap mounted as volume
	// TrustBundleVolumeName at TrustBundleMountPath; EnvTrustBundle, on
	// the sidecar, is the path of its key TrustBundleKey (the roots, PEM).
	TrustBundleVolumeName = "causeway-trust-bundle"
	TrustBundleMountPath  = "/var/run/secrets/causeway/bundle"
	TrustBundleKey        = "ca.crt"
	EnvTrustBundle        = "CAUSEWAY_TRUST_BUNDLE"
	// AppHealthPrefix starts the admin path of a rewritten probe:
	// /app-health/<container>/readyz, /livez or /startupz.
	AppHealthPrefix = "/app-health/"
)

// Reasons a pod is not injected; the codes label metrics.
const (
	skipNotSelected     = "not_selected"
	skipOptOut          = "opt_out"
	skipHostNetwork     = "host_network"
	skipAlreadyInjected = "already_injected"
)

// decision is why a pod is not injected; code is empty when it is.
type decision struct {
	code string
	why  string
	// asked is true when the pod or its namespace asked for injection, so a
	// skip deserves a warning.
	asked bool
}

// AppProbe is the original target of a rewritten application probe, as the
// sidecar finds it in EnvAppProbes. Exactly one of HTTPGet, TCPSocket and
// GRPC is set; ports are numbers (named ports are resolved at injection).
type AppProbe struct {
	HTTPGet        *AppHTTPGet   `json:"httpGet,omitempty"`
	TCPSocket      *AppTCPSocket `json:"tcpSocket,omitempty"`
	GRPC           *AppGRPC      `json:"grpc,omitempty"`
	TimeoutSeconds int32         `json:"timeoutSeconds,omitempty"`
}

// AppHTTPGet is an HTTP probe of the app: scheme HTTP or HTTPS, host empty
// for the pod IP.
type AppHTTPGet struct {
	Path        string              `json:"path,omitempty"`
	Port        int32               `json:"port"`
	Host        string              `json:"host,omitempty"`
	Scheme      string              `json:"scheme,omitempty"`
	HTTPHeaders []corev1.HTTPHeader `json:"httpHeaders,omitempty"`
}

// AppTCPSocket is a TCP connect probe of the app.
type AppTCPSocket struct {
	Port int32  `json:"port"`
	Host string `json:"host,omitempty"`
}

// AppGRPC is a gRPC health-check probe of the app.
type AppGRPC struct {
	Port    int32  `json:"port"`
	Service string `json:"service,omitempty"`
}

// injectedStatus is the value of AnnotationInjected.
type injectedStatus struct {
	Version    string `json:"version"`
	ConfigHash string `json:"configHash"`
}

// Pod returns pod with Causeway's data plane added, or, when the pod is not
// to be injected, an unchanged copy and the reason in skipped. pod is never
// modified. ns is the pod's namespace; nil means unknown, and then only the
// pod annotation selects. err reports a Config or a pod spec that cannot be
// injected (a bad annotation, a named probe port that does not exist, a
// name or port the sidecar needs already in use); patched is then nil.
func Pod(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) (patched *corev1.Pod, skipped string, err error) {
	in, err := newInjector(cfg)
	if err != nil {
		return nil, "", err
	}
	out, d, err := in.pod(pod, ns)
	return out, d.why, err
}

// injector holds a validated Config and what derives from it.
type injector struct {
	cfg    Config
	status string // AnnotationInjected value
}

func newInjector(cfg Config) (*injector, error) {
	if cfg.InitImage == "" {
		cfg.InitImage = cfg.Image
	}
	cfg.TrustDomain = cfg.trustDomain()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SVIDIssuer != "" && cfg.TrustDomain == "" {
		return nil, errors.New("inject: Config.TrustDomain (--trust-domain) is empty and there is no Config.Cluster (--cluster) to default it from (<cluster>.local); set the control plane's trust domain, or --svid-issuer \"\" for sidecars without mesh mTLS")
	}
	st, _ := json.Marshal(injectedStatus{Version: cfg.Version, ConfigHash: cfg.Hash()})
	return &injector{cfg: cfg, status: string(st)}, nil
}

// decide applies the selection rules. A pod annotation overrides the
// namespace label either way.
func decide(pod *corev1.Pod, ns *corev1.Namespace) (decision, error) {
	ann, hasAnn := pod.Annotations[AnnotationInject]
	switch {
	case hasAnn && ann == "false":
		return decision{code: skipOptOut, why: "opt-out: the pod has annotation " + AnnotationInject + `: "false"`}, nil
	case hasAnn && ann != "true":
		return decision{}, fmt.Errorf("pod annotation %s: %q: want \"true\" or \"false\"", AnnotationInject, ann)
	}
	selected := hasAnn
	if !selected && ns != nil && ns.Labels[LabelInject] == NamespaceEnabled {
		selected = true
	}
	if !selected {
		nsName := "(unknown)"
		if ns != nil {
			nsName = ns.Name
		}
		return decision{code: skipNotSelected, why: fmt.Sprintf("not selected: namespace %s has no label %s=%s and the pod has no annotation %s: \"true\"", nsName, LabelInject, NamespaceEnabled, AnnotationInject)}, nil
	}
	if injected(pod) {
		return decision{code: skipAlreadyInjected, why: "already injected: the pod has a " + ProxyContainerName + " container"}, nil
	}
	if pod.Spec.HostNetwork {
		return decision{code: skipHostNetwork, asked: true, why: "hostNetwork: the pod shares the node's network namespace, where traffic capture would redirect the node's own traffic; run it without a sidecar or without hostNetwork"}, nil
	}
	return decision{}, nil
}

func injected(pod *corev1.Pod) bool {
	has := func(cs []corev1.Container) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == ProxyContainerName })
	}
	return has(pod.Spec.InitContainers) || has(pod.Spec.Containers)
}

// pod is Pod with a validated Config.
func (in *injector) pod(pod *corev1.Pod, ns *corev1.Namespace) (*corev1.Pod, decision, error) {
	if pod == nil {
		return nil, decision{}, errors.New("inject: pod is nil")
	}
	d, err := decide(pod, ns)
	if err != nil {
		return nil, d, fmt.Errorf("inject: pod %s: %w", podName(pod), err)
	}
	if d.code != "" {
		return pod.DeepCopy(), d, nil
	}
	out := pod.DeepCopy()
	if err := in.mutate(out); err != nil {
		return nil, d, fmt.Errorf("inject: pod %s: %w", podName(pod), err)
	}
	return out, d, nil
}

func podName(p *corev1.Pod) string {
	name := p.Name
	if name == "" && p.GenerateName != "" {
		name = p.GenerateName + "*"
	}
	if p.Namespace != "" {
		return p.Namespace + "/" + name
	}
	return name
}

// mutate injects pod in place.
func (in *injector) mutate(pod *corev1.Pod) error {
	c := &in.cfg
	if err := checkConflicts(pod, c); err != nil {
		return err
	}
	inPorts, err := portList(pod.Annotations, AnnotationExcludeInboundPorts)
	if err != nil {
		return err
	}
	inPorts = mergePorts(append(inPorts, c.AdminPort))
	outPorts, err := portList(pod.Annotations, AnnotationExcludeOutboundPorts)
	if err != nil {
		return err
	}
	outPorts = mergePorts(outPorts)
	cidrs, err := cidrList(pod.Annotations, AnnotationExcludeOutboundCIDRs)
	if err != nil {
		return err
	}

	var probes map[string]AppProbe
	switch v := pod.Annotations[AnnotationRewriteAppProbes]; v {
	case "", "true":
		if probes, err = rewriteProbes(pod, c.AdminPort); err != nil {
			return err
		}
	case "false":
	default:
		return fmt.Errorf("pod annotation %s: %q: want \"true\" or \"false\"", AnnotationRewriteAppProbes, v)
	}

	initArgs := []string{
		"init",
		"--proxy-uid=" + strconv.FormatInt(c.ProxyUID, 10),
		"--inbound-port=" + strconv.Itoa(int(c.InboundPort)),
		"--outbound-port=" + strconv.Itoa(int(c.OutboundPort)),
		// The sidecar answers clusterset.local names (ServiceImport VIPs).
		"--capture-dns",
		"--exclude-inbound-ports=" + joinPorts(inPorts),
	}
	if len(outPorts) > 0 {
		initArgs = append(initArgs, "--exclude-outbound-ports="+joinPorts(outPorts))
	}
	if len(cidrs) > 0 {
		initArgs = append(initArgs, "--exclude-outbound-cidrs="+strings.Join(cidrs, ","))
	}
	initC := corev1.Container{
		Name:            InitContainerName,
		Image:           c.InitImage,
		ImagePullPolicy: c.ImagePullPolicy,
		Args:            initArgs,
		Resources:       *c.Resources.DeepCopy(),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsGroup:               ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
	}

	args := []string{
		"sidecar",
		"--xds=" + c.ControlPlane,
		"--admin=0.0.0.0:" + strconv.Itoa(int(c.AdminPort)),
		"--node-id=$(POD_NAME).$(POD_NAMESPACE)",
		"--workload=$(SERVICE_ACCOUNT)",
		"--namespace=$(POD_NAMESPACE)",
	}
	if c.Cluster != "" {
		args = append(args, "--cluster="+c.Cluster)
	}
	if c.Network != "" {
		args = append(args, "--network="+c.Network)
	}
	mounts := []corev1.VolumeMount{{Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true}}
	env := []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		fieldEnv("NODE_NAME", "spec.nodeName"),
		fieldEnv("POD_IP", "status.podIP"),
		{Name: EnvTokenPath, Value: TokenMountPath + "/" + TokenFile},
	}
	if c.SVIDIssuer != "" {
		// Paths go through env so that the kubelet (and a harness that
		// mounts volumes elsewhere) resolves them in one place.
		args = append(args,
			"--svid-issuer="+c.SVIDIssuer,
			"--svid-token-file=$("+EnvTokenPath+")",
			"--trust-domain="+c.TrustDomain,
			"--trust-bundle=$("+EnvTrustBundle+")",
		)
		env = append(env, corev1.EnvVar{Name: EnvTrustBundle, Value: TrustBundleMountPath + "/" + TrustBundleKey})
		mounts = append(mounts, corev1.VolumeMount{Name: TrustBundleVolumeName, MountPath: TrustBundleMountPath, ReadOnly: true})
	}
	// Capture mode, on causeway-init's ports; the app's declared ports are
	// its inbound listeners (the control plane needs no locality: it reads
	// the pod's node's topology labels).
	args = append(args,
		"--capture",
		"--capture-outbound-port="+strconv.Itoa(int(c.OutboundPort)),
		"--capture-inbound-port="+strconv.Itoa(int(c.InboundPort)),
	)
	if ports := inboundPorts(pod, inPorts); ports != "" {
		args = append(args, "--inbound-ip=$(POD_IP)", "--inbound-ports="+ports)
	}
	args = append(args, "--log-level="+c.LogLevel)
	if len(probes) > 0 {
		b, err := json.Marshal(probes) // map keys are sorted: deterministic
		if err != nil {
			return fmt.Errorf("encoding %s: %w", EnvAppProbes, err)
		}
		env = append(env, corev1.EnvVar{Name: EnvAppProbes, Value: string(b)})
	}
	adminProbe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/ready", Port: intstr.FromInt32(c.AdminPort), Scheme: corev1.URISchemeHTTP,
			}},
			TimeoutSeconds:   3,
			PeriodSeconds:    period,
			SuccessThreshold: 1,
			FailureThreshold: failures,
		}
	}
	always := corev1.ContainerRestartPolicyAlways
	proxyC := corev1.Container{
		Name:            ProxyContainerName,
		Image:           c.Image,
		ImagePullPolicy: c.ImagePullPolicy,
		// A native sidecar: it starts before the app containers, stops
		// after them, and does not keep a Job from completing.
		RestartPolicy: &always,
		Args:          args,
		Env:           env,
		Ports: []corev1.ContainerPort{
			{Name: "cw-admin", ContainerPort: c.AdminPort, Protocol: corev1.ProtocolTCP},
		},
		Resources:    *c.Resources.DeepCopy(),
		VolumeMounts: mounts,
		// The app starts once the sidecar has its configuration (or after
		// 10 minutes of failures the sidecar restarts).
		StartupProbe:   adminProbe(1, 600),
		ReadinessProbe: adminProbe(5, 3),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(c.ProxyUID),
			RunAsGroup:               ptr(c.ProxyUID),
			RunAsNonRoot:             ptr(true),
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	// causeway-init first (capture rules before anything talks), then the
	// sidecar, so the app's own init containers already run in the mesh.
	pod.Spec.InitContainers = append([]corev1.Container{initC, proxyC}, pod.Spec.InitContainers...)

	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
		Name: TokenVolumeName,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience:          c.TokenAudience,
				ExpirationSeconds: ptr(c.TokenExpirationSeconds),
				Path:              TokenFile,
			}}},
		}},
	})
	if c.SVIDIssuer != "" {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
			Name: TrustBundleVolumeName,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: c.TrustBundleConfigMap},
				Items:                []corev1.KeyToPath{{Key: TrustBundleKey, Path: TrustBundleKey}},
			}},
		})
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationInjected] = in.status
	return nil
}

func ptr[T any](v T) *T { return &v }

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
}

// checkConflicts rejects pods that already use a name or port the injection
// needs, or whose containers run as the proxy's UID (their traffic would
// bypass capture).
func checkConflicts(pod *corev1.Pod, c *Config) error {
	var errs []error
	reserved := map[int32]string{
		c.AdminPort:    "the sidecar's admin port",
		c.InboundPort:  "the sidecar's inbound capture port",
		c.OutboundPort: "the sidecar's outbound capture port",
	}
	check := func(field string, cs []corev1.Container) {
		for i, ctr := range cs {
			if ctr.Name == InitContainerName {
				errs = append(errs, fmt.Errorf("spec.%s[%d].name %q is reserved for Causeway's init container; rename the container", field, i, ctr.Name))
			}
			for j, p := range ctr.Ports {
				if what, ok := reserved[p.ContainerPort]; ok && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
					errs = append(errs, fmt.Errorf("spec.%s[%d] (%s).ports[%d].containerPort %d is %s; move the app to another port or change the injector's port", field, i, ctr.Name, j, p.ContainerPort, what))
				}
			}
			if uid := effectiveUID(pod, &ctr); uid != nil && *uid == c.ProxyUID {
				errs = append(errs, fmt.Errorf("spec.%s[%d] (%s) runs as UID %d, the proxy's UID, so its traffic would bypass the sidecar; run it as another user", field, i, ctr.Name, *uid))
			}
		}
	}
	check("initContainers", pod.Spec.InitContainers)
	check("containers", pod.Spec.Containers)
	for i, v := range pod.Spec.Volumes {
		switch v.Name {
		case TokenVolumeName:
			errs = append(errs, fmt.Errorf("spec.volumes[%d].name %q is reserved for the sidecar's token; rename the volume", i, v.Name))
		case TrustBundleVolumeName:
			errs = append(errs, fmt.Errorf("spec.volumes[%d].name %q is reserved for the sidecar's trust bundle; rename the volume", i, v.Name))
		}
	}
	return errors.Join(errs...)
}

func effectiveUID(pod *corev1.Pod, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.RunAsUser
	}
	return nil
}

func portList(ann map[string]string, key string) ([]int32, error) {
	v, ok := ann[key]
	if !ok || strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []int32
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseInt(f, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("pod annotation %s: %q: %q is not a port 1-65535; want a comma-separated list such as \"8080,9090\"", key, v, f)
		}
		out = append(out, int32(n))
	}
	return out, nil
}

// inboundPorts is the sidecar's --inbound-ports: each TCP containerPort
// the app containers declare, but those in excluded (which causeway-init
// does not capture), as "<port>=127.0.0.1:<port>", sorted; "" for none.
func inboundPorts(pod *corev1.Pod, excluded []int32) string {
	var ports []int32
	for _, ctr := range pod.Spec.Containers {
		for _, p := range ctr.Ports {
			if (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) && !slices.Contains(excluded, p.ContainerPort) {
				ports = append(ports, p.ContainerPort)
			}
		}
	}
	var b strings.Builder
	for i, n := range mergePorts(ports) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d=127.0.0.1:%d", n, n)
	}
	return b.String()
}

func mergePorts(p []int32) []int32 {
	slices.Sort(p)
	return slices.Compact(p)
}

func joinPorts(p []int32) string {
	var b strings.Builder
	for i, n := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(n)))
	}
	return b.String()
}

func cidrList(ann map[string]string, key string) ([]string, error) {
	v, ok := ann[key]
	if !ok || strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("pod annotation %s: %q: %q is not a CIDR; want a comma-separated list such as \"10.0.0.0/8,fd00::/8\"", key, v, f)
		}
		out = append(out, p.Masked().String())
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// rewriteProbes points the HTTP, TCP and gRPC probes of the app containers
// at the sidecar's admin port and returns their original targets by admin
// path. Exec probes are left alone (they do not cross the network).
func rewriteProbes(pod *corev1.Pod, adminPort int32) (map[string]AppProbe, error) {
	out := map[string]AppProbe{}
	for i := range pod.Spec.Containers {
		ctr := &pod.Spec.Containers[i]
		for _, k := range []struct {
			kind  string
			field string
			p     *corev1.Probe
		}{
			{"livez", "livenessProbe", ctr.LivenessProbe},
			{"readyz", "readinessProbe", ctr.ReadinessProbe},
			{"startupz", "startupProbe", ctr.StartupProbe},
		} {
			if k.p == nil {
				continue
			}
			orig, ok, err := appProbe(ctr, k.p)
			if err != nil {
				return nil, fmt.Errorf("spec.containers[%d] (%s).%s: %w", i, ctr.Name, k.field, err)
			}
			if !ok {
				continue
			}
			path := AppHealthPrefix + ctr.Name + "/" + k.kind
			out[path] = orig
			k.p.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(adminPort), Scheme: corev1.URISchemeHTTP,
			}}
		}
	}
	return out, nil
}

// appProbe returns the original target of p; ok is false for probes that
// are not rewritten.
func appProbe(ctr *corev1.Container, p *corev1.Probe) (AppProbe, bool, error) {
	h := p.ProbeHandler
	ap := AppProbe{TimeoutSeconds: p.TimeoutSeconds}
	switch {
	case h.HTTPGet != nil:
		port, err := resolvePort(ctr, h.HTTPGet.Port)
		if err != nil {
			return ap, false, fmt.Errorf("httpGet.port: %w", err)
		}
		ap.HTTPGet = &AppHTTPGet{Path: h.HTTPGet.Path, Port: port, Host: h.HTTPGet.Host, Scheme: string(h.HTTPGet.Scheme), HTTPHeaders: h.HTTPGet.HTTPHeaders}
	case h.TCPSocket != nil:
		port, err := resolvePort(ctr, h.TCPSocket.Port)
		if err != nil {
			return ap, false, fmt.Errorf("tcpSocket.port: %w", err)
		}
		ap.TCPSocket = &AppTCPSocket{Port: port, Host: h.TCPSocket.Host}
	case h.GRPC != nil:
		ap.GRPC = &AppGRPC{Port: h.GRPC.Port}
		if h.GRPC.Service != nil {
			ap.GRPC.Service = *h.GRPC.Service
		}
	default:
		return ap, false, nil
	}
	return ap, true, nil
}

func resolvePort(ctr *corev1.Container, p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		if p.IntVal < 1 || p.IntVal > 65535 {
			return 0, fmt.Errorf("%d is not a port 1-65535", p.IntVal)
		}
		return p.IntVal, nil
	}
	if n, err := strconv.ParseInt(p.StrVal, 10, 32); err == nil && n >= 1 && n <= 65535 {
		return int32(n), nil
	}
	for _, cp := range ctr.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("named port %q is not among the container's ports; add it to ports or use the number", p.StrVal)
}

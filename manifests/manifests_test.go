package manifests

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/causewaymesh/causeway/gateway"
	"github.com/causewaymesh/causeway/internal/testcluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.Cleanup(func(int) {
			if causewayBinary.dir != "" {
				_ = os.RemoveAll(causewayBinary.dir)
			}
		}),
	)
}

const (
	namespace      = "causeway-system"
	controlPlaneSA = "system:serviceaccount:causeway-system:causeway"
	gatewaySA      = "system:serviceaccount:causeway-system:causeway-gateway"
	fieldManager   = "causeway-install"
)

// kubectl runs the pinned kubectl (bin/kubectl, built by `make testbins`)
// against one cluster.
type kubectl struct {
	bin, kubeconfig, cacheDir string
}

// requireKubectl finds kubectl where internal/testcluster finds its
// binaries ($CAUSEWAY_TESTBINS, else the repository's bin/). Missing, the
// test is skipped, or fails with $CAUSEWAY_REQUIRE_TESTBINS=1.
func requireKubectl(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CAUSEWAY_TESTBINS")
	if dir == "" {
		dir = filepath.Join("..", "bin") // tests run in manifests/
	}
	p, err := filepath.Abs(filepath.Join(dir, "kubectl"))
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(p); err == nil && fi.Mode()&0o111 == 0 {
			err = fmt.Errorf("%s is not executable", p)
		}
	}
	if err != nil {
		msg := fmt.Sprintf("kubectl: %v (run `make testbins` in the repository root, or set $CAUSEWAY_TESTBINS)", err)
		if os.Getenv(testcluster.RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// run runs kubectl with args and returns stdout; a non-zero exit is an
// error that carries stderr. Warnings on stderr are returned apart.
func (k kubectl) run(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args = append([]string{"--kubeconfig=" + k.kubeconfig, "--cache-dir=" + k.cacheDir}, args...)
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "KUBECTL_KUSTOMIZE_PLUGINS=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args[2:], " "), err, errb.String())
	}
	return out.String(), errb.String(), err
}

// TestCRDKustomizationComplete checks that crds/kustomization.yaml lists
// every CRD file Causeway installs, so a new or regenerated CRD cannot be
// forgotten there.
func TestCRDKustomizationComplete(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("crds", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("crds/kustomization.yaml: %v", err)
	}
	var want []string
	for _, dir := range []string{"gateway-api/standard", "mcs-api", "causeway"} {
		files, err := filepath.Glob(filepath.Join("crds", dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Errorf("crds/%s has no YAML", dir)
		}
		for _, f := range files {
			want = append(want, filepath.ToSlash(strings.TrimPrefix(f, "crds"+string(filepath.Separator))))
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("crds/kustomization.yaml resources:\n%s\nwant the files of gateway-api/standard, mcs-api and causeway:\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestInstall installs Causeway as docs/install.md says, on one real
// kube-apiserver: the CRDs, then the dev overlay, then the production
// overlay over it (an upgrade), each with server-side apply and strict
// server-side field validation, and checks what the apiserver stored and
// what the control plane's service account may do.
func TestInstall(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	kbin := requireKubectl(t)
	start := time.Now()
	// No Gateway API CRDs from the harness: the install brings its own.
	c := testcluster.Start(t, testcluster.Options{Name: "manifests", GatewayAPIChannel: testcluster.ChannelNone})
	t.Logf("cluster ready in %v", time.Since(start).Round(time.Millisecond))
	k := kubectl{bin: kbin, kubeconfig: c.Kubeconfig, cacheDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	step := time.Now()
	if _, _, err := k.run(ctx, "apply", "--server-side", "--field-manager="+fieldManager, "-k", "crds"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.run(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		t.Fatal(err)
	}
	// The generated CRD's short name and printer columns are served.
	if out, _, err := k.run(ctx, "get", "authzpolicy", "-A"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("kubectl get authzpolicy: %q, %v", out, err)
	}
	t.Logf("CRDs applied and Established in %v", time.Since(step).Round(time.Millisecond))

	for _, ov := range []overlay{
		{name: "dev", replicas: 1, cluster: "dev"},
		{name: "production", replicas: 2, cluster: "cluster-1", production: true},
	} {
		ok := t.Run(ov.name, func(t *testing.T) {
			step := time.Now()
			_, stderr, err := k.run(ctx, "apply", "--server-side", "--validate=strict", "--field-manager="+fieldManager, "-k", filepath.Join("overlays", ov.name))
			if err != nil {
				t.Fatal(err)
			}
			// Warnings would be Pod Security "restricted" violations,
			// unknown fields or deprecated APIs.
			if strings.Contains(stderr, "Warning") {
				t.Errorf("kubectl apply -k overlays/%s warned:\n%s", ov.name, stderr)
			}
			t.Logf("applied in %v", time.Since(step).Round(time.Millisecond))
			checkWorkloads(ctx, t, c, ov)
			checkWebhook(ctx, t, c)
			checkGatewayClasses(ctx, t, c)
			checkRBACObjects(ctx, t, c)
		})
		if !ok {
			t.FailNow()
		}
	}
	// docs/install.md: the installer patches the webhook's caBundle in; a
	// later apply of the overlay keeps it (server-side apply leaves fields
	// of other managers alone).
	t.Run("caBundle kept on re-apply", func(t *testing.T) {
		const pem = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
		patch := fmt.Sprintf(`[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":%q}]`, base64.StdEncoding.EncodeToString([]byte(pem)))
		if _, _, err := k.run(ctx, "patch", "mutatingwebhookconfiguration", "causeway-injector", "--type=json", "-p", patch); err != nil {
			t.Fatal(err)
		}
		if _, _, err := k.run(ctx, "apply", "--server-side", "--field-manager="+fieldManager, "-k", filepath.Join("overlays", "production")); err != nil {
			t.Fatal(err)
		}
		mwc, err := c.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "causeway-injector", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(mwc.Webhooks[0].ClientConfig.CABundle); got != pem {
			t.Errorf("caBundle after re-applying the overlay: %q, want the patched %q", got, pem)
		}
	})
	t.Run("can-i", func(t *testing.T) {
		step := time.Now()
		checkCanI(ctx, t, k)
		t.Logf("access checks in %v", time.Since(step).Round(time.Millisecond))
	})
	t.Logf("TestInstall: %v in all", time.Since(start).Round(time.Millisecond))
}

type overlay struct {
	name       string
	replicas   int32
	cluster    string // the cluster name its config map sets
	production bool
}

// deployments are the base's Deployments and their container's name.
var deployments = []struct{ name, container, image string }{
	{"causeway", "control-plane", "causeway:dev"},
	{"causeway-ingress", "proxy", "causeway-proxy:dev"},
	{"causeway-eastwest", "proxy", "causeway-proxy:dev"},
}

func checkWorkloads(ctx context.Context, t *testing.T, c *testcluster.Cluster, ov overlay) {
	t.Helper()
	cs := c.Clientset
	for _, d := range deployments {
		dep, err := cs.AppsV1().Deployments(namespace).Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Deployment %s/%s: %v", namespace, d.name, err)
			continue
		}
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != ov.replicas {
			t.Errorf("Deployment %s: replicas %v, want %d", d.name, dep.Spec.Replicas, ov.replicas)
		}
		ctr := container(dep, d.container)
		if ctr == nil {
			t.Errorf("Deployment %s: no container %q", d.name, d.container)
			continue
		}
		if ctr.Image != d.image {
			t.Errorf("Deployment %s: image %q, want %q", d.name, ctr.Image, d.image)
		}
		res := ctr.Resources
		hasRes := !res.Requests.Cpu().IsZero() && !res.Requests.Memory().IsZero() && !res.Limits.Cpu().IsZero() && !res.Limits.Memory().IsZero()
		if ov.production && !hasRes {
			t.Errorf("Deployment %s: resources %v, want cpu and memory requests and limits in production", d.name, res)
		}
		if !ov.production && (len(res.Requests) > 0 || len(res.Limits) > 0) {
			t.Errorf("Deployment %s: resources %v, want none in dev", d.name, res)
		}
		checkPDB(ctx, t, c, dep, ov.production)
		checkConfigRef(ctx, t, c, dep, ctr, ov.cluster)
	}

	dep, err := cs.AppsV1().Deployments(namespace).Get(ctx, "causeway", metav1.GetOptions{})
	if err != nil {
		return // reported above
	}
	if sa := dep.Spec.Template.Spec.ServiceAccountName; sa != "causeway" {
		t.Errorf("control plane service account %q, want causeway", sa)
	}
	ctr := container(dep, "control-plane")
	for _, arg := range []string{
		"control-plane", "--source=kubernetes", "--cluster=$(CAUSEWAY_CLUSTER)", "--mtls",
		"--ca-secret=causeway-system/causeway-ca",
		"--xds=:15010", "--admin=:15011", "--svid-listen=:15012", "--bundle-listen=:15013",
		"--injector-listen=:15017", "--injector-proxy-image=$(CAUSEWAY_PROXY_IMAGE)",
		"--injector-control-plane=causeway.causeway-system.svc:15010",
	} {
		if !slices.Contains(ctr.Args, arg) {
			t.Errorf("control plane args %q lack %q", ctr.Args, arg)
		}
	}
	wantPorts := map[string]int32{"grpc-xds": 15010, "http-admin": 15011, "grpc-svid": 15012, "https-bundle": 15013, "https-webhook": 15017}
	gotPorts := map[string]int32{}
	for _, p := range ctr.Ports {
		gotPorts[p.Name] = p.ContainerPort
	}
	if fmt.Sprint(gotPorts) != fmt.Sprint(wantPorts) {
		t.Errorf("control plane ports %v, want %v", gotPorts, wantPorts)
	}

	// Services route to the right pods and ports.
	for _, s := range []struct {
		name  string
		ports map[int32]string // port -> targetPort
		owner string           // Deployment whose pods it selects
	}{
		{"causeway", map[int32]string{15010: "grpc-xds", 15011: "http-admin", 15012: "grpc-svid", 15013: "https-bundle"}, "causeway"},
		{"causeway-injector", map[int32]string{443: "https-webhook"}, "causeway"},
		{"causeway-ingress", map[int32]string{80: "http", 443: "https"}, "causeway-ingress"},
		{"causeway-eastwest", map[int32]string{15443: "tls-eastwest"}, "causeway-eastwest"},
	} {
		svc, err := cs.CoreV1().Services(namespace).Get(ctx, s.name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Service %s: %v", s.name, err)
			continue
		}
		got := map[int32]string{}
		for _, p := range svc.Spec.Ports {
			got[p.Port] = p.TargetPort.String()
		}
		if fmt.Sprint(got) != fmt.Sprint(s.ports) {
			t.Errorf("Service %s ports %v, want %v", s.name, got, s.ports)
		}
		owner, err := cs.AppsV1().Deployments(namespace).Get(ctx, s.owner, metav1.GetOptions{})
		if err == nil && !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(owner.Spec.Template.Labels)) {
			t.Errorf("Service %s selector %v does not select the pods of Deployment %s (%v)", s.name, svc.Spec.Selector, s.owner, owner.Spec.Template.Labels)
		}
	}
}

func container(dep *appsv1.Deployment, name string) *corev1.Container {
	for i := range dep.Spec.Template.Spec.Containers {
		if dep.Spec.Template.Spec.Containers[i].Name == name {
			return &dep.Spec.Template.Spec.Containers[i]
		}
	}
	return nil
}

// checkPDB: in production one PodDisruptionBudget covers each Deployment's
// pods; in dev (applied first) there is none.
func checkPDB(ctx context.Context, t *testing.T, c *testcluster.Cluster, dep *appsv1.Deployment, want bool) {
	t.Helper()
	pdbs, err := c.Clientset.PolicyV1().PodDisruptionBudgets(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("list PodDisruptionBudgets: %v", err)
		return
	}
	var covering []string
	for _, p := range pdbs.Items {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Errorf("PodDisruptionBudget %s: %v", p.Name, err)
			continue
		}
		if sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			covering = append(covering, p.Name)
			if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 {
				t.Errorf("PodDisruptionBudget %s: maxUnavailable %v, want 1", p.Name, p.Spec.MaxUnavailable)
			}
		}
	}
	switch {
	case want && len(covering) != 1:
		t.Errorf("Deployment %s: PodDisruptionBudgets %v cover its pods, want exactly one", dep.Name, covering)
	case !want && len(covering) != 0:
		t.Errorf("Deployment %s: PodDisruptionBudgets %v in dev, want none", dep.Name, covering)
	}
}

// checkConfigRef: the generated (hash-suffixed) config map the pods read
// exists and names the overlay's cluster.
func checkConfigRef(ctx context.Context, t *testing.T, c *testcluster.Cluster, dep *appsv1.Deployment, ctr *corev1.Container, cluster string) {
	t.Helper()
	for _, e := range ctr.Env {
		if e.Name != "CAUSEWAY_CLUSTER" {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
			t.Errorf("Deployment %s: CAUSEWAY_CLUSTER is not from a config map", dep.Name)
			return
		}
		ref := e.ValueFrom.ConfigMapKeyRef
		cm, err := c.Clientset.CoreV1().ConfigMaps(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Deployment %s: config map %s: %v", dep.Name, ref.Name, err)
			return
		}
		if got := cm.Data[ref.Key]; got != cluster {
			t.Errorf("Deployment %s: config map %s key %s = %q, want %q", dep.Name, ref.Name, ref.Key, got, cluster)
		}
		return
	}
	t.Errorf("Deployment %s: container %s has no CAUSEWAY_CLUSTER", dep.Name, ctr.Name)
}

func checkWebhook(ctx context.Context, t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	mwc, err := c.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "causeway-injector", metav1.GetOptions{})
	if err != nil {
		t.Errorf("MutatingWebhookConfiguration causeway-injector: %v", err)
		return
	}
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("MutatingWebhookConfiguration causeway-injector has %d webhooks, want 1", len(mwc.Webhooks))
	}
	w := mwc.Webhooks[0]
	svc := w.ClientConfig.Service
	type view struct {
		Service, Path, FailurePolicy, SideEffects, Selector, Rules string
		CABundle                                                   int
	}
	got := view{CABundle: len(w.ClientConfig.CABundle)}
	if svc != nil {
		got.Service = svc.Namespace + "/" + svc.Name
		if svc.Path != nil {
			got.Path = *svc.Path
		}
	}
	if w.FailurePolicy != nil {
		got.FailurePolicy = string(*w.FailurePolicy)
	}
	if w.SideEffects != nil {
		got.SideEffects = string(*w.SideEffects)
	}
	if w.NamespaceSelector != nil {
		got.Selector = metav1.FormatLabelSelector(w.NamespaceSelector)
	}
	for _, r := range w.Rules {
		got.Rules += fmt.Sprintf("%v %v/%v %v;", r.Operations, r.APIGroups, r.APIVersions, r.Resources)
	}
	want := view{
		Service: "causeway-system/causeway-injector", Path: "/inject", FailurePolicy: "Ignore", SideEffects: "None",
		Selector: "causeway.dev/inject=enabled", Rules: "[CREATE] []/[v1] [pods];",
		CABundle: 0, // patched in by the installer
	}
	if got != want {
		t.Errorf("webhook inject.causeway.dev:\n got %+v\nwant %+v", got, want)
	}
}

func checkGatewayClasses(ctx context.Context, t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
	for _, name := range []string{"causeway", "causeway-east-west"} {
		gc, err := c.Dynamic.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("GatewayClass %s: %v", name, err)
			continue
		}
		spec, _ := gc.Object["spec"].(map[string]any)
		got, _ := spec["controllerName"].(string)
		if got != gateway.ControllerName {
			t.Errorf("GatewayClass %s: controllerName %q, want %q", name, got, gateway.ControllerName)
		}
	}
}

// grant is one (group, resource, verb, resourceName) a rule allows.
type grant string

func grants(rules []rbacv1.PolicyRule) []grant {
	var out []grant
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{"*"}
		}
		for _, g := range r.APIGroups {
			if g == "" {
				g = "core"
			}
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, grant(fmt.Sprintf("%s/%s %s %s", g, res, v, n)))
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return slices.Compact(out)
}

// checkRBACObjects compares the control plane's roles with exactly what
// it needs (see base/rbac.yaml): anything more fails on purpose.
func checkRBACObjects(ctx context.Context, t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	rbac := c.Clientset.RbacV1()
	var want []grant
	add := func(group string, resources, verbs []string) {
		for _, r := range resources {
			for _, v := range verbs {
				want = append(want, grant(fmt.Sprintf("%s/%s %s *", group, r, v)))
			}
		}
	}
	lw := []string{"list", "watch"}
	add("core", []string{"services", "pods", "nodes", "namespaces"}, lw)
	add("discovery.k8s.io", []string{"endpointslices"}, lw)
	add("multicluster.x-k8s.io", []string{"serviceexports", "serviceimports"}, lw)
	add("multicluster.x-k8s.io", []string{"serviceimports"}, []string{"get", "create", "update", "delete"}) // federation/mcs
	add("multicluster.x-k8s.io", []string{"serviceexports"}, []string{"get"})
	add("multicluster.x-k8s.io", []string{"serviceimports/status", "serviceexports/status"}, []string{"update"})
	add("security.causeway.dev", []string{"authorizationpolicies"}, lw)
	add("federation.causeway.dev", []string{"peers"}, lw)
	add("federation.causeway.dev", []string{"peers/status"}, []string{"update"})
	routes := []string{"gatewayclasses", "gateways", "httproutes", "grpcroutes", "tlsroutes"}
	add("gateway.networking.k8s.io", routes, []string{"get", "list", "watch"})
	add("gateway.networking.k8s.io", []string{"referencegrants"}, lw)
	var status []string
	for _, r := range routes {
		status = append(status, r+"/status")
	}
	add("gateway.networking.k8s.io", status, []string{"get", "update"})
	add("events.k8s.io", []string{"events"}, []string{"create", "patch"})
	add("core", []string{"configmaps"}, []string{"create", "patch"})
	want = append(want, "admissionregistration.k8s.io/mutatingwebhookconfigurations patch causeway-injector")
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })

	cr, err := rbac.ClusterRoles().Get(ctx, "causeway-control-plane", metav1.GetOptions{})
	if err != nil {
		t.Errorf("ClusterRole causeway-control-plane: %v", err)
	} else if got := grants(cr.Rules); !slices.Equal(got, want) {
		t.Errorf("ClusterRole causeway-control-plane is not exactly what the control plane needs (update base/rbac.yaml and this test together):\nmore than needed:\n%smissing:\n%s",
			joinGrants(minus(got, want)), joinGrants(minus(want, got)))
	}
	role, err := rbac.Roles(namespace).Get(ctx, "causeway-ca-reader", metav1.GetOptions{})
	if err != nil {
		t.Errorf("Role causeway-ca-reader: %v", err)
	} else if got, want := grants(role.Rules), []grant{"core/secrets get causeway-ca"}; !slices.Equal(got, want) {
		t.Errorf("Role %s/causeway-ca-reader grants %v, want exactly %v", namespace, got, want)
	}

	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: "causeway", Namespace: namespace}
	for _, b := range []struct{ name, role string }{
		{"causeway-control-plane", "causeway-control-plane"},
		{"causeway-control-plane:auth-delegator", "system:auth-delegator"},
	} {
		crb, err := rbac.ClusterRoleBindings().Get(ctx, b.name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("ClusterRoleBinding %s: %v", b.name, err)
			continue
		}
		if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != b.role || !slices.Equal(crb.Subjects, []rbacv1.Subject{sa}) {
			t.Errorf("ClusterRoleBinding %s: %v to %v, want ClusterRole %s to %v", b.name, crb.RoleRef, crb.Subjects, b.role, sa)
		}
	}
	rb, err := rbac.RoleBindings(namespace).Get(ctx, "causeway-ca-reader", metav1.GetOptions{})
	if err != nil {
		t.Errorf("RoleBinding causeway-ca-reader: %v", err)
	} else if rb.RoleRef.Name != "causeway-ca-reader" || !slices.Equal(rb.Subjects, []rbacv1.Subject{sa}) {
		t.Errorf("RoleBinding causeway-ca-reader: %v to %v", rb.RoleRef, rb.Subjects)
	}
}

// minus returns the grants of a not in b.
func minus(a, b []grant) []grant {
	var out []grant
	for _, g := range a {
		if !slices.Contains(b, g) {
			out = append(out, g)
		}
	}
	return out
}

func joinGrants(gs []grant) string {
	if len(gs) == 0 {
		return "  (none)\n"
	}
	var b strings.Builder
	for _, g := range gs {
		b.WriteString("  " + string(g) + "\n")
	}
	return b.String()
}

// checkCanI asks the apiserver's authorizer, impersonating the service
// accounts, what they may do: the least-privilege promise of base/rbac.yaml.
func checkCanI(ctx context.Context, t *testing.T, k kubectl) {
	tests := []struct {
		as   string
		args []string // kubectl auth can-i <args>
		want bool
	}{
		// What the control plane needs.
		{controlPlaneSA, []string{"list", "pods", "-A"}, true},
		{controlPlaneSA, []string{"watch", "services", "-A"}, true},
		{controlPlaneSA, []string{"watch", "nodes"}, true},
		{controlPlaneSA, []string{"watch", "endpointslices.discovery.k8s.io", "-A"}, true},
		{controlPlaneSA, []string{"watch", "serviceexports.multicluster.x-k8s.io", "-A"}, true},
		{controlPlaneSA, []string{"list", "authorizationpolicies.security.causeway.dev", "-A"}, true},
		{controlPlaneSA, []string{"watch", "httproutes.gateway.networking.k8s.io", "-A"}, true},
		{controlPlaneSA, []string{"update", "gateways.gateway.networking.k8s.io", "--subresource=status", "-n", "shop"}, true},
		{controlPlaneSA, []string{"create", "tokenreviews.authentication.k8s.io"}, true},
		{controlPlaneSA, []string{"get", "secret/causeway-ca", "-n", namespace}, true},
		{controlPlaneSA, []string{"patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/causeway-injector"}, true},
		{controlPlaneSA, []string{"create", "events.events.k8s.io", "-n", "shop"}, true},
		{controlPlaneSA, []string{"patch", "configmap/causeway-trust-bundle", "-n", "shop"}, true},
		// What it must not do.
		{controlPlaneSA, []string{"delete", "pods", "-n", "default"}, false},
		{controlPlaneSA, []string{"create", "pods", "-n", namespace}, false},
		{controlPlaneSA, []string{"create", "pods", "--subresource=exec", "-n", "default"}, false},
		{controlPlaneSA, []string{"get", "secrets", "-n", "default"}, false},
		{controlPlaneSA, []string{"list", "secrets", "-A"}, false},
		{controlPlaneSA, []string{"list", "secrets", "-n", namespace}, false},
		{controlPlaneSA, []string{"get", "secret/other", "-n", namespace}, false},
		{controlPlaneSA, []string{"update", "secret/causeway-ca", "-n", namespace}, false},
		{controlPlaneSA, []string{"update", "gateways.gateway.networking.k8s.io", "-n", "shop"}, false},
		{controlPlaneSA, []string{"patch", "httproutes.gateway.networking.k8s.io", "-n", "shop"}, false},
		{controlPlaneSA, []string{"create", "serviceimports.multicluster.x-k8s.io", "-n", "shop"}, true}, // federation/mcs
		{controlPlaneSA, []string{"update", "serviceexports.multicluster.x-k8s.io", "-n", "shop"}, false},
		{controlPlaneSA, []string{"update", "serviceexports.multicluster.x-k8s.io", "--subresource=status", "-n", "shop"}, true},
		{controlPlaneSA, []string{"update", "services", "-n", "shop"}, false},
		{controlPlaneSA, []string{"patch", "deployments.apps", "-n", namespace}, false},
		{controlPlaneSA, []string{"get", "configmaps", "-n", "kube-system"}, false},
		{controlPlaneSA, []string{"list", "configmaps", "-A"}, false},
		{controlPlaneSA, []string{"delete", "configmap/causeway-trust-bundle", "-n", "shop"}, false},
		{controlPlaneSA, []string{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io"}, false},
		{controlPlaneSA, []string{"patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/other"}, false},
		{controlPlaneSA, []string{"create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"}, false},
		{controlPlaneSA, []string{"delete", "mutatingwebhookconfigurations.admissionregistration.k8s.io/causeway-injector"}, false},
		{controlPlaneSA, []string{"patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/causeway-injector"}, false},
		{controlPlaneSA, []string{"create", "events", "-n", "shop"}, false},
		{controlPlaneSA, []string{"escalate", "clusterroles.rbac.authorization.k8s.io"}, false},
		{controlPlaneSA, []string{"*", "*"}, false},
		// The gateways need no API access at all.
		{gatewaySA, []string{"list", "pods", "-A"}, false},
		{gatewaySA, []string{"get", "secret/causeway-ca", "-n", namespace}, false},
		{gatewaySA, []string{"create", "tokenreviews.authentication.k8s.io"}, false},
	}
	// kubectl is mostly start-up time: run a few at once.
	errs := make([]error, len(tests))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, tc := range tests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			user := tc.as[strings.LastIndex(tc.as, ":")+1:]
			args := append(append([]string{"auth", "can-i"}, tc.args...), "--as="+tc.as)
			out, _, err := k.run(ctx, args...)
			// can-i exits 1 for "no": that is an answer, not an error.
			var exit *exec.ExitError
			if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1 && strings.TrimSpace(out) == "no") {
				errs[i] = fmt.Errorf("%s: can-i %s: %w", user, strings.Join(tc.args, " "), err)
				return
			}
			if got := strings.TrimSpace(out) == "yes"; got != tc.want {
				errs[i] = fmt.Errorf("%s can-i %s = %v, want %v", user, strings.Join(tc.args, " "), got, tc.want)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

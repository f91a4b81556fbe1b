package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/testcluster"
)

const goodYAML = `
apiVersion: security.causeway.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: cart-readers, namespace: shop}
spec:
  targetRefs: [{kind: Service, name: cart}]
  action: Allow
  rules:
  - from:
    - namespace: web
    - namespace: web
      trustDomain: west.example
    - spiffeID: spiffe://east.example/ns/ops/sa/admin
    - trustDomain: partner.example
    to:
    - ports: [8080]
      methods: [GET]
      paths: [/items, "/items/*"]
`

func decode(t *testing.T, s string) *AuthorizationPolicy {
	t.Helper()
	var p AuthorizationPolicy
	if err := yaml.UnmarshalStrict([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestToModel(t *testing.T) {
	got, err := ToModel(decode(t, goodYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := model.AuthorizationPolicy{Namespace: "shop", Name: "cart-readers", Services: []string{"cart"}, Action: model.AuthzAllow,
		Rules: []model.AuthzRule{{
			From: []model.AuthzSource{{Namespace: "web"}, {Namespace: "web", TrustDomainOfNamespace: "west.example"},
				{SPIFFEID: "spiffe://east.example/ns/ops/sa/admin"}, {TrustDomain: "partner.example"}},
			To: []model.AuthzOperation{{Ports: []uint32{8080}, Methods: []string{"GET"}, Paths: []string{"/items", "/items/*"}}},
		}}}
	if !got.Equal(&want) {
		t.Errorf("ToModel =\n%+v\nwant\n%+v", got, want)
	}

	for _, tc := range []struct {
		name, edit string // edit replaces a line of goodYAML
		old        string
		want       []string
	}{
		{"bad action", "  action: Permit", "  action: Allow", []string{`AuthorizationPolicy shop/cart-readers: spec.action: "Permit": must be "Allow" or "Deny"`}},
		{"targets a Deployment", "  targetRefs: [{group: apps, kind: Deployment, name: cart}]", "  targetRefs: [{kind: Service, name: cart}]",
			[]string{`spec.targetRefs[0]: "apps/Deployment": only Services`}},
		{"two kinds of source", "    - spiffeID: spiffe://east.example/ns/ops/sa/admin\n      namespace: ops", "    - spiffeID: spiffe://east.example/ns/ops/sa/admin",
			[]string{"spec.rules[0].from[2]", "set exactly one of spiffeID, trustDomain and namespace"}},
		{"not a SPIFFE ID", "    - spiffeID: east.example/ns/ops", "    - spiffeID: spiffe://east.example/ns/ops/sa/admin",
			[]string{`spec.rules[0].from[2].spiffeID: "east.example/ns/ops": must start with "spiffe://"`}},
		{"port 0 and lower-case method", "    - ports: [0]\n      methods: [get]", "    - ports: [8080]\n      methods: [GET]",
			[]string{`spec.rules[0].to[0].ports[0]: "0": must be a port`, `spec.rules[0].to[0].methods[0]: "get": must be an upper-case HTTP method`}},
		{"inner wildcard", `      paths: [/items, "/i*ms"]`, `      paths: [/items, "/items/*"]`, []string{`spec.rules[0].to[0].paths[1]: "/i*ms"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(goodYAML, tc.old, tc.edit, 1)
			if y == goodYAML {
				t.Fatal("edit did not apply")
			}
			_, err := ToModel(decode(t, y))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestCRDOnRealAPIServer applies the CRD's own validation on a real
// kube-apiserver (the test cluster installs manifests/crds/causeway): a
// good policy is stored and reads back into the same model; bad ones are
// refused by the apiserver with the field named.
func TestCRDOnRealAPIServer(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	c := testcluster.Start(t, testcluster.Options{Name: "policy", GatewayAPIChannel: testcluster.ChannelNone})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Apply(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")); err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}
	create := func(y string) (*unstructured.Unstructured, error) {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(y), &obj); err != nil {
			t.Fatal(err)
		}
		return c.Dynamic.Resource(gvr).Namespace("shop").Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	}
	u, err := create(goodYAML)
	if err != nil {
		t.Fatalf("the apiserver refused a good policy: %v", err)
	}
	var back AuthorizationPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &back); err != nil {
		t.Fatal(err)
	}
	got, err := ToModel(&back)
	want, _ := ToModel(decode(t, goodYAML))
	if err != nil || !got.Equal(&want) {
		t.Errorf("stored policy reads back as %+v (err %v), want %+v", got, err, want)
	}
	for _, tc := range []struct{ name, old, edit, want string }{
		{"action", "  action: Allow", "  action: Permit", `spec.action: Unsupported value: "Permit"`},
		{"source with two kinds", "    - spiffeID: spiffe://east.example/ns/ops/sa/admin", "    - spiffeID: spiffe://east.example/ns/ops/sa/admin\n      namespace: ops", "set spiffeID, trustDomain or namespace"},
		{"port", "    - ports: [8080]", "    - ports: [70000]", "spec.rules[0].to[0].ports[0]"},
		{"kind", "  targetRefs: [{kind: Service, name: cart}]", "  targetRefs: [{kind: Deployment, name: cart}]", `spec.targetRefs[0].kind: Unsupported value: "Deployment"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(strings.Replace(goodYAML, "name: cart-readers", "name: bad-"+strings.ReplaceAll(tc.name, " ", "-"), 1), tc.old, tc.edit, 1)
			_, err := create(y)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

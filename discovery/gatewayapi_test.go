package discovery

import (
	"strings"
	"testing"
)

// TestCheckFileGatewayAPI: the Folder decodes Gateway API documents and
// ServiceImports strictly (it does not model them), so a bad one rejects
// its file, naming the document and object.
func TestCheckFileGatewayAPI(t *testing.T) {
	const route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec: {parentRefs: [{kind: Service, group: \"\", name: web}]}\n"
	for _, tc := range []struct {
		name, data, want string
	}{
		{"good route", route, ""},
		{"good route v1beta1", strings.Replace(route, "/v1\n", "/v1beta1\n", 1), ""},
		{"route with an unknown field", strings.Replace(route, "parentRefs", "parents", 1),
			`f.yaml: document 1: HTTPRoute shop/r: does not decode as gateway.networking.k8s.io/v1 HTTPRoute: json: unknown field "parents"`},
		{"GatewayClass is cluster-scoped", "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: c}\nspec: {controllerName: x/y, bogus: 1}\n",
			`f.yaml: document 1: GatewayClass c: does not decode as gateway.networking.k8s.io/v1 GatewayClass: json: unknown field "bogus"`},
		{"ServiceImport, default namespace", "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {name: web}\nspec: {type: ClusterSetIP, ports: [{port: 80, protocol: TCP}], extra: true}\n",
			`f.yaml: document 1: ServiceImport default/web: does not decode as multicluster.x-k8s.io/v1alpha1 ServiceImport: json: unknown field "extra"`},
		{"other kinds are skipped", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {whatever: 1}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := CheckFile("f.yaml", []byte(tc.data))
			var got string
			if len(ps) > 0 {
				got = ps[0].Error()
			}
			if len(ps) > 1 || got != tc.want {
				t.Fatalf("CheckFile: %v, want %q", ps, tc.want)
			}
		})
	}
}

package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func review(op admissionv1.Operation, kind, ns string, raw []byte) []byte {
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("uid-1"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: kind},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: strings.ToLower(kind) + "s"},
			Namespace: ns,
			Operation: op,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	b, _ := json.Marshal(r)
	return b
}

func podJSON(t testing.TB, y string) []byte {
	t.Helper()
	b, err := json.Marshal(mustPod(t, y))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var namespaces = NamespaceFunc(func(_ context.Context, name string) (*corev1.Namespace, error) {
	switch name {
	case "shop":
		return meshed, nil
	case "plain":
		return plain, nil
	}
	return nil, errors.New("namespaces \"" + name + "\" not found")
})

func serve(t *testing.T, h http.Handler, method string, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "/inject", bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v\n%s", err, rec.Body)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("response review: %+v", out)
	}
	if !out.Response.Allowed {
		t.Fatalf("response denies the pod: %+v", out.Response)
	}
	return out.Response
}

func TestHandler(t *testing.T) {
	// A field this build of the API types does not know must survive the
	// patch: the apiserver applies it to its own encoding of the pod.
	withFuture := func(raw []byte) []byte {
		return bytes.Replace(raw, []byte(`"spec":{`), []byte(`"spec":{"futureField":{"x":1},`), 1)
	}
	hostNet := `
metadata: {name: agent, namespace: shop}
spec: {hostNetwork: true, containers: [{name: agent, image: agent:1}]}`
	tests := []struct {
		name    string
		body    []byte
		ns      NamespaceGetter
		inject  string // the pod YAML the patch must reproduce Pod's result for
		warning string // substring of the one expected warning; "" for none
		uid     types.UID
		result  string
		reason  string
		noPatch bool
	}{
		{name: "injected", body: review(admissionv1.Create, "Pod", "shop", withFuture(podJSON(t, basicPod))), ns: namespaces, inject: basicPod, uid: "uid-1", result: resultInjected},
		{name: "generateName without namespace", ns: namespaces, uid: "uid-1", result: resultInjected,
			inject: "metadata: {generateName: web-, labels: {app: web}}\nspec: {containers: [{name: web, image: web:1}]}",
			body:   review(admissionv1.Create, "Pod", "shop", podJSON(t, "metadata: {generateName: web-, labels: {app: web}}\nspec: {containers: [{name: web, image: web:1}]}"))},
		{name: "no namespace getter trusts the selector", body: review(admissionv1.Create, "Pod", "plain", podJSON(t, basicPod)), inject: basicPod, uid: "uid-1", result: resultInjected},
		{name: "not selected", body: review(admissionv1.Create, "Pod", "plain", podJSON(t, "metadata: {name: w}\nspec: {containers: [{name: w, image: w}]}")), ns: namespaces, uid: "uid-1", result: resultSkipped, reason: skipNotSelected, noPatch: true},
		{name: "opt-out has no warning", body: review(admissionv1.Create, "Pod", "shop", podJSON(t, podCases[3].pod)), ns: namespaces, uid: "uid-1", result: resultSkipped, reason: skipOptOut, noPatch: true},
		{name: "hostNetwork warns", body: review(admissionv1.Create, "Pod", "shop", podJSON(t, hostNet)), ns: namespaces, warning: "hostNetwork", uid: "uid-1", result: resultSkipped, reason: skipHostNetwork, noPatch: true},
		{name: "update ignored", body: review(admissionv1.Update, "Pod", "shop", podJSON(t, basicPod)), ns: namespaces, uid: "uid-1", result: resultIgnored, reason: "not_create", noPatch: true},
		{name: "not a pod", body: review(admissionv1.Create, "Service", "shop", []byte(`{"spec":{}}`)), ns: namespaces, uid: "uid-1", result: resultIgnored, reason: "not_a_pod", noPatch: true},
		{name: "malformed body", body: []byte("{not json"), warning: "not an admission.k8s.io/v1 AdmissionReview", result: resultError, reason: "malformed_request", noPatch: true},
		{name: "no request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), warning: "has no request", result: resultError, reason: "malformed_request", noPatch: true},
		{name: "malformed pod", body: review(admissionv1.Create, "Pod", "shop", []byte(`{"spec":{"containers":"nope"}}`)), ns: namespaces, warning: "does not decode as a v1 Pod", uid: "uid-1", result: resultError, reason: "malformed_pod", noPatch: true},
		{name: "namespace lookup fails", body: review(admissionv1.Create, "Pod", "gone", podJSON(t, basicPod)), ns: namespaces, warning: `looking up namespace gone: namespaces "gone" not found`, uid: "uid-1", result: resultError, reason: "namespace_lookup", noPatch: true},
		{name: "panic is admitted", body: review(admissionv1.Create, "Pod", "shop", podJSON(t, basicPod)), warning: "internal error: boom", uid: "uid-1", result: resultError, reason: "panic", noPatch: true,
			ns: NamespaceFunc(func(context.Context, string) (*corev1.Namespace, error) { panic("boom") })},
		{name: "pod spec it cannot handle", ns: namespaces, warning: `named port "web" is not among`, uid: "uid-1", result: resultError, reason: "pod_spec", noPatch: true,
			body: review(admissionv1.Create, "Pod", "shop", podJSON(t, "metadata: {name: p}\nspec: {containers: [{name: a, image: a, readinessProbe: {httpGet: {port: web}}}]}"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h, err := NewHandler(testConfig(), HandlerOptions{Namespaces: tc.ns, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			resp := serve(t, h, http.MethodPost, tc.body)
			if resp.UID != tc.uid {
				t.Errorf("uid = %q, want %q", resp.UID, tc.uid)
			}
			switch {
			case tc.warning == "" && len(resp.Warnings) > 0:
				t.Errorf("warnings %q, want none", resp.Warnings)
			case tc.warning != "" && (len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tc.warning)):
				t.Errorf("warnings %q, want one containing %q", resp.Warnings, tc.warning)
			}
			if tc.noPatch != (resp.Patch == nil) {
				t.Fatalf("patch = %s, want patch: %v", resp.Patch, !tc.noPatch)
			}
			if got := testutil.ToFloat64(h.metrics.admissions.WithLabelValues(tc.result, tc.reason)); got != 1 {
				t.Errorf("causeway_injector_admissions_total{result=%q,reason=%q} = %v, want 1", tc.result, tc.reason, got)
			}
			if n, err := testutil.GatherAndCount(reg, "causeway_injector_admission_duration_seconds"); err != nil || n != 1 {
				t.Errorf("duration histogram: %d series, %v", n, err)
			}
			if tc.inject == "" {
				return
			}
			if *resp.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patchType %q", *resp.PatchType)
			}
			var ops []patchOp
			var rawOps []map[string]any
			if err := json.Unmarshal(resp.Patch, &rawOps); err != nil {
				t.Fatalf("patch: %v", err)
			}
			for _, o := range rawOps {
				if o["op"] != "add" && o["op"] != "replace" {
					t.Errorf("patch has a %v operation at %v; injection only adds and replaces", o["op"], o["path"])
				}
				ops = append(ops, patchOp{Op: o["op"].(string), Path: o["path"].(string), Value: o["value"]})
			}
			var req admissionv1.AdmissionReview
			_ = json.Unmarshal(tc.body, &req)
			doc, err := decodeJSONTree(req.Request.Object.Raw)
			if err != nil {
				t.Fatal(err)
			}
			doc, err = applyPatch(doc, ops, false)
			if err != nil {
				t.Fatalf("patch does not apply to the request's object: %v", err)
			}
			if spec := doc.(map[string]any)["spec"].(map[string]any); spec["futureField"] == nil && bytes.Contains(req.Request.Object.Raw, []byte("futureField")) {
				t.Errorf("the patch dropped a field it does not know")
			}
			patchedJSON, _ := json.Marshal(doc)
			var got corev1.Pod
			if err := json.Unmarshal(patchedJSON, &got); err != nil {
				t.Fatal(err)
			}
			want, _, err := Pod(mustPod(t, tc.inject), meshed, testConfig())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, &got); diff != "" {
				t.Errorf("patched pod differs from Pod's result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHandlerMethod(t *testing.T) {
	h, err := NewHandler(testConfig(), HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/inject", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: status %d, want 405", rec.Code)
	}
}

func TestNewHandlerErrors(t *testing.T) {
	bad := testConfig()
	bad.ControlPlane = "no-port"
	if _, err := NewHandler(bad, HandlerOptions{}); err == nil || !strings.Contains(err.Error(), `Config.ControlPlane "no-port": want host:port`) {
		t.Fatalf("bad config: %v", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := NewHandler(testConfig(), HandlerOptions{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHandler(testConfig(), HandlerOptions{Registerer: reg}); err == nil {
		t.Fatal("registering the metrics twice on one registry: no error")
	}
}

func TestDiffApply(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"equal", `{"a":[1,2]}`, `{"a":[1,2]}`},
		{"member add remove replace", `{"a":1,"b":{"c":2},"d/e":3}`, `{"a":2,"b":{},"x~y":[1]}`},
		{"array prepend", `[3,4]`, `[1,2,3,4]`},
		{"array append", `[1]`, `[1,2,3]`},
		{"array middle change", `[1,{"a":1},3]`, `[1,{"a":2},3]`},
		{"array shrink", `[1,2,3,4]`, `[1,4]`},
		{"array change and grow", `[{"a":1}]`, `[{"a":2},{"b":1},5]`},
		{"type change", `{"a":[1]}`, `{"a":{"b":1}}`},
		{"null value", `{"a":1}`, `{"a":null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := decodeJSONTree([]byte(tc.a))
			b, _ := decodeJSONTree([]byte(tc.b))
			ops := diffJSON(a, b)
			if tc.a == tc.b && len(ops) != 0 {
				t.Fatalf("ops for equal documents: %v", ops)
			}
			// Round-trip the ops through JSON as the apiserver would.
			pj, _ := json.Marshal(ops)
			var raw []map[string]any
			if err := json.Unmarshal(pj, &raw); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
			for _, o := range raw {
				ops = append(ops, patchOp{Op: o["op"].(string), Path: o["path"].(string), Value: o["value"]})
			}
			a, _ = decodeJSONTree([]byte(tc.a))
			got, err := applyPatch(a, ops, false)
			if err != nil {
				t.Fatalf("apply %s: %v", pj, err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(b)
			if string(gj) != string(wj) {
				t.Fatalf("patch %s gives %s, want %s", pj, gj, wj)
			}
		})
	}
}

func BenchmarkHandler(b *testing.B) {
	h, err := NewHandler(testConfig(), HandlerOptions{Namespaces: namespaces})
	if err != nil {
		b.Fatal(err)
	}
	body := review(admissionv1.Create, "Pod", "shop", podJSON(b, podCases[8].pod))
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

package inject

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestManifestsGolden(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "manifests", "in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	skipped, err := ManifestsReport(bytes.NewReader(in), &out, testConfig())
	if err != nil {
		t.Fatalf("Manifests: %v", err)
	}
	golden(t, filepath.Join("testdata", "manifests", "out.yaml"), out.Bytes())

	for i := range skipped {
		skipped[i].Reason = strings.SplitN(skipped[i].Reason, ":", 2)[0]
	}
	wantSkipped := []Skipped{
		{Document: 5, Kind: "DaemonSet", Namespace: "shop", Name: "agent", Reason: "hostNetwork"},
		{Document: 9, Kind: "Deployment", Namespace: "shop", Name: "legacy", Reason: "opt-out"},
	}
	if diff := cmp.Diff(wantSkipped, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}

	// Every document but the injected ones is byte for byte the same, and
	// so is every separator.
	injected := map[int]bool{3: true, 4: true, 6: true, 7: true, 8: true, 10: true}
	ind, outd := splitDocuments(in), splitDocuments(out.Bytes())
	if len(ind) != len(outd) {
		t.Fatalf("%d documents in, %d out", len(ind), len(outd))
	}
	for i := range ind {
		if !bytes.Equal(ind[i].sep, outd[i].sep) {
			t.Errorf("document %d: separator %q became %q", i+1, ind[i].sep, outd[i].sep)
		}
		same := bytes.Equal(ind[i].body, outd[i].body)
		if injected[i+1] == same {
			t.Errorf("document %d: injected=%v but unchanged=%v", i+1, injected[i+1], same)
		}
		if injected[i+1] && !bytes.Contains(outd[i].body, []byte("name: "+ProxyContainerName)) {
			t.Errorf("document %d: no sidecar in\n%s", i+1, outd[i].body)
		}
	}
	if !bytes.Contains(out.Bytes(), []byte("futureField: kept")) {
		t.Error("a field unknown to the API types was dropped from an injected document")
	}

	// Injecting the output again changes nothing.
	var again bytes.Buffer
	if err := Manifests(bytes.NewReader(out.Bytes()), &again, testConfig()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(out.String(), again.String()); diff != "" {
		t.Errorf("second injection changed the manifests (-once +twice):\n%s", diff)
	}
}

func TestManifestsErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"bad yaml", "apiVersion: v1\nkind: Service\n---\napiVersion: apps/v1\nkind: Deployment\nspec: [\n", "manifests document 2: not valid YAML"},
		{"bad annotation", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template:\n    metadata: {annotations: {causeway.dev/inject: maybe}}\n    spec: {containers: [{name: a, image: a}]}\n",
			`manifests document 1 (Deployment shop/web): inject: pod shop/web: pod annotation causeway.dev/inject: "maybe"`},
		{"no template", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n", "manifests document 1 (Deployment web): spec.template is missing"},
		{"bad template", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {spec: {containers: 3}}}\n", "manifests document 1 (Job j): spec.template does not decode as a pod template"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Manifests(strings.NewReader(tc.in), &bytes.Buffer{}, testConfig())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		in   string
		docs int
	}{
		{"", 0},
		{"a: 1\n", 1},
		{"---\na: 1\n", 1},
		{"a: 1\n---\nb: 2", 2},
		{"a: 1\n--- # c\r\nb: 2\n---\n", 3},
		{"a: |\n  ---\n----\n---x\n", 1},
	}
	for _, tc := range tests {
		docs := splitDocuments([]byte(tc.in))
		var b strings.Builder
		for _, d := range docs {
			b.Write(d.sep)
			b.Write(d.body)
		}
		if b.String() != tc.in || len(docs) != tc.docs {
			t.Errorf("splitDocuments(%q): %d documents joining to %q; want %d joining to the input", tc.in, len(docs), b.String(), tc.docs)
		}
	}
}

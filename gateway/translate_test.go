package gateway

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*/out.golden")

// TestGolden translates testdata/<case>/in.yaml and compares the printed
// output with out.golden (go test ./gateway -run Golden -update rewrites).
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 15 {
		t.Fatalf("found %d golden cases, want at least 15", len(dirs))
	}
	for _, in := range dirs {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			input, err := DecodeYAML(data)
			if err != nil {
				t.Fatalf("DecodeYAML: %v", err)
			}
			input.Now = time.Unix(0, 0)
			out, err := Translate(input)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			got := out.String()
			// Determinism: the same input in reverse order gives the same output.
			out2, _ := Translate(reversed(input))
			if got2 := out2.String(); got2 != got {
				t.Errorf("output depends on input order (-forward +reversed):\n%s", cmp.Diff(got, got2))
			}
			golden := filepath.Join(dir, "out.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", golden, d)
			}
			for i := range out.Routes {
				if !out.Routes[i].Equal(out2.Routes[i]) {
					t.Errorf("route table %d: Equal is false for equal tables", i)
				}
			}
		})
	}
}

func rev[T any](s []T) []T {
	out := make([]T, len(s))
	for i := range s {
		out[len(s)-1-i] = s[i]
	}
	return out
}

func reversed(in Input) Input {
	in.GatewayClasses = rev(in.GatewayClasses)
	in.Gateways = rev(in.Gateways)
	in.HTTPRoutes = rev(in.HTTPRoutes)
	in.GRPCRoutes = rev(in.GRPCRoutes)
	in.TLSRoutes = rev(in.TLSRoutes)
	in.ReferenceGrants = rev(in.ReferenceGrants)
	in.Services = rev(in.Services)
	in.ServiceImports = rev(in.ServiceImports)
	in.Namespaces = rev(in.Namespaces)
	in.Secrets = rev(in.Secrets)
	return in
}

func TestTranslateBadControllerName(t *testing.T) {
	for _, name := range []string{"nodomain", "/path", "a b/c"} {
		if _, err := Translate(Input{ControllerName: name}); err == nil {
			t.Errorf("ControllerName %q: no error", name)
		}
	}
}

func TestIntersectHostnames(t *testing.T) {
	tests := []struct {
		listener string
		route    []string
		want     []string
	}{
		{"", nil, []string{"*"}},
		{"a.example.com", nil, []string{"a.example.com"}},
		{"", []string{"b.com", "a.com"}, []string{"a.com", "b.com"}},
		{"*.example.com", []string{"a.example.com", "x.other.com", "*.b.example.com"}, []string{"*.b.example.com", "a.example.com"}},
		{"a.example.com", []string{"*.example.com"}, []string{"a.example.com"}},
		{"a.example.com", []string{"*.other.com", "b.example.com"}, nil},
		{"*.example.com", []string{"example.com"}, nil},
		{"*.example.com", []string{"*.com"}, []string{"*.example.com"}},
	}
	for _, tt := range tests {
		var hs []gatewayv1.Hostname
		for _, h := range tt.route {
			hs = append(hs, gatewayv1.Hostname(h))
		}
		got := intersectHostnames(tt.listener, hs)
		if !cmp.Equal(got, tt.want) {
			t.Errorf("intersect(%q, %v) = %v, want %v", tt.listener, tt.route, got, tt.want)
		}
	}
}

func FuzzTranslateYAML(f *testing.F) {
	dirs, _ := filepath.Glob("testdata/*/in.yaml")
	for _, d := range dirs {
		if data, err := os.ReadFile(d); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := DecodeYAML(data)
		if err != nil {
			return
		}
		out, err := Translate(in)
		if err != nil {
			t.Fatalf("Translate: %v", err)
		}
		_ = out.String()
		out2, _ := Translate(reversed(in))
		if out.String() != out2.String() {
			t.Fatalf("nondeterministic output")
		}
	})
}

func BenchmarkTranslate(b *testing.B) {
	data, err := os.ReadFile("testdata/precedence/in.yaml")
	if err != nil {
		b.Fatal(err)
	}
	in, err := DecodeYAML(data)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Translate(in); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeYAMLRefusesDuplicates(t *testing.T) {
	doc := `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec: {rules: [{backendRefs: [{name: web, port: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec: {rules: [{backendRefs: [{name: other, port: 80}]}]}
`
	_, err := DecodeYAML([]byte(doc))
	want := "document 3: HTTPRoute shop/web is already defined in document 1; remove or rename one of them"
	if err == nil || err.Error() != want {
		t.Fatalf("DecodeYAML error = %v, want %q", err, want)
	}
	// The same name in another namespace, or of another kind, is another object.
	if _, err := DecodeYAML([]byte(strings.Replace(doc, "name: web, namespace: shop}\nspec: {rules: [{backendRefs: [{name: other", "name: web, namespace: other}\nspec: {rules: [{backendRefs: [{name: other", 1))); err != nil {
		t.Fatalf("DecodeYAML with distinct objects: %v", err)
	}
}

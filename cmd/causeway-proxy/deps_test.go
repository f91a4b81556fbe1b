package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// leanBuild is how make build and bench/run.sh build the proxy: no cgo and
// no grpc request tracing (docs/benchmarks.md, "Sidecar hot path").
var leanBuild = struct {
	env  []string
	tags string
}{env: []string{"CGO_ENABLED=0"}, tags: "grpcnotrace"}

func goListDeps(t *testing.T, env []string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps"}, append(args, ".")...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.Fields(string(out))
}

// TestProxyStaysLean fails if the data-plane binary grows a dependency on
// client-go (the control plane's business), on package testing, on the
// control plane's code, on go-control-plane or any other Go package of the
// Envoy API (the sidecar decodes xDS with proxy/leanxds: every linked proto
// file registers its descriptors at start-up and costs resident memory in
// every sidecar), or, as make build builds it, on packages that only cost
// resident memory.
func TestProxyStaysLean(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"default build", nil, nil},
		{"lean build", leanBuild.env, []string{"-tags", leanBuild.tags}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, dep := range goListDeps(t, tc.env, tc.args...) {
				switch {
				case dep == "testing", strings.HasPrefix(dep, "k8s.io/"):
					t.Errorf("cmd/causeway-proxy depends on %s; the proxy must not link it", dep)
				case dep == "github.com/causewaymesh/causeway/internal/h2grpc": // the sidecar's gRPC client
				case strings.HasPrefix(dep, "github.com/causewaymesh/causeway/internal/"),
					strings.HasPrefix(dep, "github.com/causewaymesh/causeway/controlplane"),
					strings.HasPrefix(dep, "github.com/causewaymesh/causeway/gateway"),
					strings.HasPrefix(dep, "github.com/causewaymesh/causeway/federation"),
					strings.HasPrefix(dep, "github.com/causewaymesh/causeway/discovery"):
					t.Errorf("cmd/causeway-proxy depends on %s, control-plane code; move what the proxy needs behind a package of its own", dep)
				case strings.HasPrefix(dep, "github.com/envoyproxy/"), strings.HasPrefix(dep, "github.com/cncf/xds/"):
					t.Errorf("cmd/causeway-proxy depends on %s; decode xDS with proxy/leanxds (add the message to hack/leanxds/messages.txt)", dep)
				}
				if tc.env == nil {
					continue
				}
				switch dep {
				case "golang.org/x/net/trace", "text/template", "html/template":
					// text/template calls reflect.Value.MethodByName, which makes
					// the linker keep every exported method of every reachable
					// type (4.7 MB of this binary once, mostly proto validators).
					t.Errorf("the lean build of cmd/causeway-proxy links %s; it must not (it keeps every exported method in the binary)", dep)
				case "runtime/cgo":
					t.Errorf("the lean build of cmd/causeway-proxy links runtime/cgo although CGO_ENABLED=0")
				}
			}
		})
	}
}

// TestLeanBuildIsUsed fails if make build or bench/run.sh stops building
// the proxy the lean way.
func TestLeanBuildIsUsed(t *testing.T) {
	for _, f := range []string{"../../Makefile", "../../bench/run.sh"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(line, "./cmd/causeway-proxy") && strings.Contains(line, " build ") {
				found = true
				if !strings.Contains(line, "CGO_ENABLED=0") || !strings.Contains(line, "-tags "+leanBuild.tags) {
					t.Errorf("%s builds the proxy without CGO_ENABLED=0 -tags %s: %q", f, leanBuild.tags, strings.TrimSpace(line))
				}
			}
		}
		if !found {
			t.Errorf("%s: no line builds ./cmd/causeway-proxy", f)
		}
	}
}

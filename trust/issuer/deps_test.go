package issuer

import (
	"os/exec"
	"strings"
	"testing"
)

// TestIssuerStaysLean: the data plane imports this package (Client,
// Rotator), so it must not link client-go; the Kubernetes authenticator lives
// in k8sauth.
func TestIssuerStaysLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "testing", strings.HasPrefix(dep, "k8s.io/"):
			t.Errorf("trust/issuer depends on %s; keep it out of the data plane", dep)
		}
	}
}

package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProxyStaysLean fails if the data-plane binary grows a dependency on
// client-go (the control plane's business) or on package testing.
func TestProxyStaysLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "testing", strings.HasPrefix(dep, "k8s.io/client-go"), strings.HasPrefix(dep, "k8s.io/apimachinery"):
			t.Errorf("cmd/causeway-proxy depends on %s; the proxy must not link it", dep)
		}
	}
}

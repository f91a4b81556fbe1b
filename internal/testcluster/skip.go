package testcluster

import (
	"os"
	"testing"
)

// RequireEnv is the environment variable that turns the skips of
// RequireBinaries and RequireRealPods into failures (CI sets it).
const RequireEnv = "CAUSEWAY_REQUIRE_TESTBINS"

// RequireBinaries skips the test, with the fix in the message, when a
// binary a cluster needs is missing; with $CAUSEWAY_REQUIRE_TESTBINS=1 it
// fails instead. withNodes also requires the node components and kwok.
func RequireBinaries(t testing.TB, withNodes bool) {
	t.Helper()
	dir, err := resolveBinDir("")
	if err == nil {
		names := []string{"etcd", "kube-apiserver"}
		if withNodes {
			names = append(names, "kube-controller-manager", "kube-scheduler", "kwok", "echo-basic")
		}
		for _, n := range names {
			if _, err = binPath(dir, n); err != nil {
				break
			}
		}
	}
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("testcluster: %v", err)
	}
	t.Skipf("testcluster: %v", err)
}

// RequireRealPods skips the test when real pods cannot run here (not root,
// or no iproute2); with $CAUSEWAY_REQUIRE_TESTBINS=1 and root it fails
// instead, since root then means the machine is expected to work.
func RequireRealPods(t testing.TB) {
	t.Helper()
	if err := CanRunRealPods(); err != nil {
		if os.Getenv(RequireEnv) == "1" && os.Geteuid() == 0 {
			t.Fatalf("testcluster: %v", err)
		}
		t.Skipf("testcluster: skipping, %v", err)
	}
}

package main

import "testing"

// TestInitSubcommand: `causeway-proxy init` is causeway-init's program
// (proxy/capture/initcmd), which the injected init container runs.
func TestInitSubcommand(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no iptables: only the dry run may succeed
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"init", "--dry-run", "--capture-dns", "--proxy-uid=1337", "--exclude-inbound-ports=15000"}, 0},
		{[]string{"init", "--bogus"}, 2},
		{[]string{"init", "stray"}, 2},
		{[]string{"init"}, 3}, // iptables not installed
	} {
		if got := run(tc.args); got != tc.want {
			t.Errorf("causeway-proxy %q: exit %d, want %d", tc.args, got, tc.want)
		}
	}
}

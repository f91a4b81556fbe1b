package initcmd

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  []string
	}{
		{"help names the program", []string{"-h"}, ExitOK, nil, []string{"usage: causeway-proxy init [flags]"}},
		{"version", []string{"--version"}, ExitOK, []string{"causeway-proxy init v1"}, nil},
		{"dry run with DNS", []string{"--dry-run", "--capture-dns"}, ExitOK,
			[]string{"-A CAUSEWAY_OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053"}, nil},
		{"stray argument", []string{"apply"}, ExitUsage, nil, []string{`causeway-proxy init: unexpected argument "apply"`}},
		{"invalid", []string{"--inbound-port=0"}, ExitUsage, nil, []string{"causeway-proxy init: invalid flags:", "--inbound-port 0"}},
		{"no iptables", nil, ExitNoIptables, nil, []string{"iptables not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			var stdout, stderr bytes.Buffer
			if code := Run("causeway-proxy init", "v1", tc.args, &stdout, &stderr); code != tc.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, &stdout, &stderr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, &stdout)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, &stderr)
				}
			}
		})
	}
}

package runner

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCaptureFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		wantMD  string
	}{
		{"off", nil, "", ""},
		{"defaults", []string{"--capture"}, "", "REDIRECT"},
		{"ports", []string{"--capture", "--capture-outbound-port=16001", "--capture-inbound-port=16006", "--capture-dns-port=0"}, "", "REDIRECT"},
		{"clash", []string{"--capture", "--capture-inbound-port=15001"}, "--capture-inbound-port 15001: also --capture-outbound-port", ""},
		{"too big", []string{"--capture", "--capture-dns-port=70000"}, "--capture-dns-port 70000: want 1-65535", ""},
		{"bad upstream", []string{"--capture", "--dns-upstream=10.0.0.10"}, `--dns-upstream "10.0.0.10": want host:port`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.XDS = "127.230.0.1:15010"
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			c.Flags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil && strings.Contains(err.Error(), "capture") {
				t.Fatalf("Validate: %v", err)
			}
			if got := c.captureMetadata()[interceptionModeKey]; got != tc.wantMD {
				t.Errorf("metadata %q, want %q", got, tc.wantMD)
			}
		})
	}
	c := DefaultConfig()
	c.Mode = "ingress"
	c.Capture.Enabled = true
	if err := c.validateCapture(); err == nil || !strings.Contains(err.Error(), "only in sidecar mode") {
		t.Errorf("capture in ingress mode: %v", err)
	}
}

func TestResolvConfNameserver(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"search x\nnameserver 10.96.0.10\nnameserver 10.96.0.11\n", "10.96.0.10:53"},
		{"nameserver fd00::10\n", "[fd00::10]:53"},
		{"# none\n", ""},
	} {
		p := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := resolvConfNameserver(p); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.content, got, tc.want)
		}
	}
	if got := resolvConfNameserver(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("missing file: %q", got)
	}
}

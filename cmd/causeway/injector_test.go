package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// TestInjectorFlags: --injector-* parse into controlPlaneConfig and are
// validated with the rest of the command line.
func TestInjectorFlags(t *testing.T) {
	base := []string{"--source=kubernetes", "--cluster=c1", "--mtls", "--ca-secret=causeway-system/causeway-ca"}
	tests := []struct {
		name    string
		args    []string
		wantErr []string // substrings; none for valid
	}{
		{"off by default", base, nil},
		{"as manifests/base runs it", append(base, "--injector-listen=:15017", "--injector-proxy-image=causeway-proxy:dev",
			"--injector-control-plane=causeway.causeway-system.svc:15010"), nil},
		{"needs --mtls", []string{"--source=kubernetes", "--cluster=c1", "--injector-listen=:15017", "--injector-proxy-image=p", "--injector-control-plane=cp:15010"},
			[]string{"--injector-listen: needs --mtls"}},
		{"needs kubernetes", []string{"--dir=/tmp", "--cluster=c1", "--mtls", "--ca-dir=/tmp/ca", "--tokens-file=/tmp/t", "--injector-listen=:15017", "--injector-proxy-image=p", "--injector-control-plane=cp:15010"},
			[]string{"--injector-listen: only with --source kubernetes"}},
		{"template validated with its prefixed names", append(base, "--injector-listen=:15017"),
			[]string{"(--injector-proxy-image) is empty", "(--injector-control-plane) is empty"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c controlPlaneConfig
			fs := flag.NewFlagSet("causeway control-plane", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.flags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := c.validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("validate: nil, want %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("validate: %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

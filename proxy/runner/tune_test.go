package runner

import (
	"flag"
	"slices"
	"strings"
	"testing"
)

func TestWithSysmonGODEBUG(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=schedtrace=2147483647"}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"GODEBUG=schedtrace=2147483647", "A=1"}, true},
		{"other settings kept", []string{"GODEBUG=http2debug=1"}, []string{"GODEBUG=http2debug=1,schedtrace=2147483647"}, true},
		{"user's schedtrace wins", []string{"GODEBUG=schedtrace=1000"}, []string{"GODEBUG=schedtrace=1000"}, false},
		{"already re-executed", []string{"GODEBUG=x=1,schedtrace=2147483647"}, []string{"GODEBUG=x=1,schedtrace=2147483647"}, false},
		{"duplicate dropped", []string{"GODEBUG=a=1", "GODEBUG=b=1"}, []string{"GODEBUG=a=1,schedtrace=2147483647"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := withSysmonGODEBUG(tc.env)
			if changed != tc.changed || !slices.Equal(got, tc.want) {
				t.Errorf("withSysmonGODEBUG(%q) = %q, %v; want %q, %v", tc.env, got, changed, tc.want, tc.changed)
			}
		})
	}
}

func TestRuntimeConfigFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    RuntimeConfig
		wantErr string
	}{
		{"defaults", nil, RuntimeConfig{Sysmon: true}, ""},
		{"all set", []string{"-runtime-sysmon-tuning=false", "-gc-percent", "50", "-memory-limit-bytes", "16777216"}, RuntimeConfig{GCPercent: 50, MemoryLimit: 16 << 20}, ""},
		{"negative gc", []string{"-gc-percent", "-1"}, RuntimeConfig{Sysmon: true, GCPercent: -1}, "-gc-percent -1"},
		{"negative limit", []string{"-memory-limit-bytes", "-5"}, RuntimeConfig{Sysmon: true, MemoryLimit: -5}, "-memory-limit-bytes -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := DefaultRuntimeConfig()
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			r.Flags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if r != tc.want {
				t.Errorf("parsed %+v, want %+v", r, tc.want)
			}
			err := r.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

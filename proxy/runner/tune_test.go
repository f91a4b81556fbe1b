package runner

import (
	"flag"
	"slices"
	"strings"
	"testing"
)

func TestWithTuningGODEBUG(t *testing.T) {
	const both = "schedtrace=2147483647,memprofilerate=0"
	for _, tc := range []struct {
		name    string
		env     []string
		rate    int
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"A=1"}, 0, []string{"A=1", "GODEBUG=" + both}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, 0, []string{"GODEBUG=" + both, "A=1"}, true},
		{"other settings kept", []string{"GODEBUG=http2debug=1"}, 0, []string{"GODEBUG=http2debug=1," + both}, true},
		{"heap profiling asked for", nil, 524288, []string{"GODEBUG=schedtrace=2147483647,memprofilerate=524288"}, true},
		{"user's schedtrace wins", []string{"GODEBUG=schedtrace=1000"}, 0, []string{"GODEBUG=schedtrace=1000,memprofilerate=0"}, true},
		{"user's memprofilerate wins", []string{"GODEBUG=memprofilerate=1"}, 0, []string{"GODEBUG=memprofilerate=1,schedtrace=2147483647"}, true},
		{"user set both", []string{"GODEBUG=schedtrace=1000,memprofilerate=1"}, 0, []string{"GODEBUG=schedtrace=1000,memprofilerate=1"}, false},
		{"already re-executed", []string{"GODEBUG=x=1," + both}, 0, []string{"GODEBUG=x=1," + both}, false},
		{"duplicate dropped", []string{"GODEBUG=a=1", "GODEBUG=b=1"}, 0, []string{"GODEBUG=a=1," + both}, true},
		{"only the first GODEBUG counts", []string{"GODEBUG=a=1", "GODEBUG=" + both}, 0, []string{"GODEBUG=a=1," + both}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := withTuningGODEBUG(tc.env, tc.rate)
			if changed != tc.changed || !slices.Equal(got, tc.want) {
				t.Errorf("withTuningGODEBUG(%q, %d) = %q, %v; want %q, %v", tc.env, tc.rate, got, changed, tc.want, tc.changed)
			}
			// Idempotent: the re-executed process must not exec again.
			if again, changed := withTuningGODEBUG(got, tc.rate); changed {
				t.Errorf("second pass changed %q to %q: the process would re-execute forever", got, again)
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
		{"all set", []string{"-runtime-sysmon-tuning=false", "-gc-percent", "50", "-memory-limit-bytes", "16777216", "-heap-profile-rate", "524288", "-adaptive-procs"}, RuntimeConfig{GCPercent: 50, MemoryLimit: 16 << 20, HeapProfileRate: 512 << 10, AdaptiveProcs: true}, ""},
		{"negative heap profile rate", []string{"-heap-profile-rate", "-1"}, RuntimeConfig{Sysmon: true, HeapProfileRate: -1}, "-heap-profile-rate -1"},
		{"negative gc", []string{"-gc-percent", "-1"}, RuntimeConfig{Sysmon: true, GCPercent: -1}, "-gc-percent -1"},
		{"negative limit", []string{"-memory-limit-bytes", "-5"}, RuntimeConfig{Sysmon: true, MemoryLimit: -5}, "-memory-limit-bytes -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := DefaultRuntimeConfig(eastWestMode)
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

// TestSidecarGCDefault checks that a sidecar halves Go's GC target unless
// GOGC says otherwise, and that a gateway keeps Go's default.
func TestSidecarGCDefault(t *testing.T) {
	t.Setenv("GOGC", "")
	if r := DefaultRuntimeConfig("sidecar"); r.GCPercent != SidecarGCPercent {
		t.Errorf("sidecar GCPercent = %d, want %d", r.GCPercent, SidecarGCPercent)
	}
	if r := DefaultRuntimeConfig(eastWestMode); r.GCPercent != 0 {
		t.Errorf("gateway GCPercent = %d, want 0 (GOGC or 100)", r.GCPercent)
	}
	t.Setenv("GOGC", "200")
	if r := DefaultRuntimeConfig("sidecar"); r.GCPercent != 0 {
		t.Errorf("sidecar with GOGC=200: GCPercent = %d, want 0 (GOGC applies)", r.GCPercent)
	}
	r := DefaultRuntimeConfig("sidecar")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	r.Flags(fs)
	if err := fs.Parse([]string{"-gc-percent", "80"}); err != nil || r.GCPercent != 80 {
		t.Errorf("-gc-percent 80 with GOGC=200: GCPercent = %d, %v; the flag must win", r.GCPercent, err)
	}
}

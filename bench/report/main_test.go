package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rowOf(name string, hops int, p50, cpu float64, rssKB uint64) *row {
	return &row{
		target: target{Name: name, Title: name, Hops: hops},
		Rate:   &loadResult{P50: p50, CPUPerReqUS: cpu, PeakRSSMaxKB: rssKB, DurationS: 10},
		Max:    &loadResult{RPS: 1000, DurationS: 5},
	}
}

func TestDeriveAndVerdict(t *testing.T) {
	direct := rowOf("direct", 0, 100, 0, 0)
	nginx := rowOf("nginx", 1, 150, 40, 5000) // adds 50 µs, 40 µs CPU
	tests := []struct {
		name        string
		r           *row
		nginx       *row
		wantAdded   float64
		wantLat     float64
		wantCPU     float64
		wantVerdict string
	}{
		{"one hop within targets", rowOf("causeway-1hop", 1, 155, 50, 15000), nginx, 55, 1.1, 1.25, "all three targets met"},
		{"two hops are halved", rowOf("causeway-2hop", 2, 220, 120, 16000), nginx, 60, 1.2, 1.5, "all three targets met"},
		{"misses all three", rowOf("causeway-1hop", 1, 200, 80, 30000), nginx, 100, 2, 2,
			"MISSED: latency 2.00× > 1.2×; CPU 2.00× > 1.5×; RSS 29.3 MB ≥ 20 MB"},
		{"nginx faster than direct: ratio undefined", rowOf("causeway-1hop", 1, 130, 40, 1000), rowOf("nginx", 1, 90, 40, 1), 30, 0, 1,
			"MISSED: latency ratio undefined (nginx added ≤ 0 µs: noise)"},
		{"no nginx", rowOf("causeway-1hop", 1, 130, 40, 1000), &row{target: target{Name: "nginx"}, Skip: "not installed"}, 30, 0, 0,
			"MISSED: no nginx row to compare with"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := derive(tc.r, direct, tc.nginx)
			if !ok {
				t.Fatal("derive: not ok")
			}
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if !near(d.AddedPerHop, tc.wantAdded) || !near(d.LatRatio, tc.wantLat) || !near(d.CPURatio, tc.wantCPU) {
				t.Errorf("derive = %+v, want added %v lat %v cpu %v", d, tc.wantAdded, tc.wantLat, tc.wantCPU)
			}
			got := verdictOf(d, tc.r.Rate.PeakRSSMaxKB, tc.nginx.Skip == "")
			if got != tc.wantVerdict {
				t.Errorf("verdict = %q, want %q", got, tc.wantVerdict)
			}
		})
	}
}

func TestRunWritesMarkdown(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("meta.env", "COMMAND=bash bench/run.sh\nRATE=1000\nNPROC=2\n")
	for name, p50 := range map[string]float64{"direct": 100, "causeway-1hop": 160, "nginx": 150, "haproxy": 140, "gofloor": 145} {
		for _, phase := range []string{"rate", "max"} {
			b, _ := json.Marshal(loadResult{P50: p50, CPUPerReqUS: 30, RPS: 9000, PeakRSSMaxKB: 9000, Pids: []int{1}, DurationS: 1})
			write(name+"."+phase+".json", string(b))
		}
	}
	write("causeway-2hop.skip", "causeway-proxy does not build yet")
	out := filepath.Join(dir, "out.md")
	var stdout strings.Builder
	if err := run(dir, out, &stdout); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != stdout.String() {
		t.Error("the file and stdout differ")
	}
	for _, want := range []string{
		"| Causeway, 1 hop | 160 |",
		"skipped: causeway-proxy does not build yet",
		"| Causeway, 1 hop | 1.20× | 1.00× | — | 8.8 MB | all three targets met |",
		"| Go floor (bench/gofloor), 1 hop | 0.90× | 1.00× | — | 8.8 MB | — |",
		"## How to read this",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}

	// A rerun keeps the control-plane section that bench/controlplane
	// wrote into the same file, once, after the new data-plane report.
	cp := "## Control plane convergence\n\nnumbers from bench/controlplane\n"
	if err := os.WriteFile(out, append(b, []byte("\n"+cp)...), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if err := run(dir, out, &stdout); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(b2), stdout.String()) || strings.Count(string(b2), cp) != 1 {
		t.Errorf("rerun did not keep the control-plane section exactly once after the new report:\n%s", b2)
	}

	if err := os.Remove(filepath.Join(dir, "haproxy.max.json")); err != nil {
		t.Fatal(err)
	}
	if err := run(dir, "", &stdout); err == nil || !strings.Contains(err.Error(), "haproxy.max.json") {
		t.Errorf("run with a missing result = %v, want an error naming haproxy.max.json", err)
	}
}

// TestRoundsTakeMedians checks that a target run in several rounds is
// reported with each number's median (peak RSS: the largest), that the
// ratios are also given round by round, and that a round missing a phase
// is an error naming the file.
func TestRoundsTakeMedians(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, res loadResult) {
		t.Helper()
		b, _ := json.Marshal(res)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "meta.env"), []byte("RATE=1000\nROUNDS=3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// p50 per round; direct 100 each time, so nginx adds 50, 40, 60 µs.
	p50 := map[string][3]float64{"direct": {100, 100, 100}, "nginx": {150, 140, 160}, "causeway-1hop": {160, 150, 400}}
	cpu := map[string][3]float64{"nginx": {40, 50, 40}, "causeway-1hop": {50, 60, 45}}
	rss := [3]uint64{9000, 21000, 10000}
	for name, v := range p50 {
		for i := range 3 {
			for _, phase := range []string{"rate", "max"} {
				write(fmt.Sprintf("%s.r%d.%s.json", name, i+1, phase), loadResult{P50: v[i], CPUPerReqUS: cpu[name][i], RPS: 1000 * float64(i+1), PeakRSSMaxKB: rss[i], DurationS: 1, Errors: 1})
			}
		}
	}
	for _, name := range []string{"causeway-2hop", "haproxy", "gofloor"} {
		if err := os.WriteFile(filepath.Join(dir, name+".skip"), []byte("not in BENCH_TARGETS"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	if err := run(dir, "", &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		// medians: p50 160, added 60; RPS 2000; CPU 50; RSS the largest, 20.5 MB.
		"| Causeway, 1 hop | 160 | 0 | 0 | 0 | 60 | 2000 | 50.0 | 50.0 | 20.5 | 20.5 |",
		// nginx's medians: added 50, CPU 40: 1.20× and 1.25×; round by round
		// 60/50, 50/40, 300/60 and 50/40, 60/50, 45/40.
		"| Causeway, 1 hop | 1.20× | 1.25× | 1.20× / 1.25×, 1.25× / 1.20×, 5.00× / 1.12× | 20.5 MB | MISSED: RSS 20.5 MB ≥ 20 MB |",
		"Every target ran 3 times",
		"3 errors", // summed over the rounds
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	if err := os.Remove(filepath.Join(dir, "nginx.r2.max.json")); err != nil {
		t.Fatal(err)
	}
	if err := run(dir, "", &out); err == nil || !strings.Contains(err.Error(), "nginx.r2.max.json") {
		t.Errorf("run with round 2's max phase missing = %v, want an error naming nginx.r2.max.json", err)
	}
}

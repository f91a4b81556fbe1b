// Command report turns the results of one bench/run.sh invocation into the
// markdown of docs/benchmarks.md: a table per phase, the added latency and
// CPU per hop against nginx, and the targets met or missed.
//
// It reads, from -results DIR: meta.env (KEY=value lines that describe the
// machine and the run), and per target either NAME.rate.json and
// NAME.max.json (loadgen output) or NAME.skip (one line: why it was skipped).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// target is one row of the benchmark, in table order.
type target struct {
	Name  string
	Title string
	Hops  int
}

var targets = []target{
	{"direct", "direct (no proxy)", 0},
	{"causeway-1hop", "Causeway, 1 hop", 1},
	{"causeway-2hop", "Causeway, 2 hops (h2c between)", 2},
	{"nginx", "nginx, 1 hop", 1},
	{"haproxy", "haproxy, 1 hop", 1},
}

// Thresholds the Causeway rows are held to.
const (
	maxLatencyRatio = 1.2  // added p50 per hop vs nginx's
	maxCPURatio     = 1.5  // CPU per request per hop vs nginx's
	maxRSSMB        = 20.0 // peak RSS per proxy process at 1,000 req/s
)

type loadResult struct {
	Completed    uint64  `json:"completed"`
	Errors       uint64  `json:"errors"`
	Dropped      uint64  `json:"dropped"`
	RPS          float64 `json:"rps"`
	P50          float64 `json:"p50_us"`
	P90          float64 `json:"p90_us"`
	P99          float64 `json:"p99_us"`
	Max          float64 `json:"max_us"`
	CPUPerReqUS  float64 `json:"cpu_per_req_us"`
	PeakRSSMaxKB uint64  `json:"peak_rss_max_kb"`
	PeakRSSSumKB uint64  `json:"peak_rss_sum_kb"`
	RSSAnonKB    uint64  `json:"rss_anon_kb"`
	RSSFileKB    uint64  `json:"rss_file_kb"`
	Pids         []int   `json:"pids"`
	FirstError   string  `json:"first_error"`
	LoadgenCPU   float64 `json:"loadgen_cpu_s"`
	DurationS    float64 `json:"duration_s"`
}

type row struct {
	target
	Skip      string
	Rate, Max *loadResult
	Extra     string // NAME.note, if any
}

func main() {
	dir := flag.String("results", "", "directory with meta.env and the loadgen results")
	out := flag.String("out", "", "also write the markdown to this file")
	flag.Parse()
	if err := run(*dir, *out, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(dir, out string, stdout io.Writer) error {
	if dir == "" {
		return errors.New("-results is empty: give the directory run.sh wrote")
	}
	meta, err := readMeta(filepath.Join(dir, "meta.env"))
	if err != nil {
		return err
	}
	var rows []*row
	for _, t := range targets {
		r, err := readRow(dir, t)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	var sb strings.Builder
	render(&sb, meta, rows)
	if _, err := io.WriteString(stdout, sb.String()); err != nil {
		return err
	}
	if out != "" {
		// Keep the control-plane section, which bench/controlplane writes
		// into the same file from its own run.
		if old, err := os.ReadFile(out); err == nil {
			if i := strings.Index(string(old), controlPlaneSection); i >= 0 {
				sb.WriteString("\n" + string(old[i:]))
			}
		}
		if err := os.WriteFile(out, []byte(sb.String()), 0o644); err != nil {
			return fmt.Errorf("write -out %s: %w", out, err)
		}
	}
	return nil
}

// controlPlaneSection heads the part of the report that bench/controlplane
// owns.
const controlPlaneSection = "## Control plane convergence"

func readMeta(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read run description: %w", err)
	}
	defer f.Close()
	meta := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			meta[k] = v
		}
	}
	return meta, sc.Err()
}

func readRow(dir string, t target) (*row, error) {
	r := &row{target: t}
	if b, err := os.ReadFile(filepath.Join(dir, t.Name+".note")); err == nil {
		r.Extra = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(dir, t.Name+".skip")); err == nil {
		r.Skip = strings.TrimSpace(string(b))
		return r, nil
	}
	var err error
	if r.Rate, err = readResult(filepath.Join(dir, t.Name+".rate.json")); err != nil {
		return nil, err
	}
	if r.Max, err = readResult(filepath.Join(dir, t.Name+".max.json")); err != nil {
		return nil, err
	}
	return r, nil
}

func readResult(path string) (*loadResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read loadgen result: %w (a target needs NAME.rate.json and NAME.max.json, or NAME.skip)", err)
	}
	var res loadResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("parse loadgen result %s: %w", path, err)
	}
	return &res, nil
}

// derived are the per-hop numbers of one row, relative to direct and nginx.
type derived struct {
	AddedPerHop float64 // µs
	CPUPerHop   float64 // µs
	LatRatio    float64 // AddedPerHop / nginx's; 0 if undefined
	CPURatio    float64
}

func derive(r, direct, nginx *row) (d derived, ok bool) {
	if r.Skip != "" || r.Hops == 0 || direct == nil || direct.Skip != "" {
		return d, false
	}
	d.AddedPerHop = (r.Rate.P50 - direct.Rate.P50) / float64(r.Hops)
	d.CPUPerHop = r.Rate.CPUPerReqUS / float64(r.Hops)
	if nginx != nil && nginx.Skip == "" {
		if na := nginx.Rate.P50 - direct.Rate.P50; na > 0 {
			d.LatRatio = d.AddedPerHop / na
		}
		if nginx.Rate.CPUPerReqUS > 0 {
			d.CPURatio = d.CPUPerHop / nginx.Rate.CPUPerReqUS
		}
	}
	return d, true
}

func find(rows []*row, name string) *row {
	for _, r := range rows {
		if r.Name == name {
			return r
		}
	}
	return nil
}

func mb(kb uint64) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }

func ratio(x float64) string {
	if x == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", x)
}

func render(w *strings.Builder, meta map[string]string, rows []*row) {
	direct, nginx := find(rows, "direct"), find(rows, "nginx")
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }

	p("# Data-plane benchmarks\n\n")
	p("Generated on %s by `%s` (`make bench` runs `bash bench/run.sh`). Do not edit by hand: rerun it.\n\n", meta["DATE"], meta["COMMAND"])
	p("Same HTTP/1.1 GET load (%s-byte response body) on 127.0.0.1 against a direct connection to the backend and against each proxy. ", meta["BODY_SIZE"])
	p("Latency: open loop at a fixed %s req/s on %s keep-alive connections for %s after a %s warm-up, measured from each request's intended send time (corrected for coordinated omission). ",
		meta["RATE"], meta["RATE_CONNS"], meta["DURATION"], meta["WARMUP"])
	p("Throughput: closed loop, %s connections for %s. ", meta["MAX_CONNS"], meta["MAX_DURATION"])
	p("CPU: utime+stime of every proxy process over the fixed-rate window, divided by the requests completed in it. ")
	p("RSS: VmHWM of the proxy processes.\n\n")

	p("## Machine\n\n")
	p("| | |\n|---|---|\n")
	for _, k := range []struct{ key, label string }{
		{"NPROC", "cores (`nproc`)"}, {"CPU_MODEL", "CPU"}, {"KERNEL", "kernel"}, {"GO_VERSION", "Go"},
		{"NGINX_VERSION", "nginx"}, {"HAPROXY_VERSION", "haproxy"}, {"PROXY_CPUS", "CPUs given to each proxy"},
		{"LOADAVG_START", "load average at start (1/5/15 min)"}, {"LOADAVG_END", "load average at end"},
	} {
		p("| %s | %s |\n", k.label, meta[k.key])
	}
	p("\n")

	p("## Results\n\n")
	p("| target | p50 µs | p90 µs | p99 µs | max µs | added p50 per hop µs | max throughput req/s | proxy CPU µs/req | CPU µs/req per hop | peak RSS MB at %s req/s | peak RSS MB after max load |\n", meta["RATE"])
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		if r.Skip != "" {
			p("| %s | skipped: %s | | | | | | | | | |\n", r.Title, r.Skip)
			continue
		}
		added, cpu, cpuHop, rss, rssMax := "—", "—", "—", "—", "—"
		if d, ok := derive(r, direct, nginx); ok {
			added = fmt.Sprintf("%.0f", d.AddedPerHop)
			cpu = fmt.Sprintf("%.1f", r.Rate.CPUPerReqUS)
			cpuHop = fmt.Sprintf("%.1f", d.CPUPerHop)
			rss = rssCell(r.Rate)
			rssMax = rssCell(r.Max)
		}
		p("| %s | %.0f | %.0f | %.0f | %.0f | %s | %.0f | %s | %s | %s | %s |\n",
			r.Title, r.Rate.P50, r.Rate.P90, r.Rate.P99, r.Rate.Max, added, r.Max.RPS, cpu, cpuHop, rss, rssMax)
	}
	p("\n")

	p("## Against nginx and the targets\n\n")
	p("Targets for Causeway: added p50 per hop ≤ %.1f× nginx's; CPU per request (per hop) ≤ %.1f× nginx's; peak RSS < %.0f MB per proxy process at %s req/s.\n\n",
		maxLatencyRatio, maxCPURatio, maxRSSMB, meta["RATE"])
	p("| target | added p50 per hop vs nginx | CPU/req per hop vs nginx | peak RSS per process | verdict |\n|---|--:|--:|--:|---|\n")
	for _, r := range rows {
		if r.Hops == 0 || r.Name == "nginx" {
			continue
		}
		if r.Skip != "" {
			p("| %s | — | — | — | not measured |\n", r.Title)
			continue
		}
		d, _ := derive(r, direct, nginx)
		verdict := "—"
		if strings.HasPrefix(r.Name, "causeway") {
			verdict = verdictOf(d, r.Rate.PeakRSSMaxKB, nginx != nil && nginx.Skip == "")
		}
		p("| %s | %s | %s | %s MB | %s |\n", r.Title, ratio(d.LatRatio), ratio(d.CPURatio), mb(r.Rate.PeakRSSMaxKB), verdict)
	}
	p("\n")

	if notes := notesOf(rows, meta); len(notes) > 0 {
		p("## Notes from this run\n\n")
		for _, n := range notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	p("%s\n", howToRead)
}

func rssCell(r *loadResult) string {
	if len(r.Pids) > 1 {
		return fmt.Sprintf("%s (sum of %d: %s)", mb(r.PeakRSSMaxKB), len(r.Pids), mb(r.PeakRSSSumKB))
	}
	return mb(r.PeakRSSMaxKB)
}

func verdictOf(d derived, rssKB uint64, haveNginx bool) string {
	var miss []string
	switch {
	case !haveNginx:
		miss = append(miss, "no nginx row to compare with")
	case d.LatRatio == 0:
		miss = append(miss, "latency ratio undefined (nginx added ≤ 0 µs: noise)")
	case d.LatRatio > maxLatencyRatio:
		miss = append(miss, fmt.Sprintf("latency %.2f× > %.1f×", d.LatRatio, maxLatencyRatio))
	}
	if haveNginx && d.CPURatio == 0 {
		miss = append(miss, "CPU ratio undefined")
	} else if d.CPURatio > maxCPURatio {
		miss = append(miss, fmt.Sprintf("CPU %.2f× > %.1f×", d.CPURatio, maxCPURatio))
	}
	if float64(rssKB)/1024 >= maxRSSMB {
		miss = append(miss, fmt.Sprintf("RSS %s MB ≥ %.0f MB", mb(rssKB), maxRSSMB))
	}
	if len(miss) == 0 {
		return "all three targets met"
	}
	return "MISSED: " + strings.Join(miss, "; ")
}

func notesOf(rows []*row, meta map[string]string) []string {
	var notes []string
	var load, cores float64
	if _, err := fmt.Sscan(meta["LOADAVG_START"], &load); err == nil {
		if _, err := fmt.Sscan(meta["NPROC"], &cores); err == nil && load > cores/2 {
			notes = append(notes, fmt.Sprintf("**The machine was busy with other work** during this run (1-minute load average %.1f on %.0f cores before it started). "+
				"Every row shares the cores with that work, so tails (p90 and above) and throughput are noisy and the ratios are rough; rerun on an idle machine for numbers to quote.", load, cores))
		}
	}
	for _, r := range rows {
		if r.Extra != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.Title, r.Extra))
		}
		if r.Skip != "" {
			continue
		}
		for _, ph := range []struct {
			name string
			res  *loadResult
		}{{"fixed-rate", r.Rate}, {"max", r.Max}} {
			if ph.res.Errors > 0 || ph.res.Dropped > 0 {
				notes = append(notes, fmt.Sprintf("%s, %s phase: %d errors, %d requests never sent (schedule fell behind); first error: %s",
					r.Title, ph.name, ph.res.Errors, ph.res.Dropped, ph.res.FirstError))
			}
		}
		if r.Hops > 0 && r.Rate.RSSFileKB > 0 {
			notes = append(notes, fmt.Sprintf("%s: of the largest proxy process's resident memory after the fixed-rate phase, %s MB is anonymous (heap, stacks) and %s MB file-backed (its binary and libraries).",
				r.Title, mb(r.Rate.RSSAnonKB), mb(r.Rate.RSSFileKB)))
		}
		if r.Rate.DurationS > 0 {
			notes = append(notes, fmt.Sprintf("%s: load generator used %.0f%% of one core at the fixed rate and %.0f%% during max load.",
				r.Title, 100*r.Rate.LoadgenCPU/r.Rate.DurationS, 100*r.Max.LoadgenCPU/r.Max.DurationS))
		}
	}
	return notes
}

const howToRead = `## How to read this

- **Added p50 per hop** is the target's median latency minus the direct
  median, divided by its number of proxy hops. It is the cost of a hop; the
  absolute p50 also holds the load generator's and the backend's share.
- **Corrected latency.** Each request is due at a fixed time; if the
  connection it is due on is still busy with an earlier, slow request, the
  wait is counted. A stall therefore shows in p99 as it would to a user.
  (Oversleep of the load generator's own timer is not charged.)
- **CPU µs/req** is the proxy processes' CPU time at the fixed rate per
  completed request (for two hops, both sidecars; per hop is half of it).
  At 1,000 req/s a proxy spends much of its CPU waking up, so this is
  higher than at full load. /proc counts in 10 ms ticks: ±1 % at 10 s.
- **Max throughput** is measured with the load generator, the backend and
  the proxy sharing the same cores, so it ranks the proxies by cost more
  than it shows what one could do alone. Nobody here is pinned to a core.
- **Peak RSS** is VmHWM: the most resident memory a process ever had. For
  nginx (master plus workers) the first number is the largest process and the
  sum is in parentheses; shared pages count once per process in the sum.
- **Fairness.** Every proxy gets the same number of CPUs: nginx
  worker_processes, haproxy nbthread and the Go proxy's GOMAXPROCS are all
  set to BENCH_PROXY_CPUS (default: nproc). nginx keeps up to 64 idle
  keep-alive connections to the backend, haproxy reuses server connections
  (http-reuse always). Access logs are off in all of them (Causeway:
  -access-log off, from BENCH_CAUSEWAY_FLAGS).
- **Noise.** The machine is shared (see the load average): differences of a
  few tens of µs in p50, or a few % in throughput, are within run-to-run noise.
  Rerun before drawing conclusions from a small difference.`

// Command report turns the results of one bench/run.sh invocation into the
// markdown of docs/benchmarks.md: a table per phase, the added latency and
// CPU per hop against nginx, and the targets met or missed.
//
// It reads, from -results DIR: meta.env (KEY=value lines that describe the
// machine and the run), and per target either NAME.rN.rate.json and
// NAME.rN.max.json for each round N = 1, 2, ... (loadgen output; a single
// NAME.rate.json and NAME.max.json count as one round) or NAME.skip (one
// line: why it was skipped). Every number of a row is the median of its
// rounds; the ratios to nginx are also given per round.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
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
	{"gofloor", "Go floor (bench/gofloor), 1 hop", 1},
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
	Rate, Max *loadResult // the rounds' medians
	Rounds    []round     // in the order they ran
	Extra     string      // NAME.note, if any
}

// round is one run of a target's two phases.
type round struct{ Rate, Max *loadResult }

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
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	prefixes := []string{t.Name + "."}
	if !exists(t.Name + ".rate.json") {
		// Rounds 1, 2, ...: round 1 is read even if missing, so that the
		// error names the file.
		prefixes = prefixes[:0]
		for n := 1; n == 1 || exists(fmt.Sprintf("%s.r%d.rate.json", t.Name, n)); n++ {
			prefixes = append(prefixes, fmt.Sprintf("%s.r%d.", t.Name, n))
		}
	}
	for _, p := range prefixes {
		var rd round
		var err error
		if rd.Rate, err = readResult(filepath.Join(dir, p+"rate.json")); err != nil {
			return nil, err
		}
		if rd.Max, err = readResult(filepath.Join(dir, p+"max.json")); err != nil {
			return nil, err
		}
		r.Rounds = append(r.Rounds, rd)
	}
	r.Rate = medianOf(r.Rounds, func(rd round) *loadResult { return rd.Rate })
	r.Max = medianOf(r.Rounds, func(rd round) *loadResult { return rd.Max })
	return r, nil
}

// medianOf is the phase's result with every measured number the median over
// the rounds; counts of errors and drops are summed, and the first error
// and the process list come from the first round that has them.
func medianOf(rounds []round, phase func(round) *loadResult) *loadResult {
	if len(rounds) == 1 {
		return phase(rounds[0])
	}
	med := func(f func(*loadResult) float64) float64 {
		v := make([]float64, len(rounds))
		for i, rd := range rounds {
			v[i] = f(phase(rd))
		}
		return median(v)
	}
	medKB := func(f func(*loadResult) uint64) uint64 {
		return uint64(math.Round(med(func(r *loadResult) float64 { return float64(f(r)) })))
	}
	maxKB := func(f func(*loadResult) uint64) uint64 {
		var m uint64
		for _, rd := range rounds {
			m = max(m, f(phase(rd)))
		}
		return m
	}
	out := &loadResult{
		RPS:          med(func(r *loadResult) float64 { return r.RPS }),
		P50:          med(func(r *loadResult) float64 { return r.P50 }),
		P90:          med(func(r *loadResult) float64 { return r.P90 }),
		P99:          med(func(r *loadResult) float64 { return r.P99 }),
		Max:          med(func(r *loadResult) float64 { return r.Max }),
		CPUPerReqUS:  med(func(r *loadResult) float64 { return r.CPUPerReqUS }),
		LoadgenCPU:   med(func(r *loadResult) float64 { return r.LoadgenCPU }),
		DurationS:    med(func(r *loadResult) float64 { return r.DurationS }),
		PeakRSSMaxKB: maxKB(func(r *loadResult) uint64 { return r.PeakRSSMaxKB }),
		PeakRSSSumKB: maxKB(func(r *loadResult) uint64 { return r.PeakRSSSumKB }),
		RSSAnonKB:    medKB(func(r *loadResult) uint64 { return r.RSSAnonKB }),
		RSSFileKB:    medKB(func(r *loadResult) uint64 { return r.RSSFileKB }),
	}
	for _, rd := range rounds {
		p := phase(rd)
		out.Completed += p.Completed
		out.Errors += p.Errors
		out.Dropped += p.Dropped
		if out.FirstError == "" {
			out.FirstError = p.FirstError
		}
		if out.Pids == nil {
			out.Pids = p.Pids
		}
	}
	return out
}

// perRound is derive for each round on its own: the target's round i
// against direct's and nginx's round i. Nil unless the three ran the same
// number of rounds (more than one).
func perRound(r, direct, nginx *row) []derived {
	if r.Skip != "" || direct == nil || direct.Skip != "" || nginx == nil || nginx.Skip != "" ||
		len(r.Rounds) < 2 || len(direct.Rounds) != len(r.Rounds) || len(nginx.Rounds) != len(r.Rounds) {
		return nil
	}
	out := make([]derived, len(r.Rounds))
	for i := range r.Rounds {
		one := func(x *row) *row {
			return &row{target: x.target, Rate: x.Rounds[i].Rate, Max: x.Rounds[i].Max}
		}
		out[i], _ = derive(one(r), one(direct), one(nginx))
	}
	return out
}

// median of v (the mean of the middle two for an even count); v is sorted.
func median(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
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
	if meta["ROUNDS"] != "" {
		p("Every target ran %s times, interleaved; each number is the median over those rounds. ", meta["ROUNDS"])
	}
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
	p("| target | added p50 per hop vs nginx | CPU/req per hop vs nginx | each round (latency / CPU) | peak RSS per process | verdict |\n|---|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		if r.Hops == 0 || r.Name == "nginx" {
			continue
		}
		if r.Skip != "" {
			p("| %s | — | — | — | — | not measured |\n", r.Title)
			continue
		}
		d, _ := derive(r, direct, nginx)
		verdict := "—"
		if strings.HasPrefix(r.Name, "causeway") {
			verdict = verdictOf(d, r.Rate.PeakRSSMaxKB, nginx != nil && nginx.Skip == "")
		}
		rounds := "—"
		if pr := perRound(r, direct, nginx); pr != nil {
			cells := make([]string, len(pr))
			for i, x := range pr {
				cells[i] = ratio(x.LatRatio) + " / " + ratio(x.CPURatio)
			}
			rounds = strings.Join(cells, ", ")
		}
		p("| %s | %s | %s | %s | %s MB | %s |\n", r.Title, ratio(d.LatRatio), ratio(d.CPURatio), rounds, mb(r.Rate.PeakRSSMaxKB), verdict)
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
  set to BENCH_PROXY_CPUS (default: nproc). A Causeway sidecar treats its
  GOMAXPROCS as a ceiling and runs on fewer Ps while the load needs fewer
  cores (-adaptive-procs, docs/proxy.md); the notes give the value it had
  at the end of each phase. nginx keeps up to 64 idle
  keep-alive connections to the backend, haproxy reuses server connections
  (http-reuse always). Access logs are off in all of them (Causeway:
  -access-log off, from BENCH_CAUSEWAY_FLAGS).
- **The Go floor** (bench/gofloor) is the least an HTTP/1.1 proxy written
  in Go does: it forwards the request head as it came over a pooled
  upstream connection and copies back a response framed by
  Content-Length, with the sidecar's runtime tuning (sysmon, GC target,
  adaptive GOMAXPROCS) and none of its work (parsing into a request,
  routing, load balancing, header rules, metrics, timeouts). Between it
  and nginx is what Go's runtime and network poller cost; between
  Causeway and it is what Causeway's own work costs. It has no verdict.
- **Rounds and noise.** The machine is shared (see the load average), and
  one run's medians move by tens of µs. Every target therefore runs
  BENCH_ROUNDS times, interleaved (direct, Causeway, nginx, ..., then
  again), and each number in the tables is the median over the rounds
  (peak RSS: the largest); the ratios are computed from those medians, and
  "each round" gives the ratios of every round on its own (round i of a
  target against round i of direct and nginx). Differences smaller than the
  spread between rounds are noise.`

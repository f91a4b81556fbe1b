package runner

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// Runtime tuning of a causeway-proxy process: what the Go runtime does by
// default costs a sidecar more than its own work at the request rates
// sidecars see. docs/benchmarks.md has the profiles behind each setting.
//
// Sysmon. The runtime's system monitor thread goes into a deep sleep
// whenever every P is idle, and the next syscall of any goroutine wakes it
// (a futex wake-up), after which it polls every 20 µs until the process
// is idle again. A sidecar at 1,000 req/s is idle between most requests,
// so every request pays a futex wake-up and a dozen 20 µs sleeps of the
// monitor: a quarter of the proxy's CPU on a 2-core VM (49 of 216 µs per
// request). The runtime keeps the monitor out of the deep sleep only when
// GODEBUG schedtrace is set, and reads GODEBUG only at start, so the
// process re-executes itself once with schedtrace set to its largest value
// (2^31-1 ms, 24.8 days). Side effect: the runtime prints one "SCHED"
// line to stderr when the host's monotonic clock (time since boot) passes
// a multiple of 24.8 days. The monitor then backs off to one wake-up per
// 10 ms when there is nothing for it to do.
//
// Heap profiling. The runtime samples one allocation per 512 KiB by
// default and keeps a 1.4 MiB hash table of the sampled stacks, whose
// pages and buckets the samples touch: 0.3-0.5 MB of a sidecar's
// resident memory under load, for profiles nobody reads. The re-executed
// process therefore runs with GODEBUG memprofilerate=0 (set before any
// package initialises, so not even start-up is sampled) unless
// -heap-profile-rate asks for profiles or GODEBUG already sets it.
// Without the re-execution, Apply sets runtime.MemProfileRate instead.
//
// GC. GCPercent and MemoryLimit set debug.SetGCPercent and
// debug.SetMemoryLimit when given (the GOGC and GOMEMLIMIT environment
// variables still apply when they are not). A sidecar's GCPercent is 50 by
// default, unless GOGC is set: its live heap is 1-2 MB, so Go's 4 MB heap
// floor at GOGC 100 makes the heap most of its anonymous memory, and every
// pod runs one. At 50 the floor is 2 MB: 1.1 MB less peak RSS for a GC
// every 0.2 s instead of every 0.45 s at 1,000 req/s (docs/benchmarks.md).
// A gateway keeps Go's default: there is one per cluster, and its CPU
// matters more.

// sysmonGODEBUG is the GODEBUG setting that keeps sysmon out of deep sleep.
const sysmonGODEBUG = "schedtrace=2147483647"

// defaultHeapProfileRate is the runtime's own MemProfileRate (512 KiB).
const defaultHeapProfileRate = 512 * 1024

// RuntimeConfig is the runtime tuning of a proxy process.
type RuntimeConfig struct {
	// Sysmon re-executes the process with GODEBUG schedtrace set, unless
	// GODEBUG already sets schedtrace.
	Sysmon bool
	// GCPercent is debug.SetGCPercent's argument; 0 keeps GOGC (or 100).
	GCPercent int
	// MemoryLimit is debug.SetMemoryLimit's argument in bytes; 0 keeps
	// GOMEMLIMIT (or no limit).
	MemoryLimit int64
	// HeapProfileRate is runtime.MemProfileRate: one sampled allocation
	// per this many bytes; 0 turns heap profiling off (the default). A
	// GODEBUG memprofilerate setting wins over it.
	HeapProfileRate int
	// AdaptiveProcs lowers GOMAXPROCS below its starting value while the
	// process needs fewer cores, and raises it back under load (procs.go).
	AdaptiveProcs bool
}

// SidecarGCPercent is a sidecar's GC target percentage unless GOGC is set.
const SidecarGCPercent = 50

// DefaultRuntimeConfig returns the defaults of the runtime flags for a
// proxy in mode (Config.Mode).
func DefaultRuntimeConfig(mode string) RuntimeConfig {
	r := RuntimeConfig{Sysmon: true, AdaptiveProcs: mode == "sidecar"}
	if mode == "sidecar" && os.Getenv("GOGC") == "" {
		r.GCPercent = SidecarGCPercent
	}
	return r
}

// Flags registers the runtime flags on fs.
func (r *RuntimeConfig) Flags(fs *flag.FlagSet) {
	fs.BoolVar(&r.Sysmon, "runtime-sysmon-tuning", r.Sysmon, "re-execute once with GODEBUG=schedtrace=2147483647, which keeps the Go runtime's monitor thread from a deep sleep that every request would end (a quarter of the CPU at 1,000 req/s); false leaves GODEBUG alone")
	fs.IntVar(&r.GCPercent, "gc-percent", r.GCPercent, "garbage collector target percentage, as GOGC (0: GOGC or 100; a sidecar's default is 50 unless GOGC is set)")
	fs.IntVar(&r.HeapProfileRate, "heap-profile-rate", r.HeapProfileRate, fmt.Sprintf("bytes allocated per heap-profile sample, as runtime.MemProfileRate; 0 (default) turns heap profiling off, which saves memory; %d is the Go runtime's default and makes /debug/pprof/heap and allocs useful", defaultHeapProfileRate))
	fs.BoolVar(&r.AdaptiveProcs, "adaptive-procs", r.AdaptiveProcs, "run with fewer Ps than GOMAXPROCS (or the CPU limit) while the load needs fewer cores, and go back up within 100 ms of saturating them: an idle P costs a spinning thread on every request (a sidecar's default is true, a gateway's false)")
	fs.Int64Var(&r.MemoryLimit, "memory-limit-bytes", r.MemoryLimit, "soft memory limit of the Go runtime in bytes, as GOMEMLIMIT (0: GOMEMLIMIT or none)")
}

// Validate checks the runtime flags.
func (r *RuntimeConfig) Validate() error {
	if r.GCPercent < 0 {
		return fmt.Errorf("runtime config: -gc-percent %d: must be 0 (keep GOGC) or more", r.GCPercent)
	}
	if r.HeapProfileRate < 0 {
		return fmt.Errorf("runtime config: -heap-profile-rate %d: must be 0 (heap profiling off) or more (%d is the Go default)", r.HeapProfileRate, defaultHeapProfileRate)
	}
	if r.MemoryLimit < 0 {
		return fmt.Errorf("runtime config: -memory-limit-bytes %d: must be 0 (keep GOMEMLIMIT) or more", r.MemoryLimit)
	}
	return nil
}

// Apply tunes the running process. It must be called first thing in main,
// before any goroutine of the program starts: with Sysmon set and GODEBUG
// not yet carrying schedtrace, it replaces the process with a new run of
// the same binary, same arguments and environment plus the GODEBUG
// setting (the pid stays the same), and returns only if that fails; the
// error says why and the caller may go on untuned. Never call it from a
// test binary or a library: it execs. When it returns, AdaptiveProcs has
// started its controller (even if the error says the process is otherwise
// untuned), which runs for the life of the process.
func (r *RuntimeConfig) Apply() error {
	err := r.apply()
	if r.AdaptiveProcs {
		startProcsController(DefaultProcsPolicy)
	}
	return err
}

func (r *RuntimeConfig) apply() error {
	if r.GCPercent > 0 {
		debug.SetGCPercent(r.GCPercent)
	}
	if r.MemoryLimit > 0 {
		debug.SetMemoryLimit(r.MemoryLimit)
	}
	if !r.Sysmon {
		if _, set := godebugSetting(os.Environ(), "memprofilerate"); !set {
			runtime.MemProfileRate = r.HeapProfileRate
		}
		return nil
	}
	env, changed := withTuningGODEBUG(os.Environ(), r.HeapProfileRate)
	if !changed {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("runtime tuning: find the executable to re-execute with GODEBUG=%s: %w (run with -runtime-sysmon-tuning=false to skip)", sysmonGODEBUG, err)
	}
	err = syscall.Exec(exe, os.Args, env)
	return fmt.Errorf("runtime tuning: re-execute %s with GODEBUG=%s: %w (run with -runtime-sysmon-tuning=false to skip)", exe, sysmonGODEBUG, err)
}

// withTuningGODEBUG returns env with the tuning settings added to
// GODEBUG (schedtrace, and memprofilerate=heapProfileRate), and whether it
// changed anything. A setting that GODEBUG already carries (by the user,
// or by an earlier exec) is left alone, so a second run changes nothing
// and does not exec again.
func withTuningGODEBUG(env []string, heapProfileRate int) ([]string, bool) {
	var add []string
	if _, set := godebugSetting(env, "schedtrace"); !set {
		add = append(add, sysmonGODEBUG)
	}
	if _, set := godebugSetting(env, "memprofilerate"); !set {
		add = append(add, "memprofilerate="+strconv.Itoa(heapProfileRate))
	}
	if len(add) == 0 {
		return env, false
	}
	extra := strings.Join(add, ",")
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			out = append(out, kv)
			continue
		}
		if found {
			continue // a duplicate: the runtime reads the first one
		}
		found = true
		if v == "" {
			out = append(out, "GODEBUG="+extra)
		} else {
			out = append(out, "GODEBUG="+v+","+extra)
		}
	}
	if !found {
		out = append(out, "GODEBUG="+extra)
	}
	return out, true
}

// godebugSetting returns the value of key in the first GODEBUG of env
// (the one the runtime reads) and whether it is set there.
func godebugSetting(env []string, key string) (string, bool) {
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			continue
		}
		for field := range strings.SplitSeq(v, ",") {
			if val, ok := strings.CutPrefix(strings.TrimSpace(field), key+"="); ok {
				return val, true
			}
		}
		return "", false
	}
	return "", false
}

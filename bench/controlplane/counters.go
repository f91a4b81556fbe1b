package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"syscall"
)

// counters are the control plane process's cumulative counts that explain
// its CPU per change: read and write system calls (/proc/self/io: each
// gRPC response is at least one write, each ACK read at least one read),
// context switches (getrusage) and the Go runtime's allocations and GC
// cycles (runtime/metrics, no stop-the-world).
type counters struct {
	syscr, syscw   uint64
	nvcsw, nivcsw  uint64
	allocs, allocB uint64
	gcs            uint64
}

func readCounters() counters {
	var c counters
	if b, err := os.ReadFile("/proc/self/io"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := bytes.Cut(sc.Bytes(), []byte(": "))
			if !ok {
				continue
			}
			n, _ := strconv.ParseUint(string(v), 10, 64)
			switch string(k) {
			case "syscr":
				c.syscr = n
			case "syscw":
				c.syscw = n
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.nvcsw, c.nivcsw = uint64(ru.Nvcsw), uint64(ru.Nivcsw)
	}
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	for i, p := range []*uint64{&c.allocs, &c.allocB, &c.gcs} {
		if s[i].Value.Kind() == metrics.KindUint64 {
			*p = s[i].Value.Uint64()
		}
	}
	return c
}

// perChange is (b - a) / n for each counter, as a table cell.
func (a counters) perChange(b counters, n int) string {
	if n < 1 {
		n = 1
	}
	f := func(x, y uint64) float64 { return float64(y-x) / float64(n) }
	return fmt.Sprintf("%.0f reads, %.0f writes, %.0f ctx switches (%.0f involuntary), %.0f allocs (%.0f KiB), %.2f GCs",
		f(a.syscr, b.syscr), f(a.syscw, b.syscw), f(a.nvcsw+a.nivcsw, b.nvcsw+b.nivcsw), f(a.nivcsw, b.nivcsw),
		f(a.allocs, b.allocs), f(a.allocB, b.allocB)/1024, f(a.gcs, b.gcs))
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	err = pprof.Lookup("heap").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("-memprofile %s: %w", path, err)
	}
	return nil
}

package runner

import (
	"math"
	"runtime"
	"syscall"
	"time"
)

// Parallelism. Go's scheduler keeps one spinning thread looking for work
// whenever a P is idle and another is busy: each goroutine it readies while
// a P is idle (a request's bytes arriving, a hand-off between goroutines)
// wakes a second thread with a futex, which spins, finds nothing and
// sleeps again. A sidecar at 1,000 req/s is idle between most requests, so
// with GOMAXPROCS 2 it pays that on almost every request: on the 2-core
// benchmark VM one Causeway hop used 153-162 µs of CPU per request with
// GOMAXPROCS 2 and 129-134 µs with 1; two hops 361 µs against 262 µs
// (docs/benchmarks.md). nginx's workers are single-threaded event loops and
// pay nothing for an idle second worker.
//
// So a sidecar adapts its GOMAXPROCS to the CPU it uses: the value the
// process started with (the GOMAXPROCS environment variable, else the
// container's CPU limit, else the machine's cores) is the ceiling; it
// starts with 1, and the controller samples the process's CPU time (getrusage) every Interval and
//   - raises GOMAXPROCS (doubling, up to the ceiling) when the last interval
//     used at least Up × GOMAXPROCS cores: the Ps are nearly saturated;
//   - lowers it to the fewest Ps that keep the last DownWindow's average
//     use under Down × Ps, when that is fewer than now.
//
// Up is above Down, so a steady load does not flap between two values. A
// change costs one stop-the-world of the runtime (tens of µs) and happens
// at most once per interval upward and once per DownWindow downward.
// Calling runtime.GOMAXPROCS also stops the runtime's own periodic update
// from the container's CPU limit (Go 1.25+): a limit changed while the
// process runs takes effect at its next start.

// ProcsPolicy is how the parallelism controller decides.
type ProcsPolicy struct {
	Interval   time.Duration // how often CPU time is sampled
	Up         float64       // raise when the last interval used ≥ Up × GOMAXPROCS cores
	Down       float64       // lower to the fewest n with the window's average use ≤ Down × n cores
	DownWindow time.Duration // the window over which lowering is decided
}

// DefaultProcsPolicy is a sidecar's: it goes up within 100 ms of
// saturating its Ps and down after 2 s of using less than half of fewer.
var DefaultProcsPolicy = ProcsPolicy{
	Interval:   100 * time.Millisecond,
	Up:         0.7,
	Down:       0.45,
	DownWindow: 2 * time.Second,
}

// next returns the GOMAXPROCS to run with, now cur, given the cores used
// over the last interval (recent) and on average over the last
// DownWindow (avg, or NaN while the window has not filled since the last
// change).
func (p ProcsPolicy) next(cur, ceiling int, recent, avg float64) int {
	if cur < ceiling && recent >= p.Up*float64(cur) {
		return min(2*cur, ceiling)
	}
	if cur > 1 && !math.IsNaN(avg) {
		need := max(1, int(math.Ceil(avg/p.Down)))
		if need < cur {
			return need
		}
	}
	return cur
}

// procsController runs ProcsPolicy against the real process.
type procsController struct {
	policy  ProcsPolicy
	ceiling int
	stop    chan struct{}
	done    chan struct{}
}

// startProcsController sets GOMAXPROCS to 1 and starts adapting it,
// between 1 and its value before (the ceiling). It returns nil, and does
// nothing, when the ceiling is 1.
func startProcsController(p ProcsPolicy) *procsController {
	ceiling := runtime.GOMAXPROCS(0)
	if ceiling <= 1 {
		return nil
	}
	c := &procsController{policy: p, ceiling: ceiling, stop: make(chan struct{}), done: make(chan struct{})}
	runtime.GOMAXPROCS(1)
	go c.run()
	return c
}

// Stop ends the controller and restores the ceiling.
func (c *procsController) Stop() {
	if c == nil {
		return
	}
	close(c.stop)
	<-c.done
	runtime.GOMAXPROCS(c.ceiling)
}

func (c *procsController) run() {
	defer close(c.done)
	window := int(c.policy.DownWindow / c.policy.Interval)
	if window < 1 {
		window = 1
	}
	samples := make([]float64, 0, window) // cores used per interval, since the last change
	tick := time.NewTicker(c.policy.Interval)
	defer tick.Stop()
	lastCPU, lastAt := cpuTime(), time.Now()
	for {
		select {
		case <-c.stop:
			return
		case now := <-tick.C:
			cpu := cpuTime()
			elapsed := now.Sub(lastAt)
			if elapsed <= 0 {
				continue
			}
			recent := float64(cpu-lastCPU) / float64(elapsed)
			lastCPU, lastAt = cpu, now
			if len(samples) == window {
				copy(samples, samples[1:])
				samples = samples[:window-1]
			}
			samples = append(samples, recent)
			avg := math.NaN()
			if len(samples) == window {
				sum := 0.0
				for _, s := range samples {
					sum += s
				}
				avg = sum / float64(window)
			}
			cur := runtime.GOMAXPROCS(0)
			if n := c.policy.next(cur, c.ceiling, recent, avg); n != cur {
				runtime.GOMAXPROCS(n)
				samples = samples[:0]
			}
		}
	}
}

// cpuTime is the process's CPU time so far, user and system, all threads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

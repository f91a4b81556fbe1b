package main

import (
	"fmt"
	"sync"
	"time"
)

// config is one run of the load generator, validated by (*config).validate.
type config struct {
	Label    string
	Addr     string
	Host     string
	Path     string
	Client   string // "raw" or "nethttp"
	Rate     float64
	Max      bool
	Conns    int
	Warmup   time.Duration
	Duration time.Duration
	Timeout  time.Duration // per request
	Grace    time.Duration // how far a lagging open-loop schedule may overrun
	Pids     []int
}

func (c *config) validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("-addr is empty: give the host:port to load")
	case c.Client != "raw" && c.Client != "nethttp":
		return fmt.Errorf("-client %q: want raw or nethttp", c.Client)
	case c.Max && c.Rate > 0:
		return fmt.Errorf("-max and -rate %g both set: pick closed loop (-max) or open loop (-rate)", c.Rate)
	case !c.Max && c.Rate <= 0:
		return fmt.Errorf("-rate %g: want a positive request rate, or -max", c.Rate)
	case c.Conns <= 0 || c.Conns > 1024:
		return fmt.Errorf("-conns %d: want 1 to 1024", c.Conns)
	case c.Duration <= 0 || c.Duration > 10*time.Minute:
		return fmt.Errorf("-duration %s: want more than 0 and at most 10m", c.Duration)
	case c.Warmup < 0 || c.Warmup > time.Minute:
		return fmt.Errorf("-warmup %s: want 0 to 1m", c.Warmup)
	case c.Timeout <= 0:
		return fmt.Errorf("-timeout %s: want a positive per-request timeout", c.Timeout)
	case !c.Max && c.Rate*(c.Warmup+c.Duration).Seconds() > 10_000_000:
		return fmt.Errorf("-rate %g over %s is more than 10,000,000 requests: lower one of them", c.Rate, c.Warmup+c.Duration)
	}
	return nil
}

// result is what one run prints, as JSON. Latencies are in microseconds.
type result struct {
	Label     string  `json:"label,omitempty"`
	Mode      string  `json:"mode"` // "rate" or "max"
	Client    string  `json:"client"`
	Rate      float64 `json:"rate,omitempty"`
	Conns     int     `json:"conns"`
	DurationS float64 `json:"duration_s"`
	Completed uint64  `json:"completed"`
	Errors    uint64  `json:"errors"`
	// Dropped counts open-loop requests never sent because the schedule had
	// fallen more than -grace behind.
	Dropped uint64  `json:"dropped"`
	RPS     float64 `json:"rps"`
	P50     float64 `json:"p50_us"`
	P90     float64 `json:"p90_us"`
	P99     float64 `json:"p99_us"`
	P999    float64 `json:"p999_us"`
	Max     float64 `json:"max_us"`
	Mean    float64 `json:"mean_us"`
	// Service-time percentiles measure from the moment the request was
	// actually written, i.e. without the coordinated-omission correction.
	// They are for comparison only.
	SvcP50 float64 `json:"svc_p50_us"`
	SvcP99 float64 `json:"svc_p99_us"`
	// Process accounting for -pids over the measured window.
	CPUSeconds   float64 `json:"cpu_s,omitempty"`
	CPUPerReqUS  float64 `json:"cpu_per_req_us,omitempty"`
	PeakRSSMaxKB uint64  `json:"peak_rss_max_kb,omitempty"`
	PeakRSSSumKB uint64  `json:"peak_rss_sum_kb,omitempty"`
	// RSS split of the process with the largest peak, at the end of the run.
	RSSAnonKB      uint64  `json:"rss_anon_kb,omitempty"`
	RSSFileKB      uint64  `json:"rss_file_kb,omitempty"`
	FirstError     string  `json:"first_error,omitempty"`
	Pids           []int   `json:"pids,omitempty"`
	LoadgenCPUSecs float64 `json:"loadgen_cpu_s"`
}

// workerStats is what one worker gathers; merged when all are done.
type workerStats struct {
	lat, svc  Histogram
	errors    uint64
	dropped   uint64
	firstErr  error
	completed uint64
}

func (s *workerStats) fail(err error) {
	s.errors++
	if s.firstErr == nil {
		s.firstErr = err
	}
}

// latencyStart is the instant a request's latency is measured from. An
// open-loop request is due at its intended time; if the worker was still busy
// with an earlier request then, the wait counts against the system under
// test (the coordinated-omission correction) and latency runs from the
// intended time. If the worker was idle and slept until the intended time,
// any oversleep is the load generator's own timer error, so latency runs
// from the moment it actually sent.
func latencyStart(intended, sent time.Time, slept bool) time.Time {
	if slept || sent.Before(intended) {
		return sent
	}
	return intended
}

type newDoer func() (doer, error)

// runRate is the open loop: request i is due at start + i/rate, and worker
// w sends requests w, w+conns, w+2*conns, ... on its own connection, as
// wrk2 does. Requests due in the warm-up are sent but not recorded.
func runRate(cfg *config, mk newDoer, probe *procProbe) (*result, error) {
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	total := int(cfg.Rate * (cfg.Warmup + cfg.Duration).Seconds())
	start := time.Now().Add(20 * time.Millisecond)
	measureFrom := start.Add(cfg.Warmup)
	hardEnd := start.Add(cfg.Warmup + cfg.Duration + cfg.Grace)

	stats := make([]workerStats, cfg.Conns)
	doers, err := makeDoers(cfg.Conns, mk)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for w := range cfg.Conns {
		wg.Go(func() {
			st := &stats[w]
			d := doers[w]
			defer d.close()
			for i := w; i < total; i += cfg.Conns {
				intended := start.Add(time.Duration(i) * interval)
				if time.Now().After(hardEnd) {
					if !intended.Before(measureFrom) {
						st.dropped++
					}
					continue
				}
				slept := sleepUntil(intended)
				sent := time.Now()
				err := d.do(sent.Add(cfg.Timeout))
				done := time.Now()
				if intended.Before(measureFrom) {
					continue
				}
				if err != nil {
					st.fail(err)
					continue
				}
				st.completed++
				st.lat.Record(done.Sub(latencyStart(intended, sent, slept)))
				st.svc.Record(done.Sub(sent))
			}
		})
	}
	probe.startAt(measureFrom)
	wg.Wait()
	res := merge(stats)
	res.Mode = "rate"
	res.Rate = cfg.Rate
	res.DurationS = cfg.Duration.Seconds()
	res.RPS = float64(res.Completed) / cfg.Duration.Seconds()
	return res, probe.finish(res)
}

// runMax is the closed loop: conns workers each send the next request as
// soon as the last one is answered, for warm-up plus duration. Only requests
// sent after the warm-up and answered before the end are recorded.
func runMax(cfg *config, mk newDoer, probe *procProbe) (*result, error) {
	stats := make([]workerStats, cfg.Conns)
	doers, err := makeDoers(cfg.Conns, mk)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	var wg sync.WaitGroup
	for w := range cfg.Conns {
		wg.Go(func() {
			st := &stats[w]
			d := doers[w]
			defer d.close()
			for {
				sent := time.Now()
				if !sent.Before(end) {
					return
				}
				err := d.do(sent.Add(cfg.Timeout))
				done := time.Now()
				if sent.Before(measureFrom) || done.After(end) {
					continue
				}
				if err != nil {
					st.fail(err)
					continue
				}
				st.completed++
				st.lat.Record(done.Sub(sent))
				st.svc.Record(done.Sub(sent))
			}
		})
	}
	probe.startAt(measureFrom)
	wg.Wait()
	res := merge(stats)
	res.Mode = "max"
	res.DurationS = cfg.Duration.Seconds()
	res.RPS = float64(res.Completed) / cfg.Duration.Seconds()
	return res, probe.finish(res)
}

func makeDoers(n int, mk newDoer) ([]doer, error) {
	ds := make([]doer, n)
	for i := range ds {
		d, err := mk()
		if err != nil {
			return nil, err
		}
		ds[i] = d
	}
	return ds, nil
}

func merge(stats []workerStats) *result {
	var lat, svc Histogram
	res := &result{}
	for i := range stats {
		s := &stats[i]
		lat.Merge(&s.lat)
		svc.Merge(&s.svc)
		res.Completed += s.completed
		res.Errors += s.errors
		res.Dropped += s.dropped
		if res.FirstError == "" && s.firstErr != nil {
			res.FirstError = s.firstErr.Error()
		}
	}
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	res.P50, res.P90, res.P99, res.P999 = us(lat.Quantile(0.5)), us(lat.Quantile(0.9)), us(lat.Quantile(0.99)), us(lat.Quantile(0.999))
	res.Max, res.Mean = us(lat.Max()), us(lat.Mean())
	res.SvcP50, res.SvcP99 = us(svc.Quantile(0.5)), us(svc.Quantile(0.99))
	return res
}

// procProbe samples the CPU time of the processes under test when the
// measured window opens and when the run ends, and their peak RSS at the
// end. With no pids it only accounts for the load generator itself.
type procProbe struct {
	pids    []int
	self    []int
	done    chan struct{}
	cpu0    float64
	self0   float64
	err     error
	started bool
}

func newProcProbe(pids []int, selfPid int) *procProbe {
	return &procProbe{pids: pids, self: []int{selfPid}, done: make(chan struct{})}
}

// startAt samples at t in a goroutine of its own; finish waits for it.
func (p *procProbe) startAt(t time.Time) {
	p.started = true
	go func() {
		defer close(p.done)
		timer := time.NewTimer(time.Until(t))
		<-timer.C
		p.self0, _ = cpuSeconds(p.self)
		if len(p.pids) > 0 {
			p.cpu0, p.err = cpuSeconds(p.pids)
		}
	}()
}

func (p *procProbe) finish(res *result) error {
	if p.started {
		<-p.done
	}
	if s1, err := cpuSeconds(p.self); err == nil {
		res.LoadgenCPUSecs = s1 - p.self0
	}
	if len(p.pids) == 0 {
		return nil
	}
	if p.err != nil {
		return p.err
	}
	cpu1, err := cpuSeconds(p.pids)
	if err != nil {
		return err
	}
	res.Pids = p.pids
	res.CPUSeconds = cpu1 - p.cpu0
	if res.Completed > 0 {
		res.CPUPerReqUS = res.CPUSeconds / float64(res.Completed) * 1e6
	}
	var m memory
	m, res.PeakRSSSumKB, err = peakRSS(p.pids)
	res.PeakRSSMaxKB, res.RSSAnonKB, res.RSSFileKB = m.PeakKB, m.AnonKB, m.FileKB
	return err
}

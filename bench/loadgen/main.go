// Command loadgen drives HTTP/1.1 load at one address and prints what it
// measured as one JSON object.
//
// Open loop (-rate N): requests are due on a fixed schedule, spread over a
// bounded pool of keep-alive connections (each connection owns every
// -conns-th slot, as in wrk2). Latency runs from the request's intended send
// time, so a stall in the system under test is charged to every request it
// delayed (the coordinated-omission correction).
//
// Closed loop (-max): -conns connections each send the next request as soon
// as the previous one is answered; this finds the maximum throughput.
//
// Both modes run a warm-up first that is not recorded. Memory is bounded by a
// fixed-size histogram per connection, and every loop is bounded in count
// and time. With -pids, it also reports the CPU time (utime+stime) those
// processes spent over the measured window, per completed request, and their
// peak RSS (VmHWM).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	cfg, out, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: encode result:", err)
		os.Exit(1)
	}
	b = append(b, '\n')
	if out == "" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: write result:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, string, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	cfg := &config{}
	fs.StringVar(&cfg.Label, "label", "", "name of the target, copied into the output")
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:18080", "host:port to send requests to")
	fs.StringVar(&cfg.Host, "host", "bench.local", "Host header")
	fs.StringVar(&cfg.Path, "path", "/", "request path")
	fs.StringVar(&cfg.Client, "client", "raw", "HTTP client: raw (hand-rolled HTTP/1.1 on net.Conn) or nethttp (net/http Transport)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second")
	fs.BoolVar(&cfg.Max, "max", false, "closed loop: as fast as -conns connections allow")
	fs.IntVar(&cfg.Conns, "conns", 0, "connections (default 8 with -rate, 32 with -max)")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "unrecorded warm-up before the measured window")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&cfg.Timeout, "timeout", 2*time.Second, "per-request timeout")
	fs.DurationVar(&cfg.Grace, "grace", 5*time.Second, "open loop: how far behind schedule it may run before it stops sending")
	pids := fs.String("pids", "", "comma-separated pids whose CPU time and peak RSS to report")
	out := fs.String("out", "", "write the JSON result here instead of stdout")
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	if fs.NArg() > 0 {
		return nil, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Conns == 0 {
		cfg.Conns = 8
		if cfg.Max {
			cfg.Conns = 32
		}
	}
	var err error
	if cfg.Pids, err = parsePids(*pids); err != nil {
		return nil, "", err
	}
	if err := cfg.validate(); err != nil {
		return nil, "", err
	}
	return cfg, *out, nil
}

func run(cfg *config) (*result, error) {
	mk := func() (doer, error) {
		if cfg.Client == "nethttp" {
			return newStdClient(cfg.Addr, cfg.Host, cfg.Path)
		}
		return newRawClient(cfg.Addr, cfg.Host, cfg.Path), nil
	}
	probe := newProcProbe(cfg.Pids, os.Getpid())
	var res *result
	var err error
	if cfg.Max {
		res, err = runMax(cfg, mk, probe)
	} else {
		res, err = runRate(cfg, mk, probe)
	}
	if res != nil {
		res.Label, res.Client, res.Conns = cfg.Label, cfg.Client, cfg.Conns
	}
	return res, err
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/causewaymesh/causeway/internal/up"
)

// upConfig is the `causeway up` command line.
type upConfig struct {
	Example, BinDir, WorkDir string
	Traffic                  bool
	Service                  string
	Rate                     int
	Phase, ReadyTimeout      time.Duration
}

func (c *upConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Example, "example", filepath.Join("examples", "three-clusters", "federation.yaml"), "topology file: clusters, zones, services and their replicas")
	fs.StringVar(&c.BinDir, "bin-dir", "", "directory with causeway, causeway-proxy and demoapp; missing ones are built there (default: this binary's directory when causeway-proxy is beside it, else ./bin)")
	fs.StringVar(&c.WorkDir, "work-dir", "", "where each cluster's folder source, CA, tokens and the logs go (default: a temporary directory removed on exit)")
	fs.BoolVar(&c.Traffic, "traffic", false, "drive traffic from the client and walk through a failover (the client's zone, then its cluster, then restored)")
	fs.StringVar(&c.Service, "service", "", "exported service the traffic goes to (default: the first exported one)")
	fs.IntVar(&c.Rate, "rate", 200, "requests per second with --traffic")
	fs.DurationVar(&c.Phase, "phase", 3*time.Second, "length of each phase with --traffic")
	fs.DurationVar(&c.ReadyTimeout, "ready-timeout", 30*time.Second, "how long to wait for everything to be ready")
}

func (c *upConfig) validate() error {
	var errs []error
	if c.Rate <= 0 || c.Rate > 5000 {
		errs = append(errs, fmt.Errorf("--rate %d: want 1 to 5000", c.Rate))
	}
	if c.Phase <= 0 {
		errs = append(errs, fmt.Errorf("--phase %s: must be positive", c.Phase))
	}
	if c.ReadyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--ready-timeout %s: must be positive", c.ReadyTimeout))
	}
	return errors.Join(errs...)
}

// runUp is `causeway up`: a whole federation on this machine, as real
// processes on 127.0.0.0/8, until Ctrl-C.
func runUp(args []string) int {
	var c upConfig
	fs := flag.NewFlagSet("causeway up", flag.ContinueOnError)
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "causeway up:", err)
		return 2
	}
	top, err := up.LoadTopology(c.Example)
	if err != nil {
		fmt.Fprintln(os.Stderr, "causeway up:", err)
		return 2
	}
	if c.BinDir == "" {
		c.BinDir = "bin"
		if exe, err := os.Executable(); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(exe), "causeway-proxy")); err == nil {
				c.BinDir = filepath.Dir(exe)
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	out := os.Stdout
	fmt.Fprintf(out, "causeway up: %d clusters from %s\n", len(top.Clusters), c.Example)
	f, err := up.Start(ctx, up.Options{Topology: top, BinDir: c.BinDir, WorkDir: c.WorkDir, Out: out, ReadyTimeout: c.ReadyTimeout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "causeway up:", err)
		return 1
	}
	defer func() {
		fmt.Fprintln(out, "stopping every process...")
		f.Close()
		fmt.Fprintln(out, "stopped; nothing left running")
	}()
	fmt.Fprintf(out, "\nready in %s\n\n", f.Ready.Round(10*time.Millisecond))
	f.PrintWhere(out)
	if c.Traffic {
		fmt.Fprintln(out)
		if _, err := f.Walk(ctx, out, up.WalkOptions{Service: c.Service, Rate: c.Rate, Phase: c.Phase}); err != nil {
			fmt.Fprintln(os.Stderr, "causeway up:", err)
			return 1
		}
	}
	fmt.Fprintln(out, "\nrunning; Ctrl-C stops everything")
	<-ctx.Done()
	return 0
}

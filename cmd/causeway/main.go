// Command causeway is Causeway's control plane and CLI: `up` (a whole
// multi-cluster federation on this machine, internal/up), `status` (of a
// `causeway up` or of control planes by address), `control-plane`, `inject
// -f` (offline sidecar injection), `demo` (a sidecar failing over between
// localities, driven by a live xDS server), `explain` (a live sidecar's
// routing and balancing decision for a destination), `link` (the Peer
// object of a running control plane's cluster), `check` (pre-flight and
// post-install checks) and `version`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/causewaymesh/causeway/internal/demo"
)

var version = "dev"

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: causeway up [--traffic] | causeway status [-o json] | causeway explain --admin ADDR DEST | causeway link [--admin ADDR] | causeway check [--admin ADDR,...] | causeway control-plane ... | causeway inject -f FILE | causeway demo [--keep] | causeway version")
		return 2
	}
	switch args[0] {
	case "control-plane":
		return runControlPlane(args[1:])
	case "inject":
		return runInject(args[1:], os.Stdin, os.Stdout, os.Stderr)
	case "up":
		return runUp(args[1:])
	case "status":
		return runStatus(args[1:], os.Stdout, os.Stderr)
	case "explain":
		return runExplain(args[1:], os.Stdout, os.Stderr)
	case "link":
		return runLink(args[1:], os.Stdout, os.Stderr)
	case "check":
		return runCheck(args[1:], os.Stdout, os.Stderr)
	case "version":
		fmt.Println("causeway", version)
		return 0
	case "demo":
		o := demo.Options{Out: os.Stdout}
		fs := flag.NewFlagSet("causeway demo", flag.ContinueOnError)
		fs.BoolVar(&o.Keep, "keep", false, "keep everything running after the walk-through until Ctrl-C")
		fs.IntVar(&o.Rate, "rate", 200, "requests per second")
		fs.DurationVar(&o.Phase, "phase", 2*time.Second, "length of each phase")
		fs.StringVar(&o.AdminAddr, "admin", "127.0.0.1:0", "sidecar admin listener")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if _, err := demo.Run(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "causeway demo:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "causeway: unknown command %q; try up, status, explain, link, check, control-plane, inject, demo or version\n", args[0])
	return 2
}

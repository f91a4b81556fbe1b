// Command causeway-proxy is Causeway's data plane. In sidecar mode it sits
// beside one workload and is configured by xDS (ADS) from the cluster's
// control plane, or by a static Envoy v3 bootstrap file.
//
//	causeway-proxy sidecar --bootstrap bootstrap.yaml
//	causeway-proxy sidecar --xds 127.0.0.1:15010 --workload web --namespace shop
//
// In east-west mode it is its cluster's east-west gateway: it passes other
// clusters' mTLS connections through, by SNI, to local endpoints of
// exported services (no SVID; docs/eastwest.md).
//
//	causeway-proxy east-west --xds 127.0.0.1:15010 --inbound-ip 10.0.0.5 --cluster east --network net-east
//
// In init mode it is causeway-init (proxy/capture/initcmd): the injected
// init container runs the proxy image with args "init ...".
//
//	causeway-proxy init --proxy-uid 1337 --capture-dns
//
// SIGTERM or SIGINT drains gracefully: /ready fails, listeners close,
// in-flight requests finish (up to --drain-timeout), then the process exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/causewaymesh/causeway/proxy/capture/initcmd"
	"github.com/causewaymesh/causeway/proxy/runner"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(os.Stderr, "usage: causeway-proxy sidecar [flags]   (causeway-proxy sidecar -h lists the flags)")
		fmt.Fprintln(os.Stderr, "       causeway-proxy east-west --inbound-ip <ip> [--eastwest-port 15443] [flags]")
		fmt.Fprintln(os.Stderr, "       causeway-proxy init [flags]   (the traffic-capture installer, as causeway-init)")
		fmt.Fprintln(os.Stderr, "       causeway-proxy version")
		return 2
	}
	if args[0] == "version" {
		fmt.Println("causeway-proxy", version)
		return 0
	}
	if args[0] == "init" { // the injected init container: causeway-init's program
		return initcmd.Run("causeway-proxy init", version, args[1:], os.Stdout, os.Stderr)
	}
	cfg := runner.DefaultConfig()
	cfg.Mode = args[0]
	fs := flag.NewFlagSet("causeway-proxy "+args[0], flag.ContinueOnError)
	cfg.Flags(fs)
	rt := runner.DefaultRuntimeConfig(cfg.Mode)
	rt.Flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := rt.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "causeway-proxy:", err)
		return 1
	}
	// Runtime tuning first: it may re-execute the process (same pid).
	if err := rt.Apply(); err != nil {
		fmt.Fprintln(os.Stderr, "causeway-proxy: going on untuned:", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p, err := runner.Start(context.Background(), cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "causeway-proxy:", err)
		return 1
	}
	select {
	case <-ctx.Done():
		if err := p.Shutdown(); err != nil {
			fmt.Fprintln(os.Stderr, "causeway-proxy: shutdown:", err)
			return 1
		}
	case <-waitChan(p):
		fmt.Fprintln(os.Stderr, "causeway-proxy: stopped:", p.Wait())
		return 1
	}
	return 0
}

func waitChan(p *runner.Process) <-chan struct{} {
	ch := make(chan struct{})
	go func() { p.Wait(); close(ch) }()
	return ch
}

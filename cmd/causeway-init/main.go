// Command causeway-init installs a pod's traffic capture: the nat-table
// rules that send the pod's TCP (and, with --capture-dns, its DNS) to the
// causeway-proxy sidecar. It runs once, as the pod's init container, in the
// pod's network namespace, with CAP_NET_ADMIN and CAP_NET_RAW.
//
//	causeway-init                         # default ports, UID 1337
//	causeway-init --capture-dns --exclude-inbound-ports 15021
//	causeway-init --dry-run               # print the rules, change nothing
//	causeway-init --remove                # delete the CAUSEWAY_* chains
//
// Exit codes: 0 done (or nothing to do), 1 iptables refused the change,
// 2 bad flags, 3 iptables is not installed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/causewaymesh/causeway/proxy/capture"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	exitOK         = 0
	exitFailed     = 1
	exitUsage      = 2
	exitNoIptables = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg := capture.DefaultConfig()
	fs := flag.NewFlagSet("causeway-init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: causeway-init [flags]\n\nInstalls the sidecar's traffic capture (nat table, CAUSEWAY_* chains) in this network namespace.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg.Flags(fs)
	remove := fs.Bool("remove", false, "delete the CAUSEWAY_* chains and the jumps to them instead of installing")
	dryRun := fs.Bool("dry-run", false, "print the rules that would be installed and change nothing")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on iptables after this long")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, "causeway-init", version)
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "causeway-init: unexpected argument %q: every option is a flag (causeway-init -h lists them)\n", fs.Arg(0))
		return exitUsage
	}
	if err := cfg.Validate(); err != nil && !*remove {
		fmt.Fprintln(stderr, "causeway-init: invalid flags:")
		for _, e := range unjoin(err) {
			fmt.Fprintln(stderr, "  "+e.Error())
		}
		return exitUsage
	}
	families := []capture.Family{capture.IPv4}
	if cfg.IPv6 {
		families = append(families, capture.IPv6)
	}

	if *dryRun {
		if *remove {
			fmt.Fprintln(stdout, "dry run: --remove would delete every CAUSEWAY_* chain in the nat table and every rule that jumps to one")
			return exitOK
		}
		for _, f := range families {
			rules, err := capture.Rules(cfg, f)
			if err != nil { // Validate passed above; kept for safety
				fmt.Fprintln(stderr, "causeway-init:", err)
				return exitUsage
			}
			fmt.Fprintf(stdout, "dry run: %s nat table would hold:\n", f)
			printRules(stdout, rules)
		}
		return exitOK
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var tables capture.Tables
	var results []capture.Result
	var err error
	if *remove {
		results, err = tables.Remove(ctx, cfg)
	} else {
		results, err = tables.Apply(ctx, cfg)
	}
	for _, r := range results {
		report(stdout, r, *remove)
	}
	if err != nil {
		fmt.Fprintln(stderr, "causeway-init:", err)
		if errors.Is(err, capture.ErrNoIptables) {
			return exitNoIptables
		}
		return exitFailed
	}
	return exitOK
}

func report(w io.Writer, r capture.Result, removed bool) {
	switch {
	case removed && r.Changed:
		fmt.Fprintf(w, "%s nat table: removed the CAUSEWAY_* chains and the jumps to them\n", r.Family)
	case removed:
		fmt.Fprintf(w, "%s nat table: no CAUSEWAY_* chains; nothing to remove\n", r.Family)
	case r.Changed:
		fmt.Fprintf(w, "%s nat table: installed (iptables-restore --noflush):\n", r.Family)
		printRules(w, r.Rules)
	default:
		fmt.Fprintf(w, "%s nat table: already in place, nothing changed:\n", r.Family)
		printRules(w, r.Rules)
	}
}

func printRules(w io.Writer, rules []string) {
	for _, l := range rules {
		fmt.Fprintln(w, "  "+l)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

package initcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/causewaymesh/causeway/proxy/capture"
)

// Exit codes of Run.
const (
	ExitOK         = 0 // done, or nothing to do
	ExitFailed     = 1 // iptables refused the change
	ExitUsage      = 2 // bad flags
	ExitNoIptables = 3 // iptables is not installed
)

// Run installs (or with --remove deletes, or with --dry-run prints) the
// capture rules of capture.Config's flags in the current network namespace
// and returns the exit code. name is the program as the user typed it
// ("causeway-init", "causeway-proxy init"), for usage and messages;
// version is printed by --version.
func Run(name, version string, args []string, stdout, stderr io.Writer) int {
	cfg := capture.DefaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [flags]\n\nInstalls the sidecar's traffic capture (nat table, CAUSEWAY_* chains) in this network namespace.\n\nFlags:\n", name)
		fs.PrintDefaults()
	}
	cfg.Flags(fs)
	remove := fs.Bool("remove", false, "delete the CAUSEWAY_* chains and the jumps to them instead of installing")
	dryRun := fs.Bool("dry-run", false, "print the rules that would be installed and change nothing")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on iptables after this long")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, name, version)
		return ExitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q: every option is a flag (%s -h lists them)\n", name, fs.Arg(0), name)
		return ExitUsage
	}
	if err := cfg.Validate(); err != nil && !*remove {
		fmt.Fprintf(stderr, "%s: invalid flags:\n", name)
		for _, e := range unjoin(err) {
			fmt.Fprintln(stderr, "  "+e.Error())
		}
		return ExitUsage
	}
	families := []capture.Family{capture.IPv4}
	if cfg.IPv6 {
		families = append(families, capture.IPv6)
	}

	if *dryRun {
		if *remove {
			fmt.Fprintln(stdout, "dry run: --remove would delete every CAUSEWAY_* chain in the nat table and every rule that jumps to one")
			return ExitOK
		}
		for _, f := range families {
			rules, err := capture.Rules(cfg, f)
			if err != nil { // Validate passed above; kept for safety
				fmt.Fprintf(stderr, "%s: %v\n", name, err)
				return ExitUsage
			}
			fmt.Fprintf(stdout, "dry run: %s nat table would hold:\n", f)
			printRules(stdout, rules)
		}
		return ExitOK
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
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		if errors.Is(err, capture.ErrNoIptables) {
			return ExitNoIptables
		}
		return ExitFailed
	}
	return ExitOK
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

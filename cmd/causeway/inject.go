package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/causewaymesh/causeway/internal/inject"
)

// runInject is `causeway inject -f FILE` (or -f - for stdin): the sidecar
// injection the webhook does, offline, for GitOps. Injected workloads are
// written to stdout; other documents pass through byte for byte; workloads
// left alone are listed on stderr with the reason.
func runInject(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg := inject.DefaultConfig()
	fs := flag.NewFlagSet("causeway inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", `manifest file to inject ("-" for stdin)`)
	cfg.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "causeway inject: -f is required: name the manifest file, or - for stdin")
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "causeway inject:", err)
		return 2
	}
	in := stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			fmt.Fprintln(stderr, "causeway inject:", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	skipped, err := inject.ManifestsReport(in, stdout, cfg)
	for _, s := range skipped {
		fmt.Fprintf(stderr, "causeway inject: document %d, %s %s/%s: not injected: %s\n", s.Document, s.Kind, s.Namespace, s.Name, s.Reason)
	}
	if err != nil {
		fmt.Fprintln(stderr, "causeway inject:", err)
		return 1
	}
	return 0
}

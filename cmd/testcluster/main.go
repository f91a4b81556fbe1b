// Command testcluster runs local Kubernetes clusters from internal/testcluster
// for developers: real etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok on 127.0.0.1, built by `make testbins`.
//
//	go run ./cmd/testcluster up --clusters 3     # prints kubeconfigs, Ctrl-C stops
//	go run ./cmd/testcluster sweep               # removes leftovers of killed runs
//
// See docs/testing.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/causewaymesh/causeway/internal/testcluster"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "testcluster:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  testcluster up [flags]   start clusters, print their kubeconfigs, run until Ctrl-C
  testcluster sweep        delete network namespaces left by killed runs
run "testcluster up -h" for the flags`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "up":
		return up(args[1:], stdout, stderr)
	case "sweep":
		return testcluster.Sweep()
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func up(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("clusters", 1, "number of clusters")
	zones := fs.String("zones", "a,b", "kwok nodes per cluster, one per zone (comma-separated); empty for a control plane only")
	channel := fs.String("gateway-api-channel", testcluster.ChannelExperimental, "Gateway API CRD channel: experimental, standard or none")
	realEcho := fs.Bool("real-echo", false, "run pods labelled app=echo as real echo-basic processes (root only)")
	binDir := fs.String("bin-dir", "", "directory of the binaries (default $CAUSEWAY_TESTBINS or <repo>/bin)")
	verbose := fs.Bool("v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > testcluster.MaxSlots {
		return fmt.Errorf("--clusters %d: want 1..%d", *n, testcluster.MaxSlots)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logf := func(string, ...any) {}
	if *verbose {
		logf = func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }
	}
	start := time.Now()
	clusters := make([]*testcluster.Cluster, *n)
	errs := make([]error, *n)
	var wg sync.WaitGroup
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := testcluster.Options{
				Name:              fmt.Sprintf("c%d", i),
				BinDir:            *binDir,
				GatewayAPIChannel: *channel,
				Logf:              logf,
			}
			if *zones != "" {
				o.Nodes = testcluster.ZonalNodes(fmt.Sprintf("region-%d", i), strings.Split(*zones, ",")...)
			}
			if *realEcho {
				o.RealPods = []testcluster.RealPod{{Selector: "app=echo", Command: []string{"echo-basic"}}}
			}
			clusters[i], errs[i] = testcluster.New(ctx, o)
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range clusters {
			if c != nil {
				if err := c.Close(); err != nil {
					fmt.Fprintf(stderr, "close %s: %v\n", c.Name, err)
				}
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d cluster(s) ready in %v\n", *n, time.Since(start).Round(time.Millisecond))
	var paths []string
	for _, c := range clusters {
		fmt.Fprintf(stdout, "%s\tkubeconfig=%s\tserver=%s\tpods=%s\tservices=%s\tlogs=%s/logs\n",
			c.Name, c.Kubeconfig, c.Config.Host, c.PodCIDR, c.ServiceCIDR, c.Dir)
		paths = append(paths, c.Kubeconfig)
	}
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", strings.Join(paths, ":"))
	fmt.Fprintln(stdout, "Ctrl-C stops the clusters and removes their files.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	return nil
}

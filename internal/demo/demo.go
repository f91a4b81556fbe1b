// Package demo is the walk-through behind `causeway demo`: a real sidecar
// fed over ADS by a real xDS server, calling a service whose endpoints live
// in three localities, while the demo takes localities down and brings them
// back. It prints where every request went and how many failed.
//
// Everything listens on 127.0.0.0/8, every loop is bounded, and Run stops
// everything it started before it returns.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/runner"
)

// Options shape a demo run.
type Options struct {
	Out io.Writer
	// Rate is requests per second during each phase (default 200).
	Rate int
	// Phase is how long each phase lasts (default 2s).
	Phase time.Duration
	// Keep, when true, leaves everything running after the walk-through
	// until ctx ends.
	Keep bool
	// AdminAddr is the sidecar's admin listener (default: an ephemeral
	// port on 127.0.0.1).
	AdminAddr string
}

type backend struct {
	locality string
	srv      *http.Server
	lis      net.Listener
	addr     string
}

func (b *backend) start() error {
	lis, err := net.Listen("tcp", b.addr)
	if err != nil {
		return fmt.Errorf("backend %s in %s: %w", b.addr, b.locality, err)
	}
	b.lis = lis
	b.addr = lis.Addr().String()
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-locality", b.locality)
		io.WriteString(w, "checkout in "+b.locality+"\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go b.srv.Serve(lis)
	return nil
}

func (b *backend) stop() {
	b.srv.Close()
}

// maxEjection bounds how long the demo's sidecar keeps a failed endpoint
// ejected (Envoy's default is 300s; the demo wants to show the return).
const maxEjection = 2 * time.Second

// PhaseResult is one row of the walk-through's table.
type PhaseResult struct {
	Name       string
	Requests   int
	Failed     int
	ByLocality map[string]int // region/zone -> requests served
}

// Run runs the walk-through and returns its table.
func Run(ctx context.Context, o Options) ([]PhaseResult, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.Phase <= 0 {
		o.Phase = 2 * time.Second
	}
	if o.AdminAddr == "" {
		o.AdminAddr = "127.0.0.1:0"
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, format+"\n", args...) }

	// The service's endpoints: two in the caller's zone (priority 0), two
	// in another zone of the same region (1), two in another region (2).
	type zone struct {
		region, zone string
		prio         uint32
		backends     []*backend
	}
	zones := []*zone{
		{region: "eu-west", zone: "eu-west-1a", prio: 0},
		{region: "eu-west", zone: "eu-west-1b", prio: 1},
		{region: "us-east", zone: "us-east-1a", prio: 2},
	}
	var all []*backend
	defer func() {
		for _, b := range all {
			b.stop()
		}
	}()
	for _, z := range zones {
		for range 2 {
			b := &backend{locality: z.region + "/" + z.zone, addr: "127.0.0.1:0"}
			if err := b.start(); err != nil {
				return nil, err
			}
			z.backends = append(z.backends, b)
			all = append(all, b)
		}
	}

	srv, err := xds.NewServer(xds.Options{})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()

	// The sidecar's outbound listener takes an ephemeral port; we learn it
	// from the proxy once it has bound.
	const node = "demo-client.shop"
	resources := func() xds.Resources {
		var locs []xds.Locality
		for _, z := range zones {
			l := xds.Locality{Region: z.region, Zone: z.zone, Priority: z.prio, Cluster: "cluster-" + z.region}
			for _, b := range z.backends {
				l.Addresses = append(l.Addresses, b.addr)
			}
			locs = append(locs, l)
		}
		return xds.Resources{
			Listeners: []types.Resource{xds.HTTPListener("outbound", "127.0.0.1:0", false, "checkout")},
			Routes: []types.Resource{xds.RouteToCluster("checkout", "checkout.shop", 5*time.Second,
				&xds.Retry{On: "connect-failure,gateway-error,reset", NumRetries: 3})},
			Clusters: []types.Resource{xds.EDSCluster("checkout.shop", xds.ClusterOptions{
				EjectAfter: 2, BaseEjectionTime: time.Second, MaxEjectionTime: maxEjection, MaxEjectPercent: 100,
			})},
			Endpoints: []types.Resource{xds.LoadAssignment("checkout.shop", locs...)},
		}
	}
	if err := srv.SetResources(ctx, node, resources()); err != nil {
		return nil, err
	}

	cfg := runner.DefaultConfig()
	cfg.XDS = srv.Addr()
	cfg.Admin = o.AdminAddr
	cfg.NodeID = node
	cfg.Workload, cfg.Namespace, cfg.Cluster, cfg.Locality = "demo-client", "shop", "cluster-eu-west", "eu-west/eu-west-1a"
	cfg.AccessLog = "off"
	cfg.LogLevel = "warn"
	cfg.DrainTimeout = 2 * time.Second
	p, err := runner.Start(ctx, cfg, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	defer p.Shutdown()

	var outbound string
	if err := waitFor(ctx, 10*time.Second, func() bool {
		if a := p.Proxy.ListenerAddr("outbound"); a != nil {
			outbound = a.String()
			return true
		}
		return false
	}); err != nil {
		return nil, errors.New("sidecar: no config from the xDS server within 10s; is something blocking 127.0.0.1?")
	}
	say("sidecar for shop/demo-client in eu-west/eu-west-1a")
	say("  outbound listener  http://%s   (calls checkout.shop)", outbound)
	say("  admin              http://%s   (/stats/prometheus /clusters /config_dump /ready)", p.Admin.Addr())
	say("  xDS server         %s", srv.Addr())
	say("")

	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	type phase struct {
		name   string
		before func()
		// extra lengthens the phase, so that restored endpoints outlive
		// their ejection (at most maxEjection) inside it.
		extra time.Duration
	}
	phases := []phase{
		{name: "all localities up"},
		{name: "eu-west-1a down", before: func() {
			for _, b := range zones[0].backends {
				b.stop()
			}
		}},
		{name: "eu-west (whole region) down", before: func() {
			for _, b := range zones[1].backends {
				b.stop()
			}
		}},
		{name: "eu-west restored", before: func() {
			for _, z := range zones[:2] {
				for _, b := range z.backends {
					b.addr = b.lis.Addr().String()
					if err := b.start(); err != nil {
						say("restore %s: %v", b.addr, err)
					}
				}
			}
			// A restored endpoint gets traffic again when its ejection
			// (at most maxEjection) ends and its first request succeeds.
		}, extra: maxEjection},
	}

	var results []PhaseResult
	tw := tabwriter.NewWriter(o.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tREQUESTS\tFAILED\teu-west-1a\teu-west-1b\tus-east-1a")
	for _, ph := range phases {
		if ctx.Err() != nil {
			break
		}
		if ph.before != nil {
			ph.before()
		}
		counts, failed, total := drive(ctx, client, "http://"+outbound+"/", o.Rate, o.Phase+ph.extra)
		results = append(results, PhaseResult{Name: ph.name, Requests: total, Failed: failed, ByLocality: counts})
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", ph.name, total, failed,
			counts["eu-west/eu-west-1a"], counts["eu-west/eu-west-1b"], counts["us-east/us-east-1a"])
	}
	tw.Flush()
	say("")
	say("Failover happened inside the sidecar: connect failures were retried on")
	say("another endpoint in the same request, failing endpoints were ejected, and")
	say("traffic spilled to the next priority (same region, then another region).")
	if o.Keep {
		say("")
		say("Still running; Ctrl-C stops everything.")
		<-ctx.Done()
	}
	return results, nil
}

// drive sends rate requests per second for d and counts answers by the
// locality that served them.
func drive(ctx context.Context, c *http.Client, url string, rate int, d time.Duration) (map[string]int, int, int) {
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		failed int
		total  int
		wg     sync.WaitGroup
	)
	n := int(d.Seconds() * float64(rate))
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		<-tick.C
		wg.Go(func() {
			resp, err := c.Get(url)
			mu.Lock()
			defer mu.Unlock()
			total++
			if err != nil {
				failed++
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed++
				return
			}
			counts[resp.Header.Get("x-locality")]++
		})
	}
	wg.Wait()
	return counts, failed, total
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

package up

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// PhaseResult is one row of the walk-through's table: every request sent
// during the phase, counted once.
type PhaseResult struct {
	Name     string
	Requests int
	Failed   int
	// ByZone counts answered requests by "<cluster>/<zone>" of the pod
	// that served them.
	ByZone map[string]int
	// Errors are up to 5 distinct failure reasons.
	Errors []string
}

// Drive sends rate requests per second for d to host (a clusterset name)
// through the client's sidecar, each in its own goroutine, and counts
// every one: a request fails on a transport error or a non-200 answer.
func (f *Federation) Drive(ctx context.Context, hc *http.Client, host string, rate int, d time.Duration) PhaseResult {
	r := PhaseResult{ByZone: map[string]int{}}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	url := f.ClientURL() + "/"
	n := int(d.Seconds() * float64(rate))
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; i < n; i++ {
		select {
		case <-ctx.Done():
			i = n
			continue
		case <-tick.C:
		}
		wg.Go(func() {
			code, h, body, err := httpGet(ctx, hc, url, host)
			mu.Lock()
			defer mu.Unlock()
			r.Requests++
			reason := ""
			switch {
			case err != nil:
				reason = err.Error()
			case code != 200:
				reason = fmt.Sprintf("%d %s", code, body)
			}
			if reason != "" {
				r.Failed++
				if len(r.Errors) < 5 && !contains(r.Errors, reason) {
					r.Errors = append(r.Errors, reason)
				}
				return
			}
			by := h.Get("X-Served-By")
			if i := strings.LastIndexByte(by, '/'); i > 0 {
				by = by[:i]
			}
			r.ByZone[by]++
		})
	}
	wg.Wait()
	return r
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// WalkOptions shape the failover walk-through.
type WalkOptions struct {
	Service string        // an exported service (default: the first exported one)
	Rate    int           // requests per second (default 200)
	Phase   time.Duration // length of each phase (default 3s)
}

// Walk drives traffic from the client to the service's clusterset name
// while it takes down the client's own zone, then the client's whole
// cluster, then restores them; it prints the table to out and returns it.
func (f *Federation) Walk(ctx context.Context, out io.Writer, o WalkOptions) ([]PhaseResult, error) {
	if o.Service == "" {
		for _, s := range f.top.Services {
			if s.Export {
				o.Service = s.Name
				break
			}
		}
	}
	if !slices.ContainsFunc(f.top.Services, func(s ServiceSpec) bool { return s.Name == o.Service && s.Export }) {
		return nil, fmt.Errorf("up: service %q: not an exported service of the topology; name one with export: true", o.Service)
	}
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.Phase <= 0 {
		o.Phase = 3 * time.Second
	}
	host := f.ClustersetHost(o.Service)
	cl := f.client
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	svc := func(p *Pod) bool { return p.Service == o.Service }
	type phase struct {
		name string
		do   func() error
	}
	phases := []phase{
		{name: "all up"},
		{name: cl.Where() + " down", do: func() error {
			_, err := f.Kill(func(p *Pod) bool { return svc(p) && p.Cluster == cl.Cluster && p.Zone == cl.Zone })
			return err
		}},
		{name: cl.Cluster + " (whole cluster) down", do: func() error {
			_, err := f.Kill(func(p *Pod) bool { return svc(p) && p.Cluster == cl.Cluster })
			return err
		}},
		{name: cl.Cluster + " restored", do: func() error {
			_, err := f.Restore(ctx)
			return err
		}},
	}
	zones := f.top.Zones()
	fmt.Fprintf(out, "traffic: %d req/s from %s (%s) to %s, %s per phase\n\n", o.Rate, cl.Name, cl.Where(), host, o.Phase)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PHASE\tREQUESTS\tFAILED\t%s\n", strings.Join(zones, "\t"))
	var results []PhaseResult
	for _, ph := range phases {
		if ctx.Err() != nil {
			break
		}
		if ph.do != nil {
			if err := ph.do(); err != nil {
				tw.Flush()
				return results, fmt.Errorf("phase %q: %w", ph.name, err)
			}
		}
		r := f.Drive(ctx, hc, host, o.Rate, o.Phase)
		r.Name = ph.name
		results = append(results, r)
		fmt.Fprintf(tw, "%s\t%d\t%d", r.Name, r.Requests, r.Failed)
		for _, z := range zones {
			fmt.Fprintf(tw, "\t%d", r.ByZone[z])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, r := range results {
		for _, e := range r.Errors {
			fmt.Fprintf(out, "  %s: failed: %s\n", r.Name, e)
		}
	}
	return results, nil
}

// PrintWhere prints where to look: each control plane's admin pages, the
// client's outbound listener with a curl line per exported service, the
// pods, and the logs.
func (f *Federation) PrintWhere(out io.Writer) {
	for i, c := range f.top.Clusters {
		admin := fmt.Sprintf("http://%s:%d", f.net().cpIP(i), portAdmin)
		fmt.Fprintf(out, "%-6s %s  control plane %s/federation /model /problems /metrics\n", c.Name, c.Region, admin)
		fmt.Fprintf(out, "%-6s %s  east-west gateway %s (admin %s)\n", c.Name, c.Region, f.gatewayAddr(i), f.gatewayAdminURL(i)) // gateway.go
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tCLUSTER/ZONE\tPOD IP\tSIDECAR ADMIN")
	for _, p := range f.Pods() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Where(), p.IP, p.AdminURL())
	}
	tw.Flush()
	fmt.Fprintln(out)
	fmt.Fprintf(out, "client in %s: its sidecar's outbound listener is %s\n", f.client.Where(), f.ClientURL())
	for _, s := range f.top.exportedServices() {
		fmt.Fprintf(out, "  curl -H 'Host: %s' %s/\n", f.ClustersetHost(s), f.ClientURL())
	}
	fmt.Fprintf(out, "logs, folders, CAs and tokens: %s\n", f.WorkDir())
	fmt.Fprintf(out, "dashboard (every cluster, live): %s\n", f.DashboardURL())
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/causewaymesh/causeway/internal/up"
	"github.com/causewaymesh/causeway/proxy"
)

// explainConfig is `causeway explain`'s flags.
type explainConfig struct {
	Admin    string
	Pod      string // --pod: the sidecar of a `causeway up` pod
	State    string
	Listener string
	Method   string
	Headers  headerFlags
	Output   string
	Timeout  time.Duration
}

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags []string

func (h *headerFlags) String() string { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error {
	name, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", v)
	}
	*h = append(*h, v)
	return nil
}

func (c *explainConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Admin, "admin", "", "admin address of the sidecar to ask, host:port or http://host:port (`causeway up` prints it as http://<pod-ip>:15000); required")
	fs.StringVar(&c.Pod, "pod", "", "instead of --admin: a pod of the `causeway up` running here, by name (checkout-0) or cluster/name (west/checkout-0)")
	fs.StringVar(&c.State, "state", up.StatePath(), "state file of the running `causeway up` (with --pod)")
	fs.StringVar(&c.Listener, "listener", "", "sidecar listener the request arrives on, e.g. outbound_8080 (default: the proxy picks by the destination's port)")
	fs.StringVar(&c.Method, "X", "GET", "request method")
	fs.Var(&c.Headers, "H", "request header \"Name: value\" (repeatable)")
	fs.StringVar(&c.Output, "o", "table", "output: table or json")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "timeout of the admin request")
}

// runExplain is `causeway explain --admin HOST:PORT [--listener NAME]
// [-X METHOD] [-H "Name: value"]... [-o json] DESTINATION`: it asks the
// live sidecar what it would do with a request to DESTINATION (a URL or
// host[:port][/path]) and prints the route, the weighted clusters, their
// priorities and localities with shares, ejected endpoints and why.
func runExplain(args []string, stdout, stderr io.Writer) int {
	var c explainConfig
	fs := flag.NewFlagSet("causeway explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: causeway explain --admin HOST:PORT [--listener outbound_PORT] [-X METHOD] [-H 'Name: value'] [-o json] DESTINATION")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "causeway explain: want exactly one destination, e.g. reviews.default:8080/api or http://reviews.default:8080/api")
		return 2
	}
	if c.Pod != "" && c.Admin != "" {
		fmt.Fprintln(stderr, "causeway explain: --pod and --admin: give one")
		return 2
	}
	if c.Pod != "" {
		admin, err := podAdmin(c.State, c.Pod)
		if err != nil {
			fmt.Fprintln(stderr, "causeway explain:", err)
			return 2
		}
		c.Admin = admin
	}
	if c.Admin == "" {
		fmt.Fprintln(stderr, "causeway explain: --admin is required: the sidecar admin address of the source workload (http://<pod-ip>:15000 as `causeway up` prints it), or --pod with a pod of the running `causeway up`")
		return 2
	}
	if c.Output != "table" && c.Output != "json" {
		fmt.Fprintf(stderr, "causeway explain: -o %q: want \"table\" or \"json\"\n", c.Output)
		return 2
	}
	if c.Timeout <= 0 {
		fmt.Fprintf(stderr, "causeway explain: --timeout %s: must be positive\n", c.Timeout)
		return 2
	}
	authority, path, err := parseDestination(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "causeway explain:", err)
		return 2
	}
	endpoint, err := explainURL(c, authority, path)
	if err != nil {
		fmt.Fprintln(stderr, "causeway explain:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	e, err := fetchExplain(ctx, endpoint)
	if err != nil {
		fmt.Fprintln(stderr, "causeway explain:", err)
		return 1
	}
	if c.Output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(e); err != nil {
			fmt.Fprintln(stderr, "causeway explain:", err)
			return 1
		}
		return 0
	}
	writeExplain(stdout, e)
	return 0
}

// parseDestination splits "http://host:port/path?q", "host:port/path" or
// "host" into the authority and the path (with query; "/" when absent).
func parseDestination(d string) (authority, path string, err error) {
	if !strings.Contains(d, "://") {
		d = "http://" + d
	}
	u, err := url.Parse(d)
	if err != nil {
		return "", "", fmt.Errorf("destination %q: %w (want host[:port][/path] or a URL)", d, err)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("destination %q names no host (want host[:port][/path] or a URL)", d)
	}
	path = u.RequestURI()
	if u.Opaque != "" || path == "" {
		path = "/"
	}
	return u.Host, path, nil
}

// explainURL builds the admin /explain URL.
func explainURL(c explainConfig, authority, path string) (string, error) {
	base := c.Admin
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--admin %q: want host:port or http://host:port", c.Admin)
	}
	q := url.Values{}
	q.Set("authority", authority)
	q.Set("path", path)
	q.Set("method", c.Method)
	if c.Listener != "" {
		q.Set("listener", c.Listener)
	}
	for _, h := range c.Headers {
		name, value, _ := strings.Cut(h, ":")
		q.Add("h_"+strings.TrimSpace(name), strings.TrimSpace(value))
	}
	u.Path, u.RawQuery = "/explain", q.Encode()
	return u.String(), nil
}

func fetchExplain(ctx context.Context, endpoint string) (proxy.Explanation, error) {
	var e proxy.Explanation
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return e, fmt.Errorf("building request to %s: %w", endpoint, err)
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return e, fmt.Errorf("asking the sidecar admin: %w (is --admin the sidecar's admin address?)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return e, fmt.Errorf("reading %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusNotImplemented {
			msg += " (the sidecar may predate /explain)"
		}
		return e, fmt.Errorf("%s: %s: %s", endpoint, resp.Status, msg)
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return e, fmt.Errorf("decoding the answer of %s: %w", endpoint, err)
	}
	if e.Action == "" {
		return e, errors.New("the sidecar answered without an action: not a /explain answer")
	}
	return e, nil
}

// writeExplain prints e as a header, a tree of clusters → priorities →
// localities, ejected endpoints and the numbered reasons.
func writeExplain(w io.Writer, e proxy.Explanation) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Request:\t%s %s%s\n", e.Method, e.Authority, e.Path)
	fmt.Fprintf(tw, "Listener:\t%s\n", dash(e.Listener))
	if e.RouteConfig != "" {
		fmt.Fprintf(tw, "Routes:\t%s\n", e.RouteConfig)
	}
	if e.VirtualHost != "" {
		fmt.Fprintf(tw, "Virtual host:\t%s\n", e.VirtualHost)
	}
	if e.Route != nil {
		name := e.Route.Name
		if name == "" {
			name = "(unnamed)"
		}
		fmt.Fprintf(tw, "Route:\t%s  [%s]\n", name, e.Route.Match)
	}
	action := e.Action
	switch e.Action {
	case "redirect":
		action += fmt.Sprintf(" %d → %s", e.RedirectStatus, e.Redirect)
	case "direct":
		action += fmt.Sprintf(" %d", e.DirectStatus)
	case "none":
		action += " (404)"
	}
	fmt.Fprintf(tw, "Action:\t%s\n", action)
	if e.Timeout != "" {
		fmt.Fprintf(tw, "Timeout:\t%s\n", e.Timeout)
	}
	if r := e.Retry; r != nil {
		s := fmt.Sprintf("%d on %s", r.NumRetries, strings.Join(r.On, ","))
		if r.PerTryTimeout != "" {
			s += ", per try " + r.PerTryTimeout
		}
		if len(r.StatusCodes) > 0 {
			s += fmt.Sprintf(", codes %v", r.StatusCodes)
		}
		fmt.Fprintf(tw, "Retries:\t%s (from the %s)\n", s, strings.ReplaceAll(r.From, "_", " "))
	} else if e.Action == "forward" {
		fmt.Fprintf(tw, "Retries:\tnone\n")
	}
	tw.Flush()

	if len(e.Clusters) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Clusters:")
		for _, c := range e.Clusters {
			state := "ok"
			switch {
			case !c.Configured:
				state = "NOT CONFIGURED"
			case c.NoHealthyUpstream:
				state = "NO HEALTHY UPSTREAM"
			case c.Panic:
				state = "PANIC"
			}
			fmt.Fprintf(w, "  %s  weight %d (%s%%)  %s  %s\n", c.Name, c.Weight, pct(c.WeightPercent), dash(c.Policy), state)
			tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, p := range c.Priorities {
				mark := ""
				if p.Panic {
					mark = "  panic"
				}
				fmt.Fprintf(tw, "    P%d\tload %d%%\thealth %d%%\t%d/%d healthy%s\n", p.Priority, p.LoadPercent, p.HealthPercent, p.Healthy, p.Total, mark)
				for _, l := range p.Localities {
					where := l.Region + "/" + l.Zone
					if l.SubZone != "" {
						where += "/" + l.SubZone
					}
					if l.Cluster != "" {
						where += " @" + l.Cluster
					}
					cands := "-"
					if len(l.Candidates) > 0 {
						cands = strings.Join(l.Candidates, " ")
					}
					fmt.Fprintf(tw, "      %s\tshare %s%%\t%d/%d healthy\t%s\n", where, pct(l.SharePercent), l.Healthy, l.Total, cands)
				}
			}
			tw.Flush()
			for _, x := range c.Ejected {
				until := ""
				if !x.Until.IsZero() {
					until = " until " + x.Until.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "    ejected %s in %s: %s%s\n", x.Address, x.Locality, x.Reason, until)
			}
		}
	}

	if len(e.Why) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Why:")
		for i, y := range e.Why {
			fmt.Fprintf(w, "  %d. %s\n", i+1, y)
		}
	}
}

// pct prints a percentage with at most one decimal, without a trailing
// ".0".
func pct(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0")
}

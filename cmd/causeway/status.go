package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/up"
)

// statusConfig is the `causeway status` command line.
type statusConfig struct {
	Admin, Output, State string
	Timeout              time.Duration
}

func (c *statusConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Admin, "admin", "", "control planes to read, host:port[,host:port...] (their --admin); default: the clusters of the `causeway up` running on this machine")
	fs.StringVar(&c.Output, "o", "table", `output: "table" or "json"`)
	fs.StringVar(&c.State, "state", up.StatePath(), "state file of the running `causeway up` (without --admin)")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "how long to wait for each control plane")
}

// statusTarget is one control plane to read.
type statusTarget struct {
	Cluster string // "" until its report names it (--admin)
	URL     string // admin base URL, http://host:port
	Hint    string // what to check when it cannot be read
}

// statusOutput is `causeway status -o json`.
type statusOutput struct {
	Clusters []controlplane.StatusReport `json:"clusters"`
	Errors   []statusError               `json:"errors,omitempty"`
}

type statusError struct {
	Cluster string `json:"cluster,omitempty"`
	Admin   string `json:"admin"`
	Error   string `json:"error"`
}

// runStatus is `causeway status`: the clusters, federation links, trust
// bundles, services and proxies of running control planes.
func runStatus(args []string, stdout, stderr io.Writer) int {
	var c statusConfig
	fs := flag.NewFlagSet("causeway status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "causeway status: unexpected argument %q; name control planes with --admin host:port[,host:port...]\n", fs.Arg(0))
		return 2
	}
	if c.Output != "table" && c.Output != "json" {
		fmt.Fprintf(stderr, "causeway status: -o %q: want \"table\" or \"json\"\n", c.Output)
		return 2
	}
	if c.Timeout <= 0 {
		fmt.Fprintf(stderr, "causeway status: --timeout %s: must be positive\n", c.Timeout)
		return 2
	}
	var (
		targets []statusTarget
		err     error
	)
	if c.Admin != "" {
		targets, err = adminTargets(c.Admin)
	} else {
		targets, err = upTargets(c.State)
	}
	if err != nil {
		fmt.Fprintln(stderr, "causeway status:", err)
		return 2
	}
	out := fetchStatus(context.Background(), targets, c.Timeout)
	for _, e := range out.Errors {
		fmt.Fprintln(stderr, "causeway status:", e.Error)
	}
	if c.Output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintln(stderr, "causeway status:", err)
			return 1
		}
	} else if len(out.Clusters) > 0 {
		writeStatusTable(stdout, out.Clusters)
	}
	if len(out.Errors) > 0 {
		return 1
	}
	return 0
}

// adminTargets parses --admin: host:port or http(s)://host:port entries.
func adminTargets(v string) ([]statusTarget, error) {
	var (
		out  []statusTarget
		errs []error
	)
	for a := range strings.SplitSeq(v, ",") {
		a = strings.TrimSpace(a)
		base := a
		if !strings.Contains(a, "://") {
			base = "http://" + a
		}
		u, err := url.Parse(base)
		if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Port() != "" && (u.Path == "" || u.Path == "/") {
			out = append(out, statusTarget{URL: u.Scheme + "://" + u.Host,
				Hint: "check the address: it is the control plane's --admin listener"})
			continue
		}
		errs = append(errs, fmt.Errorf("--admin %q: want host:port (a control plane's --admin listener, e.g. 127.10.1.1:15011)", a))
	}
	return out, errors.Join(errs...)
}

// upTargets reads the state file of the `causeway up` running here.
func upTargets(path string) ([]statusTarget, error) {
	s, err := up.ReadState(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no causeway up found (no %s): start one with `make up`, or pass --admin host:port[,host:port...]", path)
	}
	if err != nil {
		return nil, err
	}
	if !processAlive(s.PID) {
		return nil, fmt.Errorf("no causeway up found: %s names pid %d, which is not running (it did not stop cleanly); remove the file and start one with `make up`, or pass --admin host:port[,host:port...]", path, s.PID)
	}
	var out []statusTarget
	for _, c := range s.Clusters {
		out = append(out, statusTarget{Cluster: c.Name, URL: strings.TrimSuffix(c.Admin, "/"),
			Hint: "is its control plane running? see " + filepath.Join(s.WorkDir, "logs", c.Name+"-control-plane.log")})
	}
	return out, nil
}

// processAlive: pid exists (signal 0 is delivered, or refused for
// permission).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// fetchStatus reads every target's /status at once; reports keep the
// targets' order.
func fetchStatus(ctx context.Context, targets []statusTarget, timeout time.Duration) statusOutput {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: timeout}).DialContext}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: timeout}
	reports := make([]*controlplane.StatusReport, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { reports[i], errs[i] = fetchOne(ctx, hc, t.URL+"/status") })
	}
	wg.Wait()
	var out statusOutput
	for i, t := range targets {
		if errs[i] != nil {
			what := "admin " + t.URL
			if t.Cluster != "" {
				what = "cluster " + t.Cluster + ": " + what
			}
			out.Errors = append(out.Errors, statusError{Cluster: t.Cluster, Admin: t.URL,
				Error: fmt.Sprintf("%s: %v; %s", what, errs[i], t.Hint)})
			continue
		}
		out.Clusters = append(out.Clusters, *reports[i])
	}
	return out
}

func fetchOne(ctx context.Context, hc *http.Client, u string) (*controlplane.StatusReport, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, errors.New("GET /status: 404; the control plane predates /status, upgrade it")
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s", resp.Status)
	}
	var r controlplane.StatusReport
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("GET /status: decoding: %w", err)
	}
	return &r, nil
}

// writeStatusTable prints reports as sections of aligned columns; empty
// sections are left out. Times are shown relative to each report's Time.
func writeStatusTable(w io.Writer, reports []controlplane.StatusReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := func(title string, header string, rows [][]string) {
		if len(rows) == 0 {
			return
		}
		fmt.Fprintf(tw, "\n%s\n%s\n", title, header)
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
	}
	fmt.Fprintln(tw, "CLUSTER\tTRUST DOMAIN\tREADY\tSERVICES\tENDPOINTS\tPROXIES\tEXPORT REVISION\tPROBLEMS")
	var links, trust, exported, imported, proxies, problems [][]string
	for _, r := range reports {
		rev := "-"
		if r.Export != nil {
			rev = strconv.FormatUint(r.Export.Revision, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\n", r.Cluster, dash(r.TrustDomain), yesNo(r.Ready),
			r.Services, r.Endpoints, len(r.Proxies), rev, len(r.Problems))
		for _, l := range r.Links {
			state := l.State
			if l.State == "stale" && !l.StaleSince.IsZero() {
				state += " " + ago(r.Time, l.StaleSince)
			}
			links = append(links, []string{r.Cluster, l.Peer, state, l.Address, strconv.FormatUint(l.Revision, 10),
				strconv.Itoa(l.Services), strconv.Itoa(l.Endpoints), ago(r.Time, l.LastSync), dash(l.LastError)})
		}
		for _, t := range r.Trust {
			seq := "-"
			if t.Sequence != nil {
				seq = strconv.FormatUint(*t.Sequence, 10)
			}
			expiry := "-"
			if !t.Expiry.IsZero() {
				expiry = t.Expiry.UTC().Format(time.RFC3339) + " (" + until(r.Time, t.Expiry) + ")"
			}
			trust = append(trust, []string{r.Cluster, t.TrustDomain, yesNo(t.Healthy), t.Profile, seq, expiry,
				ago(r.Time, t.LastRefresh), strconv.FormatUint(t.Refreshes, 10), dash(t.LastError)})
		}
		for _, s := range r.Exported {
			exported = append(exported, []string{r.Cluster, s.Namespace + "/" + s.Name, fmt.Sprintf("%d/%d", s.Ready, s.Endpoints)})
		}
		for _, s := range r.Imported {
			imported = append(imported, []string{r.Cluster, s.Namespace + "/" + s.Name, dash(strings.Join(s.Clusters, ",")), fmt.Sprintf("%d/%d", s.Ready, s.Endpoints)})
		}
		for _, p := range r.Proxies {
			proxies = append(proxies, []string{r.Cluster, p.ID, p.Namespace, dash(p.Locality), p.Kind, strconv.Itoa(p.Streams), dash(ackedVersions(p.Acked))})
		}
		for _, p := range r.Problems {
			problems = append(problems, []string{r.Cluster, p})
		}
	}
	section("FEDERATION LINKS (imports)", "CLUSTER\tPEER\tSTATE\tADDRESS\tREVISION\tSERVICES\tENDPOINTS\tLAST SYNC\tLAST ERROR", links)
	section("TRUST BUNDLES", "CLUSTER\tTRUST DOMAIN\tHEALTHY\tPROFILE\tSEQUENCE\tEXPIRY\tLAST REFRESH\tREFRESHES\tLAST ERROR", trust)
	section("EXPORTED SERVICES", "CLUSTER\tSERVICE\tREADY/ENDPOINTS", exported)
	section("IMPORTED SERVICES", "CLUSTER\tSERVICE\tFROM\tREADY/ENDPOINTS", imported)
	section("PROXIES", "CLUSTER\tNODE ID\tNAMESPACE\tLOCALITY\tKIND\tSTREAMS\tCONFIG ACKED", proxies)
	section("PROBLEMS", "CLUSTER\tPROBLEM", problems)
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ago is "12s ago" from now back to t; "-" for a zero t.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return short(now.Sub(t)) + " ago"
}

// until is "in 364d" from now to t, or "expired 2h ago".
func until(now, t time.Time) string {
	if d := t.Sub(now); d >= 0 {
		return "in " + short(d)
	}
	return "expired " + short(now.Sub(t)) + " ago"
}

// short is a duration in its largest whole unit: 45s, 12m, 5h, 364d.
func short(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// ackedVersions prints a proxy's ACKed versions as "lds=v1 cds=v2 ...", in
// xDS order; versions (content hashes) are cut to 8 characters.
func ackedVersions(acked map[string]string) string {
	var parts []string
	for _, t := range []string{"lds", "rds", "cds", "eds", "sds"} {
		if v, ok := acked[t]; ok {
			if len(v) > 8 {
				v = v[:8]
			}
			parts = append(parts, t+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

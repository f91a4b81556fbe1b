package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/up"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// checkResult is one line of `causeway check`.
type checkResult struct {
	Status string // "ok", "warn" or "FAIL"
	What   string
	Fix    string // what to do; empty for ok
}

// checkReport is `causeway check`'s output: sections of results.
type checkReport struct {
	sections []checkSection
}

type checkSection struct {
	title   string
	results []checkResult
}

func (r *checkReport) section(title string) *checkSection {
	r.sections = append(r.sections, checkSection{title: title})
	return &r.sections[len(r.sections)-1]
}

func (s *checkSection) ok(format string, a ...any) {
	s.results = append(s.results, checkResult{Status: "ok", What: fmt.Sprintf(format, a...)})
}

func (s *checkSection) warn(fix, format string, a ...any) {
	s.results = append(s.results, checkResult{Status: "warn", What: fmt.Sprintf(format, a...), Fix: fix})
}

func (s *checkSection) fail(fix, format string, a ...any) {
	s.results = append(s.results, checkResult{Status: "FAIL", What: fmt.Sprintf(format, a...), Fix: fix})
}

// write prints the report and returns the count of failures.
func (r *checkReport) write(w io.Writer) int {
	var ok, warn, failed int
	for i, s := range r.sections {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, s.title)
		for _, res := range s.results {
			fmt.Fprintf(w, "  %-4s  %s\n", res.Status, strings.ReplaceAll(res.What, "\n", "\n        "))
			if res.Fix != "" {
				fmt.Fprintf(w, "        fix: %s\n", res.Fix)
			}
			switch res.Status {
			case "ok":
				ok++
			case "warn":
				warn++
			default:
				failed++
			}
		}
	}
	fmt.Fprintf(w, "\n%d ok, %d warnings, %d failed\n", ok, warn, failed)
	return failed
}

// checkConfig is the `causeway check` command line.
type checkConfig struct {
	Admin, State         string
	ControlPlane         bool
	Example, BinDir      string
	Block                int
	Timeout, ExpiryAhead time.Duration
}

// runCheck is `causeway check`: with --admin (or a `causeway up` running
// here) post-install checks of running control planes; with
// --control-plane the pre-flight of `causeway control-plane` with the
// flags that follow; otherwise the pre-flight of `causeway up`.
func runCheck(args []string, stdout, stderr io.Writer) int {
	var c checkConfig
	fs := flag.NewFlagSet("causeway check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Admin, "admin", "", "post-install: control planes to check, host:port[,host:port...] (their --admin); default: the `causeway up` running here, if any")
	fs.StringVar(&c.State, "state", up.StatePath(), "state file of the running `causeway up`")
	fs.BoolVar(&c.ControlPlane, "control-plane", false, "pre-flight of `causeway control-plane`: the flags after this one are its flags (addresses, --dir, --ca-dir, --tokens-file, --peer bundle files)")
	fs.StringVar(&c.Example, "example", filepath.Join("examples", "three-clusters", "federation.yaml"), "pre-flight of `causeway up`: its topology file")
	fs.StringVar(&c.BinDir, "bin-dir", "bin", "pre-flight of `causeway up`: its --bin-dir")
	fs.IntVar(&c.Block, "block", up.DefaultBlock, "pre-flight of `causeway up`: the second octet of its addresses")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "how long to wait for each control plane")
	fs.DurationVar(&c.ExpiryAhead, "expiry-warning", 30*24*time.Hour, "warn about roots and bundles that expire sooner than this")
	// --control-plane takes the rest of the line as control-plane flags.
	var cpArgs []string
	if i := slices.Index(args, "--control-plane"); i >= 0 {
		args, cpArgs = args[:i+1], args[i+1:]
	} else if i := slices.Index(args, "-control-plane"); i >= 0 {
		args, cpArgs = args[:i+1], args[i+1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "causeway check: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var r checkReport
	switch {
	case c.ControlPlane:
		if code := checkControlPlaneFlags(&r, cpArgs, c.ExpiryAhead, stderr); code != 0 {
			return code
		}
	case c.Admin != "":
		targets, err := adminTargets(c.Admin)
		if err != nil {
			fmt.Fprintln(stderr, "causeway check:", err)
			return 2
		}
		checkRunning(&r, targets, c.Timeout, c.ExpiryAhead)
	default:
		if targets, err := upTargets(c.State); err == nil {
			checkRunning(&r, targets, c.Timeout, c.ExpiryAhead)
		} else {
			checkUpPreflight(&r, c)
		}
	}
	if r.write(stdout) > 0 {
		return 1
	}
	return 0
}

// checkUpPreflight: what `causeway up` needs before it starts.
func checkUpPreflight(r *checkReport, c checkConfig) {
	s := r.section("pre-flight: causeway up (no `causeway up` is running here)")
	top, err := up.LoadTopology(c.Example)
	if err != nil {
		s.fail("pass --example with a topology file; examples/three-clusters/federation.yaml shows the format", "%v", err)
		return
	}
	s.ok("topology %s: %d clusters, %d services", c.Example, len(top.Clusters), len(top.Services))
	errs := up.Preflight(up.Options{Topology: top, BinDir: c.BinDir, Block: c.Block})
	if _, err := exec.LookPath("go"); err == nil {
		s.ok("go toolchain: found (builds missing binaries into %s)", c.BinDir)
	}
	if len(errs) == 0 {
		s.ok("binaries and every address of block 127.%d-%d: ready", c.Block, c.Block+40)
	}
	for _, e := range errs {
		lines := strings.Split(e.Error(), "\n")
		if len(lines) > 6 {
			lines = append(lines[:5], fmt.Sprintf("... and %d more", len(lines)-5))
		}
		s.fail("stop the other `causeway up` (`causeway status` finds it), free the addresses, or pass --block", "%s", strings.Join(lines, "\n"))
	}
}

// checkControlPlaneFlags: what `causeway control-plane <args>` needs.
func checkControlPlaneFlags(r *checkReport, args []string, ahead time.Duration, stderr io.Writer) int {
	var c controlPlaneConfig
	fs := flag.NewFlagSet("causeway check --control-plane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.TrustDomain == "" && c.Cluster != "" {
		c.TrustDomain = c.Cluster + ".local"
	}
	s := r.section(fmt.Sprintf("pre-flight: causeway control-plane (cluster %s)", dash(c.Cluster)))
	if err := c.validate(); err != nil {
		s.fail("correct the flags (causeway control-plane -h)", "flags: %v", err)
	} else {
		s.ok("flags: valid")
	}
	addrs := []struct{ flag, addr string }{{"--xds", c.XDS}, {"--admin", c.Admin}}
	if c.MTLS {
		addrs = append(addrs, struct{ flag, addr string }{"--svid-listen", c.SVIDListen}, struct{ flag, addr string }{"--bundle-listen", c.BundleListen})
		if c.FederationListen != "" {
			addrs = append(addrs, struct{ flag, addr string }{"--federation-listen", c.FederationListen})
		}
	}
	for _, a := range addrs {
		if a.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			s.fail(fmt.Sprintf("stop what listens on %s, or pass another %s", a.addr, a.flag), "%s %s: %v", a.flag, a.addr, err)
			continue
		}
		ln.Close()
		s.ok("%s %s: free", a.flag, a.addr)
	}
	if c.Source == "folder" && c.Dir != "" {
		if fi, err := os.Stat(c.Dir); err != nil || !fi.IsDir() {
			s.fail("create the folder, or point --dir at the folder of Kubernetes YAML", "--dir %s: not a readable directory (%v)", c.Dir, errOr(err, "a file"))
		} else {
			n := 0
			ents, _ := os.ReadDir(c.Dir)
			for _, e := range ents {
				if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
					n++
				}
			}
			s.ok("--dir %s: %d YAML files", c.Dir, n)
		}
	}
	if !c.MTLS {
		s.warn("pass --mtls (with --ca-dir and --tokens-file) for mesh mutual TLS and federation", "--mtls off: proxies get plaintext config and no federation runs")
		return 0
	}
	td, tdErr := spiffeid.TrustDomainFromString(c.TrustDomain)
	if c.CADir != "" {
		cert, key := filepath.Join(c.CADir, trust.CACertFile), filepath.Join(c.CADir, trust.CAKeyFile)
		switch _, err := os.Stat(cert); {
		case errors.Is(err, os.ErrNotExist):
			s.ok("--ca-dir %s: no CA yet; a root CA for %s is created on first start", c.CADir, c.TrustDomain)
		case err != nil:
			s.fail("make the directory readable by the control plane", "--ca-dir %s: %v", c.CADir, err)
		default:
			root, _, err := trust.LoadCAFiles(cert, key)
			switch {
			case err != nil:
				s.fail("restore ca.crt and ca.key as a pair, or move them away to create a new CA (peers then need `causeway link` again)", "--ca-dir %s: %v", c.CADir, err)
			case time.Until(root.NotAfter) < ahead:
				s.warn("rotate the root CA (docs/trust.md) before it expires", "--ca-dir %s: root CA expires in %s", c.CADir, days(time.Until(root.NotAfter)))
			default:
				s.ok("--ca-dir %s: root CA %s, expires in %s", c.CADir, root.Subject.CommonName, days(time.Until(root.NotAfter)))
			}
		}
	}
	if c.TokensFile != "" && tdErr == nil {
		if a, err := issuer.NewTokenFileAuthenticator(c.TokensFile, td); err != nil {
			s.fail("write the workloads' bootstrap tokens (docs/trust.md, \"Bootstrap tokens\")", "--tokens-file %s: %v", c.TokensFile, err)
		} else {
			s.ok("--tokens-file %s: %d workload identities", c.TokensFile, a.Len())
		}
	}
	for _, p := range c.Peers {
		if p.BundleFile == "" {
			s.warn(fmt.Sprintf("give bundle-file= with the PEM from `causeway link` on %s", p.Cluster), "--peer %s: no bundle-file: its bundle endpoint is trusted as https_web", p.Cluster)
			continue
		}
		roots, err := readPEMCerts(p.BundleFile)
		switch {
		case err != nil:
			s.fail(fmt.Sprintf("save the trustBundle of `causeway link` on %s as %s", p.Cluster, p.BundleFile), "--peer %s: bundle-file %s: %v", p.Cluster, p.BundleFile, err)
		case time.Until(roots[0].NotAfter) < ahead:
			s.warn(fmt.Sprintf("ask %s for its new roots (`causeway link`)", p.Cluster), "--peer %s: bundle-file %s: a root expires in %s", p.Cluster, p.BundleFile, days(time.Until(roots[0].NotAfter)))
		default:
			s.ok("--peer %s: bundle-file %s: %d root(s), the first expiring in %s", p.Cluster, p.BundleFile, len(roots), days(time.Until(roots[0].NotAfter)))
		}
	}
	return 0
}

// readPEMCerts reads a PEM file of certificates, earliest expiry first.
func readPEMCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	slices.SortFunc(certs, func(a, b *x509.Certificate) int { return a.NotAfter.Compare(b.NotAfter) })
	return certs, nil
}

// checkRunning: post-install checks of running control planes.
func checkRunning(r *checkReport, targets []statusTarget, timeout, ahead time.Duration) {
	out := fetchStatus(context.Background(), targets, timeout)
	for _, e := range out.Errors {
		title := "control plane at " + e.Admin
		if e.Cluster != "" {
			title = "cluster " + e.Cluster + " (" + e.Admin + ")"
		}
		s := r.section(title)
		s.fail("start its control plane, or correct --admin", "%s", e.Error)
	}
	for i, rep := range out.Clusters {
		admin := ""
		for _, t := range targets {
			if t.Cluster == rep.Cluster {
				admin = t.URL
			}
		}
		if admin == "" && i < len(targets) {
			admin = targets[i].URL
		}
		checkReportOf(r.section("cluster "+rep.Cluster+" ("+admin+")"), rep, ahead)
	}
}

// checkReportOf checks one control plane's /status.
func checkReportOf(s *checkSection, rep controlplane.StatusReport, ahead time.Duration) {
	if rep.Ready {
		s.ok("control plane ready: %d services, %d endpoints served", rep.Services, rep.Endpoints)
	} else {
		s.fail("read its /problems and its log: the source has produced no model yet", "control plane not ready: no model yet")
	}
	for _, p := range rep.Problems {
		s.warn("correct the object it names", "problem: %s", p)
	}
	if rep.Export != nil {
		s.ok("federation endpoint %s: serving exports", rep.Export.Listen)
	}
	for _, l := range rep.Links {
		if l.Healthy {
			s.ok("link from %s (%s): connected, %d services, %d endpoints imported", l.Peer, l.TrustDomain, l.Services, l.Endpoints)
			continue
		}
		what := fmt.Sprintf("link from %s (%s) at %s: %s", l.Peer, l.TrustDomain, l.Address, l.State)
		if l.LastError != "" {
			what += ": " + l.LastError
		}
		s.fail(fmt.Sprintf("check that %s's control plane runs with --federation-listen %s and lists this cluster as a --peer, and that its bundle is trusted here (`causeway link` on %s)", l.Peer, l.Address, l.Peer), "%s", what)
	}
	for _, t := range rep.Trust {
		switch {
		case !t.Healthy:
			what := fmt.Sprintf("bundle of %s from %s: not fetched", t.TrustDomain, t.URL)
			if t.LastError != "" {
				what += ": " + t.LastError
			}
			s.fail(fmt.Sprintf("check the bundle endpoint URL and the bootstrap bundle (`causeway link` on the cluster of %s)", t.TrustDomain), "%s", what)
		case !t.Expiry.IsZero() && t.Expiry.Sub(rep.Time) < ahead:
			s.warn(fmt.Sprintf("the cluster of %s must rotate its root; the bundle endpoint then carries the new one", t.TrustDomain), "bundle of %s: expires in %s", t.TrustDomain, days(t.Expiry.Sub(rep.Time)))
		default:
			s.ok("bundle of %s: fresh, expires in %s", t.TrustDomain, days(t.Expiry.Sub(rep.Time)))
		}
	}
	if len(rep.Proxies) == 0 {
		s.warn("start sidecars with --xds pointing at this control plane (causeway-proxy sidecar -h)", "proxies: none connected")
		return
	}
	var silent []string
	for _, p := range rep.Proxies {
		if len(p.Acked) == 0 {
			silent = append(silent, p.ID)
		}
	}
	if len(silent) == 0 {
		s.ok("proxies: %d connected, every one has ACKed its config", len(rep.Proxies))
	} else {
		s.warn("read those proxies' logs for NACKs (causeway_controlplane NACK metrics); delta xDS streams report no version", "proxies: %d connected, %d have ACKed no config version: %s", len(rep.Proxies), len(silent), strings.Join(silent, ", "))
	}
}

// days prints d in whole days, or hours below two days.
func days(d time.Duration) string {
	if d < 48*time.Hour {
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// Options shape a federation.
type Options struct {
	Topology *Topology
	// BinDir holds causeway, causeway-proxy and demoapp. Missing ones are
	// built there with `go build` from the module in SourceDir.
	BinDir string
	// SourceDir is the Causeway source tree, for building (default: found
	// by walking up from the working directory to go.mod).
	SourceDir string
	// WorkDir holds each cluster's folder, CA, tokens and the logs
	// (default: a temporary directory that Close removes).
	WorkDir string
	// Out gets progress lines (nil: none).
	Out io.Writer
	// ReadyTimeout bounds the wait for everything to be ready (default 30s).
	ReadyTimeout time.Duration
	// StateFile is where `causeway status` looks for this federation
	// (default StatePath(); "-": only <WorkDir>/status.json).
	StateFile string
	// Block is the second octet of every address (see docs/up.md; default
	// DefaultBlock, 10): tests that run federations side by side give each
	// its own (10..215).
	Block int
}

// Federation is a running federation. Its methods are safe for concurrent
// use; Close stops every process it started.
type Federation struct {
	o       Options
	top     *Topology
	tmp     bool // WorkDir is ours to remove
	bins    binaries
	cps     []*proc
	gws     []*proc    // east-west gateways by cluster index (gateway.go); under mu once started
	mu      sync.Mutex // pods' processes and ready flags, folder writes
	pods    []*Pod
	client  *Pod
	started time.Time
	// wroteState: the state files are ours to remove (under mu).
	wroteState bool
	// Ready is how long Start took, from the first process to all ready.
	Ready time.Duration
	// dash is the dashboard (dashboard.go); nil until started.
	dash *dashboardServer
}

// net is f's address block.
func (f *Federation) net() block {
	if f.o.Block == 0 {
		return DefaultBlock
	}
	return block(f.o.Block)
}

type binaries struct{ causeway, proxy, app string }

// Start brings up t: per cluster a CA, a control plane on the folder
// source with federation to every other cluster, and every pod's app and
// sidecar; it returns when all are ready and every peer's imports have
// arrived, or an error naming the cluster and component (after stopping
// everything it started).
func Start(ctx context.Context, o Options) (_ *Federation, err error) {
	if o.Topology == nil {
		return nil, errors.New("up: Options.Topology is nil; load one with LoadTopology")
	}
	if err := o.Topology.Validate(); err != nil {
		return nil, err
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.Block == 0 {
		o.Block = DefaultBlock
	}
	if o.Block < 1 || o.Block > 215 {
		return nil, fmt.Errorf("up: Options.Block %d: want 1..215 (addresses use 127.<block>..127.<block+40>)", o.Block)
	}
	f := &Federation{o: o, top: o.Topology}
	if f.o.WorkDir == "" {
		if f.o.WorkDir, err = os.MkdirTemp("", "causeway-up-"); err != nil {
			return nil, fmt.Errorf("up: work dir: %w", err)
		}
		f.tmp = true
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if f.bins, err = ensureBinaries(ctx, o.BinDir, o.SourceDir, o.Out); err != nil {
		return nil, err
	}
	f.pods = plan(f.top, f.net())
	for _, p := range f.pods {
		if p.Service == "client" {
			f.client = p
		}
	}
	if err := os.MkdirAll(filepath.Join(f.o.WorkDir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	if err := f.preflight(); err != nil {
		return nil, err
	}
	f.started = time.Now()
	for i, c := range f.top.Clusters {
		if err := f.prepareCluster(i, c); err != nil {
			return nil, err
		}
	}
	for i, c := range f.top.Clusters {
		p, err := f.startControlPlane(i, c)
		if err != nil {
			return nil, err
		}
		f.cps = append(f.cps, p)
		f.say("%-6s control plane  xds %s:%d  admin http://%s:%d  trust domain %s.local", c.Name, f.net().cpIP(i), portXDS, f.net().cpIP(i), portAdmin, c.Name)
	}
	if err := f.writeState(); err != nil {
		return nil, err
	}
	f.say("`causeway status` finds this federation through %s", f.statePathShown())
	if f.dash, err = f.startDashboard(); err != nil {
		return nil, err
	}
	for i := range f.top.Clusters {
		if err := f.startGateway(i); err != nil { // gateway.go
			return nil, err
		}
	}
	for _, p := range f.pods {
		if err := f.startPod(p); err != nil {
			return nil, err
		}
	}
	f.say("started %d control planes, %d east-west gateways and %d pods; waiting for readiness (at most %s)", len(f.cps), len(f.gws), len(f.pods), o.ReadyTimeout)
	rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := f.waitReady(rctx); err != nil {
		return nil, err
	}
	f.Ready = time.Since(f.started)
	return f, nil
}

// preflight checks that every fixed address is free, so that a second
// `causeway up` (or anything else on those addresses) fails at once with
// the address and its owner named, not after a readiness timeout.
func (f *Federation) preflight() error {
	var errs []error
	check := func(addr, what string) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s is not free (%w); is another `causeway up` running? stop it, or free the address", what, addr, err))
			return
		}
		ln.Close()
	}
	for i, c := range f.top.Clusters {
		for port, name := range map[int]string{portXDS: "xDS", portAdmin: "admin", portSVID: "SVID issuer", portBundle: "bundle endpoint", portFederation: "federation"} {
			check(fmt.Sprintf("%s:%d", f.net().cpIP(i), port), c.Name+" control plane "+name)
		}
	}
	check(f.dashboardAddr(), "dashboard")
	for addr, what := range f.gatewayChecks() { // gateway.go
		check(addr, what)
	}
	for _, p := range f.pods {
		what := fmt.Sprintf("%s pod %s", p.Cluster, p.Name)
		check(fmt.Sprintf("%s:%d", p.IP, portService), what+" sidecar inbound")
		check(fmt.Sprintf("%s:%d", p.IP, portSidecar), what+" sidecar admin")
		check(fmt.Sprintf("%s:%d", p.IP, portApp), what+" app")
		check(fmt.Sprintf("%s:%d", p.OutboundIP, portService), what+" sidecar outbound")
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return fmt.Errorf("up: %w", errors.Join(errs...))
	}
	return nil
}

func (f *Federation) say(format string, args ...any) { fmt.Fprintf(f.o.Out, format+"\n", args...) }

func (f *Federation) clusterDir(c string, parts ...string) string {
	return filepath.Join(append([]string{f.o.WorkDir, c}, parts...)...)
}

// prepareCluster writes cluster i's root CA, bootstrap tokens (one per
// service account) and folder.
func (f *Federation) prepareCluster(i int, c ClusterSpec) error {
	td, err := spiffeid.TrustDomainFromString(c.Name + ".local")
	if err != nil {
		return fmt.Errorf("up: cluster %s: trust domain: %w", c.Name, err)
	}
	for _, d := range []string{"folder", "ca", "tokens"} {
		if err := os.MkdirAll(f.clusterDir(c.Name, d), 0o700); err != nil {
			return fmt.Errorf("up: cluster %s: %w", c.Name, err)
		}
	}
	if _, err := os.Stat(f.clusterDir(c.Name, "ca", trust.CACertFile)); errors.Is(err, os.ErrNotExist) {
		ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{Validity: 365 * 24 * time.Hour})
		if err != nil {
			return fmt.Errorf("up: cluster %s: root CA: %w", c.Name, err)
		}
		if err := ca.WriteFiles(f.clusterDir(c.Name, "ca")); err != nil {
			return fmt.Errorf("up: cluster %s: root CA: %w", c.Name, err)
		}
	}
	var entries []issuer.TokenEntry
	seen := map[string]bool{}
	for _, p := range f.pods {
		if p.Cluster != c.Name || seen[p.Service] {
			continue
		}
		seen[p.Service] = true
		tok, err := issuer.GenerateToken(nil)
		if err != nil {
			return fmt.Errorf("up: cluster %s: token: %w", c.Name, err)
		}
		entries = append(entries, issuer.TokenEntry{ID: spiffeid.RequireFromPath(td, "/ns/"+f.top.Namespace+"/sa/"+p.Service), Token: tok})
		if err := os.WriteFile(f.clusterDir(c.Name, "tokens", p.Service), []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("up: cluster %s: token of %s: %w", c.Name, p.Service, err)
		}
	}
	if err := issuer.WriteTokenFile(f.clusterDir(c.Name, "tokens.txt"), entries); err != nil {
		return fmt.Errorf("up: cluster %s: %w", c.Name, err)
	}
	return f.writeFolder(c)
}

// writeFolder rewrites c's folder source from the pods' ready flags; each
// file is written then renamed, so the folder source never reads half.
func (f *Federation) writeFolder(c ClusterSpec) error {
	for name, content := range folderYAML(f.top, c, f.pods) {
		path := f.clusterDir(c.Name, "folder", name)
		if old, err := os.ReadFile(path); err == nil && string(old) == content {
			continue
		}
		tmp := f.clusterDir(c.Name, "folder", "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			return fmt.Errorf("up: cluster %s: folder: %w", c.Name, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("up: cluster %s: folder: %w", c.Name, err)
		}
	}
	return nil
}

func (f *Federation) startControlPlane(i int, c ClusterSpec) (*proc, error) {
	ip := f.net().cpIP(i)
	at := func(port int) string { return fmt.Sprintf("%s:%d", ip, port) }
	args := []string{"control-plane", "--source", "folder", "--dir", f.clusterDir(c.Name, "folder"),
		"--cluster", c.Name, "--network", c.Name, "--eastwest-address", f.gatewayAddr(i), "--trust-domain", c.Name + ".local", "--poll", "200ms",
		"--xds", at(portXDS), "--admin", at(portAdmin), "--mtls", "--ca-dir", f.clusterDir(c.Name, "ca"),
		"--tokens-file", f.clusterDir(c.Name, "tokens.txt"), "--svid-listen", at(portSVID),
		"--bundle-listen", at(portBundle), "--federation-listen", at(portFederation)}
	// The links are Peer objects in the folder, as a Kubernetes user
	// writes them (peers.go).
	if err := f.writePeers(i, c); err != nil {
		return nil, err
	}
	return startProc(c.Name+" control plane", filepath.Join(f.o.WorkDir, "logs", c.Name+"-control-plane.log"), f.bins.causeway, args...)
}

// startPod starts p's app and sidecar; the caller holds f.mu or owns f.
func (f *Federation) startPod(p *Pod) error {
	_, ci := f.top.cluster(p.Cluster)
	logs := filepath.Join(f.o.WorkDir, "logs", p.Cluster+"-"+p.Name)
	if p.Service != "client" {
		var err error
		p.app, err = startProc(fmt.Sprintf("%s pod %s: app", p.Cluster, p.Name), logs+"-app.log", f.bins.app,
			"--addr", fmt.Sprintf("%s:%d", p.IP, portApp), "--service", p.Service, "--where", p.Where()+"/"+p.Name)
		if err != nil {
			return err
		}
	}
	boot := logs + "-bootstrap.json"
	if err := os.WriteFile(boot, []byte(fmt.Sprintf(`{"node": {"metadata": {"outbound_ip": %q}}}`, p.OutboundIP)), 0o644); err != nil {
		return fmt.Errorf("up: %s pod %s: bootstrap: %w", p.Cluster, p.Name, err)
	}
	args := []string{"sidecar", "--bootstrap", boot, "--xds", fmt.Sprintf("%s:%d", f.net().cpIP(ci), portXDS),
		"--admin", fmt.Sprintf("%s:%d", p.IP, portSidecar), "--node-id", p.Name + "." + f.top.Namespace + "." + p.Cluster,
		"--workload", p.Service, "--namespace", f.top.Namespace, "--cluster", p.Cluster, "--network", p.Cluster,
		"--locality", p.Region + "/" + p.Zone, "--access-log", "off", "--log-level", "warn", "--drain-timeout", "2s",
		"--svid-issuer", fmt.Sprintf("%s:%d", f.net().cpIP(ci), portSVID), "--svid-token-file", f.clusterDir(p.Cluster, "tokens", p.Service),
		"--trust-domain", p.Cluster + ".local", "--trust-bundle", f.clusterDir(p.Cluster, "ca", trust.CACertFile)}
	if p.Service != "client" {
		args = append(args, "--inbound-ip", p.IP, "--inbound-ports", fmt.Sprintf("%d=%s:%d", portService, p.IP, portApp))
	}
	var err error
	p.sidecar, err = startProc(fmt.Sprintf("%s pod %s: sidecar", p.Cluster, p.Name), logs+"-sidecar.log", f.bins.proxy, args...)
	return err
}

// Close stops every process (SIGTERM, SIGKILL after 3s) and removes a
// temporary work dir. It is safe to call more than once.
func (f *Federation) Close() {
	f.mu.Lock()
	var procs []*proc
	for _, p := range f.pods {
		procs = append(procs, p.app, p.sidecar)
	}
	procs = append(procs, f.gws...)
	procs = append(procs, f.cps...)
	f.removeState()
	dash := f.dash
	f.dash = nil
	f.mu.Unlock()
	dash.stop()
	stopAll(procs, 3*time.Second)
	if f.tmp {
		_ = os.RemoveAll(f.o.WorkDir)
	}
}

// WorkDir is where the folders, CAs, tokens and logs are.
func (f *Federation) WorkDir() string { return f.o.WorkDir }

// Client is the traffic driver's pod; its sidecar's outbound listener is
// ClientURL.
func (f *Federation) Client() *Pod { return f.client }

// ClientURL is the client sidecar's outbound listener for port 8080.
func (f *Federation) ClientURL() string {
	return fmt.Sprintf("http://%s:%d", f.client.OutboundIP, portService)
}

// ClustersetHost is svc's clusterset name.
func (f *Federation) ClustersetHost(svc string) string {
	return svc + "." + f.top.Namespace + ".svc.clusterset.local"
}

// Pods is every pod (a copy of the list; the pods are shared).
func (f *Federation) Pods() []*Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Pod(nil), f.pods...)
}

// Kill SIGKILLs the app and sidecar of every pod match selects (never the
// client), as a dying node would, then marks their endpoints not ready in
// their clusters' EndpointSlices, as Kubernetes' endpoints controller
// would. It returns the pods killed.
func (f *Federation) Kill(match func(*Pod) bool) ([]*Pod, error) {
	return f.kill(match, true)
}

// KillProcesses SIGKILLs like Kill but leaves the EndpointSlices alone:
// the control planes keep advertising the dead endpoints, so only the
// data plane (in-request retries, outlier detection) can fail over.
func (f *Federation) KillProcesses(match func(*Pod) bool) []*Pod {
	killed, _ := f.kill(match, false)
	return killed
}

func (f *Federation) kill(match func(*Pod) bool, endpoints bool) ([]*Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var killed []*Pod
	var procs []*proc
	for _, p := range f.pods {
		if p.Service == "client" || p.dead || !match(p) {
			continue
		}
		killed = append(killed, p)
		procs = append(procs, p.app, p.sidecar)
		p.dead = true
		if endpoints {
			p.ready = false
		}
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.kill)
	}
	wg.Wait()
	if !endpoints {
		return killed, nil
	}
	return killed, f.writeFolders(killed)
}

// Restore restarts every killed pod, waits until its sidecar is ready,
// and marks its endpoint ready again. Pods killed with their endpoints
// still advertised (KillProcesses) are first marked not ready until the
// client's sidecar drops them, as Kubernetes does while it restarts a
// pod's containers (restore.go).
func (f *Federation) Restore(ctx context.Context) ([]*Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.unadvertiseDead(ctx); err != nil {
		return nil, err
	}
	var back []*Pod
	for _, p := range f.pods {
		if p.dead {
			if err := f.startPod(p); err != nil {
				return back, err
			}
			back = append(back, p)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.ReadyTimeout)
	defer cancel()
	if err := f.waitPods(ctx, back); err != nil {
		return back, err
	}
	for _, p := range back {
		p.ready, p.dead = true, false
	}
	return back, f.writeFolders(back)
}

func (f *Federation) writeFolders(pods []*Pod) error {
	done := map[string]bool{}
	for _, p := range pods {
		if !done[p.Cluster] {
			done[p.Cluster] = true
			c, _ := f.top.cluster(p.Cluster)
			if err := f.writeFolder(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// httpGet fetches url with a short timeout; ok is a 200.
func httpGet(ctx context.Context, hc *http.Client, url, host string) (int, http.Header, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, nil, "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Header, strings.TrimSpace(string(b)), nil
}

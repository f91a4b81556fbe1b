// Package runner wires one causeway-proxy process: it loads the bootstrap,
// starts the admin server, the data-plane engine and the xDS client, and
// drains on shutdown. cmd/causeway-proxy only parses flags and calls Run.
//
// Run owns every goroutine it starts and returns only after all of them
// have ended. RuntimeConfig.Apply, called before it, tunes the Go runtime
// of the process (tune.go) and may start the GOMAXPROCS controller
// (procs.go), the one goroutine here that lives as long as the process.
package runner

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/internal/h2grpc"
	"github.com/causewaymesh/causeway/proxy"
	"github.com/causewaymesh/causeway/proxy/admin"
	"github.com/causewaymesh/causeway/proxy/config"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
	"github.com/causewaymesh/causeway/proxy/telemetry"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// Config is the whole configuration of a proxy process.
type Config struct {
	Mode      string // sidecar, ingress (ingress.go) or east-west (eastwest.go)
	Bootstrap string // Envoy v3 bootstrap file (YAML or JSON)
	XDS       string // ADS server host:port; overrides the bootstrap
	Admin     string // admin listener; overrides the bootstrap
	NodeID    string
	Workload  string
	Namespace string
	Cluster   string
	Network   string
	Locality  string // region/zone/subzone
	AccessLog string // "-" for stdout, a path, or "off"
	LogLevel  string
	// DrainTimeout bounds the graceful drain on SIGTERM.
	DrainTimeout time.Duration
	// DrainDelay keeps serving (while /ready says 503) before listeners
	// close, so load balancers notice first.
	DrainDelay time.Duration

	// SVID: when SVIDIssuer is set the proxy makes its own key, gets its
	// X.509-SVID from the issuer (trust/issuer) with the token in
	// SVIDTokenFile, keeps it renewed at half-life and serves it to its
	// listeners and clusters as the SDS secret trust.SVIDSecretName.
	SVIDIssuer    string
	SVIDTokenFile string
	TrustDomain   string
	// TrustBundle is a PEM file with the trust domain's roots, which
	// authenticate the issuer (spiffe://<td>/causeway/control-plane).
	TrustBundle string
	SVIDTTL     time.Duration
	// SVIDIssuerInsecure talks plaintext to a loopback issuer (tests).
	SVIDIssuerInsecure bool

	// Inbound: the workload's endpoint address and its ports, each mapped
	// to the application's local address ("8080=127.0.0.1:18080,..."), and
	// the inbound mTLS mode; sent as node metadata inbound_ip,
	// inbound_ports and mtls_mode, from which the control plane builds the
	// inbound listeners.
	InboundIP    string
	InboundPorts string
	MTLSMode     string

	// AppProbes is the JSON of the application's health checks moved to
	// the sidecar (admin.AppProbesEnv); empty: read that variable.
	AppProbes string

	// Gateways (ingress mode, ingress.go): "*" or namespace/name,... of
	// the Gateways this proxy serves; sent as node metadata "gateways".
	Gateways string

	// EastWestPort (east-west mode, eastwest.go): the gateway's port on
	// InboundIP; 0: eastwest.DefaultPort. Sent as node metadata eastwest_port.
	EastWestPort uint

	// Capture (sidecar mode, capture.go): serve the traffic causeway-init
	// redirects; sent as node metadata interception_mode.
	Capture CaptureConfig
}

// DefaultConfig returns the defaults of every flag.
func DefaultConfig() Config {
	return Config{
		Mode:         "sidecar",
		Admin:        "",
		AccessLog:    "-",
		LogLevel:     "info",
		DrainTimeout: 20 * time.Second,
		DrainDelay:   0,
	}
}

// Flags registers c's fields on fs.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Bootstrap, "bootstrap", c.Bootstrap, "Envoy v3 bootstrap file (YAML or JSON) with static resources and/or an ADS config")
	fs.StringVar(&c.XDS, "xds", c.XDS, "ADS server host:port (overrides the bootstrap's ads_config)")
	fs.StringVar(&c.Admin, "admin", c.Admin, "admin listener host:port (overrides the bootstrap's admin address; default 127.0.0.1:15000)")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "xDS node id (default: <workload>.<namespace>)")
	fs.StringVar(&c.Workload, "workload", c.Workload, "name of the workload this proxy serves (service account)")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "namespace of the workload")
	fs.StringVar(&c.Cluster, "cluster", c.Cluster, "name of the Kubernetes cluster the workload runs in")
	fs.StringVar(&c.Network, "network", c.Network, "name of the network the workload's cluster is on")
	fs.StringVar(&c.Locality, "locality", c.Locality, "region/zone/subzone of the workload")
	fs.StringVar(&c.AccessLog, "access-log", c.AccessLog, `access log destination: "-" (stdout), a file path, or "off"`)
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long in-flight requests may take to finish on SIGTERM")
	fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "on SIGTERM, keep serving this long with /ready failing before closing listeners")
	fs.StringVar(&c.SVIDIssuer, "svid-issuer", c.SVIDIssuer, "SVID issuer host:port (the control plane); enables mesh mTLS with an SVID made here")
	fs.StringVar(&c.SVIDTokenFile, "svid-token-file", c.SVIDTokenFile, "file holding the token that proves the workload's identity to the issuer (a projected service-account token, or a bootstrap token)")
	fs.StringVar(&c.TrustDomain, "trust-domain", c.TrustDomain, "SPIFFE trust domain of the workload")
	fs.StringVar(&c.TrustBundle, "trust-bundle", c.TrustBundle, "PEM file with the trust domain's roots (authenticates the issuer)")
	fs.DurationVar(&c.SVIDTTL, "svid-ttl", c.SVIDTTL, "SVID lifetime to ask for (0: the issuer's default)")
	fs.BoolVar(&c.SVIDIssuerInsecure, "svid-issuer-insecure", c.SVIDIssuerInsecure, "plaintext to a loopback issuer (tests only)")
	fs.StringVar(&c.InboundIP, "inbound-ip", c.InboundIP, "the workload's endpoint IP, where inbound listeners bind")
	fs.StringVar(&c.InboundPorts, "inbound-ports", c.InboundPorts, `inbound ports and the application's local addresses: "8080=127.0.0.1:18080,..."`)
	fs.StringVar(&c.MTLSMode, "mtls-mode", c.MTLSMode, "inbound mTLS mode: STRICT (default) or PERMISSIVE (also accepts plaintext, for migration)")
	fs.UintVar(&c.EastWestPort, "eastwest-port", c.EastWestPort, "east-west mode: the gateway's port on --inbound-ip (default 15443)")
	fs.StringVar(&c.Gateways, "gateways", c.Gateways, `ingress mode: the Gateways served, "*" (every Gateway of Causeway's class) or "namespace/name,..."`)
	c.captureFlags(fs) // capture.go
}

// Validate checks c and names every bad field with its fix.
func (c *Config) Validate() error {
	var errs []error
	if c.Mode != "sidecar" && c.Mode != ingressRole && c.Mode != eastWestMode {
		errs = append(errs, fmt.Errorf("mode %q: want \"sidecar\", \"ingress\" or \"east-west\"", c.Mode))
	}
	if err := c.validateEastWest(); err != nil { // eastwest.go
		errs = append(errs, err)
	}
	if err := c.validateIngress(); err != nil { // ingress.go
		errs = append(errs, err)
	}
	if err := c.validateCapture(); err != nil { // capture.go
		errs = append(errs, err)
	}
	if c.Bootstrap == "" && c.XDS == "" {
		errs = append(errs, errors.New("--bootstrap or --xds: one is required; give a bootstrap file or the ADS server address"))
	}
	if c.Locality != "" && strings.Count(c.Locality, "/") > 2 {
		errs = append(errs, fmt.Errorf("--locality %q: want region/zone/subzone (at most two slashes)", c.Locality))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--drain-timeout %s: must be positive", c.DrainTimeout))
	}
	if c.SVIDIssuer != "" {
		if c.SVIDTokenFile == "" {
			errs = append(errs, errors.New("--svid-token-file: required with --svid-issuer; give the file holding the workload's token"))
		}
		if c.TrustDomain == "" {
			errs = append(errs, errors.New("--trust-domain: required with --svid-issuer"))
		}
		if c.TrustBundle == "" && !c.SVIDIssuerInsecure {
			errs = append(errs, errors.New("--trust-bundle: required with --svid-issuer; give the PEM roots that authenticate the issuer"))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) locality() config.Locality {
	parts := strings.SplitN(c.Locality, "/", 3)
	var l config.Locality
	if len(parts) > 0 {
		l.Region = parts[0]
	}
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.SubZone = parts[2]
	}
	return l
}

// Process is a running proxy, for tests and for Run.
type Process struct {
	Proxy  *proxy.Proxy
	Admin  *admin.Server
	client *xdsclient.Client
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	stop   sync.Once
	logOut io.Closer

	closeIssuer func() error // the SVID issuer client, when mTLS is on
	sds         *localSDS    // the in-process SDS, when mTLS is on
}

// Start starts a proxy process in the background. Stop it with Shutdown.
func Start(ctx context.Context, c Config, logw io.Writer) (*Process, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	log := slog.New(slog.NewJSONHandler(logw, &slog.HandlerOptions{Level: lvl}))

	var boot xdsclient.Bootstrap
	if c.Bootstrap != "" {
		b, err := xdsclient.LoadBootstrap(c.Bootstrap)
		if err != nil {
			return nil, err
		}
		boot = *b
	}
	if c.XDS != "" {
		boot.ADSServer = c.XDS
	}
	adminAddr := c.Admin
	if adminAddr == "" {
		adminAddr = boot.AdminAddress
	}
	if adminAddr == "" {
		adminAddr = "127.0.0.1:15000"
	}
	loc := c.locality()
	self := telemetry.Workload{Name: c.Workload, Namespace: c.Namespace, Cluster: c.Cluster, Locality: loc.String()}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := telemetry.NewMetrics(reg, self)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var (
		al     *telemetry.AccessLog
		closer io.Closer
	)
	switch c.AccessLog {
	case "off", "":
	case "-":
		al = telemetry.NewAccessLog(os.Stdout)
	default:
		f, err := os.OpenFile(c.AccessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--access-log %q: %w", c.AccessLog, err)
		}
		al, closer = telemetry.NewAccessLog(f), f
	}

	probesJSON := c.AppProbes
	if probesJSON == "" {
		probesJSON = os.Getenv(admin.AppProbesEnv)
	}
	probes, err := admin.ParseAppProbes(probesJSON)
	if err != nil {
		if closer != nil {
			closer.Close()
		}
		return nil, err
	}
	px := proxy.New(proxy.Options{Self: self, Metrics: metrics, AccessLog: al, Logger: log, DrainTimeout: c.DrainTimeout})
	p := &Process{Proxy: px, cfg: c, log: log, done: make(chan struct{}), logOut: closer}
	if err := startCapture(px, c, log); err != nil { // capture.go
		px.Close()
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.Admin, err = admin.New(adminAddr, admin.Sources{
		Gatherer:   reg,
		Ready:      p.ready,
		ConfigDump: p.configDump,
		Clusters:   px.ClustersStatus,
		Explain:    func(l, a, path, m string, h http.Header) any { return px.Explain(l, a, path, m, h) },
		Drain:      func() { go p.drain() },
		AppProbes:  probes,
	})
	if err != nil {
		cancel()
		px.Close()
		return nil, fmt.Errorf("admin listener %s: %w", adminAddr, err)
	}

	var (
		sds *localSDS
		rot *issuer.Rotator
	)
	apply := px.Apply
	if c.SVIDIssuer != "" {
		var closeIssuer func() error
		rot, closeIssuer, err = newRotator(c, log)
		if err != nil {
			cancel()
			px.Close()
			p.Admin.Shutdown(context.Background())
			return nil, err
		}
		p.closeIssuer = closeIssuer
		sds = &localSDS{px: px, log: log}
		p.sds = sds
		apply = sds.setSnapshot
	}
	if boot.Static != nil && len(boot.Static.Listeners)+len(boot.Static.Clusters) > 0 {
		if err := apply(boot.Static); err != nil {
			cancel()
			px.Close()
			p.Admin.Shutdown(context.Background())
			return nil, err
		}
	}
	if boot.ADSServer != "" {
		node := boot.Node
		if node == nil {
			node = &corev3.Node{}
		}
		fillNode(node, c, loc)
		p.client, err = xdsclient.New(xdsclient.Options{
			Server:       boot.ADSServer,
			Transport:    xdsTransport(),
			Node:         node,
			Static:       boot.Static,
			Logger:       log,
			Observer:     metrics,
			LocalSecrets: localSecrets(sds),
			OnUpdate: func(s *config.Snapshot) {
				if err := apply(s); err != nil {
					log.Error("config applied with errors", "version", s.Version, "err", err)
				}
			},
		})
		if err != nil {
			cancel()
			px.Close()
			p.Admin.Shutdown(context.Background())
			return nil, err
		}
	}

	go func() {
		errc := make(chan error, 3)
		go func() { errc <- p.Admin.Serve() }()
		n := 1
		if p.client != nil {
			n++
			go func() { errc <- p.client.Run(ctx) }()
		}
		if rot != nil {
			n++
			go func() { errc <- sds.follow(ctx, rot) }()
		}
		<-ctx.Done()
		_ = p.Admin.Shutdown(context.Background())
		for range n {
			<-errc
		}
		p.err = px.Close()
		if p.closeIssuer != nil {
			p.closeIssuer()
		}
		if p.logOut != nil {
			p.logOut.Close()
		}
		close(p.done)
	}()
	log.Info("causeway-proxy started", "mode", c.Mode, "admin", p.Admin.Addr(), "xds", boot.ADSServer, "workload", c.Workload, "namespace", c.Namespace, "cluster", c.Cluster, "locality", c.Locality)
	return p, nil
}

func fillNode(n *corev3.Node, c Config, loc config.Locality) {
	if c.NodeID != "" {
		n.Id = c.NodeID
	} else if n.Id == "" {
		n.Id = c.Workload + "." + c.Namespace
	}
	if c.Cluster != "" {
		n.Cluster = c.Cluster
	}
	if c.Locality != "" {
		n.Locality = &corev3.Locality{Region: loc.Region, Zone: loc.Zone, SubZone: loc.SubZone}
	}
	if n.Metadata == nil {
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{}}
	}
	set := func(k, v string) {
		if v != "" {
			n.Metadata.Fields[k] = structpb.NewStringValue(v)
		}
	}
	set("namespace", c.Namespace)
	set("service_account", c.Workload)
	set("cluster", c.Cluster)
	set("network", c.Network)
	set("inbound_ip", c.InboundIP)
	set("inbound_ports", c.InboundPorts)
	set("mtls_mode", c.MTLSMode)
	for k, v := range c.ingressMetadata() { // ingress.go
		set(k, v)
	}
	for k, v := range c.eastWestMetadata() { // eastwest.go
		set(k, v)
	}
	for k, v := range c.captureMetadata() { // capture.go
		set(k, v)
	}
}

// ready is the proxy's readiness and, with mesh mTLS, having an SVID: a
// sidecar without one would fail every mTLS handshake. A proxy that the
// control plane has refused (bad node metadata) is not ready either,
// although warming gives up and applies what it has.
func (p *Process) ready() (bool, string) {
	if p.sds != nil && !p.sds.hasSVID() {
		return false, "waiting for the workload's SVID from the issuer"
	}
	if p.client != nil {
		if r := p.client.Status().Refused; r != "" {
			return false, "the control plane refused this proxy: " + r
		}
	}
	return p.Proxy.Ready()
}

func (p *Process) configDump() any {
	d := map[string]any{"proxy": p.Proxy.ConfigDump()}
	if p.client != nil {
		d["xds"] = p.client.Status()
	}
	return d
}

func (p *Process) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	if err := p.Proxy.Drain(ctx); err != nil {
		p.log.Warn("drain ended with requests still in flight", "err", err)
	}
}

// Shutdown drains gracefully (DrainDelay, then up to DrainTimeout for
// in-flight requests), then stops everything and waits for it.
// It is safe to call more than once.
func (p *Process) Shutdown() error {
	p.stop.Do(func() {
		p.Proxy.MarkDraining()
		if p.cfg.DrainDelay > 0 {
			t := time.NewTimer(p.cfg.DrainDelay)
			<-t.C
		}
		p.drain()
		p.cancel()
	})
	return p.Wait()
}

// Wait returns when the process has stopped.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

func localSecrets(sds *localSDS) []string {
	if sds == nil {
		return nil
	}
	return []string{trust.SVIDSecretName}
}

// newRotator builds the SVID issuer client and the rotator that keeps the
// proxy's SVID fresh.
func newRotator(c Config, log *slog.Logger) (*issuer.Rotator, func() error, error) {
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return nil, nil, fmt.Errorf("--trust-domain %q: %w", c.TrustDomain, err)
	}
	cc := issuer.ClientConfig{Target: c.SVIDIssuer, ServerID: issuer.DefaultServerID(td), Insecure: c.SVIDIssuerInsecure,
		Token: issuer.FileToken(c.SVIDTokenFile), TTL: c.SVIDTTL}
	if c.TrustBundle != "" {
		pemBytes, err := os.ReadFile(c.TrustBundle)
		if err != nil {
			return nil, nil, fmt.Errorf("--trust-bundle: %w", err)
		}
		b, err := x509bundle.Parse(td, pemBytes)
		if err != nil {
			return nil, nil, fmt.Errorf("--trust-bundle %s: %w (want PEM certificates of %s's roots)", c.TrustBundle, err, td)
		}
		cc.Bundle = b
	}
	client, err := issuer.NewClient(cc)
	if err != nil {
		return nil, nil, err
	}
	rot, err := issuer.NewRotator(issuer.RotatorOptions{Fetcher: client, Logger: log})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return rot, client.Close, nil
}

// localSDS is the proxy's in-process SDS for its own SVID: it merges the
// current SVID (trust.SVIDSecretName) into every snapshot from xDS before
// applying it, and re-applies the last snapshot when the SVID rotates.
// Listeners and clusters read secrets at handshake time, so a rotation
// drops no connection.
type localSDS struct {
	px   *proxy.Proxy
	log  *slog.Logger
	mu   sync.Mutex // serialises applies, in order
	last *config.Snapshot
	svid *config.Secret
}

func (l *localSDS) hasSVID() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.svid != nil
}

func (l *localSDS) setSnapshot(s *config.Snapshot) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = s
	return l.applyLocked()
}

// follow runs the rotator and applies every new SVID until ctx ends.
func (l *localSDS) follow(ctx context.Context, rot *issuer.Rotator) error {
	svids, stop := rot.Subscribe()
	defer stop()
	done := make(chan error, 1)
	go func() { done <- rot.Run(ctx) }()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case sv := <-svids:
			l.mu.Lock()
			l.svid = &config.Secret{Name: trust.SVIDSecretName, Cert: sv.TLSCertificate()}
			err := l.applyLocked()
			l.mu.Unlock()
			if err != nil {
				l.log.Error("applying the renewed SVID", "err", err)
			}
			l.log.Info("SVID installed", "id", sv.ID.String(), "not_after", sv.NotAfter, "renew_at", sv.RenewAt)
		}
	}
}

func (l *localSDS) applyLocked() error {
	if l.last == nil {
		return nil
	}
	s := *l.last
	s.Secrets = make(map[string]*config.Secret, len(l.last.Secrets)+1)
	for k, v := range l.last.Secrets {
		s.Secrets[k] = v
	}
	if l.svid != nil {
		s.Secrets[trust.SVIDSecretName] = l.svid
	}
	return l.px.Apply(&s)
}

// xdsTransport configures the ADS connection: plaintext HTTP/2 with a
// static 16 MiB flow-control window (as the bench's Envoy-like clients).
// net/http never sends BDP pings; grpc-go's client did unless its window
// was static, and every push then cost the control plane a second write
// per sidecar (about 15% of its CPU per change with 1,000 sidecars;
// docs/benchmarks.md, "Control plane convergence").
func xdsTransport() h2grpc.Options {
	return h2grpc.Options{Window: 16 << 20}
}

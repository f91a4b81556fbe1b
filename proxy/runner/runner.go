// Package runner wires one causeway-proxy process: it loads the bootstrap,
// starts the admin server, the data-plane engine and the xDS client, and
// drains on shutdown. cmd/causeway-proxy only parses flags and calls Run.
//
// Run owns every goroutine it starts and returns only after all of them
// have ended.
package runner

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/proxy"
	"github.com/causewaymesh/causeway/proxy/admin"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/telemetry"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
)

// Config is the whole configuration of a proxy process.
type Config struct {
	Mode      string // sidecar (ingress and east-west arrive with their issues)
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
}

// Validate checks c and names every bad field with its fix.
func (c *Config) Validate() error {
	var errs []error
	if c.Mode != "sidecar" {
		errs = append(errs, fmt.Errorf("mode %q: only \"sidecar\" is available in this build (ingress and east-west modes are not built yet)", c.Mode))
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

	px := proxy.New(proxy.Options{Self: self, Metrics: metrics, AccessLog: al, Logger: log, DrainTimeout: c.DrainTimeout})
	p := &Process{Proxy: px, cfg: c, log: log, done: make(chan struct{}), logOut: closer}

	ctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.Admin, err = admin.New(adminAddr, admin.Sources{
		Gatherer:   reg,
		Ready:      p.ready,
		ConfigDump: p.configDump,
		Clusters:   px.ClustersStatus,
		Drain:      func() { go p.drain() },
	})
	if err != nil {
		cancel()
		px.Close()
		return nil, fmt.Errorf("admin listener %s: %w", adminAddr, err)
	}

	if boot.Static != nil && len(boot.Static.Listeners)+len(boot.Static.Clusters) > 0 {
		if err := px.Apply(boot.Static); err != nil {
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
			Server:      boot.ADSServer,
			DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
			Node:        node,
			Static:      boot.Static,
			Logger:      log,
			Observer:    metrics,
			OnUpdate: func(s *config.Snapshot) {
				if err := px.Apply(s); err != nil {
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
		errc := make(chan error, 2)
		go func() { errc <- p.Admin.Serve() }()
		if p.client != nil {
			go func() { errc <- p.client.Run(ctx) }()
		}
		<-ctx.Done()
		n := 1
		if p.client != nil {
			n = 2
		}
		_ = p.Admin.Shutdown(context.Background())
		for range n {
			<-errc
		}
		p.err = px.Close()
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
}

func (p *Process) ready() (bool, string) { return p.Proxy.Ready() }

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

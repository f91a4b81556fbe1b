package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/federation/mcs"
	"github.com/causewaymesh/causeway/gateway/controller"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/inject"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/trustplane"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/trust/issuer"
	"github.com/causewaymesh/causeway/trust/issuer/k8sauth"
)

// controlPlaneConfig is the `causeway control-plane` command line.
type controlPlaneConfig struct {
	Source, Dir, Kubeconfig       string
	XDS, Admin                    string
	Cluster, Network, TrustDomain string
	Interval, Debounce            time.Duration
	ListenerIP                    string
	// Mesh mTLS and the trust side (internal/trustplane).
	MTLS                            bool
	CADir, SVIDListen, BundleListen string
	TokensFile                      string
	CASecret                        string
	// Federation (internal/controlplane.Federation) and the Gateway API
	// controller, merged with the source by controlplane.Merger.
	FederationListen  string
	Peers             peerFlags
	Staleness         time.Duration
	GatewayController bool
	GatewayAddresses  string // CIDR pool of Gateway addresses (ingress.go)
	// EastWestAddress is this cluster's east-west gateway (ip:port) as
	// peers on other networks reach it (federation.Gateway).
	EastWestAddress string
	// The sidecar injection webhook (internal/inject.Server; injector.go).
	Injector inject.WebhookConfig
}

func (c *controlPlaneConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Source, "source", "folder", `where the cluster's truth comes from: "folder" (a directory of YAML) or "kubernetes" (informers on an apiserver)`)
	fs.StringVar(&c.Dir, "dir", "", "folder of Kubernetes YAML (with --source folder)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file (with --source kubernetes; default: in-cluster config, else $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&c.XDS, "xds", "127.0.0.1:15010", "ADS (xDS) listen address")
	fs.StringVar(&c.Admin, "admin", "127.0.0.1:15011", "admin listener: /metrics, /model, /problems, /federation, /status, /ready, /link, /dashboard/")
	fs.StringVar(&c.Cluster, "cluster", "", "name of this cluster (required)")
	fs.StringVar(&c.Network, "network", "", "name of this cluster's network")
	fs.StringVar(&c.TrustDomain, "trust-domain", "", "SPIFFE trust domain (default <cluster>.local)")
	fs.DurationVar(&c.Interval, "poll", 500*time.Millisecond, "how often the folder is scanned")
	fs.DurationVar(&c.Debounce, "debounce", 100*time.Millisecond, "minimum interval between two pushes: an isolated change goes out at once, a burst is coalesced")
	fs.StringVar(&c.ListenerIP, "listener-ip", "127.0.0.1", "IP proxies bind outbound listeners on (a node may override it with metadata outbound_ip)")
	fs.BoolVar(&c.MTLS, "mtls", false, "mesh mutual TLS: run the CA, the SVID issuer and the bundle endpoint, and send proxies mTLS config")
	fs.StringVar(&c.CADir, "ca-dir", "", "directory of the root CA (ca.crt, ca.key; created on first start); required with --mtls")
	fs.StringVar(&c.CASecret, "ca-secret", "", "namespace/name of a Kubernetes Secret holding the root CA (ca.crt+ca.key or tls.crt+tls.key), instead of --ca-dir (with --source kubernetes)")
	fs.StringVar(&c.SVIDListen, "svid-listen", "127.0.0.1:15012", "SVID issuer listen address (with --mtls)")
	fs.StringVar(&c.BundleListen, "bundle-listen", "127.0.0.1:15013", `SPIFFE bundle endpoint listen address (with --mtls; "" for none)`)
	fs.StringVar(&c.TokensFile, "tokens-file", "", "bootstrap tokens of the workloads (with --mtls and --source folder; see docs/trust.md); with --source kubernetes, service-account tokens are checked by TokenReview instead")
	fs.StringVar(&c.FederationListen, "federation-listen", "", "serve this cluster's exported services to the --peer control planes on this address (mutual TLS; with --mtls)")
	fs.Var(&c.Peers, "peer", "a peer control plane, repeatable: cluster=<name>,trust-domain=<td>[,federation=<host:port>][,bundle=<https url>][,bundle-file=<PEM of the peer's roots>]; federation= imports from it, bundle= keeps its trust bundle fresh (https_spiffe bootstrapped from bundle-file, else https_web) (with --mtls)")
	fs.DurationVar(&c.Staleness, "staleness", federation.DefaultStalenessWindow, "how long a disconnected peer's imports keep serving (marked stale) before they are withdrawn")
	fs.StringVar(&c.EastWestAddress, "eastwest-address", "", "this cluster's east-west gateway, ip:port, as peers on other networks reach it: they import per-locality endpoint summaries behind it instead of pod IPs (with --federation-listen)")
	fs.BoolVar(&c.GatewayController, "gateway-controller", false, "run the Gateway API controller and serve its routes (with --source kubernetes)")
	fs.StringVar(&c.GatewayAddresses, "gateway-addresses", "", `CIDR the Gateway controller assigns Gateway addresses from, one per Gateway, bound by "causeway-proxy ingress" (e.g. 127.50.0.0/16 on one machine); empty: none (Programmed=False AddressNotAssigned)`)
	c.Injector = inject.DefaultWebhookConfig()
	c.Injector.Flags(fs)
}

func (c *controlPlaneConfig) validate() error {
	var errs []error
	if c.Source != "folder" && c.Source != "kubernetes" {
		errs = append(errs, fmt.Errorf("--source %q: want \"folder\" or \"kubernetes\"", c.Source))
	}
	if c.Source != "kubernetes" && c.Kubeconfig != "" {
		errs = append(errs, errors.New("--kubeconfig: only used with --source kubernetes"))
	}
	if c.Source == "folder" && c.Dir == "" {
		errs = append(errs, errors.New("--dir: required with --source folder; name the folder of Kubernetes YAML"))
	}
	if c.Cluster == "" {
		errs = append(errs, errors.New("--cluster: required; name this cluster"))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--poll %s: must be positive", c.Interval))
	}
	if c.MTLS && (c.CADir == "") == (c.CASecret == "") {
		errs = append(errs, errors.New("--ca-dir or --ca-secret: exactly one is required with --mtls; name the directory of the root CA (created on first start) or the Secret that holds it"))
	}
	if c.CASecret != "" && c.Source != "kubernetes" {
		errs = append(errs, errors.New("--ca-secret: only with --source kubernetes; use --ca-dir in local mode"))
	}
	if c.MTLS && c.Source == "folder" && c.TokensFile == "" {
		errs = append(errs, errors.New("--tokens-file: required with --mtls --source folder; give the workloads' bootstrap tokens"))
	}
	errs = append(errs, c.validateFederation()...)
	errs = append(errs, c.validateInjector()...)
	return errors.Join(errs...)
}

// runControlPlane is `causeway control-plane`.
func runControlPlane(args []string) int {
	var c controlPlaneConfig
	fs := flag.NewFlagSet("causeway control-plane", flag.ContinueOnError)
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
		return 2
	}
	if c.TrustDomain == "" {
		c.TrustDomain = c.Cluster + ".local"
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	bo := discovery.BuildOptions{Cluster: c.Cluster, Network: c.Network, TrustDomain: c.TrustDomain}
	// With --mtls the federation's links are the --peer flags and the
	// Peer objects (the folder's, or the apiserver's): peers.go.
	var links *peerLinks
	if c.MTLS {
		var err error
		if links, err = newPeerLinks(&c, log); err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 2
		}
	}
	var (
		src      discovery.Source
		problems func() []discovery.Problem
		rc       *rest.Config
		mcsw     *mcs.Writer // Kubernetes mode only
		locate   xds.PodLocator
		gwFolder *controlplane.GatewayFolder // local mode's Gateway API, fed by the folder's scans
	)
	switch c.Source {
	case "kubernetes":
		var err error
		rc, err = kubeConfig(c.Kubeconfig)
		if err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 2
		}
		k, err := discovery.NewKubernetes(discovery.KubernetesOptions{Config: rc, BuildOptions: bo, Logger: log})
		if err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 2
		}
		// ServiceImports and ServiceExport conditions (federation/mcs):
		// fed by the discovery snapshots and, below, the imports. With
		// federation, ServiceImports left from before a restart are kept
		// 15s, while the links catch up.
		mo := mcs.Options{Cluster: c.Cluster, Config: rc, Registerer: reg, Logger: log}
		if links != nil {
			mo.StartGrace = 15 * time.Second
		}
		if mcsw, err = mcs.NewWriter(mo); err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 1
		}
		src, problems = mcsw.Source(k), k.Problems
		locate = k // proxies without --locality get their pod's node's
	default:
		fo := discovery.FolderOptions{Dir: c.Dir, BuildOptions: bo, Interval: c.Interval, Logger: log,
			// One scan feeds the model and the Gateway API (gwFolder, set
			// below, before the folder's first scan).
			OnFiles: func(files []discovery.File) { gwFolder.Feed(files) }}
		if links != nil {
			fo.OnPeers = links.setObjects // peers.go
		}
		folder, err := discovery.NewFolder(fo)
		if err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 2
		}
		src, problems = folder, folder.Problems
	}
	if links != nil { // Peers not applied are problems of the source (/problems, /status)
		srcProblems := problems
		problems = func() []discovery.Problem { return append(srcProblems(), links.sourceProblems()...) }
	}
	var plane *trustplane.Plane
	to := xds.TranslateOptions{ListenerIP: c.ListenerIP}
	if c.MTLS {
		var err error
		if plane, err = startTrustPlane(c, reg, log); err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 1
		}
		to.MTLS = &xds.MTLS{Bundles: plane.Bundles}
	}
	// With federation or the Gateway API controller the control plane
	// serves the merge of the source, the imports and the routes; the
	// exporter gets the source's snapshots as they are.
	// In local mode the folder's Gateway API objects feed the routes
	// (controlplane.GatewayFolder), so the folder always goes through one.
	var (
		merger *controlplane.Merger
		fed    *controlplane.Federation
		gw     *controller.Controller
	)
	// With the MCS writer too: the Merger assigns the ServiceImport VIPs
	// (model.WithClustersetIPs) that the writer publishes.
	if links != nil || c.GatewayController || c.Source == "folder" || mcsw != nil {
		var err error
		merger, err = controlplane.NewMerger(controlplane.MergerOptions{Local: src, Cluster: c.Cluster, Registerer: reg, Logger: log,
			OnLocal: func(s *model.Snapshot) {
				if fed != nil {
					fed.Update(s)
				}
			}})
		if err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 1
		}
		src = merger
	}
	if c.Source == "folder" {
		var err error
		if gwFolder, err = controlplane.NewGatewayFolder(controlplane.GatewayFolderOptions{Dir: c.Dir, OnRoutes: merger.SetRoutes, Logger: log}); err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 2
		}
		srcProblems := problems // the folder's Gateway API problems are the source's too
		problems = func() []discovery.Problem { return append(srcProblems(), gwFolder.Problems()...) }
	}
	if links != nil {
		var err error
		onImports := merger.SetImports
		if mcsw != nil {
			onImports = func(im *federation.Imports) { merger.SetImports(im); mcsw.SetImports(im) }
		}
		if fed, err = newFederation(&c, plane, onImports, reg, log); err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 1
		}
		links.attach(fed)
	}
	var ing *gatewayIngress // ingress.go
	if c.GatewayController {
		var err error
		if ing, err = newGatewayIngress(c.GatewayAddresses, rc); err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 2
		}
		to.Ingress = ing.options()
		if gw, err = controller.New(controller.Options{Config: rc, Cluster: c.Cluster, OnRoutes: merger.SetRoutes, Addresses: ing.addresses, Registerer: reg, Logger: log}); err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 1
		}
	}
	var inj *inject.Server
	if c.Injector.Listen != "" {
		var err error
		if inj, err = startInjector(&c, reg, log); err != nil {
			fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
			return 1
		}
	}
	cp, err := controlplane.New(controlplane.Options{
		Cluster: c.Cluster, Network: c.Network, XDSAddress: c.XDS, Debounce: c.Debounce,
		Translate: to,
		Registry:  reg, Logger: log, Locate: locate,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
		return 1
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/model", func(w http.ResponseWriter, _ *http.Request) {
		if m := cp.Model(); m != nil {
			fmt.Fprint(w, m.String())
		}
	})
	mux.HandleFunc("/problems", func(w http.ResponseWriter, _ *http.Request) {
		for _, p := range problems() {
			fmt.Fprintln(w, p.Error())
		}
		if merger != nil {
			for _, cf := range merger.Conflicts() {
				fmt.Fprintln(w, "merge:", cf.Error())
			}
		}
		if mcsw != nil {
			for _, p := range mcsw.Problems() {
				fmt.Fprintln(w, "mcs:", p.Error())
			}
		}
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if cp.Model() == nil {
			http.Error(w, "no model yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/federation", func(w http.ResponseWriter, _ *http.Request) {
		if fed == nil {
			fmt.Fprintln(w, "no federation (--peer)")
			return
		}
		writeFederationStatus(w, fed)
		links.writeLinks(w)
	})
	mux.Handle("/status", cp.StatusHandler(controlplane.StatusSources{TrustDomain: c.TrustDomain, Federation: fed, Merger: merger, Problems: problems}))
	dash, err := controlPlaneDashboard(c.Cluster, c.Admin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "causeway control-plane:", err)
		return 2
	}
	mux.Handle("/dashboard/", dash)
	mux.Handle("/link", linkHandler(&c, plane, fed))
	admin := &http.Server{Addr: c.Admin, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	adminErr := make(chan error, 1)
	go func() { adminErr <- admin.ListenAndServe() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("causeway control-plane started", "xds", cp.Addr(), "admin", c.Admin, "cluster", c.Cluster, "source", c.Source, "dir", c.Dir, "kubeconfig", c.Kubeconfig)
	planeDone := make(chan struct{})
	if plane != nil {
		go func() { defer close(planeDone); plane.Run(ctx, cp.Republish) }()
		log.Info("trust plane started", "trust_domain", c.TrustDomain, "svid_issuer", plane.IssuerAddr(), "bundle_endpoint", plane.BundleURL())
	} else {
		close(planeDone)
	}
	var (
		side    sync.WaitGroup
		sideErr = make(chan error, 5) // federation, gateway controller, gateway TLS secrets, injector, MCS writer
	)
	if fed != nil {
		side.Go(func() {
			if err := fed.Run(ctx); err != nil {
				sideErr <- err
				stop()
			}
		})
		log.Info("federation started", "listen", fed.Addr(), "peers", c.Peers.String(), "staleness", c.Staleness)
		if c.Source == "kubernetes" {
			side.Go(func() {
				if err := watchPeers(ctx, rc, links, 5*time.Second, log); err != nil {
					log.Error("federation: watching Peers", "err", err)
				}
			})
		}
	}
	if mcsw != nil {
		side.Go(func() {
			if err := mcsw.Run(ctx); err != nil {
				sideErr <- err
				stop()
			}
		})
	}
	if gw != nil {
		ing.cp.Store(cp)
		side.Go(func() {
			if err := gw.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				sideErr <- fmt.Errorf("gateway controller: %w", err)
				stop()
			}
		})
		side.Go(func() {
			if err := ing.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				sideErr <- fmt.Errorf("gateway TLS secrets: %w", err)
				stop()
			}
		})
	}
	if inj != nil {
		side.Go(func() {
			if err := inj.Run(ctx); err != nil {
				sideErr <- err
				stop()
			}
		})
		log.Info("injector webhook started", "listen", inj.Addr(), "webhook_configuration", c.Injector.WebhookConfiguration)
	}
	runErr := cp.Run(ctx, src)
	stop()
	<-planeDone
	side.Wait()
	close(sideErr)
	for err := range sideErr {
		if runErr == nil || errors.Is(runErr, context.Canceled) {
			runErr = err
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = admin.Shutdown(shutdownCtx)
	if err := <-adminErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "causeway control-plane: admin:", err)
		return 1
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		fmt.Fprintln(os.Stderr, "causeway control-plane:", runErr)
		return 1
	}
	return 0
}

// kubeConfig loads path, or with an empty path the in-cluster config, else
// $KUBECONFIG / ~/.kube/config (client-go's default loading rules).
func kubeConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	} else if rc, err := rest.InClusterConfig(); err == nil {
		return rc, nil
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %q: %w; pass a readable kubeconfig or run in a pod with a service account", path, err)
	}
	return rc, nil
}

// startTrustPlane starts the CA, SVID issuer and bundle endpoint: tokens
// from --tokens-file in local mode, TokenReview in Kubernetes mode.
func startTrustPlane(c controlPlaneConfig, reg prometheus.Registerer, log *slog.Logger) (*trustplane.Plane, error) {
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("--trust-domain %q: %w", c.TrustDomain, err)
	}
	var (
		authn issuer.Authenticator
		root  func() (*x509.Certificate, crypto.Signer, error)
	)
	if c.Source == "kubernetes" {
		rc, err := kubeConfig(c.Kubeconfig)
		if err != nil {
			return nil, err
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		if authn, err = k8sauth.New(cs.AuthenticationV1(), td, k8sauth.Options{}); err != nil {
			return nil, err
		}
		if c.CASecret != "" {
			root = trustplane.SecretRoot(context.Background(), cs.CoreV1(), c.CASecret)
		}
	} else if authn, err = issuer.NewTokenFileAuthenticator(c.TokensFile, td); err != nil {
		return nil, fmt.Errorf("--tokens-file: %w", err)
	}
	return trustplane.Start(trustplane.Options{TrustDomain: td, CADir: c.CADir, Root: root, IssuerAddress: c.SVIDListen,
		BundleAddress: c.BundleListen, Authenticator: authn, Registerer: reg, Logger: log})
}

package inject

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"

	"github.com/causewaymesh/causeway/trust"
)

// Names the webhook server and the manifests (manifests/base/injector.yaml)
// share.
const (
	// WebhookPath is where the Handler is served.
	WebhookPath = "/inject"
	// WebhookName is the webhook's name inside the configuration.
	WebhookName = "inject.causeway.dev"
	// DefaultWebhookConfiguration is the MutatingWebhookConfiguration whose
	// caBundle the server keeps.
	DefaultWebhookConfiguration = "causeway-injector"
	// DefaultServingHost is the DNS name the apiserver dials for the
	// Service causeway-system/causeway-injector.
	DefaultServingHost = "causeway-injector.causeway-system.svc"
	// FieldManager owns clientConfig.caBundle (server-side apply).
	FieldManager = "causeway-injector"
	// DefaultCertTTL is the serving certificate's lifetime; it is renewed
	// after two thirds of it.
	DefaultCertTTL = 24 * time.Hour
)

// WebhookConfig is the control plane's injector: where it listens, the
// names in its serving certificate, the MutatingWebhookConfiguration whose
// caBundle it keeps, and the injection template. Build it with
// DefaultWebhookConfig; register it with Flags.
type WebhookConfig struct {
	// Listen is the HTTPS listen address; empty: no injector.
	Listen string
	// Hosts are the serving certificate's names: DNS names and IP
	// addresses the apiserver dials. Default DefaultServingHost.
	Hosts []string
	// WebhookConfiguration names the MutatingWebhookConfiguration whose
	// webhook WebhookName gets clientConfig.caBundle; empty: none is
	// patched (the installer puts the CA in by hand).
	WebhookConfiguration string
	// CertTTL is the serving certificate's lifetime.
	CertTTL time.Duration
	// Inject is the template of the injected containers. Its Cluster and
	// Network are the control plane's own: the caller sets them.
	Inject Config
}

// DefaultWebhookConfig is a WebhookConfig with every default; Listen,
// Inject.Image and Inject.ControlPlane remain to be set.
func DefaultWebhookConfig() WebhookConfig {
	return WebhookConfig{
		Hosts:                []string{DefaultServingHost},
		WebhookConfiguration: DefaultWebhookConfiguration,
		CertTTL:              DefaultCertTTL,
		Inject:               DefaultConfig(),
	}
}

// Flags registers c on fs, every name prefixed with "injector-": the
// injection template's flags (Config.Flags) become --injector-proxy-image,
// --injector-control-plane, ... except cluster, network and trust-domain,
// which the control plane has already.
func (c *WebhookConfig) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "injector-listen", c.Listen, `serve the sidecar injection webhook (HTTPS, path `+WebhookPath+`) on this address; "" for none (with --mtls: the serving certificate comes from the root CA)`)
	fs.Func("injector-hosts", fmt.Sprintf("comma-separated DNS names and IPs of the webhook's serving certificate, what the apiserver dials (default %q)", strings.Join(c.Hosts, ",")), func(s string) error {
		c.Hosts = nil
		for h := range strings.SplitSeq(s, ",") {
			if h = strings.TrimSpace(h); h != "" {
				c.Hosts = append(c.Hosts, h)
			}
		}
		return nil
	})
	fs.StringVar(&c.WebhookConfiguration, "injector-webhook-config", c.WebhookConfiguration, `MutatingWebhookConfiguration whose webhook `+WebhookName+` gets the CA bundle (server-side apply, field manager `+FieldManager+`); "" to patch it by hand`)
	fs.DurationVar(&c.CertTTL, "injector-cert-ttl", c.CertTTL, "lifetime of the webhook's serving certificate (renewed after two thirds)")
	inner := flag.NewFlagSet("", flag.ContinueOnError)
	c.Inject.Flags(inner)
	inner.VisitAll(func(f *flag.Flag) {
		if f.Name == "cluster" || f.Name == "network" || f.Name == "trust-domain" {
			return
		}
		fs.Var(f.Value, "injector-"+f.Name, "injected sidecars: "+f.Usage)
	})
}

// Validate checks c; Listen empty is valid (no injector) and skips the rest.
func (c *WebhookConfig) Validate() error {
	if c.Listen == "" {
		return nil
	}
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--injector-listen %q: want host:port, e.g. :15017", c.Listen))
	}
	if len(c.Hosts) == 0 {
		errs = append(errs, fmt.Errorf("--injector-hosts is empty: name what the apiserver dials, e.g. %s", DefaultServingHost))
	}
	if c.CertTTL < 10*time.Minute {
		errs = append(errs, fmt.Errorf("--injector-cert-ttl %v: want at least 10m", c.CertTTL))
	}
	if err := c.Inject.Validate(); err != nil {
		// Config names its own flags; here they carry the prefix.
		errs = append(errs, errors.New(strings.ReplaceAll(err.Error(), "(--", "(--injector-")))
	}
	return errors.Join(errs...)
}

// ServerOptions configure a Server.
type ServerOptions struct {
	Config WebhookConfig
	// Root returns the CA certificate and key that sign the serving
	// certificate; the certificate is the webhook's caBundle. The control
	// plane passes its root CA (trustplane.SecretRoot, or the files of
	// --ca-dir). It is called at start and at every renewal, so a rotated
	// root is picked up; the key is not kept in between. Required.
	Root func() (*x509.Certificate, crypto.Signer, error)
	// Client applies the caBundle and records Events; nil does neither.
	Client kubernetes.Interface
	// Namespaces, Registerer and Logger go to the Handler (HandlerOptions).
	Namespaces NamespaceGetter
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Resync is how often the caBundle is applied again (it also is at
	// start and after every renewal): a configuration re-created by a
	// fresh install gets it back. Default one minute.
	Resync time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is the injection webhook of the control plane: the Handler over
// HTTPS with a serving certificate signed by the root CA and renewed before
// expiry, and the caBundle of the MutatingWebhookConfiguration kept equal
// to the roots that signed its certificates.
type Server struct {
	o       ServerOptions
	handler *Handler
	ln      net.Listener
	cert    atomic.Pointer[tls.Certificate]
	rec     atomic.Pointer[events.EventRecorder]

	mu    sync.Mutex
	roots []*x509.Certificate // every root that signed a serving certificate, unexpired
	dns   []string
	ips   []netip.Addr
	kick  chan struct{} // asks the syncer to apply the caBundle now
	// bundleKick asks bundleLoop (bundle.go) to publish the trust bundle
	// ConfigMaps again.
	bundleKick chan struct{}
}

// NewServer validates o, issues the first serving certificate and listens;
// call Run to serve.
func NewServer(o ServerOptions) (*Server, error) {
	if o.Config.Listen == "" {
		return nil, errors.New("inject: NewServer: Config.Listen is empty")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Root == nil {
		return nil, errors.New("inject: NewServer: Root is nil; the serving certificate is signed by the control plane's root CA (--mtls)")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	s := &Server{o: o, kick: make(chan struct{}, 1), bundleKick: make(chan struct{}, 1)}
	for _, h := range o.Config.Hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			s.ips = append(s.ips, ip)
		} else {
			s.dns = append(s.dns, h)
		}
	}
	var err error
	s.handler, err = NewHandler(o.Config.Inject, HandlerOptions{
		Namespaces: o.Namespaces, Registerer: o.Registerer, Logger: o.Logger,
		Events: recorderFunc(func(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
			if r := s.rec.Load(); r != nil {
				(*r).Eventf(regarding, related, eventtype, reason, action, note, args...)
			}
		}),
	})
	if err != nil {
		return nil, err
	}
	if err := s.renew(); err != nil {
		return nil, err
	}
	if s.ln, err = net.Listen("tcp", o.Config.Listen); err != nil {
		return nil, fmt.Errorf("inject: webhook listener --injector-listen %s: %w", o.Config.Listen, err)
	}
	return s, nil
}

type recorderFunc func(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)

func (f recorderFunc) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	f(regarding, related, eventtype, reason, action, note, args...)
}

// Addr is the listen address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler is the admission handler the server serves.
func (s *Server) Handler() *Handler { return s.handler }

// CABundle is the PEM the webhook configuration must trust: every root that
// signed one of this server's certificates and has not expired.
func (s *Server) CABundle() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return trust.CertsPEM(s.roots)
}

// renew issues a serving certificate with the current root.
func (s *Server) renew() error {
	root, key, err := s.o.Root()
	if err != nil {
		return fmt.Errorf("inject: reading the root CA for the webhook's serving certificate: %w", err)
	}
	now := s.o.Now()
	cert, err := IssueServingCert(root, key, s.dns, s.ips, s.o.Config.CertTTL, now)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.roots = slices.DeleteFunc(s.roots, func(c *x509.Certificate) bool { return !now.Before(c.NotAfter) || c.Equal(root) })
	s.roots = append(s.roots, root)
	s.mu.Unlock()
	s.cert.Store(&cert)
	return nil
}

// renewAt is when the current certificate is renewed: two thirds into it.
func (s *Server) renewAt() time.Time {
	l := s.cert.Load().Leaf
	return l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) * 2 / 3)
}

// Run serves until ctx ends, renews the certificate and keeps the caBundle
// applied; it returns after every goroutine it started has stopped.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopEvents func()
	if s.o.Client != nil {
		b := events.NewBroadcaster(&events.EventSinkImpl{Interface: s.o.Client.EventsV1()})
		stop := make(chan struct{})
		b.StartRecordingToSink(stop)
		var r events.EventRecorder = b.NewRecorder(scheme.Scheme, FieldManager)
		s.rec.Store(&r)
		stopEvents = func() { s.rec.Store(nil); close(stop); b.Shutdown() }
	}
	mux := http.NewServeMux()
	mux.Handle(WebhookPath, s.handler)
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		}},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.o.Logger.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() {
		if err := srv.ServeTLS(s.ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("inject: webhook server on %s: %w", s.Addr(), err)
			cancel()
		}
	})
	wg.Go(func() { s.renewLoop(ctx) })
	if s.o.Client != nil && s.o.Config.WebhookConfiguration != "" {
		wg.Go(func() { s.syncLoop(ctx) })
	}
	if s.o.Client != nil && s.o.Config.Inject.SVIDIssuer != "" {
		wg.Go(func() { s.bundleLoop(ctx) }) // bundle.go
	}
	<-ctx.Done()
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdownCtx)
	wg.Wait()
	if stopEvents != nil {
		stopEvents()
	}
	select {
	case err := <-serveErr:
		return err
	default:
		return nil
	}
}

// renewLoop renews the serving certificate at renewAt, retrying every
// ten seconds after a failure, and asks for a caBundle apply after each.
func (s *Server) renewLoop(ctx context.Context) {
	for {
		t := time.NewTimer(max(s.renewAt().Sub(s.o.Now()), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.renew(); err != nil {
			s.o.Logger.Error("inject: renewing the webhook's serving certificate", "err", err)
			t := time.NewTimer(10 * time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		s.o.Logger.Info("inject: renewed the webhook's serving certificate", "not_after", s.cert.Load().Leaf.NotAfter)
		for _, k := range []chan struct{}{s.kick, s.bundleKick} {
			select {
			case k <- struct{}{}:
			default:
			}
		}
	}
}

// syncLoop applies the caBundle at start, after every renewal and every
// Resync; a failure is retried with backoff (1 s doubling to Resync).
func (s *Server) syncLoop(ctx context.Context) {
	backoff := time.Second
	for {
		wait := s.o.Resync
		if err := s.ApplyCABundle(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.o.Logger.Warn("inject: applying the webhook's caBundle; pods are admitted without a sidecar until it is in place (failurePolicy Ignore)", "err", err, "retry_in", backoff)
			wait, backoff = backoff, min(backoff*2, s.o.Resync)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// ApplyCABundle sets clientConfig.caBundle of webhook WebhookName in the
// MutatingWebhookConfiguration Config.WebhookConfiguration to CABundle,
// by server-side apply as FieldManager: only that field, so an installer's
// own apply neither conflicts with it nor removes it. It never creates the
// configuration (the apiserver refuses a partial one).
func (s *Server) ApplyCABundle(ctx context.Context) error {
	if s.o.Client == nil || s.o.Config.WebhookConfiguration == "" {
		return errors.New("inject: ApplyCABundle: no Client or Config.WebhookConfiguration")
	}
	ac := admissionregistrationv1ac.MutatingWebhookConfiguration(s.o.Config.WebhookConfiguration).WithWebhooks(
		admissionregistrationv1ac.MutatingWebhook().WithName(WebhookName).WithClientConfig(
			admissionregistrationv1ac.WebhookClientConfig().WithCABundle(s.CABundle()...)))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.o.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("inject: applying caBundle to MutatingWebhookConfiguration %s webhook %s (needs patch on it; install manifests/ first): %w", s.o.Config.WebhookConfiguration, WebhookName, err)
	}
	return nil
}

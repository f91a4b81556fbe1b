package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults of Config.
const (
	DefaultProxyUID               = 1337
	DefaultAdminPort              = 15000
	DefaultOutboundPort           = 15001
	DefaultInboundPort            = 15006
	DefaultTokenAudience          = "causeway"
	DefaultTokenExpirationSeconds = 3600
	// DefaultSVIDIssuer is the SVID issuer port of the control plane's
	// Service in manifests/base (causeway-system/causeway, grpc-svid).
	DefaultSVIDIssuer = "causeway.causeway-system.svc:15012"
	// DefaultTrustBundleConfigMap is the ConfigMap, in every namespace,
	// that holds the trust domain's roots (key TrustBundleKey); the
	// control plane's injector publishes it (bundle.go).
	DefaultTrustBundleConfigMap = "causeway-trust-bundle"
)

// Config is what the injected containers are made of. Build it with
// DefaultConfig, set Image and ControlPlane, and Validate it.
type Config struct {
	// Image is the causeway-proxy image. Its entrypoint must be the
	// causeway-proxy binary: the sidecar runs it with args "sidecar ...",
	// the init container with "init ...". Required.
	Image string
	// InitImage is the image of the causeway-init container. Default Image.
	InitImage       string
	ImagePullPolicy corev1.PullPolicy
	// ControlPlane is the ADS server host:port the sidecar connects to, e.g.
	// causeway.causeway-system.svc:15010. Required.
	ControlPlane string
	// Cluster and Network name where the workload runs (sidecar flags
	// --cluster and --network); empty leaves them out.
	Cluster string
	Network string
	// SVIDIssuer is the control plane's SVID issuer host:port (sidecar
	// --svid-issuer); $(VAR) references to the sidecar's env are expanded
	// by the kubelet. Default DefaultSVIDIssuer; empty: no SVID, no mesh
	// mTLS (and no trust bundle volume).
	SVIDIssuer string
	// TrustDomain of the workloads (sidecar --trust-domain). The control
	// plane sets its own; empty defaults to <Cluster>.local.
	TrustDomain string
	// TrustBundleConfigMap names the ConfigMap of the pod's namespace
	// whose key TrustBundleKey holds the trust domain's roots (PEM): the
	// sidecar's --trust-bundle, which authenticates the SVID issuer.
	// Default DefaultTrustBundleConfigMap.
	TrustBundleConfigMap string
	// LogLevel of the sidecar: debug, info, warn or error.
	LogLevel string
	// ProxyUID is the user the sidecar runs as; causeway-init exempts its
	// traffic from capture. Default 1337.
	ProxyUID int64
	// AdminPort is the sidecar's admin port: readiness (/ready) and the
	// rewritten application probes (/app-health/...) go through it. It is
	// always excluded from inbound capture.
	AdminPort int32
	// InboundPort and OutboundPort are the sidecar's capture listeners.
	InboundPort  int32
	OutboundPort int32
	// Resources of the sidecar container.
	Resources corev1.ResourceRequirements
	// TokenAudience and TokenExpirationSeconds shape the projected
	// service-account token the sidecar presents to get its SVID.
	TokenAudience          string
	TokenExpirationSeconds int64
	// Version is recorded in the causeway.dev/injected annotation (the
	// causeway build that injected the pod).
	Version string
}

// DefaultConfig returns a Config with every default set; Image and
// ControlPlane remain to be filled in.
func DefaultConfig() Config {
	return Config{
		ImagePullPolicy:      corev1.PullIfNotPresent,
		SVIDIssuer:           DefaultSVIDIssuer,
		TrustBundleConfigMap: DefaultTrustBundleConfigMap,
		LogLevel:             "info",
		ProxyUID:             DefaultProxyUID,
		AdminPort:            DefaultAdminPort,
		InboundPort:          DefaultInboundPort,
		OutboundPort:         DefaultOutboundPort,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("1"),
				corev1.ResourceMemory: resource.MustParse("256Mi"),
			},
		},
		TokenAudience:          DefaultTokenAudience,
		TokenExpirationSeconds: DefaultTokenExpirationSeconds,
		Version:                "dev",
	}
}

// Flags registers c's fields on fs, with the "proxy-" prefix where a name
// alone would be ambiguous in the causeway CLI.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Image, "proxy-image", c.Image, "causeway-proxy image for the sidecar (its entrypoint must be causeway-proxy)")
	fs.StringVar(&c.InitImage, "init-image", c.InitImage, "image of the causeway-init container (default: --proxy-image)")
	fs.StringVar((*string)(&c.ImagePullPolicy), "image-pull-policy", string(c.ImagePullPolicy), "Always, IfNotPresent or Never")
	fs.StringVar(&c.ControlPlane, "control-plane", c.ControlPlane, "ADS server host:port the sidecars connect to")
	fs.StringVar(&c.Cluster, "cluster", c.Cluster, "name of this Kubernetes cluster (sidecar --cluster)")
	fs.StringVar(&c.Network, "network", c.Network, "name of this cluster's network (sidecar --network)")
	fs.StringVar(&c.SVIDIssuer, "svid-issuer", c.SVIDIssuer, `SVID issuer host:port the sidecars get their certificates from ($(VAR) expands from the sidecar's env; "" for no mesh mTLS)`)
	fs.StringVar(&c.TrustDomain, "trust-domain", c.TrustDomain, "SPIFFE trust domain of the workloads (sidecar --trust-domain; default <cluster>.local)")
	fs.StringVar(&c.TrustBundleConfigMap, "trust-bundle-configmap", c.TrustBundleConfigMap, "ConfigMap, in each pod's namespace, whose key "+TrustBundleKey+" holds the trust domain's roots (the control plane publishes it)")
	fs.StringVar(&c.LogLevel, "proxy-log-level", c.LogLevel, "sidecar log level: debug, info, warn or error")
	fs.Int64Var(&c.ProxyUID, "proxy-uid", c.ProxyUID, "UID the sidecar runs as; its traffic is not captured")
	fs.Func("proxy-admin-port", fmt.Sprintf("sidecar admin port, for /ready and rewritten app probes (default %d)", c.AdminPort), portFlag(&c.AdminPort))
	fs.Func("proxy-inbound-port", fmt.Sprintf("sidecar inbound capture port (default %d)", c.InboundPort), portFlag(&c.InboundPort))
	fs.Func("proxy-outbound-port", fmt.Sprintf("sidecar outbound capture port (default %d)", c.OutboundPort), portFlag(&c.OutboundPort))
	for _, q := range []struct {
		name string
		list *corev1.ResourceList
		res  corev1.ResourceName
	}{
		{"proxy-cpu-request", &c.Resources.Requests, corev1.ResourceCPU},
		{"proxy-memory-request", &c.Resources.Requests, corev1.ResourceMemory},
		{"proxy-cpu-limit", &c.Resources.Limits, corev1.ResourceCPU},
		{"proxy-memory-limit", &c.Resources.Limits, corev1.ResourceMemory},
	} {
		cur := ""
		if v, ok := (*q.list)[q.res]; ok {
			cur = v.String()
		}
		fs.Func(q.name, fmt.Sprintf("sidecar %s (a Kubernetes quantity; \"\" for none; default %q)", q.name[len("proxy-"):], cur), quantityFlag(q.list, q.res))
	}
	fs.StringVar(&c.TokenAudience, "token-audience", c.TokenAudience, "audience of the projected service-account token used for SVID issuance")
	fs.Int64Var(&c.TokenExpirationSeconds, "token-expiration-seconds", c.TokenExpirationSeconds, "lifetime of the projected token (at least 600)")
}

func portFlag(p *int32) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: want a port 1-65535", s)
		}
		*p = int32(n)
		return nil
	}
}

func quantityFlag(list *corev1.ResourceList, name corev1.ResourceName) func(string) error {
	return func(s string) error {
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		if s == "" {
			delete(*list, name)
			return nil
		}
		q, err := resource.ParseQuantity(s)
		if err != nil {
			return fmt.Errorf("%q: want a Kubernetes quantity such as 100m or 128Mi", s)
		}
		(*list)[name] = q
		return nil
	}
}

// Validate checks c and names every bad field with its fix.
func (c *Config) Validate() error {
	var errs []error
	if c.Image == "" {
		errs = append(errs, errors.New("inject: Config.Image (--proxy-image) is empty; set the causeway-proxy image"))
	}
	if c.ControlPlane == "" {
		errs = append(errs, errors.New("inject: Config.ControlPlane (--control-plane) is empty; set the ADS server host:port"))
	} else if _, port, err := net.SplitHostPort(c.ControlPlane); err != nil || port == "" {
		errs = append(errs, fmt.Errorf("inject: Config.ControlPlane %q: want host:port, e.g. causeway.causeway-system.svc:15010", c.ControlPlane))
	}
	if c.SVIDIssuer != "" {
		if _, port, err := net.SplitHostPort(c.SVIDIssuer); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("inject: Config.SVIDIssuer %q (--svid-issuer): want host:port, e.g. %s", c.SVIDIssuer, DefaultSVIDIssuer))
		}
		if c.TrustBundleConfigMap == "" {
			errs = append(errs, fmt.Errorf("inject: Config.TrustBundleConfigMap (--trust-bundle-configmap) is empty; the sidecar needs the trust bundle to authenticate the SVID issuer (default %s)", DefaultTrustBundleConfigMap))
		} else if msgs := validation.IsDNS1123Subdomain(c.TrustBundleConfigMap); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("inject: Config.TrustBundleConfigMap %q (--trust-bundle-configmap): not a ConfigMap name: %s", c.TrustBundleConfigMap, strings.Join(msgs, "; ")))
		}
	}
	if c.TrustDomain != "" {
		if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
			errs = append(errs, fmt.Errorf("inject: Config.TrustDomain %q (--trust-domain): %w", c.TrustDomain, err))
		}
	}
	switch c.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("inject: Config.ImagePullPolicy %q: want Always, IfNotPresent or Never", c.ImagePullPolicy))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("inject: Config.LogLevel %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.ProxyUID <= 0 {
		errs = append(errs, fmt.Errorf("inject: Config.ProxyUID %d: must be a positive non-root UID (default %d)", c.ProxyUID, DefaultProxyUID))
	}
	ports := map[int32]string{}
	for _, p := range []struct {
		name string
		v    int32
	}{{"AdminPort", c.AdminPort}, {"InboundPort", c.InboundPort}, {"OutboundPort", c.OutboundPort}} {
		if p.v < 1 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("inject: Config.%s %d: want a port 1-65535", p.name, p.v))
			continue
		}
		if other, dup := ports[p.v]; dup {
			errs = append(errs, fmt.Errorf("inject: Config.%s %d: same port as Config.%s; the sidecar needs three distinct ports", p.name, p.v, other))
		}
		ports[p.v] = p.name
	}
	for res, q := range c.Resources.Requests {
		if l, ok := c.Resources.Limits[res]; ok && q.Cmp(l) > 0 {
			errs = append(errs, fmt.Errorf("inject: Config.Resources: %s request %s exceeds its limit %s", res, q.String(), l.String()))
		}
	}
	if c.TokenAudience == "" {
		errs = append(errs, fmt.Errorf("inject: Config.TokenAudience is empty; the control plane expects %q", DefaultTokenAudience))
	}
	if c.TokenExpirationSeconds < 600 {
		errs = append(errs, fmt.Errorf("inject: Config.TokenExpirationSeconds %d: Kubernetes requires at least 600", c.TokenExpirationSeconds))
	}
	return errors.Join(errs...)
}

// trustDomain is TrustDomain, else <Cluster>.local (the control plane's
// default), else "".
func (c *Config) trustDomain() string {
	if c.TrustDomain == "" && c.Cluster != "" {
		return c.Cluster + ".local"
	}
	return c.TrustDomain
}

// Hash identifies c: it is recorded in the causeway.dev/injected annotation
// so that pods injected with an older Config can be found. Version is not
// part of it.
func (c *Config) Hash() string {
	h := *c
	h.Version = ""
	b, _ := json.Marshal(h) // plain strings, ints and quantities: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

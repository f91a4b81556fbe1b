package federation

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/causewaymesh/causeway/trust/bundles"
)

// Defaults of ServerConfig and ImporterConfig.
const (
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultHeartbeatTimeout  = 3 * DefaultHeartbeatInterval
	DefaultStalenessWindow   = 5 * time.Minute
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = 30 * time.Second
	DefaultConnectTimeout    = 10 * time.Second
	DefaultMaxMessageBytes   = 4 << 20
	DefaultChangeLogLength   = 1024
	// MinMaxMessageBytes is the smallest MaxMessageBytes accepted: a Hello
	// and a few services must fit.
	MinMaxMessageBytes = 4 << 10
)

// Clock is the time source: the current time and timers. Tests inject a
// fake one to drive heartbeats, backoff and staleness without sleeping.
type Clock = bundles.Clock

// NamespacedName names a service.
type NamespacedName struct {
	Namespace, Name string
}

func (n NamespacedName) String() string { return n.Namespace + "/" + n.Name }

func compareNames(a, b NamespacedName) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// Filter selects which exported services a peer receives. The zero Filter
// admits every exported service; otherwise a service is admitted when its
// namespace is in Namespaces or its namespace/name is in Names.
type Filter struct {
	Namespaces []string
	Names      []NamespacedName
}

// Admits reports whether the filter lets the service through.
func (f *Filter) Admits(n NamespacedName) bool {
	if len(f.Namespaces) == 0 && len(f.Names) == 0 {
		return true
	}
	return slices.Contains(f.Namespaces, n.Namespace) || slices.Contains(f.Names, n)
}

// ExportPeer is a peer control plane allowed to import from this cluster.
type ExportPeer struct {
	// TrustDomain of the peer; its control plane authenticates with
	// bundles.ControlPlaneID(TrustDomain).
	TrustDomain spiffeid.TrustDomain
	// Cluster is the peer's cluster name as it subscribes. Required.
	Cluster string
	// Filter selects the exported services the peer receives.
	Filter Filter
}

// Gateway is this cluster's east-west gateway, which peers on other
// networks reach exported services through.
type Gateway struct {
	// Address is where peers reach the gateway. The zero value means no
	// gateway: peers on other networks are refused.
	Address netip.AddrPort
	// SNI names the TLS server name that routes to a service at the
	// gateway; nil means DefaultSNI.
	SNI func(namespace, name string) string
}

// DefaultSNI is "<name>.<namespace>.svc.clusterset.local".
func DefaultSNI(namespace, name string) string {
	return name + "." + namespace + ".svc.clusterset.local"
}

// ServerConfig configures the exporter.
type ServerConfig struct {
	// Cluster, Network and TrustDomain of this cluster. Cluster and
	// TrustDomain are required.
	Cluster     string
	Network     string
	TrustDomain spiffeid.TrustDomain
	// SVID is this control plane's SVID source (its ID should be
	// bundles.ControlPlaneID(TrustDomain)); Bundles authenticates peers
	// (a *bundles.Set, or any x509bundle.Source). Required.
	SVID    x509svid.Source
	Bundles x509bundle.Source
	// Peers allowed to import, at most one entry per (TrustDomain, Cluster).
	Peers   []ExportPeer
	Gateway Gateway
	// HeartbeatInterval: a Heartbeat is sent when a stream was idle this
	// long.
	HeartbeatInterval time.Duration
	// MaxMessageBytes bounds messages in both directions.
	MaxMessageBytes int
	// ChangeLogLength is how many revisions of changes are kept for
	// resumption; an importer further behind gets a full resync.
	ChangeLogLength int
	// Epoch names this run; empty means a random one. Revisions restart
	// with every epoch.
	Epoch string
	Clock Clock
	// Registerer receives the exporter's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (c ServerConfig) withDefaults() (ServerConfig, error) {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("federation: ServerConfig.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Cluster == "" {
		bad("Cluster", "required: the name of this cluster")
	}
	if c.TrustDomain.IsZero() {
		bad("TrustDomain", "required: the trust domain of this cluster")
	}
	if c.SVID == nil {
		bad("SVID", "required: this control plane's SVID source (a trust/issuer.Rotator or x509svid.Source)")
	}
	if c.Bundles == nil {
		bad("Bundles", "required: the bundles that authenticate peers (a *bundles.Set or x509bundle.Source)")
	}
	seen := map[[2]string]bool{}
	for i, p := range c.Peers {
		if p.TrustDomain.IsZero() {
			bad(fmt.Sprintf("Peers[%d].TrustDomain", i), "required")
		}
		if p.Cluster == "" {
			bad(fmt.Sprintf("Peers[%d].Cluster", i), "required: the peer's cluster name")
		}
		k := [2]string{p.TrustDomain.Name(), p.Cluster}
		if seen[k] {
			bad(fmt.Sprintf("Peers[%d]", i), "duplicate peer %s in trust domain %s: keep one entry", p.Cluster, p.TrustDomain)
		}
		seen[k] = true
	}
	if c.Gateway.Address.IsValid() && c.Gateway.Address.Port() == 0 {
		bad("Gateway.Address", "%s has no port", c.Gateway.Address)
	}
	if c.Gateway.SNI == nil {
		c.Gateway.SNI = DefaultSNI
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatInterval < 0 {
		bad("HeartbeatInterval", "%v is negative", c.HeartbeatInterval)
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxMessageBytes < MinMaxMessageBytes {
		bad("MaxMessageBytes", "%d is below the minimum %d", c.MaxMessageBytes, MinMaxMessageBytes)
	}
	if c.ChangeLogLength == 0 {
		c.ChangeLogLength = DefaultChangeLogLength
	}
	if c.ChangeLogLength < 0 {
		bad("ChangeLogLength", "%d is negative", c.ChangeLogLength)
	}
	if c.Clock == nil {
		c.Clock = bundles.SystemClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, errors.Join(errs...)
}

// ImportPeer is a peer control plane to import from.
type ImportPeer struct {
	// Cluster is the peer's cluster name; the peer must announce it in its
	// Hello. Imported endpoints carry it. Required and unique.
	Cluster string
	// TrustDomain of the peer; its control plane must present
	// bundles.ControlPlaneID(TrustDomain).
	TrustDomain spiffeid.TrustDomain
	// Address is the peer's federation endpoint, host:port.
	Address string
}

// ImporterConfig configures the importer.
type ImporterConfig struct {
	// Cluster and Network of this cluster; Cluster is required.
	Cluster string
	Network string
	// SVID is this control plane's SVID source; Bundles authenticates
	// peers. Required.
	SVID    x509svid.Source
	Bundles x509bundle.Source
	Peers   []ImportPeer
	// StalenessWindow is how long a disconnected peer's last-known-good
	// imports are kept (marked stale) before they are withdrawn.
	StalenessWindow time.Duration
	// HeartbeatTimeout: a stream on which nothing arrived for this long is
	// closed and the peer counts as disconnected.
	HeartbeatTimeout time.Duration
	// BackoffInitial and BackoffMax bound the exponential reconnect
	// backoff; each delay is drawn uniformly from [d/2, d].
	BackoffInitial, BackoffMax time.Duration
	// ConnectTimeout bounds connecting and subscribing.
	ConnectTimeout time.Duration
	// MaxMessageBytes bounds messages in both directions.
	MaxMessageBytes int
	// OnImports receives the merged imports of all peers after every
	// change, serially, newest state wins (intermediate states may be
	// skipped). It must not modify them. May be nil (see Importer.Imports).
	OnImports func(*Imports)
	Clock     Clock
	// Rand returns a float in [0, 1) for jitter, from several goroutines;
	// nil means math/rand/v2.Float64.
	Rand       func() float64
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

func (c ImporterConfig) withDefaults() (ImporterConfig, error) {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("federation: ImporterConfig.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Cluster == "" {
		bad("Cluster", "required: the name of this cluster")
	}
	if c.SVID == nil {
		bad("SVID", "required: this control plane's SVID source (a trust/issuer.Rotator or x509svid.Source)")
	}
	if c.Bundles == nil {
		bad("Bundles", "required: the bundles that authenticate peers (a *bundles.Set or x509bundle.Source)")
	}
	seen := map[string]bool{}
	for i, p := range c.Peers {
		f := fmt.Sprintf("Peers[%d]", i)
		if p.Cluster == "" {
			bad(f+".Cluster", "required: the peer's cluster name")
		} else if p.Cluster == c.Cluster {
			bad(f+".Cluster", "%q is this cluster: a cluster does not import from itself", p.Cluster)
		}
		if seen[p.Cluster] {
			bad(f+".Cluster", "duplicate peer %q: keep one entry per cluster", p.Cluster)
		}
		seen[p.Cluster] = true
		if p.TrustDomain.IsZero() {
			bad(f+".TrustDomain", "required: the peer's trust domain")
		}
		if p.Address == "" {
			bad(f+".Address", "required: the peer's federation endpoint, host:port")
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.StalenessWindow, DefaultStalenessWindow)
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.BackoffInitial, DefaultBackoffInitial)
	def(&c.BackoffMax, DefaultBackoffMax)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	if c.StalenessWindow < 0 || c.HeartbeatTimeout < 0 || c.ConnectTimeout < 0 {
		bad("StalenessWindow/HeartbeatTimeout/ConnectTimeout", "must not be negative (0 means the default)")
	}
	if c.BackoffInitial <= 0 || c.BackoffMax < c.BackoffInitial {
		bad("BackoffInitial/BackoffMax", "%v and %v: need 0 < BackoffInitial <= BackoffMax", c.BackoffInitial, c.BackoffMax)
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxMessageBytes < MinMaxMessageBytes {
		bad("MaxMessageBytes", "%d is below the minimum %d", c.MaxMessageBytes, MinMaxMessageBytes)
	}
	if c.Clock == nil {
		c.Clock = bundles.SystemClock()
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, errors.Join(errs...)
}

package config

import (
	"crypto/tls"
	"crypto/x509"
	"regexp"
	"time"
)

// Snapshot is one complete, validated configuration of a proxy. The data
// plane swaps whole snapshots atomically; nothing inside a published
// Snapshot is ever mutated, so readers need no locks.
type Snapshot struct {
	// Version is the xDS version of each resource type folded into one
	// printable string (for /config_dump and the config_version metric).
	Version   string
	Listeners []*Listener                // sorted by Name
	Routes    map[string]*RouteConfig    // by RouteConfig.Name
	Clusters  map[string]*Cluster        // by Cluster.Name
	Endpoints map[string]*LoadAssignment // by LoadAssignment.Cluster (the EDS service name)
	Secrets   map[string]*Secret         // by Secret.Name
}

// Direction says which way a listener faces, for metric labels.
type Direction uint8

const (
	Outbound Direction = iota // the local app calls out through it
	Inbound                   // remote callers reach the local app through it
)

func (d Direction) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// Listener accepts connections on one address. Exactly one of HTTP, TCP and
// SNI is set.
type Listener struct {
	Name      string
	Address   string // host:port, e.g. 127.0.0.1:15001
	Direction Direction
	HTTP      *HTTPListener
	TCP       *TCPListener
	// SNI routes TLS connections without terminating them (passthrough),
	// by the server name of their ClientHello: east-west gateways and
	// Gateway API TLSRoutes. TLS must be nil.
	SNI []*SNIChain
	// TLS, when set, terminates TLS on accepted connections.
	TLS *DownstreamTLS
}

// HTTPListener is Envoy's HTTP connection manager, reduced to what Causeway
// uses.
type HTTPListener struct {
	StatPrefix string
	// RouteConfigName names a RouteConfig delivered by RDS. Exactly one of
	// RouteConfigName and Routes is set.
	RouteConfigName string
	Routes          *RouteConfig // inline route_config
	// MaxRequestHeadersBytes bounds the request line plus headers; larger
	// requests get 431. Zero means the default (60 KiB, as Envoy).
	MaxRequestHeadersBytes int
	// RequestHeadersTimeout bounds how long a client may take to send its
	// headers (the slowloris guard). Zero means the default (10s).
	RequestHeadersTimeout time.Duration
	// IdleTimeout closes idle downstream connections. Zero means 1h.
	IdleTimeout time.Duration
	// StreamIdleTimeout bounds how long a write to the downstream client
	// may make no progress (a client that stops reading): the connection
	// is then closed. Zero means the default (5m, Envoy's
	// stream_idle_timeout); negative disables it.
	StreamIdleTimeout time.Duration
	// GenerateRequestID adds x-request-id when absent (default true).
	GenerateRequestID bool
	// RBAC filters run, in order, before routing; see RBAC.
	RBAC []*RBAC
}

// TCPListener proxies raw bytes to one cluster.
type TCPListener struct {
	StatPrefix  string
	Cluster     string
	IdleTimeout time.Duration // zero means 1h
	// RBAC filters run, in order, when a connection is accepted (after the
	// TLS handshake); a refused connection is closed.
	RBAC []*RBAC
}

// SNIChain is one destination of an SNI listener. ServerNames are exact
// names or "*.suffix" wildcards; a chain without names is the default.
// Matching is exact first, then the longest wildcard, then the default; a
// connection that matches nothing, or sends no ClientHello, is closed.
type SNIChain struct {
	ServerNames []string
	TCP         *TCPListener
}

// DownstreamTLS terminates TLS with a certificate from SDS.
type DownstreamTLS struct {
	CertSecret        string // Secret with a certificate chain and key
	ValidationSecret  string // Secret with trusted roots; empty: no client certs asked
	RequireClientCert bool
	// Permissive also accepts plaintext connections on the same port (mTLS
	// PERMISSIVE mode, for migration): a connection whose first byte is not
	// a TLS handshake record is served without TLS and has no peer
	// identity. Envoy expresses this as two filter chains matched on
	// transport_protocol "tls" and "raw_buffer".
	Permissive bool
	// MatchSANs, when non-empty, lists the URI SANs (SPIFFE IDs) or DNS
	// names a client certificate must carry one of.
	MatchSANs []StringMatch
	ALPN      []string // default h2, http/1.1
}

// UpstreamTLS originates TLS towards a cluster's endpoints.
type UpstreamTLS struct {
	CertSecret       string // client certificate for mTLS; empty: none
	ValidationSecret string // roots to verify the server; required
	SNI              string
	// MatchSANs, when non-empty, lists the SANs (SPIFFE IDs) the server
	// certificate must carry one of.
	MatchSANs []StringMatch
	ALPN      []string
}

// Secret is an SDS secret: a certificate with its key, or a set of trusted
// roots, or both.
type Secret struct {
	Name string
	Cert *tls.Certificate // nil for a validation-only secret
	// Roots are the trusted CAs of a validation context.
	Roots *x509.CertPool
	// RootsPEM is kept for /config_dump (certificates only, never keys).
	RootsPEM []byte
	// TrustDomains, when set instead of Roots, is a SPIFFE bundle set
	// (Envoy's envoy.tls.cert_validator.spiffe): a peer's certificate is
	// verified only against the roots of the trust domain its SPIFFE ID
	// names, so one federated domain's CA cannot vouch for another's IDs.
	TrustDomains map[string]*x509.CertPool
	// TrustDomainsPEM is kept for /config_dump, by trust domain.
	TrustDomainsPEM map[string][]byte
}

// HasRoots reports whether s can verify peers.
func (s *Secret) HasRoots() bool { return s != nil && (s.Roots != nil || s.TrustDomains != nil) }

// RouteConfig is a set of virtual hosts.
type RouteConfig struct {
	Name         string
	VirtualHosts []*VirtualHost
}

// VirtualHost groups routes under a set of domains. Domains follow Envoy:
// exact names, "*.suffix", "prefix*" and "*"; a ":port" suffix is allowed.
type VirtualHost struct {
	Name            string
	Domains         []string
	Routes          []*Route // first match wins
	RequestHeaders  HeaderMutation
	ResponseHeaders HeaderMutation
	Retry           *RetryPolicy // default for routes without their own
}

// Route is a match and what to do with matching requests. Exactly one of
// Forward, Redirect and Direct is set.
type Route struct {
	Name            string
	Match           RouteMatch
	Forward         *ForwardAction
	Redirect        *RedirectAction
	Direct          *DirectResponse
	RequestHeaders  HeaderMutation
	ResponseHeaders HeaderMutation
	Fault           *FaultPolicy
}

// PathKind is how a route matches the request path.
type PathKind uint8

const (
	PathPrefix PathKind = iota // also the zero value: prefix "" matches all
	PathExact
	PathRegex
	// PathSegmentPrefix matches whole segments: "/a" matches "/a" and "/a/b",
	// not "/ab" (Gateway API PathPrefix semantics).
	PathSegmentPrefix
)

// RouteMatch: all parts must match.
type RouteMatch struct {
	PathKind      PathKind
	Path          string         // for Prefix, Exact, SegmentPrefix
	PathRegex     *regexp.Regexp // for PathRegex; matched against the whole path
	CaseSensitive bool           // default true in xDS
	// Headers match on request headers; ":method", ":authority", ":path"
	// and ":scheme" are available as pseudo-headers.
	Headers []HeaderMatch
	Query   []QueryMatch
}

// StringKind is how a StringMatch compares.
type StringKind uint8

const (
	StringExact StringKind = iota
	StringPrefix
	StringSuffix
	StringContains
	StringRegex
)

// StringMatch is Envoy's type.matcher.v3.StringMatcher.
type StringMatch struct {
	Kind       StringKind
	Value      string
	Regex      *regexp.Regexp // for StringRegex; whole-value match
	IgnoreCase bool
}

// HeaderMatch matches one request header. Present-only matches set
// Present and leave Value unset.
type HeaderMatch struct {
	Name    string // lower case
	Present bool   // only presence matters
	Value   StringMatch
	Invert  bool
}

// QueryMatch matches one query parameter.
type QueryMatch struct {
	Name    string
	Present bool
	Value   StringMatch
}

// HeaderMutation adds, sets and removes headers.
type HeaderMutation struct {
	Add    []HeaderValue // appended
	Set    []HeaderValue // replaced
	Remove []string
}

// HeaderValue is one header.
type HeaderValue struct {
	Name, Value string
}

// Empty reports whether m changes nothing.
func (m HeaderMutation) Empty() bool {
	return len(m.Add) == 0 && len(m.Set) == 0 && len(m.Remove) == 0
}

// ForwardAction sends the request to one of the weighted clusters.
type ForwardAction struct {
	Clusters []WeightedCluster // one or more; weights need not sum to 100
	// Timeout covers the whole request including retries; zero means 15s
	// (Envoy's default); a negative value disables it.
	Timeout time.Duration
	Retry   *RetryPolicy // nil: the virtual host's, else no retries
	Mirrors []Mirror
	// Rewrites. At most one of PrefixRewrite and RegexRewrite is set.
	PrefixRewrite     string
	RegexRewrite      *regexp.Regexp
	RegexSubstitution string
	// FullPathRewrite replaces the whole path (Gateway API ReplaceFullPath).
	FullPathRewrite string
	HostRewrite     string
	HashPolicy      []HashPolicy
}

// WeightedCluster is one backend of a split.
type WeightedCluster struct {
	Name            string
	Weight          uint32
	RequestHeaders  HeaderMutation
	ResponseHeaders HeaderMutation
}

// Mirror copies a fraction of requests to another cluster. Mirrored
// requests are fire-and-forget: their responses are discarded and never
// delay the original.
type Mirror struct {
	Cluster string
	Percent float64 // 0..100
}

// HashPolicy says what consistent hashing keys on; the first policy that
// yields a value wins.
type HashPolicy struct {
	Header   string // header name, lower case
	Cookie   string
	SourceIP bool
}

// RetryOn is a set of retry conditions.
type RetryOn uint16

const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryConnectFailure
	RetryReset
	RetryRefusedStream
	RetryRetriableStatusCodes
)

// RetryPolicy retries failed tries.
type RetryPolicy struct {
	On                   RetryOn
	NumRetries           int           // default 1
	PerTryTimeout        time.Duration // zero: none beyond the route timeout
	RetriableStatusCodes []int
	BackoffBase          time.Duration // default 25ms
	BackoffMax           time.Duration // default 10 × base
}

// RedirectAction answers with a redirect.
type RedirectAction struct {
	Scheme        string // empty: keep
	Host          string // empty: keep
	Port          uint32 // zero: keep
	Path          string // replaces the whole path
	PrefixRewrite string // replaces the matched prefix
	StatusCode    int    // 301 (default), 302, 303, 307, 308
	StripQuery    bool
}

// DirectResponse answers with a fixed status and body.
type DirectResponse struct {
	Status int
	Body   string
}

// FaultPolicy injects delays and aborts into a fraction of requests.
type FaultPolicy struct {
	DelayPercent float64 // 0..100
	Delay        time.Duration
	AbortPercent float64 // 0..100
	AbortStatus  int
}

// LBPolicy picks an endpoint within a locality level.
type LBPolicy uint8

const (
	RoundRobin   LBPolicy = iota
	LeastRequest          // power of two choices
	RingHash
	Maglev
)

func (p LBPolicy) String() string {
	switch p {
	case LeastRequest:
		return "LEAST_REQUEST"
	case RingHash:
		return "RING_HASH"
	case Maglev:
		return "MAGLEV"
	}
	return "ROUND_ROBIN"
}

// Protocol is how the proxy talks to a cluster's endpoints.
type Protocol uint8

const (
	HTTP1 Protocol = iota
	HTTP2          // h2c, or h2 over TLS when TLS is set
)

// Cluster is an upstream service.
type Cluster struct {
	Name string
	// EDSServiceName is the name endpoints arrive under; it defaults to Name.
	EDSServiceName string
	// Static holds endpoints given inline (load_assignment); nil for EDS.
	Static         *LoadAssignment
	LB             LBPolicy
	ConnectTimeout time.Duration // default 5s
	Protocol       Protocol
	TLS            *UpstreamTLS
	// PanicThreshold is the percentage of healthy hosts in a priority level
	// below which the level ignores health (Envoy's healthy_panic_threshold,
	// default 50). Zero disables panic mode.
	PanicThreshold float64
	// RingSize bounds the ring-hash ring (default 1024). Maglev uses 65537.
	RingSize int
	Outlier  *OutlierDetection // nil: none
	Circuit  CircuitBreakers
}

// EndpointsName is the name under which c's endpoints arrive.
func (c *Cluster) EndpointsName() string {
	if c.EDSServiceName != "" {
		return c.EDSServiceName
	}
	return c.Name
}

// CircuitBreakers bound the load on a cluster. Zero values take Envoy's
// defaults (1024 each, retries 3).
type CircuitBreakers struct {
	MaxConnections     int
	MaxPendingRequests int
	MaxRequests        int
	MaxRetries         int
	// RetryBudgetPercent, when > 0, replaces MaxRetries: active retries may
	// be at most this percentage of active requests, but never fewer than
	// MinRetryConcurrency.
	RetryBudgetPercent  float64
	MinRetryConcurrency int
}

// OutlierDetection ejects endpoints that fail.
type OutlierDetection struct {
	Consecutive5xx            int           // 0 disables
	ConsecutiveGatewayFailure int           // 0 disables
	Interval                  time.Duration // success-rate sweep, default 10s
	BaseEjectionTime          time.Duration // default 30s; multiplied by ejection count
	MaxEjectionTime           time.Duration // default 300s
	MaxEjectionPercent        float64       // default 10
	// Success rate: an endpoint whose success rate is below
	// mean - stdev*SuccessRateStdevFactor/1000 is ejected. Zero
	// SuccessRateMinimumHosts disables it.
	SuccessRateMinimumHosts  int
	SuccessRateRequestVolume int     // default 100
	SuccessRateStdevFactor   float64 // default 1900
}

// LoadAssignment is an EDS ClusterLoadAssignment.
type LoadAssignment struct {
	Cluster    string
	Localities []*LocalityEndpoints
	// OverprovisioningFactor, as a percentage (default 140): a priority
	// level with this share healthy still takes all traffic.
	OverprovisioningFactor float64
}

// Locality is where an endpoint runs.
type Locality struct {
	Region  string `json:"region"`
	Zone    string `json:"zone"`
	SubZone string `json:"sub_zone,omitempty"`
}

func (l Locality) String() string {
	return l.Region + "/" + l.Zone + "/" + l.SubZone
}

// LocalityEndpoints are the endpoints of one locality at one priority.
type LocalityEndpoints struct {
	Locality Locality
	Priority uint32 // 0 is the most preferred
	Weight   uint32 // locality weight; zero means 1
	// Cluster and Network say which Kubernetes cluster and network the
	// endpoints are in (from filter metadata "causeway").
	Cluster, Network string
	Endpoints        []Endpoint
}

// Health is an endpoint's health as the control plane sees it.
type Health uint8

const (
	HealthUnknown Health = iota // treated as healthy
	Healthy
	Unhealthy
	Draining
	Degraded
	Timeout
)

// Usable reports whether the control plane allows sending new requests.
func (h Health) Usable() bool {
	return h == HealthUnknown || h == Healthy || h == Degraded
}

// MarshalText prints h by name in /clusters and /config_dump.
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h Health) String() string {
	return [...]string{"UNKNOWN", "HEALTHY", "UNHEALTHY", "DRAINING", "DEGRADED", "TIMEOUT"}[h]
}

// Endpoint is one upstream address.
type Endpoint struct {
	Address  string // host:port
	Health   Health
	Weight   uint32 // zero means 1
	Identity string // expected SPIFFE ID, if known
	Hostname string
}

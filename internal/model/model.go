package model

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Protocol is a Service port's transport protocol.
type Protocol string

// Protocols of Kubernetes Service ports.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Snapshot is one cluster's truth at one moment, in canonical form.
type Snapshot struct {
	// Cluster and Network name the cluster this snapshot describes and the
	// network its pod addresses are routable on.
	Cluster string
	Network string
	// TrustDomain is the SPIFFE trust domain of the cluster's identities.
	TrustDomain string
	// Namespaces known to the source, sorted.
	Namespaces []string
	// PermissiveNamespaces are the namespaces whose workloads accept
	// plaintext as well as mTLS inbound (annotation
	// causeway.dev/mtls-mode: PERMISSIVE on the Namespace), sorted. A
	// workload may override its namespace (node metadata mtls_mode).
	PermissiveNamespaces []string
	// Services sorted by namespace, then name.
	Services []Service
	// Routes are the Gateway API routes (gateway.Translate), one table per
	// parent (a Gateway listener set, or a Service/ServiceImport for GAMMA).
	Routes []RouteTable
	// Policies are the AuthorizationPolicies, sorted by namespace, then name.
	Policies []AuthorizationPolicy
}

// Service is a Kubernetes Service with the endpoints behind it.
type Service struct {
	Namespace string
	Name      string
	Ports     []ServicePort // sorted by port number, then protocol
	// Exported: a ServiceExport of the same namespace/name exists in this
	// cluster: the service answers as <name>.<namespace>.svc.clusterset.local,
	// its endpoints are offered to peers and reachable through the east-west
	// gateway.
	Exported bool
	// Imported: endpoints of peer clusters were merged in (internal/merge).
	// The service answers as clusterset.local even if it is not exported
	// here; its clusterset endpoints are then the peers' only (MCS: only
	// exporting clusters back a ServiceImport).
	Imported bool
	// ClusterIP is the Service's virtual IP in this cluster (spec.clusterIP;
	// vips.go); empty for a headless Service or when the source does not
	// know it. Sidecars in capture mode route by it.
	ClusterIP string
	// ClustersetIP is the VIP of the ServiceImport of this service
	// (<name>.<namespace>.svc.clusterset.local answers with it; vips.go);
	// empty when none was assigned.
	ClustersetIP string
	// Endpoints sorted by cluster, address, ports, then workload.
	Endpoints []Endpoint
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string // required when a Service has more than one port
	Port     uint32
	Protocol Protocol
	// AppProtocol is the Service port's appProtocol ("http", "grpc",
	// "kubernetes.io/h2c", ...); empty when unset.
	AppProtocol string
}

// Locality is where an endpoint runs.
type Locality struct {
	Region, Zone, SubZone string
}

// String is "region/zone/subzone" (trailing empty parts dropped).
func (l Locality) String() string {
	return strings.TrimRight(l.Region+"/"+l.Zone+"/"+l.SubZone, "/")
}

// Endpoint is one address behind a Service.
type Endpoint struct {
	Address string // IP literal
	// Ports maps Service port names to the endpoint's (target) port;
	// sorted by name. The unnamed port of a single-port Service has Name "".
	Ports    []EndpointPort
	Cluster  string
	Network  string
	Locality Locality
	// Identity is the SPIFFE ID of the workload
	// (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>); empty
	// when the source does not know the pod.
	Identity string
	// Ready: the endpoint may receive new requests. Serving and
	// Terminating follow EndpointSlice conditions.
	Ready       bool
	Serving     bool
	Terminating bool
	// Weight is the endpoint's relative load-balancing weight (>= 1).
	Weight uint32
	// Workload names the object behind the endpoint ("Pod shop/cart-1"),
	// for humans only; empty when unknown.
	Workload string
}

// EndpointPort is the port an endpoint serves a named Service port on.
type EndpointPort struct {
	Name string
	Port uint32
}

// Port is the endpoint's port for the Service port named name.
func (e *Endpoint) Port(name string) (uint32, bool) {
	for _, p := range e.Ports {
		if p.Name == name {
			return p.Port, true
		}
	}
	return 0, false
}

// Service finds a service by namespace and name (binary search).
func (s *Snapshot) Service(namespace, name string) (*Service, bool) {
	i, ok := slices.BinarySearchFunc(s.Services, [2]string{namespace, name}, func(sv Service, k [2]string) int {
		return cmp.Or(cmp.Compare(sv.Namespace, k[0]), cmp.Compare(sv.Name, k[1]))
	})
	if !ok {
		return nil, false
	}
	return &s.Services[i], true
}

// Canonicalize sorts every slice of s in place. Sources call it once before
// publishing; Equal and String assume it.
func (s *Snapshot) Canonicalize() {
	for i := range s.Services {
		s.Services[i].Canonicalize()
	}
	s.CanonicalizeAround()
}

// Canonicalize sorts the service's ports, its endpoints and their ports
// (Snapshot.Canonicalize does it for every service).
func (sv *Service) Canonicalize() {
	slices.SortFunc(sv.Ports, func(a, b ServicePort) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Name, b.Name))
	})
	for j := range sv.Endpoints {
		slices.SortFunc(sv.Endpoints[j].Ports, func(a, b EndpointPort) int { return cmp.Compare(a.Name, b.Name) })
	}
	slices.SortFunc(sv.Endpoints, compareEndpoints)
}

// CanonicalizeAround is Canonicalize for a snapshot whose services are each
// canonical already (Service.Canonicalize): it orders the services and
// canonicalizes everything else, and never writes inside a service, whose
// slices may be shared with another snapshot.
func (s *Snapshot) CanonicalizeAround() {
	slices.Sort(s.Namespaces)
	s.Namespaces = slices.Compact(s.Namespaces)
	slices.Sort(s.PermissiveNamespaces)
	s.PermissiveNamespaces = slices.Compact(s.PermissiveNamespaces)
	slices.SortFunc(s.Services, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(s.Routes, CompareRouteTables)
	for i := range s.Policies {
		s.Policies[i].canonicalize()
	}
	slices.SortFunc(s.Policies, comparePolicies)
}

func compareEndpoints(a, b Endpoint) int {
	return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Address, b.Address),
		slices.CompareFunc(a.Ports, b.Ports, func(x, y EndpointPort) int {
			return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.Port, y.Port))
		}), cmp.Compare(a.Workload, b.Workload))
}

// Equal reports whether a and b describe the same truth. Both must be
// canonical (see Canonicalize). nil equals only nil.
func (a *Snapshot) Equal(b *Snapshot) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Cluster == b.Cluster && a.Network == b.Network && a.TrustDomain == b.TrustDomain &&
		slices.Equal(a.Namespaces, b.Namespaces) && slices.Equal(a.PermissiveNamespaces, b.PermissiveNamespaces) &&
		slices.EqualFunc(a.Services, b.Services, func(x, y Service) bool { return x.Equal(&y) }) &&
		slices.EqualFunc(a.Routes, b.Routes, RouteTable.Equal) &&
		slices.EqualFunc(a.Policies, b.Policies, func(x, y AuthorizationPolicy) bool { return x.Equal(&y) })
}

// Equal reports whether two services (with their endpoints) are the same.
func (a *Service) Equal(b *Service) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Exported == b.Exported && a.Imported == b.Imported &&
		a.ClusterIP == b.ClusterIP && a.ClustersetIP == b.ClustersetIP && slices.Equal(a.Ports, b.Ports) &&
		(sameSlice(a.Endpoints, b.Endpoints) || // the same immutable endpoints (Same)
			slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y Endpoint) bool { return x.Equal(&y) }))
}

// Equal reports whether two endpoints are the same.
func (a *Endpoint) Equal(b *Endpoint) bool {
	return a.Address == b.Address && a.Cluster == b.Cluster && a.Network == b.Network &&
		a.Locality == b.Locality && a.Identity == b.Identity && a.Ready == b.Ready &&
		a.Serving == b.Serving && a.Terminating == b.Terminating && a.Weight == b.Weight &&
		a.Workload == b.Workload && slices.Equal(a.Ports, b.Ports)
}

// FieldError is one invalid field of the model.
type FieldError struct {
	Object string // "service shop/cart"
	Field  string // "endpoints[0].address"
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s: %q: %s", e.Object, e.Field, e.Value, e.Reason)
}

// Validate reports every invalid field of s (errors.Join of *FieldError),
// including ordering: s must be canonical.
func (s *Snapshot) Validate() error {
	var errs []error
	add := func(obj, field, value, reason string) {
		errs = append(errs, &FieldError{Object: obj, Field: field, Value: value, Reason: reason})
	}
	if s.Cluster == "" {
		add("snapshot", "cluster", "", "required: name the cluster this snapshot describes")
	}
	if s.TrustDomain != "" && !validDNSName(s.TrustDomain) {
		add("snapshot", "trustDomain", s.TrustDomain, "must be a lower-case DNS name")
	}
	if !slices.IsSorted(s.Namespaces) {
		add("snapshot", "namespaces", strings.Join(s.Namespaces, ","), "not sorted: call Canonicalize")
	}
	for i := range s.Services {
		sv := &s.Services[i]
		obj := "service " + sv.Namespace + "/" + sv.Name
		if i > 0 {
			p := &s.Services[i-1]
			if c := cmp.Or(cmp.Compare(p.Namespace, sv.Namespace), cmp.Compare(p.Name, sv.Name)); c >= 0 {
				add(obj, "services", fmt.Sprintf("[%d]", i), "duplicate or out of order: call Canonicalize and keep one service per namespace/name")
			}
		}
		errs = append(errs, sv.validate(obj)...)
	}
	for i := range s.Policies {
		p := &s.Policies[i]
		if i > 0 && comparePolicies(s.Policies[i-1], *p) >= 0 {
			add("authorizationpolicy "+p.Namespace+"/"+p.Name, "policies", fmt.Sprintf("[%d]", i), "duplicate or out of order: call Canonicalize")
		}
		errs = append(errs, p.validate()...)
	}
	return errors.Join(errs...)
}

func (sv *Service) validate(obj string) []error {
	var errs []error
	add := func(field, value, reason string) {
		errs = append(errs, &FieldError{Object: obj, Field: field, Value: value, Reason: reason})
	}
	if !validLabel(sv.Namespace) {
		add("namespace", sv.Namespace, "must be a DNS label (lower-case letters, digits, '-'; at most 63)")
	}
	if !validLabel(sv.Name) {
		add("name", sv.Name, "must be a DNS label (lower-case letters, digits, '-'; at most 63)")
	}
	errs = append(errs, sv.validateVIPs(obj)...) // vips.go
	names := map[string]bool{}
	for i, p := range sv.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		if p.Port == 0 || p.Port > 65535 {
			add(f+".port", fmt.Sprint(p.Port), "must be 1-65535")
		}
		switch p.Protocol {
		case TCP, UDP, SCTP:
		default:
			add(f+".protocol", string(p.Protocol), "must be TCP, UDP or SCTP")
		}
		if len(sv.Ports) > 1 && p.Name == "" {
			add(f+".name", "", "required when a service has more than one port")
		}
		if names[p.Name] {
			add(f+".name", p.Name, "duplicate port name")
		}
		names[p.Name] = true
	}
	if !slices.IsSortedFunc(sv.Ports, func(a, b ServicePort) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Name, b.Name))
	}) {
		add("ports", "", "not sorted: call Canonicalize")
	}
	if !slices.IsSortedFunc(sv.Endpoints, compareEndpoints) {
		add("endpoints", "", "not sorted: call Canonicalize")
	}
	for i := range sv.Endpoints {
		e := &sv.Endpoints[i]
		f := fmt.Sprintf("endpoints[%d]", i)
		if a, err := netip.ParseAddr(e.Address); err != nil || a.Zone() != "" {
			add(f+".address", e.Address, "must be an IP literal without zone")
		}
		if e.Cluster == "" {
			add(f+".cluster", "", "required: the cluster the endpoint runs in")
		}
		if e.Weight == 0 {
			add(f+".weight", "0", "must be at least 1")
		}
		if e.Identity != "" && !strings.HasPrefix(e.Identity, "spiffe://") {
			add(f+".identity", e.Identity, "must be a SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)")
		}
		for j, p := range e.Ports {
			if p.Port == 0 || p.Port > 65535 {
				add(fmt.Sprintf("%s.ports[%d].port", f, j), fmt.Sprint(p.Port), "must be 1-65535")
			}
		}
	}
	return errs
}

func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

// SPIFFEID is the identity of a Kubernetes service account.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// String prints s in a stable, line-oriented form for logs, debugging and
// golden files. Nothing is redacted: the model holds no secrets.
func (s *Snapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster %s network %s trust-domain %s\n", s.Cluster, orDash(s.Network), orDash(s.TrustDomain))
	if len(s.Namespaces) > 0 {
		fmt.Fprintf(&b, "namespaces %s\n", strings.Join(s.Namespaces, " "))
	}
	if len(s.PermissiveNamespaces) > 0 {
		fmt.Fprintf(&b, "mtls-permissive %s\n", strings.Join(s.PermissiveNamespaces, " "))
	}
	for i := range s.Services {
		sv := &s.Services[i]
		fmt.Fprintf(&b, "service %s/%s", sv.Namespace, sv.Name)
		if sv.Exported {
			b.WriteString(" exported")
		}
		if sv.Imported {
			b.WriteString(" imported")
		}
		writeVIPs(&b, sv) // vips.go
		b.WriteByte('\n')
		for _, p := range sv.Ports {
			fmt.Fprintf(&b, "  port %s %d/%s app=%s\n", orDash(p.Name), p.Port, p.Protocol, orDash(p.AppProtocol))
		}
		for _, e := range sv.Endpoints {
			fmt.Fprintf(&b, "  endpoint %s", e.Address)
			for _, p := range e.Ports {
				fmt.Fprintf(&b, " %s=%d", orDash(p.Name), p.Port)
			}
			fmt.Fprintf(&b, " cluster=%s network=%s locality=%s ready=%t serving=%t terminating=%t weight=%d identity=%s workload=%s\n",
				e.Cluster, orDash(e.Network), orDash(e.Locality.String()), e.Ready, e.Serving, e.Terminating, e.Weight, orDash(e.Identity), orDash(e.Workload))
		}
	}
	for _, r := range s.Routes {
		b.WriteString(r.String())
	}
	for _, p := range s.Policies {
		fmt.Fprintf(&b, "authorizationpolicy %s/%s %s services=%s\n", p.Namespace, p.Name, p.Action, orDash(strings.Join(p.Services, ",")))
		for _, r := range p.Rules {
			fmt.Fprintf(&b, "  rule from=%v to=%v\n", r.From, r.To)
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

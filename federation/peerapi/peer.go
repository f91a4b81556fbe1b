package peerapi

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The resource's API group, version and kind.
const (
	Group      = "federation.causeway.dev"
	Version    = "v1alpha1"
	APIVersion = Group + "/" + Version
	Kind       = "Peer"
	Resource   = "peers"
)

// GroupVersionResource is the resource's GVR, for dynamic clients.
func GroupVersionResource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}
}

// Peer is one federation link: a peer cluster this cluster imports from,
// exports to, or both.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cwpeer
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.cluster`
// +kubebuilder:printcolumn:name="Trust Domain",type=string,JSONPath=`.spec.trustDomain`
// +kubebuilder:printcolumn:name="Direction",type=string,JSONPath=`.spec.direction`
// +kubebuilder:printcolumn:name="Connected",type=string,JSONPath=`.status.conditions[?(@.type=="Connected")].status`
// +kubebuilder:printcolumn:name="Imported",type=integer,JSONPath=`.status.importedServices`
// +kubebuilder:printcolumn:name="Exported",type=integer,JSONPath=`.status.exportedServices`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Peer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PeerSpec   `json:"spec"`
	Status            PeerStatus `json:"status,omitempty"`
}

// Direction of a link, seen from the cluster the Peer is applied in.
// +kubebuilder:validation:Enum=Both;Import;Export
type Direction string

// The directions.
const (
	// DirectionBoth imports from the peer and lets it import from here.
	DirectionBoth Direction = "Both"
	// DirectionImport only imports from the peer (spec.federation
	// required); the peer is refused if it subscribes here.
	DirectionImport Direction = "Import"
	// DirectionExport only lets the peer import from here; nothing is
	// imported from it (spec.federation is not used).
	DirectionExport Direction = "Export"
)

// PeerSpec is what the link says.
//
// +kubebuilder:validation:XValidation:rule="(has(self.direction) && self.direction == 'Export') || has(self.federation)",message="federation (the peer's host:port) is required unless direction is Export"
// +kubebuilder:validation:XValidation:rule="!has(self.trustBundle) || has(self.bundleEndpoint)",message="trustBundle bootstraps the bundle endpoint: set bundleEndpoint too"
type PeerSpec struct {
	// Cluster is the peer's cluster name (its --cluster): it announces it
	// when it connects and its imported endpoints carry it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Cluster string `json:"cluster"`
	// TrustDomain is the peer's SPIFFE trust domain; its control plane
	// presents spiffe://<trustDomain>/causeway/control-plane.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9._-]+$`
	TrustDomain string `json:"trustDomain"`
	// Network is the peer's network (informational: the exporter sends
	// gateway summaries to peers on another network).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Network string `json:"network,omitempty"`
	// Federation is the peer's federation endpoint, host:port (its
	// --federation-listen as this cluster reaches it). Required unless
	// direction is Export.
	// +optional
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:Pattern=`^\S+:[0-9]{1,5}$`
	Federation string `json:"federation,omitempty"`
	// BundleEndpoint is the peer's SPIFFE bundle endpoint, which keeps its
	// trust bundle fresh. Required unless the peer shares this cluster's
	// trust domain.
	// +optional
	BundleEndpoint *BundleEndpoint `json:"bundleEndpoint,omitempty"`
	// TrustBundle is the PEM of the peer's root certificates, obtained out
	// of band (`causeway link` prints it): it bootstraps an https_spiffe
	// bundle endpoint. Public material only.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	TrustBundle string `json:"trustBundle,omitempty"`
	// Direction is Both (default), Import or Export.
	// +optional
	// +kubebuilder:default=Both
	Direction Direction `json:"direction,omitempty"`
	// Export filters what the peer may import from this cluster; absent
	// or empty: every exported service (ServiceExport).
	// +optional
	Export *ExportFilter `json:"export,omitempty"`
}

// BundleEndpoint is a SPIFFE bundle endpoint.
//
// +kubebuilder:validation:XValidation:rule="!has(self.profile) || self.profile != 'https_web' || !has(self.spiffeID)",message="spiffeID is only for profile https_spiffe"
type BundleEndpoint struct {
	// URL of the endpoint, https://host:port/path.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https://`
	URL string `json:"url"`
	// Profile is https_spiffe (authenticated by the peer's own bundle,
	// bootstrapped from trustBundle) or https_web (Web PKI). Default:
	// https_spiffe with a trustBundle, else https_web.
	// +optional
	// +kubebuilder:validation:Enum=https_spiffe;https_web
	Profile string `json:"profile,omitempty"`
	// SPIFFEID the endpoint presents (https_spiffe); default the peer's
	// control plane, spiffe://<trustDomain>/causeway/control-plane.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^spiffe://[a-z0-9._-]+(/.*)?$`
	SPIFFEID string `json:"spiffeID,omitempty"`
}

// The bundle endpoint profiles.
const (
	ProfileHTTPSSPIFFE = "https_spiffe"
	ProfileHTTPSWeb    = "https_web"
)

// ExportFilter selects the exported services a peer receives: those in
// Namespaces, and those named in Services. Both empty: all of them.
type ExportFilter struct {
	// Namespaces whose exported services the peer receives.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`
	// Services the peer receives, by namespace and name.
	// +optional
	// +kubebuilder:validation:MaxItems=1024
	Services []ServiceName `json:"services,omitempty"`
}

// ServiceName names an exported service.
type ServiceName struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// The condition types of PeerStatus.
const (
	// ConditionAccepted: the spec is valid and the link is configured
	// (False with reason Invalid or Conflict, and the message).
	ConditionAccepted = "Accepted"
	// ConditionConnected: the import stream from the peer is up and
	// synced (Unknown for an Export-only link).
	ConditionConnected = "Connected"
	// ConditionStale: the peer's imports are last-known-good from a lost
	// stream, withdrawn when the staleness window ends.
	ConditionStale = "Stale"
	// ConditionBundleHealthy: the peer's trust bundle was fetched and has
	// not expired (True without fetching when it shares this trust
	// domain).
	ConditionBundleHealthy = "BundleHealthy"
)

// PeerStatus is the link's observed state, written by the control plane.
type PeerStatus struct {
	// ObservedGeneration is the generation of the spec the status is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted, Connected, Stale, BundleHealthy.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastSync is when the last message from the peer arrived.
	// +optional
	LastSync *metav1.Time `json:"lastSync,omitempty"`
	// BundleSequence is the spiffe_sequence of the peer's trust bundle in
	// use.
	// +optional
	BundleSequence int64 `json:"bundleSequence,omitempty"`
	// ExportedServices is how many services this cluster exports to the
	// peer (after the export filter).
	// +optional
	ExportedServices int32 `json:"exportedServices,omitempty"`
	// ImportedServices and ImportedEndpoints come from the peer.
	// +optional
	ImportedServices int32 `json:"importedServices,omitempty"`
	// +optional
	ImportedEndpoints int32 `json:"importedEndpoints,omitempty"`
	// LastError is why the last stream or bundle fetch failed; empty if
	// none did.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	LastError string `json:"lastError,omitempty"`
}

// FieldError is one problem of a Peer: the field (spec.trustDomain, ...)
// and what is wrong with it, with the fix.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Validate checks p's metadata and spec; the error joins a *FieldError per
// problem (errors.As each; discovery reports them with the file).
func (p *Peer) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, a...)})
	}
	if p.APIVersion != "" && p.APIVersion != APIVersion {
		bad("apiVersion", "%q: want %s", p.APIVersion, APIVersion)
	}
	if p.Kind != "" && p.Kind != Kind {
		bad("kind", "%q: want %s", p.Kind, Kind)
	}
	if p.Name == "" {
		bad("metadata.name", "required: name the link, e.g. after the peer's cluster")
	}
	if p.Namespace != "" {
		bad("metadata.namespace", "%q: Peer is cluster-scoped; remove the namespace", p.Namespace)
	}
	s := &p.Spec
	switch {
	case s.Cluster == "":
		bad("spec.cluster", "required: the peer's cluster name (its --cluster)")
	case !dnsLabel.MatchString(s.Cluster) || len(s.Cluster) > 63:
		bad("spec.cluster", "%q: want a DNS label (lower-case letters, digits and '-', at most 63)", s.Cluster)
	}
	var td spiffeid.TrustDomain
	if s.TrustDomain == "" {
		bad("spec.trustDomain", "required: the peer's SPIFFE trust domain (its --trust-domain)")
	} else if t, err := spiffeid.TrustDomainFromString(s.TrustDomain); err != nil || s.TrustDomain != t.Name() {
		bad("spec.trustDomain", "%q is not a SPIFFE trust domain name (lower-case letters, digits, '.', '-', '_'; no scheme)", s.TrustDomain)
	} else {
		td = t
	}
	if len(s.Network) > 63 {
		bad("spec.network", "longer than 63 characters")
	}
	dir := s.EffectiveDirection()
	switch dir {
	case DirectionBoth, DirectionImport, DirectionExport:
	default:
		bad("spec.direction", "%q: want Both, Import or Export", s.Direction)
	}
	if s.Federation == "" {
		if dir != DirectionExport {
			bad("spec.federation", "required for direction %s: the peer's federation endpoint host:port (its --federation-listen); or set direction: Export", dir)
		}
	} else if host, port, err := net.SplitHostPort(s.Federation); err != nil || host == "" || !validPort(port) {
		bad("spec.federation", "%q: want host:port, the peer's federation endpoint", s.Federation)
	}
	if be := s.BundleEndpoint; be != nil {
		if u, err := url.Parse(be.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("spec.bundleEndpoint.url", "%q: want an https:// URL, the peer's SPIFFE bundle endpoint (its --bundle-listen)", be.URL)
		}
		switch be.Profile {
		case "", ProfileHTTPSSPIFFE, ProfileHTTPSWeb:
		default:
			bad("spec.bundleEndpoint.profile", "%q: want https_spiffe or https_web", be.Profile)
		}
		if be.Profile == ProfileHTTPSSPIFFE && s.TrustBundle == "" {
			bad("spec.trustBundle", "required with bundleEndpoint.profile https_spiffe: the peer's roots (PEM) bootstrap the endpoint's authentication")
		}
		if be.SPIFFEID != "" {
			if be.Profile == ProfileHTTPSWeb {
				bad("spec.bundleEndpoint.spiffeID", "only for profile https_spiffe")
			}
			if id, err := spiffeid.FromString(be.SPIFFEID); err != nil {
				bad("spec.bundleEndpoint.spiffeID", "%q: %v", be.SPIFFEID, err)
			} else if !td.IsZero() && id.TrustDomain() != td {
				bad("spec.bundleEndpoint.spiffeID", "%s is not in the peer's trust domain %s", id, td)
			}
		}
	}
	if s.TrustBundle != "" {
		if s.BundleEndpoint == nil {
			bad("spec.trustBundle", "bootstraps the bundle endpoint: set spec.bundleEndpoint too")
		} else if be := s.BundleEndpoint; be.Profile == ProfileHTTPSWeb {
			bad("spec.trustBundle", "not used with bundleEndpoint.profile https_web; remove it or use https_spiffe")
		}
		if n, err := countCerts([]byte(s.TrustBundle)); err != nil {
			bad("spec.trustBundle", "%v; give the peer's root certificates as PEM (what `causeway link` prints)", err)
		} else if n == 0 {
			bad("spec.trustBundle", "holds no CERTIFICATE block; give the peer's roots as PEM")
		}
	}
	if f := s.Export; f != nil {
		if dir == DirectionImport && (len(f.Namespaces) > 0 || len(f.Services) > 0) {
			bad("spec.export", "the link only imports (direction Import): nothing is exported to the peer; remove export or change direction")
		}
		for i, ns := range f.Namespaces {
			if !dnsLabel.MatchString(ns) || len(ns) > 63 {
				bad(fmt.Sprintf("spec.export.namespaces[%d]", i), "%q: want a namespace name", ns)
			}
			if slices.Contains(f.Namespaces[:i], ns) {
				bad(fmt.Sprintf("spec.export.namespaces[%d]", i), "%q is listed twice", ns)
			}
		}
		for i, sn := range f.Services {
			for _, x := range [][2]string{{"namespace", sn.Namespace}, {"name", sn.Name}} {
				if !dnsLabel.MatchString(x[1]) || len(x[1]) > 63 {
					bad(fmt.Sprintf("spec.export.services[%d].%s", i, x[0]), "%q: want a DNS label", x[1])
				}
			}
			if slices.Contains(f.Services[:i], sn) {
				bad(fmt.Sprintf("spec.export.services[%d]", i), "%s/%s is listed twice", sn.Namespace, sn.Name)
			}
		}
	}
	return errors.Join(errs...)
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

func countCerts(b []byte) (int, error) {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return n, fmt.Errorf("a %s PEM block: only certificates belong in a trust bundle (never a key)", blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return n, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	return n, nil
}

// EffectiveDirection is Direction, Both when empty.
func (s *PeerSpec) EffectiveDirection() Direction {
	if s.Direction == "" {
		return DirectionBoth
	}
	return s.Direction
}

// Imports reports whether this cluster imports from the peer.
func (s *PeerSpec) Imports() bool { return s.EffectiveDirection() != DirectionExport }

// Exports reports whether the peer may import from this cluster.
func (s *PeerSpec) Exports() bool { return s.EffectiveDirection() != DirectionImport }

package policy

import (
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/causewaymesh/causeway/internal/model"
)

// The resource's API group, version and kind.
const (
	Group      = "security.causeway.dev"
	Version    = "v1alpha1"
	APIVersion = Group + "/" + Version
	Kind       = "AuthorizationPolicy"
	Resource   = "authorizationpolicies"
)

// GroupVersionResource is the resource's GVR, for dynamic clients.
func GroupVersionResource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}
}

// AuthorizationPolicy is the Kubernetes resource.
//
// +kubebuilder:resource:scope=Namespaced,shortName=authzpolicy
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              Spec `json:"spec"`
}

// Spec is what the policy says.
type Spec struct {
	// TargetRefs name the Services of the policy's namespace it applies
	// to (their inbound side); empty means all of them.
	// +kubebuilder:validation:MaxItems=16
	TargetRefs []TargetRef `json:"targetRefs,omitempty"`
	// Action is Allow or Deny. Deny policies are checked first; once an
	// Allow policy applies to a Service, only requests an Allow policy
	// matches get through. An Allow policy without rules allows nothing.
	// +kubebuilder:validation:Enum=Allow;Deny
	Action string `json:"action"`
	// Rules: a request matches the policy when it matches one rule.
	// +kubebuilder:validation:MaxItems=64
	Rules []Rule `json:"rules,omitempty"`
}

// TargetRef is a Gateway API LocalPolicyTargetReference.
type TargetRef struct {
	// +kubebuilder:validation:Enum=""
	Group string `json:"group,omitempty"`
	// +kubebuilder:validation:Enum=Service
	Kind string `json:"kind"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// Rule matches when one of From and one of To match; an empty list matches
// anything.
type Rule struct {
	// From are the callers; empty means any caller, also unauthenticated
	// ones.
	// +kubebuilder:validation:MaxItems=64
	From []Source `json:"from,omitempty"`
	// To are the operations; empty means any request.
	// +kubebuilder:validation:MaxItems=64
	To []Operation `json:"to,omitempty"`
}

// Source is a caller: a SPIFFE ID, every ID of a trust domain, or a
// namespace (of TrustDomain if set, else of the cluster's own trust domain).
//
// +kubebuilder:validation:XValidation:rule="has(self.spiffeID) ? !has(self.trustDomain) && !has(self.namespace) : (has(self.trustDomain) || has(self.namespace))",message="set spiffeID, trustDomain or namespace (namespace may be combined with trustDomain)"
type Source struct {
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^spiffe://[a-z0-9._-]+(/.*)?$`
	SPIFFEID string `json:"spiffeID,omitempty"`
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	TrustDomain string `json:"trustDomain,omitempty"`
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
}

// Operation is what is asked; every non-empty list must match one entry.
type Operation struct {
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	Ports []int32 `json:"ports,omitempty"`
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[A-Z]+$`
	Methods []string `json:"methods,omitempty"`
	// Paths are exact, or prefixes when they end in "*".
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:Pattern=`^/[^*]*\*?$`
	Paths []string `json:"paths,omitempty"`
}

// ToModel validates p and converts it. Errors name the policy, the field
// and the fix; all of them are returned, joined.
func ToModel(p *AuthorizationPolicy) (model.AuthorizationPolicy, error) {
	obj := "AuthorizationPolicy " + p.Namespace + "/" + p.Name
	var errs []error
	out := model.AuthorizationPolicy{Namespace: p.Namespace, Name: p.Name, Action: model.AuthzAction(p.Spec.Action)}
	for i, t := range p.Spec.TargetRefs {
		if t.Group != "" || t.Kind != "Service" {
			errs = append(errs, &model.FieldError{Object: obj, Field: fmt.Sprintf("spec.targetRefs[%d]", i), Value: strings.TrimPrefix(t.Group+"/"+t.Kind, "/"),
				Reason: `only Services (group "", kind Service) can be targeted; name the Service whose inbound traffic the policy governs`})
			continue
		}
		out.Services = append(out.Services, t.Name)
	}
	for _, r := range p.Spec.Rules {
		var mr model.AuthzRule
		for _, f := range r.From {
			s := model.AuthzSource{SPIFFEID: f.SPIFFEID, TrustDomain: f.TrustDomain, Namespace: f.Namespace}
			if f.Namespace != "" && f.TrustDomain != "" {
				s.TrustDomain, s.TrustDomainOfNamespace = "", f.TrustDomain
			}
			mr.From = append(mr.From, s)
		}
		for _, o := range r.To {
			mo := model.AuthzOperation{Methods: o.Methods, Paths: o.Paths}
			for _, port := range o.Ports {
				if port < 0 {
					port = 0 // reported by Validate as out of range
				}
				mo.Ports = append(mo.Ports, uint32(port))
			}
			mr.To = append(mr.To, mo)
		}
		out.Rules = append(out.Rules, mr)
	}
	if err := out.Validate(); err != nil {
		errs = append(errs, fixFields(err))
	}
	return out, errors.Join(errs...)
}

// fixFields rewrites the model's field names into the resource's (spec.).
func fixFields(err error) error {
	var fe interface{ Unwrap() []error }
	if !errors.As(err, &fe) {
		return err
	}
	var out []error
	for _, e := range fe.Unwrap() {
		var f *model.FieldError
		if errors.As(e, &f) {
			g := *f
			g.Object = strings.Replace(g.Object, "authorizationpolicy", "AuthorizationPolicy", 1)
			switch {
			case strings.HasPrefix(g.Field, "rules"), g.Field == "action":
				g.Field = "spec." + g.Field
			case strings.HasPrefix(g.Field, "services"):
				g.Field = "spec.targetRefs" + strings.TrimPrefix(g.Field, "services") + ".name"
			}
			out = append(out, &g)
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

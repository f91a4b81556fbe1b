package discovery

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust/policy"
)

// FieldProblem is one invalid field of a Kubernetes object.
type FieldProblem struct {
	Field  string // JSON path, e.g. spec.ports[1].port
	Reason string
}

func (p FieldProblem) String() string { return p.Field + ": " + p.Reason }

// The checks below are the subset of the apiserver's validation that the
// model depends on; an apiserver would reject these objects too.

func validateMeta(m *metav1.ObjectMeta, namespaced bool) []FieldProblem {
	var ps []FieldProblem
	if m.Name == "" {
		ps = append(ps, FieldProblem{"metadata.name", "required"})
	} else if errs := validation.IsDNS1123Subdomain(m.Name); len(errs) > 0 {
		ps = append(ps, FieldProblem{"metadata.name", fmt.Sprintf("%q: %s", m.Name, strings.Join(errs, "; "))})
	}
	if namespaced && m.Namespace != "" {
		if errs := validation.IsDNS1123Label(m.Namespace); len(errs) > 0 {
			ps = append(ps, FieldProblem{"metadata.namespace", fmt.Sprintf("%q: %s", m.Namespace, strings.Join(errs, "; "))})
		}
	}
	if a, ok := m.Annotations[AnnotationLocality]; ok && (a == "" || strings.Count(a, "/") > 2) {
		ps = append(ps, FieldProblem{"metadata.annotations[" + AnnotationLocality + "]", fmt.Sprintf("%q: want region/zone/subzone (at most two slashes)", a)})
	}
	return ps
}

func validateService(s *corev1.Service) []FieldProblem {
	ps := validateMeta(&s.ObjectMeta, true)
	if errs := validation.IsDNS1035Label(s.Name); s.Name != "" && len(errs) > 0 {
		ps = append(ps, FieldProblem{"metadata.name", fmt.Sprintf("%q: a Service name %s", s.Name, strings.Join(errs, "; "))})
	}
	names := map[string]bool{}
	for i, p := range s.Spec.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		if p.Port < 1 || p.Port > 65535 {
			ps = append(ps, FieldProblem{f + ".port", fmt.Sprintf("%d: must be 1-65535", p.Port)})
		}
		switch p.Protocol {
		case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			ps = append(ps, FieldProblem{f + ".protocol", fmt.Sprintf("%q: must be TCP, UDP or SCTP", p.Protocol)})
		}
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			ps = append(ps, FieldProblem{f + ".name", "required when a Service has more than one port"})
		}
		if names[p.Name] {
			ps = append(ps, FieldProblem{f + ".name", fmt.Sprintf("%q: duplicate port name", p.Name)})
		}
		names[p.Name] = true
	}
	return ps
}

func validateEndpointSlice(s *discoveryv1.EndpointSlice) []FieldProblem {
	ps := validateMeta(&s.ObjectMeta, true)
	if s.Labels[discoveryv1.LabelServiceName] == "" {
		ps = append(ps, FieldProblem{"metadata.labels[" + discoveryv1.LabelServiceName + "]", "required: name the Service this slice belongs to"})
	}
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	default:
		ps = append(ps, FieldProblem{"addressType", fmt.Sprintf("%q: must be IPv4, IPv6 or FQDN", s.AddressType)})
	}
	for i, p := range s.Ports {
		if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
			ps = append(ps, FieldProblem{fmt.Sprintf("ports[%d].port", i), fmt.Sprintf("%d: must be 1-65535", *p.Port)})
		}
	}
	for i, ep := range s.Endpoints {
		if len(ep.Addresses) == 0 {
			ps = append(ps, FieldProblem{fmt.Sprintf("endpoints[%d].addresses", i), "required: at least one address"})
		}
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for j, a := range ep.Addresses {
			ip, err := netip.ParseAddr(a)
			f := fmt.Sprintf("endpoints[%d].addresses[%d]", i, j)
			switch {
			case err != nil || ip.Zone() != "":
				ps = append(ps, FieldProblem{f, fmt.Sprintf("%q: not an IP address", a)})
			case s.AddressType == discoveryv1.AddressTypeIPv4 && !ip.Is4():
				ps = append(ps, FieldProblem{f, fmt.Sprintf("%q: addressType is IPv4", a)})
			case s.AddressType == discoveryv1.AddressTypeIPv6 && !ip.Is6():
				ps = append(ps, FieldProblem{f, fmt.Sprintf("%q: addressType is IPv6", a)})
			}
		}
	}
	return ps
}

func validatePod(p *corev1.Pod) []FieldProblem {
	ps := validateMeta(&p.ObjectMeta, true)
	if p.Spec.ServiceAccountName != "" {
		if errs := validation.IsDNS1123Subdomain(p.Spec.ServiceAccountName); len(errs) > 0 {
			ps = append(ps, FieldProblem{"spec.serviceAccountName", fmt.Sprintf("%q: %s", p.Spec.ServiceAccountName, strings.Join(errs, "; "))})
		}
	}
	if ip := p.Status.PodIP; ip != "" {
		if _, err := netip.ParseAddr(ip); err != nil {
			ps = append(ps, FieldProblem{"status.podIP", fmt.Sprintf("%q: not an IP address", ip)})
		}
	}
	return ps
}

func validateNode(n *corev1.Node) []FieldProblem { return validateMeta(&n.ObjectMeta, false) }

func validateNamespace(n *corev1.Namespace) []FieldProblem {
	ps := validateMeta(&n.ObjectMeta, false)
	if errs := validation.IsDNS1123Label(n.Name); n.Name != "" && len(errs) > 0 {
		ps = append(ps, FieldProblem{"metadata.name", fmt.Sprintf("%q: a Namespace name %s", n.Name, strings.Join(errs, "; "))})
	}
	if m, ok := n.Annotations[MTLSModeAnnotation]; ok && !strings.EqualFold(m, "STRICT") && !strings.EqualFold(m, "PERMISSIVE") {
		ps = append(ps, FieldProblem{"metadata.annotations[" + MTLSModeAnnotation + "]", fmt.Sprintf("%q: want STRICT or PERMISSIVE", m)})
	}
	return ps
}

func validateAuthorizationPolicy(p *policy.AuthorizationPolicy) []FieldProblem {
	out := validateMeta(&p.ObjectMeta, true)
	if _, err := policy.ToModel(p); err != nil {
		for _, e := range unjoin(err) {
			var fe *model.FieldError
			if errors.As(e, &fe) {
				out = append(out, FieldProblem{Field: fe.Field, Reason: strconv.Quote(fe.Value) + ": " + fe.Reason})
				continue
			}
			out = append(out, FieldProblem{Field: "spec", Reason: e.Error()})
		}
	}
	return out
}

// unjoin flattens errors.Join trees.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func validateServiceExport(e *mcsv1alpha1.ServiceExport) []FieldProblem {
	return validateMeta(&e.ObjectMeta, true)
}

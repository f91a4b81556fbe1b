package gateway

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// String prints o in a stable, line-oriented form (golden files, causeway
// explain): statuses first, then the route tables. Condition times and
// generations are left out.
func (o *Output) String() string {
	var b strings.Builder
	for _, c := range o.GatewayClasses {
		fmt.Fprintf(&b, "GatewayClass %s\n", c.Name)
		writeConds(&b, "  ", c.Status.Conditions)
		if len(c.Status.SupportedFeatures) > 0 {
			names := make([]string, len(c.Status.SupportedFeatures))
			for i, f := range c.Status.SupportedFeatures {
				names[i] = string(f.Name)
			}
			fmt.Fprintf(&b, "  features %s\n", strings.Join(names, " "))
		}
	}
	for _, g := range o.Gateways {
		fmt.Fprintf(&b, "Gateway %s/%s\n", g.Namespace, g.Name)
		writeConds(&b, "  ", g.Status.Conditions)
		for _, l := range g.Status.Listeners {
			kinds := make([]string, len(l.SupportedKinds))
			for i, k := range l.SupportedKinds {
				kinds[i] = string(k.Kind)
			}
			fmt.Fprintf(&b, "  listener %s attached=%d kinds=%s\n", l.Name, l.AttachedRoutes, strings.Join(kinds, ","))
			writeConds(&b, "    ", l.Conditions)
		}
	}
	for _, set := range []struct {
		kind string
		rs   []RouteStatus
	}{{"HTTPRoute", o.HTTPRoutes}, {"GRPCRoute", o.GRPCRoutes}, {"TLSRoute", o.TLSRoutes}} {
		for _, r := range set.rs {
			fmt.Fprintf(&b, "%s %s/%s\n", set.kind, r.Namespace, r.Name)
			for _, p := range r.Status.Parents {
				fmt.Fprintf(&b, "  parent %s\n", parentRefString(p.ParentRef))
				writeConds(&b, "    ", p.Conditions)
			}
		}
	}
	for i := range o.Routes {
		b.WriteString(o.Routes[i].String())
	}
	return b.String()
}

func writeConds(b *strings.Builder, indent string, cs []metav1.Condition) {
	for _, c := range cs {
		fmt.Fprintf(b, "%s%s=%s %s: %s\n", indent, c.Type, c.Status, c.Reason, c.Message)
	}
}

func parentRefString(p gatewayv1.ParentReference) string {
	kind := "Gateway"
	if p.Kind != nil {
		kind = string(*p.Kind)
	}
	s := kind + " "
	if p.Namespace != nil {
		s += string(*p.Namespace) + "/"
	}
	s += string(p.Name)
	if p.SectionName != nil {
		s += " section=" + string(*p.SectionName)
	}
	if p.Port != nil {
		s += fmt.Sprintf(" port=%d", *p.Port)
	}
	return s
}

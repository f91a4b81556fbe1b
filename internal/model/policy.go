package model

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// AuthzAction is what an AuthorizationPolicy does with matching requests.
type AuthzAction string

// Actions of an AuthorizationPolicy.
const (
	AuthzAllow AuthzAction = "Allow"
	AuthzDeny  AuthzAction = "Deny"
)

// AuthorizationPolicy says who may call which workloads of one namespace,
// and how. Deny policies are checked first; then, if any Allow policy
// applies to a service, a request must match one of them. An Allow policy
// with no rules allows nothing (default deny).
type AuthorizationPolicy struct {
	Namespace, Name string
	// Services are the names of the Services in Namespace the policy
	// applies to (their inbound side); empty means every Service there.
	Services []string
	Action   AuthzAction
	Rules    []AuthzRule
}

// AuthzRule matches when one of From and one of To match; an empty From
// matches any caller (also unauthenticated ones), an empty To any request.
type AuthzRule struct {
	From []AuthzSource
	To   []AuthzOperation
}

// AuthzSource is a caller by its SPIFFE ID: exactly one of SPIFFEID,
// TrustDomain and Namespace is set. Namespace means that namespace in
// TrustDomainOfNamespace, or in the cluster's own trust domain when empty.
type AuthzSource struct {
	SPIFFEID               string
	TrustDomain            string
	Namespace              string
	TrustDomainOfNamespace string
}

// AuthzOperation is what is asked; each non-empty list must match (one of
// its entries). Paths ending in "*" match by prefix.
type AuthzOperation struct {
	Ports   []uint32 // Service ports
	Methods []string
	Paths   []string
}

// Applies reports whether p covers service svc of its namespace.
func (p *AuthorizationPolicy) Applies(namespace, svc string) bool {
	return p.Namespace == namespace && (len(p.Services) == 0 || slices.Contains(p.Services, svc))
}

func (p *AuthorizationPolicy) canonicalize() {
	slices.Sort(p.Services)
	p.Services = slices.Compact(p.Services)
}

func comparePolicies(a, b AuthorizationPolicy) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// Equal reports whether two policies are the same.
func (p *AuthorizationPolicy) Equal(q *AuthorizationPolicy) bool {
	return p.Namespace == q.Namespace && p.Name == q.Name && p.Action == q.Action &&
		slices.Equal(p.Services, q.Services) &&
		slices.EqualFunc(p.Rules, q.Rules, func(a, b AuthzRule) bool {
			return slices.Equal(a.From, b.From) && slices.EqualFunc(a.To, b.To, func(x, y AuthzOperation) bool {
				return slices.Equal(x.Ports, y.Ports) && slices.Equal(x.Methods, y.Methods) && slices.Equal(x.Paths, y.Paths)
			})
		})
}

// Validate reports every invalid field of p (errors.Join of *FieldError).
func (p *AuthorizationPolicy) Validate() error { return errors.Join(p.validate()...) }

func (p *AuthorizationPolicy) validate() []error {
	obj := "authorizationpolicy " + p.Namespace + "/" + p.Name
	var errs []error
	add := func(field, value, reason string) {
		errs = append(errs, &FieldError{Object: obj, Field: field, Value: value, Reason: reason})
	}
	if !validLabel(p.Namespace) {
		add("namespace", p.Namespace, "must be a DNS label")
	}
	if p.Name == "" {
		add("name", "", "required")
	}
	if p.Action != AuthzAllow && p.Action != AuthzDeny {
		add("action", string(p.Action), `must be "Allow" or "Deny"`)
	}
	for i, s := range p.Services {
		if !validLabel(s) {
			add(fmt.Sprintf("services[%d]", i), s, "must be a Service name (a DNS label)")
		}
	}
	for i, r := range p.Rules {
		for j, f := range r.From {
			field := fmt.Sprintf("rules[%d].from[%d]", i, j)
			var set []string
			for _, kv := range [][2]string{{"spiffeID", f.SPIFFEID}, {"trustDomain", f.TrustDomain}, {"namespace", f.Namespace}} {
				if kv[1] != "" {
					set = append(set, kv[0]+"="+kv[1])
				}
			}
			switch {
			case len(set) != 1:
				add(field, strings.Join(set, " "), "set exactly one of spiffeID, trustDomain and namespace (namespace may be combined with trustDomain)")
			case f.SPIFFEID != "" && !strings.HasPrefix(f.SPIFFEID, "spiffe://"):
				add(field+".spiffeID", f.SPIFFEID, `must start with "spiffe://"`)
			case f.TrustDomain != "" && !validDNSName(f.TrustDomain):
				add(field+".trustDomain", f.TrustDomain, "must be a lower-case DNS name")
			case f.Namespace != "" && !validLabel(f.Namespace):
				add(field+".namespace", f.Namespace, "must be a DNS label")
			case f.TrustDomainOfNamespace != "" && (f.Namespace == "" || !validDNSName(f.TrustDomainOfNamespace)):
				add(field+".trustDomain", f.TrustDomainOfNamespace, "goes with namespace and must be a lower-case DNS name")
			}
		}
		for j, o := range r.To {
			field := fmt.Sprintf("rules[%d].to[%d]", i, j)
			for k, port := range o.Ports {
				if port == 0 || port > 65535 {
					add(fmt.Sprintf("%s.ports[%d]", field, k), fmt.Sprint(port), "must be a port from 1 to 65535")
				}
			}
			for k, m := range o.Methods {
				if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") {
					add(fmt.Sprintf("%s.methods[%d]", field, k), m, "must be an upper-case HTTP method such as GET")
				}
			}
			for k, pth := range o.Paths {
				if !strings.HasPrefix(pth, "/") || strings.Contains(strings.TrimSuffix(pth, "*"), "*") {
					add(fmt.Sprintf("%s.paths[%d]", field, k), pth, `must start with "/"; only a trailing "*" (prefix match) is allowed`)
				}
			}
		}
	}
	return errs
}

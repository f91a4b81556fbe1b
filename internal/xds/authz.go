package xds

import (
	"fmt"
	"slices"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/causewaymesh/causeway/internal/model"
)

// Names of the RBAC filters on inbound listeners; the proxy's denials name
// them ("no ALLOW policy of authz-allow matched").
const (
	AuthzDenyFilter  = "authz-deny"
	AuthzAllowFilter = "authz-allow"
)

// AuthzRules computes the RBAC rules for the inbound side of one Service
// port from the snapshot's AuthorizationPolicies: a DENY set (nil when no
// Deny policy applies) and an ALLOW set (nil when no Allow policy applies,
// so everything not denied passes; non-nil but empty denies everything).
//
// Ports are resolved here, against the Service port: an operation that
// lists ports without this one is dropped. On a TCP port (http false)
// methods and paths cannot be checked: an Allow operation that needs them
// is dropped (it can never match), a Deny operation loses them (it denies
// the whole port: the safe side).
func AuthzRules(s *model.Snapshot, namespace, service string, port uint32, http bool) (deny, allow *rbacv3.RBAC) {
	for i := range s.Policies {
		p := &s.Policies[i]
		if !p.Applies(namespace, service) {
			continue
		}
		var dst **rbacv3.RBAC
		action := rbacv3.RBAC_ALLOW
		if p.Action == model.AuthzDeny {
			dst, action = &deny, rbacv3.RBAC_DENY
		} else {
			dst = &allow
		}
		if *dst == nil {
			*dst = &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{}}
		}
		for j, r := range p.Rules {
			perms := permissions(r.To, port, http, p.Action == model.AuthzDeny)
			if perms == nil {
				continue // no operation can match on this port
			}
			(*dst).Policies[fmt.Sprintf("%s/%s[%d]", p.Namespace, p.Name, j)] = &rbacv3.Policy{
				Permissions: perms,
				Principals:  principals(r.From, s.TrustDomain),
			}
		}
	}
	return deny, allow
}

// HTTPAuthzFilters returns the HTTP filters (before the router) that
// enforce AuthzRules on an inbound HTTP listener.
func HTTPAuthzFilters(s *model.Snapshot, namespace, service string, port uint32) ([]*hcmv3.HttpFilter, error) {
	var out []*hcmv3.HttpFilter
	for _, f := range ordered(AuthzRules(s, namespace, service, port, true)) {
		a, err := anypb.New(&rbachttpv3.RBAC{Rules: f.rules})
		if err != nil {
			return nil, err
		}
		out = append(out, &hcmv3.HttpFilter{Name: f.name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	return out, nil
}

// TCPAuthzFilters returns the network filters (before tcp_proxy) that
// enforce AuthzRules on an inbound TCP listener.
func TCPAuthzFilters(s *model.Snapshot, namespace, service string, port uint32) ([]*listenerv3.Filter, error) {
	var out []*listenerv3.Filter
	for _, f := range ordered(AuthzRules(s, namespace, service, port, false)) {
		a, err := anypb.New(&rbacnetv3.RBAC{StatPrefix: f.name, Rules: f.rules})
		if err != nil {
			return nil, err
		}
		out = append(out, &listenerv3.Filter{Name: f.name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}})
	}
	return out, nil
}

type namedRBAC struct {
	name  string
	rules *rbacv3.RBAC
}

// ordered is the rule sets that exist, in filter order: deny, then allow.
func ordered(deny, allow *rbacv3.RBAC) []namedRBAC {
	var out []namedRBAC
	if deny != nil {
		out = append(out, namedRBAC{AuthzDenyFilter, deny})
	}
	if allow != nil {
		out = append(out, namedRBAC{AuthzAllowFilter, allow})
	}
	return out
}

// permissions is the OR of ops that can match on port; nil when none can.
func permissions(ops []model.AuthzOperation, port uint32, http, deny bool) []*rbacv3.Permission {
	if len(ops) == 0 {
		return []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}}
	}
	var out []*rbacv3.Permission
	for _, o := range ops {
		if len(o.Ports) > 0 && !slices.Contains(o.Ports, port) {
			continue
		}
		needsHTTP := len(o.Methods) > 0 || len(o.Paths) > 0
		if needsHTTP && !http && !deny {
			continue
		}
		var and []*rbacv3.Permission
		if http {
			if len(o.Methods) > 0 {
				var or []*rbacv3.Permission
				for _, m := range o.Methods {
					or = append(or, &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
						Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: authzExact(m)}}}})
				}
				and = append(and, orPermissions(or))
			}
			if len(o.Paths) > 0 {
				var or []*rbacv3.Permission
				for _, p := range o.Paths {
					sm := authzExact(p)
					if pre, ok := strings.CutSuffix(p, "*"); ok {
						sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: pre}}
					}
					or = append(or, &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
						Rule: &matcherv3.PathMatcher_Path{Path: sm}}}})
				}
				and = append(and, orPermissions(or))
			}
		}
		switch len(and) {
		case 0:
			out = append(out, &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}})
		case 1:
			out = append(out, and[0])
		default:
			out = append(out, &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}})
		}
	}
	return out
}

func orPermissions(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

// principals is the OR of the sources; any caller when there are none.
func principals(from []model.AuthzSource, trustDomain string) []*rbacv3.Principal {
	if len(from) == 0 {
		return []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}
	}
	var out []*rbacv3.Principal
	for _, f := range from {
		var sm *matcherv3.StringMatcher
		switch {
		case f.SPIFFEID != "":
			sm = authzExact(f.SPIFFEID)
		case f.TrustDomain != "":
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + f.TrustDomain + "/"}}
		default:
			td := f.TrustDomainOfNamespace
			if td == "" {
				td = trustDomain
			}
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + td + "/ns/" + f.Namespace + "/sa/"}}
		}
		out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
			Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: sm}}})
	}
	return out
}

func authzExact(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

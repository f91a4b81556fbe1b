package xdsclient

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/causewaymesh/causeway/proxy/config"
	rbacv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/rbac/v3"
)

// rbacRules translates the rules of an RBAC filter (HTTP or network). nil
// rules mean the filter is a no-op, as in Envoy. http says whether header
// and url_path permissions are allowed (they are not on TCP listeners).
func (c *collector) rbacRules(path, name string, rules *rbacv3.RBAC, http bool) *config.RBAC {
	if rules == nil {
		return nil
	}
	c.only(path, rules, "action", "policies")
	out := &config.RBAC{Name: name}
	switch rules.GetAction() {
	case rbacv3.RBAC_ALLOW:
		out.Action = config.RBACAllow
	case rbacv3.RBAC_DENY:
		out.Action = config.RBACDeny
	default:
		c.unsupported(join(path, "action"), rules.GetAction().String(), "use ALLOW or DENY")
	}
	names := make([]string, 0, len(rules.GetPolicies()))
	for n := range rules.GetPolicies() {
		names = append(names, n)
	}
	slices.Sort(names) // Envoy checks policies in name order
	for _, n := range names {
		p := rules.GetPolicies()[n]
		pp := join(path, "policies["+n+"]")
		c.only(pp, p, "permissions", "principals")
		rp := config.RBACPolicy{Name: n}
		for i, pm := range p.GetPermissions() {
			rp.Permissions = append(rp.Permissions, c.permission(idx(join(pp, "permissions"), i), pm, http))
		}
		for i, pr := range p.GetPrincipals() {
			rp.Principals = append(rp.Principals, c.principal(idx(join(pp, "principals"), i), pr))
		}
		out.Policies = append(out.Policies, rp)
	}
	return out
}

func (c *collector) permission(path string, p *rbacv3.Permission, http bool) config.Permission {
	const fix = "use any, and_rules, or_rules, not_rule, destination_port, header or url_path"
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return config.Permission{Any: true}
	case *rbacv3.Permission_AndRules:
		return config.Permission{And: c.permissions(join(path, "and_rules.rules"), r.AndRules.GetRules(), http)}
	case *rbacv3.Permission_OrRules:
		return config.Permission{Or: c.permissions(join(path, "or_rules.rules"), r.OrRules.GetRules(), http)}
	case *rbacv3.Permission_NotRule:
		n := c.permission(join(path, "not_rule"), r.NotRule, http)
		return config.Permission{Not: &n}
	case *rbacv3.Permission_DestinationPort:
		if r.DestinationPort == 0 {
			c.addf(join(path, "destination_port"), "name a port from 1 to 65535", "port 0")
		}
		return config.Permission{DestinationPort: r.DestinationPort}
	case *rbacv3.Permission_Header:
		if !http {
			c.unsupported(join(path, "header"), "on a TCP listener", "match HTTP headers only in envoy.filters.http.rbac")
		}
		h := c.headerMatch(join(path, "header"), r.Header)
		return config.Permission{Header: &h}
	case *rbacv3.Permission_UrlPath:
		if !http {
			c.unsupported(join(path, "url_path"), "on a TCP listener", "match paths only in envoy.filters.http.rbac")
		}
		c.only(join(path, "url_path"), r.UrlPath, "path")
		s := c.stringMatch(join(path, "url_path.path"), r.UrlPath.GetPath())
		return config.Permission{URLPath: &s}
	case nil:
		c.addf(path, fix, "empty permission")
	default:
		c.unsupported(join(path, setFields(p)), "", fix)
	}
	return config.Permission{}
}

func (c *collector) permissions(path string, ps []*rbacv3.Permission, http bool) []config.Permission {
	out := make([]config.Permission, len(ps))
	for i, p := range ps {
		out[i] = c.permission(idx(path, i), p, http)
	}
	return out
}

func (c *collector) principal(path string, p *rbacv3.Principal) config.Principal {
	const fix = "use any, and_ids, or_ids, not_id or authenticated.principal_name"
	switch r := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return config.Principal{Any: true}
	case *rbacv3.Principal_AndIds:
		return config.Principal{And: c.principals(join(path, "and_ids.ids"), r.AndIds.GetIds())}
	case *rbacv3.Principal_OrIds:
		return config.Principal{Or: c.principals(join(path, "or_ids.ids"), r.OrIds.GetIds())}
	case *rbacv3.Principal_NotId:
		n := c.principal(join(path, "not_id"), r.NotId)
		return config.Principal{Not: &n}
	case *rbacv3.Principal_Authenticated_:
		c.only(join(path, "authenticated"), r.Authenticated, "principal_name")
		a := &config.PrincipalName{}
		if pn := r.Authenticated.GetPrincipalName(); pn != nil {
			s := c.stringMatch(join(path, "authenticated.principal_name"), pn)
			a.Name = &s
		}
		return config.Principal{Authenticated: a}
	case nil:
		c.addf(path, fix, "empty principal")
	default:
		c.unsupported(join(path, setFields(p)), "", fix)
	}
	return config.Principal{}
}

func (c *collector) principals(path string, ps []*rbacv3.Principal) []config.Principal {
	out := make([]config.Principal, len(ps))
	for i, p := range ps {
		out[i] = c.principal(idx(path, i), p)
	}
	return out
}

// setFields names the populated fields of m, for errors about a oneof.
func setFields(m proto.Message) string {
	var names []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		names = append(names, string(fd.Name()))
		return true
	})
	return strings.Join(names, ",")
}

package authz

import (
	"net/http"
	"path"
	"strings"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/router"
)

// Input is what a decision looks at.
type Input struct {
	// PeerID is the peer's verified identity (the URI SAN of its
	// certificate, a SPIFFE ID); empty when the peer is not authenticated
	// (plaintext, or TLS without a client certificate).
	PeerID string
	// Authenticated is true when the peer presented a verified
	// certificate, even one without a URI SAN.
	Authenticated bool
	// Port is the local port the connection arrived on.
	Port uint32
	// Request is the HTTP request; nil for a TCP connection, in which case
	// header and path permissions never match.
	Request *http.Request
}

// Decision is the outcome of Check.
type Decision struct {
	Allowed bool
	Filter  string // the refusing filter's name
	Policy  string // the matching DENY policy; empty for "no ALLOW policy matched"
}

// Reason is a one-line explanation of a refusal for logs and local replies.
func (d Decision) Reason() string {
	if d.Allowed {
		return ""
	}
	if d.Policy != "" {
		return "rbac: denied by policy " + d.Policy + " of " + d.Filter
	}
	return "rbac: no ALLOW policy of " + d.Filter + " matched"
}

// PolicyLabel is the policy for the denial metric: the DENY policy's name,
// or "(no allow match)".
func (d Decision) PolicyLabel() string {
	if d.Policy != "" {
		return d.Policy
	}
	return "(no allow match)"
}

// Engine is a compiled list of RBAC filters.
type Engine struct {
	filters []filter
}

type filter struct {
	name     string
	deny     bool
	policies []policy
}

type policy struct {
	name        string
	permissions []permission
	principals  []principal
}

type permission struct {
	kind   uint8
	sub    []permission // and, or, not (one element)
	port   uint32
	header router.HeaderMatcher
	path   router.StringMatcher
}

type principal struct {
	kind uint8
	sub  []principal
	name router.StringMatcher
}

const (
	kAny uint8 = iota
	kAnd
	kOr
	kNot
	kPort
	kHeader
	kPath
	kAuthenticated     // any verified peer
	kAuthenticatedName // a verified peer whose ID matches name
)

// Compile compiles filters. It returns nil for an empty list, and Check on
// a nil *Engine allows everything.
func Compile(filters []*config.RBAC) *Engine {
	if len(filters) == 0 {
		return nil
	}
	e := &Engine{filters: make([]filter, len(filters))}
	for i, f := range filters {
		cf := filter{name: f.Name, deny: f.Action == config.RBACDeny, policies: make([]policy, len(f.Policies))}
		for j, p := range f.Policies {
			cp := policy{name: p.Name}
			for _, pm := range p.Permissions {
				cp.permissions = append(cp.permissions, compilePermission(pm))
			}
			for _, pr := range p.Principals {
				cp.principals = append(cp.principals, compilePrincipal(pr))
			}
			cf.policies[j] = cp
		}
		e.filters[i] = cf
	}
	return e
}

func compilePermission(p config.Permission) permission {
	switch {
	case p.And != nil:
		return permission{kind: kAnd, sub: compilePermissions(p.And)}
	case p.Or != nil:
		return permission{kind: kOr, sub: compilePermissions(p.Or)}
	case p.Not != nil:
		return permission{kind: kNot, sub: []permission{compilePermission(*p.Not)}}
	case p.DestinationPort != 0:
		return permission{kind: kPort, port: p.DestinationPort}
	case p.Header != nil:
		return permission{kind: kHeader, header: router.CompileHeader(*p.Header)}
	case p.URLPath != nil:
		return permission{kind: kPath, path: router.CompileString(*p.URLPath)}
	}
	return permission{kind: kAny}
}

func compilePermissions(ps []config.Permission) []permission {
	out := make([]permission, len(ps))
	for i, p := range ps {
		out[i] = compilePermission(p)
	}
	return out
}

func compilePrincipal(p config.Principal) principal {
	switch {
	case p.And != nil:
		return principal{kind: kAnd, sub: compilePrincipals(p.And)}
	case p.Or != nil:
		return principal{kind: kOr, sub: compilePrincipals(p.Or)}
	case p.Not != nil:
		return principal{kind: kNot, sub: []principal{compilePrincipal(*p.Not)}}
	case p.Authenticated != nil && p.Authenticated.Name != nil:
		return principal{kind: kAuthenticatedName, name: router.CompileString(*p.Authenticated.Name)}
	case p.Authenticated != nil:
		return principal{kind: kAuthenticated}
	}
	return principal{kind: kAny}
}

func compilePrincipals(ps []config.Principal) []principal {
	out := make([]principal, len(ps))
	for i, p := range ps {
		out[i] = compilePrincipal(p)
	}
	return out
}

// Check decides in. It does not allocate.
func (e *Engine) Check(in *Input) Decision {
	if e == nil {
		return Decision{Allowed: true}
	}
	for i := range e.filters {
		f := &e.filters[i]
		matched := ""
		for j := range f.policies {
			if f.policies[j].matches(in) {
				matched = f.policies[j].name
				break
			}
		}
		switch {
		case f.deny && matched != "":
			return Decision{Filter: f.name, Policy: matched}
		case !f.deny && matched == "":
			return Decision{Filter: f.name}
		}
	}
	return Decision{Allowed: true}
}

func (p *policy) matches(in *Input) bool {
	ok := false
	for i := range p.principals {
		if p.principals[i].matches(in) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	for i := range p.permissions {
		if p.permissions[i].matches(in) {
			return true
		}
	}
	return false
}

func (p *permission) matches(in *Input) bool {
	switch p.kind {
	case kPort:
		return in.Port == p.port
	case kHeader:
		return in.Request != nil && p.header.Matches(in.Request)
	case kPath:
		return in.Request != nil && in.Request.URL != nil && p.path.Match(normalPath(in.Request.URL.Path))
	}
	return combine(p.kind, p.sub, in)
}

func (p *principal) matches(in *Input) bool {
	switch p.kind {
	case kAuthenticated:
		return in.Authenticated
	case kAuthenticatedName:
		return in.Authenticated && p.name.Match(in.PeerID)
	}
	return combine(p.kind, p.sub, in)
}

// combine evaluates the nodes both trees share: any, and, or, not.
func combine[T any, P interface {
	*T
	matches(*Input) bool
}](kind uint8, sub []T, in *Input) bool {
	switch kind {
	case kAny:
		return true
	case kAnd:
		for i := range sub {
			if !P(&sub[i]).matches(in) {
				return false
			}
		}
		return true
	case kOr:
		for i := range sub {
			if P(&sub[i]).matches(in) {
				return true
			}
		}
		return false
	case kNot:
		return !P(&sub[0]).matches(in)
	}
	return false
}

// normalPath is the path a path permission sees: the decoded path with
// dot segments resolved and repeated slashes merged (as Envoy's
// normalize_path and merge_slashes), so "/public/../admin" cannot pass a
// rule written for "/public". A trailing slash is kept. Clean paths, the
// common case, are returned as they are, without allocating.
func normalPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] == '/' && !strings.Contains(p, "//") && !strings.Contains(p, "/./") && !strings.Contains(p, "/../") &&
		!strings.HasSuffix(p, "/.") && !strings.HasSuffix(p, "/..") {
		return p
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

package config

// RBACAction is what an RBAC filter does when one of its policies matches.
type RBACAction uint8

const (
	// RBACAllow lets a request through only if one of the policies matches;
	// a filter with no policies therefore denies everything (default deny).
	RBACAllow RBACAction = iota
	// RBACDeny refuses a request if one of the policies matches.
	RBACDeny
)

func (a RBACAction) String() string {
	if a == RBACDeny {
		return "DENY"
	}
	return "ALLOW"
}

// RBAC is one authorization filter, Envoy's envoy.filters.http.rbac (on an
// HTTP listener) or envoy.filters.network.rbac (on a TCP listener). Filters
// run in order and the first that refuses decides; a request passes when
// none refuses.
type RBAC struct {
	Name     string // the filter's name, for logs
	Action   RBACAction
	Policies []RBACPolicy // in the order they are checked (by name)
}

// RBACPolicy matches when one of its permissions and one of its principals
// match.
type RBACPolicy struct {
	Name        string
	Permissions []Permission
	Principals  []Principal
}

// Permission is a node of Envoy's rbac Permission tree: exactly one field
// is set.
type Permission struct {
	Any             bool
	And, Or         []Permission
	Not             *Permission
	DestinationPort uint32       // the port the connection arrived on
	Header          *HeaderMatch // HTTP only; ":method", ":path", ":authority" available
	URLPath         *StringMatch // HTTP only; the path without the query
}

// Principal is a node of Envoy's rbac Principal tree: exactly one field is
// set.
type Principal struct {
	Any     bool
	And, Or []Principal
	Not     *Principal
	// Authenticated matches a peer that presented a verified certificate;
	// a nil Name matches any such peer, otherwise Name is matched against
	// the peer's URI SAN (its SPIFFE ID).
	Authenticated *PrincipalName
}

// PrincipalName wraps the optional principal_name of an authenticated
// matcher.
type PrincipalName struct {
	Name *StringMatch // nil: any authenticated peer
}

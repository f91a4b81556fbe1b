// Package router is the sidecar's HTTP route table: it selects the virtual
// host and route for a request, and provides the per-request helpers the
// forwarding engine calls once a route is chosen (weighted cluster choice,
// header mutation, path rewrite, redirect, consistent-hash key).
//
// # What it owns
//
// Compile turns one validated *config.RouteConfig into an immutable *Table.
// Everything that can be computed ahead of time is: the domain index (exact
// names in a map; suffix and prefix wildcards grouped by length, longest
// first, one map per length; the "*" host), lower-cased match values for
// case-insensitive comparisons, canonical header keys, and anchored copies
// of regular expressions (Envoy's regex matchers match the whole value).
// Compile never fails: the config was validated where it entered (package
// xdsclient); an entry that cannot be used is simply never matched.
//
// # Semantics (Envoy's, with Gateway API details)
//
// Virtual host selection uses the request authority (r.Host), lower-cased.
// Precedence: exact name > longest suffix wildcard ("*.foo.com",
// "*-bar.foo.com") > longest prefix wildcard ("foo.*") > "*". A wildcard
// never matches the empty string. A ":port" suffix of the authority is
// ignored unless some domain of the table names a port: then, within each
// tier, the full "host:port" is tried before the bare host.
//
// Routes are tried in order; the first whose path, header and query
// matchers all match wins. The path matched is the request's escaped path
// without the query (r.URL.EscapedPath(), which for a server request is the
// path as the client sent it), as Envoy matches the raw :path (no
// normalisation here). Header matchers may name the pseudo-headers
// ":method", ":authority" (also "host"), ":path" (r.RequestURI, with the
// query) and ":scheme". Query matchers read the first value of a parameter,
// decoded, parsed as url.ParseQuery does.
// Multiple values of a header are joined with "," before matching. A header
// matcher on an absent header fails, except an inverted presence matcher.
// StringMatch.IgnoreCase and RouteMatch.CaseSensitive compare ASCII letters
// without case; like Envoy, neither affects regular expressions.
//
// # Concurrency
//
// A *Table is immutable after Compile and safe for concurrent use without
// locks; the proxy builds a new Table per RouteConfig and swaps it
// atomically. The free functions keep no state. Match, PickCluster and
// HashKey do not allocate on the common path (see the benchmarks); the
// exceptions are multi-valued headers under a matcher, percent-encoded
// query parameters, a ":path" matcher on a request without RequestURI, and
// a host longer than 255 bytes.
package router

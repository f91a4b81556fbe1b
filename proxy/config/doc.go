// Package config holds the data plane's internal configuration: the types
// that xDS resources (or a static bootstrap) are translated into, once, at
// the edge, by package xdsclient.
//
// Everything here is plain data. A *Snapshot is immutable once published:
// the proxy swaps whole snapshots atomically and readers on the request path
// take no locks. Validation happens in the translator, which names the
// resource and field of every error; nothing deeper re-checks.
package config

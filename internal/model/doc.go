// Package model is Causeway's intermediate representation (IR) of one
// cluster's truth: Services with their ports, whether they are exported
// (MCS ServiceExport), the Endpoints behind them with cluster, network,
// locality, SPIFFE identity, readiness and weight, and (later) routes.
//
// Sources (package discovery: Kubernetes informers, a folder of YAML;
// federation: imports from peers) produce *Snapshot values; the xDS
// translator (internal/xds) consumes them. A Snapshot is a plain value in
// canonical form: Canonicalize sorts every slice (never map order), so two
// snapshots describing the same truth are Equal and print the same String.
// A no-op change therefore pushes nothing.
//
// Validate reports every problem at once, one error per field, with the
// object and field path ("service shop/cart: ports[1].port: 0: must be
// 1-65535"). The model holds no key material, so String redacts nothing.
//
// Concurrency: a Snapshot handed to a consumer is immutable by convention;
// producers build a new one per change and never modify one they have
// published.
package model

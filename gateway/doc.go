// Package gateway owns Causeway's Gateway API support: validation, status
// conditions with the standard reasons, and the pure translation of
// GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute, ReferenceGrant and
// GAMMA mesh routes (parentRefs to a Service or an MCS ServiceImport) into
// model route tables (internal/model.RouteTable).
//
// # What it owns
//
// Translate(Input) (Output, error) reads the objects (sigs.k8s.io/gateway-api
// v1 types, core Services/Namespaces/Secrets, mcs-api v1alpha1
// ServiceImports) and returns route tables plus the status of every object
// whose GatewayClass names ControllerName ("causeway.dev/gateway-controller")
// or that attaches to a mesh parent. Problems in user input never fail the
// call: each becomes a condition whose message names the object, the field
// and the fix; invalid rules are dropped (PartiallyInvalid), unresolved
// backends keep their weight and answer 500. The output is deterministic
// (sorted everywhere, independent of input order). DecodeYAML reads the
// same objects from Kubernetes YAML (local mode, tests). docs/gateway.md
// lists the semantics, the supported features and the gaps; update it with
// the code.
//
// # Concurrency
//
// Translate is a pure function: it keeps no state between calls, reads
// Input without modifying it and shares nothing with the Output except
// strings, so any number of calls may run concurrently. The controller
// (gateway/controller: informers, status writes) serialises its own work: it
// snapshots listers, calls Translate on one goroutine, publishes the route
// tables into the model snapshot and writes statuses, keeping a
// condition's lastTransitionTime when its status did not change.
package gateway

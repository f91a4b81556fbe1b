// Package controller runs gateway.Translate against a Kubernetes cluster:
// it watches the Gateway API objects and what they refer to, publishes the
// resulting route tables, and writes the status of the objects Causeway
// owns. The architecture is written in docs/gateway.md ("The controller");
// update it with the code.
//
// # What it owns
//
// A Controller owns shared informers on GatewayClass, Gateway, HTTPRoute,
// GRPCRoute, TLSRoute, ReferenceGrant (gateway.networking.k8s.io/v1),
// Services, Namespaces, Secrets (metadata and type only: the data is
// stripped before caching) and, when the apiserver serves them,
// multicluster.x-k8s.io/v1alpha1 ServiceImports. GRPCRoute, TLSRoute and
// ServiceImport are optional: absent at Run's start, they are left out
// (a warning is logged; restart to pick them up). The four required
// resources missing is not fatal either: Run logs it and checks again with
// backoff until they are installed.
//
// It writes, through the status subresource only:
//   - GatewayClasses whose spec.controllerName is ours: conditions and
//     supportedFeatures;
//   - Gateways of such a class: conditions, listeners and addresses
//     (Options.Addresses). Translate reports Programmed=True when a
//     listener is programmed; with no address the controller overrides it
//     to Programmed=False AddressNotAssigned;
//   - routes: only the status.parents entries whose controllerName is ours.
//     Entries of other controllers are kept as they are, in their order;
//     ours follow them. Our entries for parents we no longer own are
//     removed.
//
// A status is written only when it differs from the stored one. A
// condition keeps its stored lastTransitionTime when its status did not
// change, so the comparison is effectively one that ignores
// lastTransitionTime, and a no-op resync writes nothing. A write that
// conflicts is retried at once on a fresh read (up to 5 times); the object
// gone is not an error.
//
// # Concurrency and order
//
// Informer callbacks (including tombstones) only poke a one-slot coalescing
// channel. One goroutine, Run's, does all the work: it lists every cache,
// calls Translate, hands the route tables to Options.OnRoutes when they
// differ from the last ones handed (model.RouteTable.Equal; the first set
// is always handed, even empty), then writes statuses. OnRoutes runs on
// that goroutine, before the status writes, and must not modify the
// tables or block for long. Reconciles are at least Options.Debounce
// apart: an isolated change is handled at once, a burst at the end of the
// window, once. A failed reconcile (list, status write) is logged and
// retried with exponential backoff (Options.RetryMin..RetryMax), sooner
// when a new change arrives; nothing is fatal after the start. Trigger
// asks for a reconcile from any goroutine (e.g. when the addresses the
// ingress proxy listens on change).
package controller

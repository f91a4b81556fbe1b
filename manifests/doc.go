// Package manifests holds Causeway's Kubernetes install: the CRDs (crds/:
// Gateway API and MCS API vendored, Causeway's own generated from the Go
// types by `make manifests`), the kustomize base (base/: control plane,
// RBAC, injector webhook configuration, gateways, GatewayClasses) and the
// overlays (overlays/dev, overlays/production). It has no Go API; its tests
// apply the overlays with kubectl to a real kube-apiserver
// (internal/testcluster) and check what the apiserver stored, including
// that the control plane's RBAC is least-privilege. Install steps:
// docs/install.md.
//
// Every YAML file under this folder must be a Kubernetes object (or a
// kustomization.yaml): internal/testcluster reads them all to install the
// CustomResourceDefinitions it finds at every cluster start.
//
// Concurrency: nothing is shared; the tests start one cluster and run
// kubectl as child processes (the access checks four at a time).
package manifests

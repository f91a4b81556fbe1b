// Package discovery will own one cluster's truth: Services, EndpointSlices,
// Nodes (locality), Pods (identity) and ServiceExports, read from Kubernetes
// informers or from a folder of the same YAML in local mode.
//
// Status: not built yet (issue 4). The package exists so that the folder layout
// matches DESIGN.md.
package discovery

// Package conformance runs the official Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance v1.6.3) against Causeway: a harness
// cluster (internal/testcluster: a real kube-apiserver, kwok, and the
// suite's echo-basic backends as real processes), the control plane
// (Kubernetes discovery, the Gateway API controller with addresses from
// 127.50.0.0/16, the ADS server) in the test process, and one
// `causeway-proxy ingress` process serving every Gateway of the class.
//
// The test is conformance_test.go; it runs only with
// CAUSEWAY_CONFORMANCE=1 (`make conformance`, hack/conformance) and as
// root, and writes the YAML report to docs/conformance/. The package has
// no non-test code. Results and exemptions are listed in docs/gateway.md
// ("Conformance"); update both together.
package conformance

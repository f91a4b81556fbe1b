// Package trust will own SPIFFE identity: the built-in CA, SVID issuance and
// rotation, bundle sets, the SPIFFE bundle endpoint, authorization policy and
// the SPIRE adapter.
//
// Status: not built yet (issue 5). The package exists so that the folder layout
// matches DESIGN.md.
package trust

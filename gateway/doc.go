// Package gateway will own Gateway API support: validation, status conditions
// and the pure translation of Gateway, HTTPRoute, GRPCRoute, TLSRoute,
// ReferenceGrant and GAMMA routes into model routes.
//
// Status: not built yet (issue 6). The package exists so that the folder layout
// matches DESIGN.md.
package gateway

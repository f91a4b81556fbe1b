// Package federation will own peer links between control planes, export
// selection, the sync protocol (server and client), imports as ServiceImports
// with VIPs, and peer health and staleness.
//
// Status: not built yet (issue 7). Nothing here is exported; the package exists
// so that the folder layout matches DESIGN.md.
package federation

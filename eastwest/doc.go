// Package eastwest will own the east-west gateway: SNI passthrough to the local
// endpoints of exported services, its listener configuration and its Gateway
// API class.
//
// Status: not built yet (issue 7). The package exists so that the folder layout
// matches DESIGN.md.
package eastwest

// Package eastwest owns the east-west gateway's contract: how a caller in
// another network names a service when it connects through this cluster's
// gateway (the TLS server name, SNI), and how a causeway-proxy declares
// itself an east-west gateway to its control plane (node metadata).
//
// The gateway is TLS passthrough: it reads the ClientHello's server name,
// picks the exported service port it names and forwards the connection,
// ClientHello included, to that port's endpoints in this cluster. It never
// terminates TLS, so mesh mTLS stays end to end between the caller's
// sidecar and the destination's inbound listener. A service that is not
// exported (no ServiceExport) has no server name at the gateway, and a
// connection whose server name matches nothing is closed.
//
// Server names (see SNI and PortSNI):
//
//	<port>.<svc>.<ns>.svc.clusterset.local   every TCP port of an exported service
//	<svc>.<ns>.svc.clusterset.local          also, when the service has exactly one TCP port
//
// Callers (sidecars' clusterset clusters) always send the per-port name,
// which needs no agreement between clusters on a service's port list; the
// bare name is what federation advertises by default (federation.DefaultSNI)
// and what a human's TLS client can use for a single-port service. A
// per-port name is "<port>." followed by the bare name, so an importer can
// build it from any SNI a peer advertises (PortSNIFrom).
//
// The translation into xDS (one SNI listener, one EDS cluster per exported
// service port with this cluster's endpoints only) is in internal/xds
// (TranslateEastWest); this package has no dependencies so that the proxy
// binary, federation and the control plane can all share it.
//
// Everything here is pure and safe for concurrent use; there is no state.
//
// Update docs/eastwest.md with the code.
package eastwest

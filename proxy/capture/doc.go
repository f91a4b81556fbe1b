// Package capture owns traffic capture for the sidecar: the nat-table rules
// that send a pod's TCP to causeway-proxy (inbound to Config.InboundPort,
// outbound to Config.OutboundPort, DNS to Config.DNSPort), their
// installation and removal, and OriginalDst, which tells the proxy where a
// redirected connection was going.
//
// # What it owns
//
// Every chain whose name starts with CAUSEWAY_ in the nat table of the pod's
// network namespace, and the rules in PREROUTING and OUTPUT that jump to
// them. Nothing else is read for decisions or changed: other chains and
// rules stay as they were through Apply and Remove.
//
// # Rules
//
// Rules is a pure function of a validated Config: the same Config always
// renders the same lines, in the order `iptables-save -t nat` prints them.
// Config.Validate collects every problem as a *FieldError naming the flag,
// the value and the fix (errors.Is matches ErrPortZero, ErrOverlap, ...).
//
// # Installing
//
// Tables applies rules through `iptables-save -t nat` (to read) and
// `iptables-restore --noflush` (to write one atomic transaction). Debian's
// iptables is iptables-nft, so this programs nftables underneath; there is
// no separate nft backend: where iptables is missing, Apply fails with
// ErrNoIptables and a fix. Apply with an unchanged Config runs nothing;
// Remove deletes exactly the CAUSEWAY_* chains and the jumps to them.
//
// # Concurrency
//
// Rules, Validate and OriginalDst are safe for concurrent use. Apply and
// Remove of one Tables may run concurrently with each other only on
// different network namespaces; they are meant for one init step per pod.
// OriginalDst does one getsockopt on the connection's socket; it allocates
// three small objects (net's RawConn and the callback RawConn.Control takes),
// once per accepted connection.
//
// See docs/capture.md for the rule layout and the test network.
package capture

// Package capturetest holds the acceptance test of traffic capture, run for
// real as root: a pod network namespace with the nat rules of package
// capture, causeway-proxy's capture mode running as the proxy UID inside
// it, configured by the control plane's translation (internal/xds), and an
// unmodified client that calls a service by its cluster IP and by its
// clusterset.local name. It has no code outside its tests.
//
// The test needs root, ip (iproute2) and iptables; without them it skips
// with the reason, and fails instead when CAUSEWAY_REQUIRE_TESTBINS=1. Its
// namespaces are cwcapt-<pid>-pod and cwcapt-<pid>-peer, with addresses
// from 198.18.64.0/24 and service VIPs from 198.19.64.0/18; they are
// deleted (with every rule in them) when the test ends, also on failure,
// and namespaces of test processes that died are swept at the next run.
package capturetest

package eastwest

import (
	"fmt"
	"strconv"
	"strings"
)

// Node metadata of an east-west gateway's xDS node.
const (
	// RoleKey is the node metadata key that names a proxy's role; Role
	// is its value for an east-west gateway. A node without it is a
	// sidecar.
	RoleKey = "role"
	Role    = "east-west"
	// PortKey is the node metadata key of the gateway's listening port
	// (a string or a number); DefaultPort when absent. The gateway binds
	// node metadata inbound_ip on that port.
	PortKey     = "eastwest_port"
	DefaultPort = 15443
)

// Suffix ends every server name the gateway serves.
const Suffix = ".svc.clusterset.local"

// SNI is the bare server name of a service across the clusterset:
// "<name>.<ns>.svc.clusterset.local" (federation.DefaultSNI). The gateway
// serves it only for a service with exactly one TCP port.
func SNI(ns, name string) string { return name + "." + ns + Suffix }

// PortSNI is the server name of one service port:
// "<port>.<name>.<ns>.svc.clusterset.local". It is what callers send.
func PortSNI(ns, name string, port uint32) string {
	return PortSNIFrom(SNI(ns, name), port)
}

// PortSNIFrom is the per-port form of a service's bare server name sni
// (as a peer advertises it): "<port>." + sni.
func PortSNIFrom(sni string, port uint32) string {
	return strconv.FormatUint(uint64(port), 10) + "." + sni
}

// ParseSNI splits a server name of the gateway: the namespace, the service
// name and the port (zero for a bare name). ok is false for a name that is
// not of either form.
func ParseSNI(sni string) (ns, name string, port uint32, ok bool) {
	rest, found := strings.CutSuffix(strings.ToLower(strings.TrimSuffix(sni, ".")), Suffix)
	if !found {
		return "", "", 0, false
	}
	parts := strings.Split(rest, ".")
	switch len(parts) {
	case 2:
		name, ns = parts[0], parts[1]
	case 3:
		p, err := strconv.ParseUint(parts[0], 10, 16)
		if err != nil || p == 0 {
			return "", "", 0, false
		}
		port, name, ns = uint32(p), parts[1], parts[2]
	default:
		return "", "", 0, false
	}
	if name == "" || ns == "" {
		return "", "", 0, false
	}
	return ns, name, port, true
}

// ParsePort reads metadata eastwest_port: "" means DefaultPort.
func ParsePort(s string) (uint32, error) {
	if s == "" {
		return DefaultPort, nil
	}
	p, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("node metadata %q %q: want a port number 1-65535 (default %d)", PortKey, s, DefaultPort)
	}
	return uint32(p), nil
}

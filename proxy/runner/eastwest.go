package runner

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/causewaymesh/causeway/eastwest"
)

// East-west mode (`causeway-proxy east-west`): the proxy is its cluster's
// east-west gateway. It has no workload beside it: it tells the control
// plane its role (node metadata role "east-west"), the IP it listens on
// (inbound_ip, from --inbound-ip) and its port (eastwest_port, from
// --eastwest-port, default eastwest.DefaultPort). The control plane sends
// it one TLS passthrough listener that forwards each connection by SNI to
// the local endpoints of an exported service (internal/xds.TranslateEastWest).
//
// The gateway never terminates TLS (callers' mesh mTLS goes through it to
// the destination's sidecar), so it needs no SVID: --svid-issuer is refused
// in this mode rather than silently fetching a certificate nothing uses.

// eastWestMode is the Mode (the subcommand) of an east-west gateway.
const eastWestMode = eastwest.Role

// validateEastWest checks the east-west fields of c; nil for other modes.
func (c *Config) validateEastWest() error {
	if c.Mode != eastWestMode {
		if c.EastWestPort != 0 {
			return fmt.Errorf("--eastwest-port %d: only in east-west mode", c.EastWestPort)
		}
		return nil
	}
	var errs []error
	if a, err := netip.ParseAddr(c.InboundIP); err != nil || a.Zone() != "" {
		errs = append(errs, fmt.Errorf("--inbound-ip %q: required in east-west mode; give the IP literal the gateway listens on (the address peers reach, without the port)", c.InboundIP))
	}
	if c.InboundPorts != "" {
		errs = append(errs, fmt.Errorf("--inbound-ports %q: not in east-west mode (a gateway has no application; its one port is --eastwest-port)", c.InboundPorts))
	}
	if c.EastWestPort > 65535 {
		errs = append(errs, fmt.Errorf("--eastwest-port %d: want 1-65535 (0: %d)", c.EastWestPort, eastwest.DefaultPort))
	}
	if c.SVIDIssuer != "" {
		errs = append(errs, errors.New("--svid-issuer: not in east-west mode; the gateway passes callers' mTLS through by SNI and never terminates it, so it has no SVID"))
	}
	return errors.Join(errs...)
}

// eastWestMetadata is the node metadata of east-west mode; nil otherwise.
func (c *Config) eastWestMetadata() map[string]string {
	if c.Mode != eastWestMode {
		return nil
	}
	port := c.EastWestPort
	if port == 0 {
		port = eastwest.DefaultPort
	}
	return map[string]string{eastwest.RoleKey: eastwest.Role, eastwest.PortKey: strconv.FormatUint(uint64(port), 10)}
}

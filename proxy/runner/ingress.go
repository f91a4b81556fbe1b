package runner

import (
	"errors"
	"fmt"
	"strings"
)

// Ingress mode (`causeway-proxy ingress`): the proxy serves Gateways of
// Causeway's ingress class. It has no workload beside it: it tells the
// control plane its role (node metadata "role" "ingress") and which
// Gateways it serves (metadata "gateways": a comma-separated list of
// namespace/name, or "*" for every Gateway of the class). The control
// plane binds one listener per Gateway port at the Gateway's address
// (internal/xds.TranslateIngress).

// Node metadata of an ingress proxy (internal/xds reads the same keys).
const (
	ingressRole        = "ingress"
	ingressRoleKey     = "role"
	ingressGatewaysKey = "gateways"
)

// validateIngress checks the ingress-mode fields of c; nil for other modes.
func (c *Config) validateIngress() error {
	if c.Mode != ingressRole {
		if c.Gateways != "" {
			return fmt.Errorf("--gateways %q: only in ingress mode", c.Gateways)
		}
		return nil
	}
	if c.Gateways == "" {
		return errors.New(`--gateways: required in ingress mode; give "*" (every Gateway of the class) or a list of namespace/name`)
	}
	if c.InboundIP != "" || c.InboundPorts != "" {
		return errors.New("--inbound-ip/--inbound-ports: not in ingress mode (an ingress has no application; its listeners bind the Gateways' addresses)")
	}
	if c.Gateways == "*" {
		return nil
	}
	for _, g := range strings.Split(c.Gateways, ",") {
		ns, name, ok := strings.Cut(strings.TrimSpace(g), "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("--gateways %q: entry %q: want namespace/name (or \"*\" alone)", c.Gateways, g)
		}
	}
	return nil
}

// ingressMetadata is the node metadata of ingress mode; nil otherwise.
func (c *Config) ingressMetadata() map[string]string {
	if c.Mode != ingressRole {
		return nil
	}
	return map[string]string{ingressRoleKey: ingressRole, ingressGatewaysKey: strings.ReplaceAll(c.Gateways, " ", "")}
}

package controller

import (
	"fmt"
	"net/netip"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// AddressPool hands out Gateway addresses from a CIDR (test and local
// mode: 127.50.0.0/16 on loopback, where the ingress proxy binds one
// address per Gateway). A Gateway keeps its address for the pool's life;
// addresses are given in order from the first host address. Safe for
// concurrent use.
type AddressPool struct {
	prefix   netip.Prefix
	onAssign func()

	mu   sync.Mutex
	next netip.Addr
	byGW map[types.NamespacedName]netip.Addr
}

// NewAddressPool parses cidr (e.g. "127.50.0.0/16", IPv4 or IPv6).
// onAssign, when not nil, is called (without locks held) after each new
// assignment, e.g. to republish the ingress proxies' configuration.
func NewAddressPool(cidr string, onAssign func()) (*AddressPool, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("gateway address pool %q: %w; want a CIDR such as 127.50.0.0/16", cidr, err)
	}
	p = p.Masked()
	first := p.Addr().Next() // skip the network address
	if !p.Contains(first) {
		return nil, fmt.Errorf("gateway address pool %q: no host address in it; use a shorter prefix", cidr)
	}
	return &AddressPool{prefix: p, onAssign: onAssign, next: first, byGW: map[types.NamespacedName]netip.Addr{}}, nil
}

// Assign returns gw's address, assigning the next free one the first
// time. It fails when the pool is exhausted.
func (p *AddressPool) Assign(gw types.NamespacedName) (netip.Addr, error) {
	p.mu.Lock()
	a, ok := p.byGW[gw]
	if ok {
		p.mu.Unlock()
		return a, nil
	}
	if !p.next.IsValid() || !p.prefix.Contains(p.next) {
		p.mu.Unlock()
		return netip.Addr{}, fmt.Errorf("gateway address pool %s: exhausted (%d Gateways); give a larger CIDR", p.prefix, len(p.byGW))
	}
	a = p.next
	p.next = a.Next()
	p.byGW[gw] = a
	p.mu.Unlock()
	if p.onAssign != nil {
		p.onAssign()
	}
	return a, nil
}

// Lookup is gw's address as a string, "" when none is assigned
// (internal/xds.IngressOptions.Address).
func (p *AddressPool) Lookup(namespace, name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byGW[types.NamespacedName{Namespace: namespace, Name: name}]; ok {
		return a.String()
	}
	return ""
}

// StatusAddresses is Options.Addresses: gw's address (assigned on first
// use) as an IPAddress; none when the pool is exhausted.
func (p *AddressPool) StatusAddresses(gw types.NamespacedName) []gatewayv1.GatewayStatusAddress {
	a, err := p.Assign(gw)
	if err != nil {
		return nil
	}
	t := gatewayv1.IPAddressType
	return []gatewayv1.GatewayStatusAddress{{Type: &t, Value: a.String()}}
}

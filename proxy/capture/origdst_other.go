//go:build !linux

package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// OriginalDst needs Linux's conntrack; elsewhere it always fails.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, fmt.Errorf("original destination of %v: %w", c.LocalAddr(), errors.ErrUnsupported)
}

// ErrNotRedirected means conntrack has no entry for the connection.
var ErrNotRedirected = errors.New("connection was not redirected (no conntrack entry)")

package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from
// <linux/netfilter_ipv6/ip6_tables.h>; golang.org/x/sys/unix lacks it.
const ip6tSOOriginalDst = 80

// OriginalDst returns the destination a redirected TCP connection was
// addressed to before the nat table's REDIRECT rewrote it, read from
// conntrack with getsockopt SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST for IPv6).
// c must be an accepted *net.TCPConn (or wrap one and implement
// syscall.Conn). A connection conntrack tracks but that was not redirected
// yields its own local address; one conntrack does not track yields an error
// wrapping ErrNotRedirected.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T has no socket (want an accepted *net.TCPConn)", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination of %v: %w", c.LocalAddr(), err)
	}
	// The local address says which conntrack table holds the connection: an
	// IPv4 connection accepted on a dual-stack socket is v4-mapped, and
	// SOL_IP answers for it too.
	v4 := true
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.IP.To4() == nil {
		v4 = false
	}
	var q origDstQuery
	q.v4 = v4
	if err := raw.Control(q.get); err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination of %v: %w", c.LocalAddr(), err)
	}
	if q.errno != 0 {
		err := error(q.errno)
		if q.errno == unix.ENOENT || q.errno == unix.ENOPROTOOPT {
			err = fmt.Errorf("%w: %w", ErrNotRedirected, q.errno)
		}
		return netip.AddrPort{}, fmt.Errorf("original destination of %v: %w", c.LocalAddr(), err)
	}
	return q.dst, nil
}

// origDstQuery holds the getsockopt call's inputs and outputs, so the
// callback passed to RawConn.Control is a method value of a stack object.
type origDstQuery struct {
	v4    bool
	dst   netip.AddrPort
	errno unix.Errno
}

func (q *origDstQuery) get(fd uintptr) {
	if q.v4 {
		var sa unix.RawSockaddrInet4
		l := uint32(unsafe.Sizeof(sa))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IP, unix.SO_ORIGINAL_DST,
			uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)), 0)
		if q.errno = e; e == 0 {
			q.dst = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
		}
		return
	}
	var sa unix.RawSockaddrInet6
	l := uint32(unsafe.Sizeof(sa))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IPV6, ip6tSOOriginalDst,
		uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)), 0)
	if q.errno = e; e == 0 {
		q.dst = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
}

// ntohs reads a port stored in network byte order in a uint16 field.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// ErrNotRedirected means conntrack has no entry for the connection: it was
// not redirected by the nat table (or nf_conntrack is not loaded).
var ErrNotRedirected = errors.New("connection was not redirected (no conntrack entry)")

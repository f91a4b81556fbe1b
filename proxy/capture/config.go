package capture

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Config says what traffic of a pod the sidecar captures. The zero value is
// not useful; start from DefaultConfig. Port and CIDR lists may be in any
// order and hold duplicates: Validate sorts and deduplicates them.
type Config struct {
	// ProxyUID is the UID the sidecar runs as. Its own connections are never
	// redirected, or it would capture itself.
	ProxyUID uint32
	// InboundPort is the sidecar's inbound listener. It must accept on the
	// pod IP (or the wildcard address): REDIRECT in PREROUTING rewrites the
	// destination to the primary address of the interface the packet came in
	// on.
	InboundPort uint16
	// OutboundPort is the sidecar's outbound listener. It must accept on
	// 127.0.0.1 (::1 for IPv6) or the wildcard address.
	OutboundPort uint16
	// CaptureDNS redirects the pod's DNS (UDP and TCP port 53, to any
	// address) to DNSPort on loopback, where the sidecar answers
	// clusterset.local names and forwards the rest.
	CaptureDNS bool
	DNSPort    uint16

	// InboundPorts, when not empty, limits inbound capture to these
	// destination ports; empty captures every inbound TCP port.
	InboundPorts []uint16
	// ExcludeInboundPorts are never captured inbound (health ports, SSH).
	ExcludeInboundPorts []uint16
	// OutboundPorts, when not empty, limits outbound capture to these
	// destination ports; empty captures every outbound TCP port.
	OutboundPorts []uint16
	// ExcludeOutboundPorts are never captured outbound.
	ExcludeOutboundPorts []uint16
	// OutboundCIDRs, when not empty, limits outbound capture to these
	// destinations; empty captures every destination.
	OutboundCIDRs []netip.Prefix
	// ExcludeOutboundCIDRs are never captured outbound. An exclusion inside
	// an included CIDR carves a hole in it.
	ExcludeOutboundCIDRs []netip.Prefix

	// IPv6 also installs the rules with ip6tables. IPv6 CIDRs need it.
	IPv6 bool
}

// DefaultConfig returns the ports and UID causeway-proxy uses by default:
// UID 1337, inbound 15006, outbound 15001, DNS 15053 (DNS capture off).
func DefaultConfig() Config {
	return Config{
		ProxyUID:     1337,
		InboundPort:  15006,
		OutboundPort: 15001,
		DNSPort:      15053,
	}
}

// Flags registers one flag per field on fs, with c's values as defaults.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.Func("proxy-uid", fmt.Sprintf("`UID` the sidecar runs as; its own traffic is never captured (default %d)", c.ProxyUID), func(s string) error {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("want a numeric UID, e.g. 1337")
		}
		c.ProxyUID = uint32(v)
		return nil
	})
	portVar(fs, &c.InboundPort, "inbound-port", "sidecar inbound listener `port`; captured inbound TCP goes there")
	portVar(fs, &c.OutboundPort, "outbound-port", "sidecar outbound listener `port`; captured outbound TCP goes there")
	fs.BoolVar(&c.CaptureDNS, "capture-dns", c.CaptureDNS, "redirect DNS (UDP and TCP port 53) to --dns-port on loopback")
	portVar(fs, &c.DNSPort, "dns-port", "sidecar DNS `port` (with --capture-dns)")
	fs.Var((*portList)(&c.InboundPorts), "include-inbound-ports", "comma-separated inbound `ports` to capture; empty or \"*\" captures all")
	fs.Var((*portList)(&c.ExcludeInboundPorts), "exclude-inbound-ports", "comma-separated inbound `ports` never captured")
	fs.Var((*portList)(&c.OutboundPorts), "include-outbound-ports", "comma-separated outbound `ports` to capture; empty or \"*\" captures all")
	fs.Var((*portList)(&c.ExcludeOutboundPorts), "exclude-outbound-ports", "comma-separated outbound `ports` never captured")
	fs.Var((*cidrList)(&c.OutboundCIDRs), "include-outbound-cidrs", "comma-separated destination `CIDRs` to capture; empty or \"*\" captures all")
	fs.Var((*cidrList)(&c.ExcludeOutboundCIDRs), "exclude-outbound-cidrs", "comma-separated destination `CIDRs` never captured")
	fs.BoolVar(&c.IPv6, "ipv6", c.IPv6, "also capture IPv6 (ip6tables)")
}

func portVar(fs *flag.FlagSet, p *uint16, name, usage string) {
	fs.Func(name, fmt.Sprintf("%s (default %d)", usage, *p), func(s string) error {
		v, err := parsePort(s)
		if err != nil {
			return err
		}
		*p = v
		return nil
	})
}

func parsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", s)
	}
	return uint16(v), nil // 0 is refused by Validate, with the field's name
}

// portList is a comma-separated flag value; "" and "*" mean none (all).
type portList []uint16

func (l *portList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func (l *portList) Set(s string) error {
	*l = nil
	if s = strings.TrimSpace(s); s == "" || s == "*" {
		return nil
	}
	for f := range strings.SplitSeq(s, ",") {
		p, err := parsePort(f)
		if err != nil {
			return err
		}
		*l = append(*l, p)
	}
	return nil
}

// cidrList is a comma-separated flag value; "" and "*" mean none (all).
type cidrList []netip.Prefix

func (l *cidrList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *cidrList) Set(s string) error {
	*l = nil
	if s = strings.TrimSpace(s); s == "" || s == "*" {
		return nil
	}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		p, err := netip.ParsePrefix(f)
		if err != nil {
			if a, aerr := netip.ParseAddr(f); aerr == nil {
				return fmt.Errorf("CIDR %q has no prefix length: write %s/%d for one address", f, f, a.BitLen())
			}
			return fmt.Errorf("CIDR %q: want an address and prefix length, e.g. 10.0.0.0/8 or fd00::/8", f)
		}
		*l = append(*l, p)
	}
	return nil
}

// Errors Validate wraps in a *FieldError; match them with errors.Is.
var (
	ErrPortZero  = errors.New("port 0 is not a port (want 1-65535)")
	ErrPortClash = errors.New("two sidecar ports are the same")
	ErrOverlap   = errors.New("include and exclude lists overlap")
	ErrBadCIDR   = errors.New("bad CIDR")
	ErrFamily    = errors.New("IPv6 CIDR while IPv6 capture is off")
	ErrRootUID   = errors.New("proxy UID 0 would exempt every root process from capture")
)

// FieldError is one problem with one Config field. Field is the flag name
// (e.g. "--exclude-outbound-cidrs"), Value the offending value.
type FieldError struct {
	Field string
	Value string
	Err   error  // one of the Err* values above
	Fix   string // what to change
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %s: %v: %s", e.Field, e.Value, e.Err, e.Fix)
}

func (e *FieldError) Unwrap() error { return e.Err }

// clone returns c with its own copies of the lists, so Validate's sorting
// never touches the caller's slices.
func (c Config) clone() Config {
	c.InboundPorts = slices.Clone(c.InboundPorts)
	c.ExcludeInboundPorts = slices.Clone(c.ExcludeInboundPorts)
	c.OutboundPorts = slices.Clone(c.OutboundPorts)
	c.ExcludeOutboundPorts = slices.Clone(c.ExcludeOutboundPorts)
	c.OutboundCIDRs = slices.Clone(c.OutboundCIDRs)
	c.ExcludeOutboundCIDRs = slices.Clone(c.ExcludeOutboundCIDRs)
	return c
}

// Validate checks c, sorts and deduplicates its lists, and returns every
// problem as a *FieldError joined with errors.Join.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, value string, err error, fix string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Err: err, Fix: fix})
	}
	if c.ProxyUID == 0 {
		add("--proxy-uid", "0", ErrRootUID, "run the sidecar as a dedicated non-root UID (e.g. 1337) and pass it here")
	}
	type namedPort struct {
		name string
		p    uint16
	}
	sidecar := []namedPort{{"--inbound-port", c.InboundPort}, {"--outbound-port", c.OutboundPort}}
	if c.CaptureDNS {
		sidecar = append(sidecar, namedPort{"--dns-port", c.DNSPort})
	}
	for i, np := range sidecar {
		if np.p == 0 {
			add(np.name, "0", ErrPortZero, "give the sidecar listener's port")
			continue
		}
		for _, prev := range sidecar[:i] {
			if prev.p == np.p {
				add(np.name, strconv.Itoa(int(np.p)), ErrPortClash, "it equals "+prev.name+"; each sidecar listener needs its own port")
			}
		}
	}
	lists := []struct {
		name string
		l    *[]uint16
	}{
		{"--include-inbound-ports", &c.InboundPorts},
		{"--exclude-inbound-ports", &c.ExcludeInboundPorts},
		{"--include-outbound-ports", &c.OutboundPorts},
		{"--exclude-outbound-ports", &c.ExcludeOutboundPorts},
	}
	for _, l := range lists {
		slices.Sort(*l.l)
		*l.l = slices.Compact(*l.l)
		if len(*l.l) > 0 && (*l.l)[0] == 0 {
			add(l.name, "0", ErrPortZero, "remove 0 from the list")
		}
	}
	for i := 0; i < len(lists); i += 2 {
		for _, p := range *lists[i].l {
			if _, found := slices.BinarySearch(*lists[i+1].l, p); found && p != 0 {
				add(lists[i+1].name, strconv.Itoa(int(p)), ErrOverlap,
					"it is also in "+lists[i].name+"; keep it in one list")
			}
		}
	}
	for _, l := range []struct {
		name string
		l    *[]netip.Prefix
	}{{"--include-outbound-cidrs", &c.OutboundCIDRs}, {"--exclude-outbound-cidrs", &c.ExcludeOutboundCIDRs}} {
		ok := (*l.l)[:0]
		for _, p := range *l.l {
			switch {
			case !p.IsValid():
				add(l.name, p.String(), ErrBadCIDR, "give an address and prefix length, e.g. 10.0.0.0/8")
				continue
			case p.Masked() != p:
				add(l.name, p.String(), ErrBadCIDR, fmt.Sprintf("host bits are set; did you mean %s?", p.Masked()))
				continue
			case p.Addr().Is4In6():
				add(l.name, p.String(), ErrBadCIDR, "IPv4-mapped IPv6; write the IPv4 CIDR")
				continue
			case p.Addr().Is6() && !c.IPv6:
				add(l.name, p.String(), ErrFamily, "add --ipv6, or drop the IPv6 CIDR")
			}
			ok = append(ok, p)
		}
		slices.SortFunc(ok, comparePrefix)
		*l.l = slices.Compact(ok)
	}
	for _, in := range c.OutboundCIDRs {
		for _, ex := range c.ExcludeOutboundCIDRs {
			if ex.Bits() <= in.Bits() && ex.Contains(in.Addr()) {
				add("--include-outbound-cidrs", in.String(), ErrOverlap,
					fmt.Sprintf("it lies inside --exclude-outbound-cidrs %s, so it would capture nothing; drop one of them", ex))
			}
		}
	}
	return errors.Join(errs...)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

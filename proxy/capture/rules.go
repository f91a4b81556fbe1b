package capture

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Family is an IP family: the rules of each are installed by their own tool
// (iptables, ip6tables).
type Family uint8

const (
	IPv4 Family = iota
	IPv6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// ChainPrefix starts the name of every chain this package owns. Apply and
// Remove never touch a chain without it, nor a rule that does not jump to one.
const ChainPrefix = "CAUSEWAY_"

// The chains. PREROUTING jumps to chainInbound for TCP; OUTPUT jumps to
// chainOutput for everything (DNS is UDP too).
const (
	chainInbound     = "CAUSEWAY_INBOUND"      // inbound port selection
	chainInRedirect  = "CAUSEWAY_IN_REDIRECT"  // REDIRECT to the inbound port
	chainOutput      = "CAUSEWAY_OUTPUT"       // exemptions, DNS, port selection
	chainOutCIDRs    = "CAUSEWAY_OUT_CIDRS"    // destination selection (only with include CIDRs)
	chainOutRedirect = "CAUSEWAY_OUT_REDIRECT" // REDIRECT to the outbound port
)

// rule is one "-A chain spec" line.
type rule struct{ chain, spec string }

func (r rule) String() string { return "-A " + r.chain + " " + r.spec }

// ruleset is the nat-table part this package wants for one family.
type ruleset struct {
	chains []string // sorted
	jumps  []rule   // in built-in chains, to ours
	rules  []rule   // in our chains, grouped by chain in chains order
}

// Rules validates c and returns the nat-table rules for family f in
// iptables-save form, in the order iptables-save prints them: our chain
// declarations (":CAUSEWAY_X - [0:0]", sorted), the jumps from PREROUTING
// and OUTPUT, then the rules of each chain. The lines are what `iptables-save
// -t nat` shows for them once applied, so they double as a golden file and as
// the check that a re-apply would change nothing.
func Rules(c Config, f Family) ([]string, error) {
	c = c.clone()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return build(&c, f).lines(), nil
}

func (rs ruleset) lines() []string {
	out := make([]string, 0, len(rs.chains)+len(rs.jumps)+len(rs.rules))
	for _, ch := range rs.chains {
		out = append(out, ":"+ch+" - [0:0]")
	}
	for _, r := range rs.jumps {
		out = append(out, r.String())
	}
	for _, r := range rs.rules {
		out = append(out, r.String())
	}
	return out
}

func dport(proto string, p uint16) string {
	return "-p " + proto + " -m " + proto + " --dport " + strconv.Itoa(int(p))
}

// build renders the rules of a validated c for family f.
func build(c *Config, f Family) ruleset {
	var rs ruleset
	byChain := map[string][]rule{}
	add := func(chain, format string, a ...any) {
		byChain[chain] = append(byChain[chain], rule{chain, fmt.Sprintf(format, a...)})
	}

	// Inbound: PREROUTING sees TCP arriving from outside the pod.
	rs.jumps = append(rs.jumps, rule{"PREROUTING", "-p tcp -j " + chainInbound})
	byChain[chainInbound] = nil
	for _, p := range c.ExcludeInboundPorts {
		add(chainInbound, "%s -j RETURN", dport("tcp", p))
	}
	if len(c.InboundPorts) == 0 {
		add(chainInbound, "-p tcp -j %s", chainInRedirect)
	}
	for _, p := range c.InboundPorts {
		add(chainInbound, "%s -j %s", dport("tcp", p), chainInRedirect)
	}
	add(chainInRedirect, "-p tcp -j REDIRECT --to-ports %d", c.InboundPort)

	// Outbound: OUTPUT sees what processes of the pod send.
	rs.jumps = append(rs.jumps, rule{"OUTPUT", "-j " + chainOutput})
	add(chainOutput, "-m owner --uid-owner %d -j RETURN", c.ProxyUID)
	if c.CaptureDNS {
		add(chainOutput, "%s -j REDIRECT --to-ports %d", dport("udp", 53), c.DNSPort)
		add(chainOutput, "%s -j REDIRECT --to-ports %d", dport("tcp", 53), c.DNSPort)
	}
	// Loopback traffic to the sidecar's own ports (e.g. the app dialling its
	// pod IP on 15001) would otherwise loop through the sidecar.
	for _, p := range sortedUnique(c.OutboundPort, c.InboundPort) {
		add(chainOutput, "-o lo %s -j RETURN", dport("tcp", p))
	}
	if f == IPv6 {
		add(chainOutput, "-d ::1/128 -j RETURN")
	} else {
		add(chainOutput, "-d 127.0.0.0/8 -j RETURN")
	}
	for _, p := range c.ExcludeOutboundPorts {
		add(chainOutput, "%s -j RETURN", dport("tcp", p))
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		if p.Addr().Is6() == (f == IPv6) {
			add(chainOutput, "-d %s -j RETURN", p)
		}
	}
	target := chainOutRedirect
	if len(c.OutboundCIDRs) > 0 {
		// Include CIDRs in another family leave this family's chain empty:
		// nothing of it is captured, which is what the list says.
		target = chainOutCIDRs
		byChain[chainOutCIDRs] = nil
		for _, p := range c.OutboundCIDRs {
			if p.Addr().Is6() == (f == IPv6) {
				add(chainOutCIDRs, "-d %s -j %s", p, chainOutRedirect)
			}
		}
	}
	if len(c.OutboundPorts) == 0 {
		add(chainOutput, "-p tcp -j %s", target)
	}
	for _, p := range c.OutboundPorts {
		add(chainOutput, "%s -j %s", dport("tcp", p), target)
	}
	add(chainOutRedirect, "-p tcp -j REDIRECT --to-ports %d", c.OutboundPort)

	for ch := range byChain {
		rs.chains = append(rs.chains, ch)
	}
	slices.Sort(rs.chains)
	for _, ch := range rs.chains {
		rs.rules = append(rs.rules, byChain[ch]...)
	}
	return rs
}

func sortedUnique(ps ...uint16) []uint16 {
	slices.Sort(ps)
	return slices.Compact(ps)
}

// ours reports whether chain is one of this package's chains.
func ours(chain string) bool { return strings.HasPrefix(chain, ChainPrefix) }

package xdsclient

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/proxy/config"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
	matcherv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/type/matcher/v3"
	typev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/type/v3"
)

// metadataNamespace is the filter_metadata key Causeway reads.
const metadataNamespace = "causeway"

// compileAnchored compiles an RE2 pattern that must match a whole value.
func compileAnchored(re string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(re); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + re + `)$`)
}

// regex translates a RegexMatcher (anchored whole match).
func (c *collector) regex(path string, m *matcherv3.RegexMatcher) *regexp.Regexp {
	if m == nil {
		c.addf(path, "set regex", "missing regex")
		return nil
	}
	c.only(path, m, "regex", "google_re2")
	re, err := compileAnchored(m.GetRegex())
	if err != nil {
		c.wrap(join(path, "regex"), "use RE2 syntax (https://github.com/google/re2/wiki/Syntax)", err, "invalid regex %q", m.GetRegex())
		return nil
	}
	return re
}

// stringMatch translates a StringMatcher.
func (c *collector) stringMatch(path string, m *matcherv3.StringMatcher) config.StringMatch {
	var out config.StringMatch
	if m == nil {
		c.addf(path, "set one of exact, prefix, suffix, contains, safe_regex", "missing string matcher")
		return out
	}
	out.IgnoreCase = m.GetIgnoreCase()
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Kind, out.Value = config.StringExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Kind, out.Value = config.StringPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Kind, out.Value = config.StringSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Kind, out.Value = config.StringContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		out.Kind, out.Value = config.StringRegex, p.SafeRegex.GetRegex()
		out.Regex = c.regex(join(path, "safe_regex"), p.SafeRegex)
		out.IgnoreCase = false // as Envoy: ignore_case has no effect on safe_regex
	case *matcherv3.StringMatcher_Custom:
		c.unsupported(join(path, "custom"), "", "use exact, prefix, suffix, contains or safe_regex")
	default:
		c.addf(path, "set one of exact, prefix, suffix, contains, safe_regex", "empty string matcher")
	}
	if out.IgnoreCase && out.Kind != config.StringRegex {
		out.Value = strings.ToLower(out.Value)
	}
	return out
}

// headerMutation translates *_headers_to_add and *_headers_to_remove.
func (c *collector) headerMutation(path string, add []*corev3.HeaderValueOption, addField string, remove []string, removeField string) config.HeaderMutation {
	var m config.HeaderMutation
	for i, o := range add {
		p := idx(join(path, addField), i)
		c.only(p, o, "header", "append", "append_action", "keep_empty_value")
		h := o.GetHeader()
		if h == nil {
			c.addf(join(p, "header"), "set header.key and header.value", "missing header")
			continue
		}
		c.only(join(p, "header"), h, "key", "value", "raw_value")
		v := h.GetValue()
		if len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		hv := config.HeaderValue{Name: strings.ToLower(h.GetKey()), Value: v}
		set := false
		//lint:ignore SA1019 the deprecated field wins when set, as in Envoy
		if a := o.GetAppend(); a != nil {
			set = !a.GetValue()
		} else {
			switch o.GetAppendAction() {
			case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
				set = true
			default:
				c.unsupported(join(p, "append_action"), o.GetAppendAction().String(), "use APPEND_IF_EXISTS_OR_ADD or OVERWRITE_IF_EXISTS_OR_ADD")
			}
		}
		if set {
			m.Set = append(m.Set, hv)
		} else {
			m.Add = append(m.Add, hv)
		}
	}
	for _, r := range remove {
		m.Remove = append(m.Remove, strings.ToLower(r))
	}
	return m
}

// duration converts a proto duration; nil is zero.
func duration(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

// fractionPercent converts a FractionalPercent to a percentage in 0..100.
func (c *collector) fractionPercent(path string, f *typev3.FractionalPercent) float64 {
	if f == nil {
		return 0
	}
	n := float64(f.GetNumerator())
	var p float64
	switch f.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		p = n
	case typev3.FractionalPercent_TEN_THOUSAND:
		p = n / 100
	case typev3.FractionalPercent_MILLION:
		p = n / 10000
	default:
		c.addf(join(path, "denominator"), "use HUNDRED, TEN_THOUSAND or MILLION", "unknown denominator %d", f.GetDenominator())
		return 0
	}
	if p > 100 {
		p = 100 // as Envoy: a numerator above the denominator means always
	}
	return p
}

// socketAddress translates an Address into host:port. With wantIP, the
// host must be an IP literal.
func (c *collector) socketAddress(path string, a *corev3.Address, wantIP bool) string {
	if a == nil {
		c.addf(path, "set socket_address.address and socket_address.port_value", "missing address")
		return ""
	}
	c.only(path, a, "socket_address")
	sa := a.GetSocketAddress()
	if sa == nil {
		c.addf(join(path, "socket_address"), "use a socket_address (pipes and internal addresses are not supported)", "missing socket_address")
		return ""
	}
	p := join(path, "socket_address")
	c.only(p, sa, "address", "port_value", "protocol", "ipv4_compat")
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		c.unsupported(join(p, "protocol"), sa.GetProtocol().String(), "use TCP")
	}
	host := sa.GetAddress()
	if host == "" {
		c.addf(join(p, "address"), "set an IP address", "empty address")
		return ""
	}
	if wantIP && net.ParseIP(host) == nil {
		c.addf(join(p, "address"), "use an IP literal (hostnames are only allowed in STRICT_DNS clusters)", "%q is not an IP address", host)
	}
	port := sa.GetPortValue()
	if port > 65535 {
		c.addf(join(p, "port_value"), "use a port in 0..65535", "port %d out of range", port)
	}
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}

// metadataString reads filter_metadata["causeway"][key] as a string.
func (c *collector) metadataString(path string, md *corev3.Metadata, key string) string {
	s := md.GetFilterMetadata()[metadataNamespace]
	if s == nil {
		return ""
	}
	v, ok := s.GetFields()[key]
	if !ok {
		return ""
	}
	if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
		return sv.StringValue
	}
	c.addf(fmt.Sprintf("%s.filter_metadata[%q].%s", path, metadataNamespace, key), "use a string value", "not a string")
	return ""
}

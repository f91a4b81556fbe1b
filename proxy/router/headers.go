package router

import (
	"net"
	"net/http"
	"strings"

	"github.com/causewaymesh/causeway/proxy/config"
)

// remoteAddrVar is the one Envoy substitution variable supported in header
// values.
const remoteAddrVar = "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"

// ApplyHeaders applies m to h: first Remove, then Set (replacing every
// value), then Add (appending). remoteAddr is the downstream peer as in
// http.Request.RemoteAddr ("ip:port"); pass "" for none.
//
// Go keeps the request authority in http.Request.Host, outside Header, so
// a Set or Add of "host" or ":authority" is returned as host (the last one
// wins; Host is single-valued) and never written to h; host is "" when m
// does not change the authority. The caller assigns it to the
// outgoing request's Host. Removing "host"/":authority" and any change to
// other ":"-prefixed pseudo-headers is ignored, as Envoy refuses them.
//
// Values are literal except for Envoy's substitution syntax: the variable
// %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% is replaced by the IP of
// remoteAddr and "%%" by "%". Every other %VARIABLE% (for example
// %REQ(x)% or %DOWNSTREAM_REMOTE_ADDRESS%) is kept literally.
//
// Header names are canonicalised with http.CanonicalHeaderKey, which
// allocates for a name that is not already canonical.
func ApplyHeaders(h http.Header, m config.HeaderMutation, remoteAddr string) (host string) {
	for _, name := range m.Remove {
		if isAuthority(name) || strings.HasPrefix(name, ":") {
			continue
		}
		h.Del(name)
	}
	for _, hv := range m.Set {
		v := expand(hv.Value, remoteAddr)
		switch {
		case isAuthority(hv.Name):
			host = v
		case strings.HasPrefix(hv.Name, ":"):
		default:
			h[http.CanonicalHeaderKey(hv.Name)] = []string{v}
		}
	}
	for _, hv := range m.Add {
		v := expand(hv.Value, remoteAddr)
		switch {
		case isAuthority(hv.Name):
			host = v
		case strings.HasPrefix(hv.Name, ":"):
		default:
			h.Add(hv.Name, v)
		}
	}
	return host
}

func isAuthority(name string) bool {
	return strings.EqualFold(name, "host") || name == ":authority"
}

// expand substitutes the supported Envoy variables in v. It returns v
// itself, without allocating, when v has no '%'.
func expand(v, remoteAddr string) string {
	if strings.IndexByte(v, '%') < 0 {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	for {
		i := strings.IndexByte(v, '%')
		if i < 0 {
			b.WriteString(v)
			return b.String()
		}
		b.WriteString(v[:i])
		v = v[i:]
		switch {
		case strings.HasPrefix(v, "%%"):
			b.WriteByte('%')
			v = v[2:]
		case strings.HasPrefix(v, remoteAddrVar):
			b.WriteString(hostOnly(remoteAddr))
			v = v[len(remoteAddrVar):]
		default:
			// An unsupported %VAR% (or a lone '%') stays literal.
			j := strings.IndexByte(v[1:], '%')
			if j < 0 {
				b.WriteString(v)
				return b.String()
			}
			b.WriteString(v[:j+2])
			v = v[j+2:]
		}
	}
}

// hostOnly strips the port from "ip:port" (and the brackets of an IPv6
// literal); an address without a port is returned as is.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

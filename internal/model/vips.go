package model

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// VIPs of a Service: the ClusterIP from its spec, and the VIP of its
// ServiceImport (clusterset.local). Sidecars in capture mode recognise a
// connection to either, on a service port, as a call to the service, and
// answer <name>.<namespace>.svc.clusterset.local with the ServiceImport's.

// validateVIPs checks that each VIP, when set, is a unicast IP literal in
// canonical form.
func (sv *Service) validateVIPs(obj string) []error {
	var errs []error
	for _, f := range []struct{ field, v string }{{"clusterIP", sv.ClusterIP}, {"clustersetIP", sv.ClustersetIP}} {
		if f.v == "" {
			continue
		}
		ip, err := netip.ParseAddr(f.v)
		switch {
		case err != nil:
			errs = append(errs, &FieldError{Object: obj, Field: f.field, Value: f.v, Reason: "not an IP literal: give the VIP, or leave it empty (headless, or not known)"})
		case ip.Zone() != "" || ip.Is4In6() || ip.String() != f.v:
			errs = append(errs, &FieldError{Object: obj, Field: f.field, Value: f.v, Reason: "not in canonical form: write it as " + ip.Unmap().WithZone("").String()})
		case !ip.IsGlobalUnicast() && !ip.IsPrivate():
			errs = append(errs, &FieldError{Object: obj, Field: f.field, Value: f.v, Reason: "not a unicast address a Service could have"})
		}
	}
	return errs
}

// VIPs returns the service's VIPs that are set: the ClusterIP first, then
// the ClustersetIP.
func (sv *Service) VIPs() []string {
	var out []string
	if sv.ClusterIP != "" {
		out = append(out, sv.ClusterIP)
	}
	if sv.ClustersetIP != "" {
		out = append(out, sv.ClustersetIP)
	}
	return out
}

// writeVIPs prints the VIPs of sv, for String.
func writeVIPs(b *strings.Builder, sv *Service) {
	if sv.ClusterIP != "" {
		fmt.Fprintf(b, " cluster-ip=%s", sv.ClusterIP)
	}
	if sv.ClustersetIP != "" {
		fmt.Fprintf(b, " clusterset-ip=%s", sv.ClustersetIP)
	}
}

// DefaultClustersetPrefix is where ServiceImport VIPs are allocated when
// the source gives none: 240.240.0.0/16 (class E, never a real
// destination; Istio allocates its automatic VIPs there too). A VIP only
// has meaning inside the pods of one cluster, whose sidecars capture it.
var DefaultClustersetPrefix = netip.MustParsePrefix("240.240.0.0/16")

// WithClustersetIPs returns s with a ClustersetIP for every service that
// answers as clusterset.local (exported or imported) and has none. The
// VIP of <ns>/<name> is a hash of the name inside p, moved to the next
// free address on a collision (services are taken in canonical order), so
// it is stable as long as the set of clusterset services in p does not
// collide anew. s is not modified: when something is assigned, the result
// is a copy with its own Services slice; otherwise it is s. p must be an
// IPv4 prefix of at most /30.
func WithClustersetIPs(s *Snapshot, p netip.Prefix) *Snapshot {
	need := false
	used := map[netip.Addr]bool{}
	for i := range s.Services {
		sv := &s.Services[i]
		for _, v := range sv.VIPs() {
			if a, err := netip.ParseAddr(v); err == nil {
				used[a] = true
			}
		}
		if sv.ClustersetIP == "" && (sv.Exported || sv.Imported) {
			need = true
		}
	}
	if !need || !p.Addr().Is4() || p.Bits() > 30 {
		return s
	}
	out := *s
	out.Services = slices.Clone(s.Services)
	base := p.Masked().Addr().As4()
	size := uint32(1) << (32 - p.Bits())
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := range out.Services {
		sv := &out.Services[i]
		if sv.ClustersetIP != "" || !(sv.Exported || sv.Imported) {
			continue
		}
		h := fnv32(sv.Namespace + "/" + sv.Name)
		// Skip the network and broadcast addresses of p.
		for try := uint32(0); try < size-2; try++ {
			off := 1 + (h+try)%(size-2)
			n := start + off
			a := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
			if !used[a] {
				used[a] = true
				sv.ClustersetIP = a.String()
				break
			}
		}
	}
	return &out
}

// fnv32 is FNV-1a: a fixed hash, so every control plane run gives the same
// VIPs.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

package controlplane

import (
	"slices"

	"github.com/causewaymesh/causeway/internal/model"
)

// vipInputs: what model.WithClustersetIPs decides a service's VIP by (its
// name, its VIPs and whether it needs a ClustersetIP) is the same in a and
// b, service by service.
func vipInputs(a, b *model.Snapshot) bool {
	if len(a.Services) != len(b.Services) {
		return false
	}
	for i := range a.Services {
		x, y := &a.Services[i], &b.Services[i]
		if x.Name != y.Name || x.Namespace != y.Namespace || x.ClusterIP != y.ClusterIP || x.ClustersetIP != y.ClustersetIP ||
			(x.Exported || x.Imported) != (y.Exported || y.Imported) {
			return false
		}
	}
	return true
}

// withClustersetIPs is model.WithClustersetIPs(s, model.DefaultClustersetPrefix):
// when s's VIP inputs are those of prevIn, whose result was prevOut, the
// VIPs are prevOut's (the allocation depends on nothing else), copied
// without hashing and probing every service again.
func withClustersetIPs(s, prevIn, prevOut *model.Snapshot) *model.Snapshot {
	if prevIn == nil || prevOut == nil || !vipInputs(s, prevIn) {
		return model.WithClustersetIPs(s, model.DefaultClustersetPrefix)
	}
	if prevOut == prevIn {
		return s // nothing was assigned then, nor is now
	}
	out := *s
	out.Services = slices.Clone(s.Services)
	for i := range out.Services {
		out.Services[i].ClustersetIP = prevOut.Services[i].ClustersetIP
	}
	return &out
}

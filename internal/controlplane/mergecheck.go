package controlplane

import (
	"slices"

	"github.com/causewaymesh/causeway/internal/merge"
	"github.com/causewaymesh/causeway/internal/model"
)

// The Merger's two checks of a merged snapshot s against the last one it
// emitted, at the cost of the services that changed: a service Same as
// last's (merge.Same: the same slices, which is what an incremental merge
// of unchanged inputs gives) is neither compared endpoint by endpoint nor
// validated again, since last was valid.

// sameModel is last.Equal(s), with merge.Same as the shortcut per service.
func sameModel(last, s *model.Snapshot) bool {
	if last == nil || s == nil {
		return last == s
	}
	if len(last.Services) != len(s.Services) || !withoutServices(last).Equal(withoutServices(s)) {
		return false
	}
	for i := range s.Services {
		if a, b := &last.Services[i], &s.Services[i]; !merge.Same(a, b) && !a.Equal(b) {
			return false
		}
	}
	return true
}

// withoutServices is a shallow copy of s without its services, for
// comparing everything else.
func withoutServices(s *model.Snapshot) *model.Snapshot {
	c := *s
	c.Services = nil
	return &c
}

// validateChanged is s.ValidateChanged(last): s.Validate() at the cost of
// the services not Same as last's.
func validateChanged(s, last *model.Snapshot) error { return s.ValidateChanged(last) }

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

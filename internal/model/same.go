package model

import "cmp"

// Same reports whether a and b are the same service by identity: equal
// scalar fields, and Ports and Endpoints that are the same slices (same
// backing array and length). The model is immutable once published, so
// Same implies Equal; it costs a few comparisons where Equal walks every
// endpoint. Sources that rebuild only the services that changed
// (discovery.BuildWith, merge.Update) keep the other services' slices,
// which is what makes a change cost one service downstream.
func (a *Service) Same(b *Service) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Exported == b.Exported && a.Imported == b.Imported &&
		a.ClusterIP == b.ClusterIP && a.ClustersetIP == b.ClustersetIP &&
		sameSlice(a.Ports, b.Ports) && sameSlice(a.Endpoints, b.Endpoints)
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// ValidateChanged is s.Validate() for a snapshot whose previous version
// last (nil: none) was valid: it validates everything but the services,
// their order, and only the services that are not Same as last's service
// of the same name. On any error it returns s.Validate()'s, so the error
// names the same objects and indices.
func (s *Snapshot) ValidateChanged(last *Snapshot) error {
	if last == nil {
		return s.Validate()
	}
	if s.withoutServices().Validate() != nil {
		return s.Validate()
	}
	var changed []Service
	k := 0
	for i := range s.Services {
		sv := &s.Services[i]
		if i > 0 && cmp.Or(cmp.Compare(s.Services[i-1].Namespace, sv.Namespace), cmp.Compare(s.Services[i-1].Name, sv.Name)) >= 0 {
			return s.Validate() // duplicate or out of order
		}
		for k < len(last.Services) && cmp.Or(cmp.Compare(last.Services[k].Namespace, sv.Namespace), cmp.Compare(last.Services[k].Name, sv.Name)) < 0 {
			k++
		}
		if k < len(last.Services) && last.Services[k].Same(sv) {
			continue
		}
		changed = append(changed, *sv)
	}
	if len(changed) == 0 {
		return nil
	}
	part := s.withoutServices()
	part.Services = changed
	if part.Validate() != nil {
		return s.Validate()
	}
	return nil
}

// withoutServices is a shallow copy of s without its services.
func (s *Snapshot) withoutServices() *Snapshot {
	c := *s
	c.Services = nil
	return &c
}

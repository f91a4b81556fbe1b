package bundles

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrUnknownTrustDomain is returned by the Source methods for a trust domain
// that has no bundle.
var ErrUnknownTrustDomain = errors.New("no bundle for this trust domain")

// fedBundle is one federated bundle in both shapes; both are shared and never
// modified.
type fedBundle struct {
	spiffe *spiffebundle.Bundle
	x509   *x509bundle.Bundle
}

// Set is the bundle set of one control plane: the local trust domain's
// bundle, from its Authority, and the federated bundles of peer trust domains.
// It implements x509bundle.Source and spiffebundle.Source, so TLS authorizers
// (go-spiffe's tlsconfig) can verify SVIDs of any trust domain it holds.
type Set struct {
	local *Authority

	mu      sync.Mutex // orders writers and the subscriber list
	fed     atomic.Pointer[map[spiffeid.TrustDomain]fedBundle]
	version atomic.Uint64
	subs    map[chan struct{}]struct{}
}

// SetSnapshot is a consistent view of a Set.
type SetSnapshot struct {
	// Version increases on every change of the set (local or federated).
	Version uint64
	// Local is the local trust domain's bundle. Shared: do not modify.
	Local *spiffebundle.Bundle
	// Federated are the peers' bundles, sorted by trust domain name.
	// Shared: do not modify.
	Federated []*spiffebundle.Bundle
}

// X509Bundles is every bundle of the snapshot as an x509bundle.Set, the shape
// an SDS validation context is built from. The caller owns it.
func (s SetSnapshot) X509Bundles() *x509bundle.Set {
	set := x509bundle.NewSet()
	if s.Local != nil {
		set.Add(s.Local.X509Bundle())
	}
	for _, b := range s.Federated {
		set.Add(b.X509Bundle())
	}
	return set
}

// NewSet returns a set whose local bundle is local's published bundle and
// which holds no federated bundle yet.
func NewSet(local *Authority) (*Set, error) {
	if local == nil {
		return nil, errors.New("bundles: NewSet: local authority is nil; pass the control plane's Authority")
	}
	s := &Set{local: local, subs: map[chan struct{}]struct{}{}}
	empty := map[spiffeid.TrustDomain]fedBundle{}
	s.fed.Store(&empty)
	s.version.Store(1)
	local.onChange(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.changedLocked()
	})
	return s, nil
}

// Local is the authority of the local trust domain.
func (s *Set) Local() *Authority { return s.local }

// changedLocked bumps the version and wakes subscribers; s.mu is held.
func (s *Set) changedLocked() {
	s.version.Add(1)
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending; it covers this change too
		}
	}
}

// SetFederated stores a copy of b as the bundle of its trust domain, and
// reports whether that changed the set (an equal bundle changes nothing and
// wakes no subscriber). It refuses the local trust domain and a bundle
// without X.509 authorities.
func (s *Set) SetFederated(b *spiffebundle.Bundle) (bool, error) {
	if b == nil {
		return false, errors.New("bundles: SetFederated: bundle is nil")
	}
	td := b.TrustDomain()
	if td == s.local.TrustDomain() {
		return false, fmt.Errorf("bundles: SetFederated: trust domain %q is the local one; its bundle comes from the Authority, not from a peer", td)
	}
	if len(b.X509Authorities()) == 0 {
		return false, fmt.Errorf("bundles: SetFederated: bundle of trust domain %q has no X.509 authorities; a federated bundle must carry at least one root", td)
	}
	b = b.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.fed.Load()
	if cur, ok := old[td]; ok && cur.spiffe.Equal(b) {
		return false, nil
	}
	next := make(map[spiffeid.TrustDomain]fedBundle, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[td] = fedBundle{spiffe: b, x509: b.X509Bundle()}
	s.fed.Store(&next)
	s.changedLocked()
	return true, nil
}

// RemoveFederated forgets the bundle of td and reports whether there was one.
func (s *Set) RemoveFederated(td spiffeid.TrustDomain) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.fed.Load()
	if _, ok := old[td]; !ok {
		return false
	}
	next := make(map[spiffeid.TrustDomain]fedBundle, len(old))
	for k, v := range old {
		if k != td {
			next[k] = v
		}
	}
	s.fed.Store(&next)
	s.changedLocked()
	return true
}

// Federated is a copy of the federated bundle of td.
func (s *Set) Federated(td spiffeid.TrustDomain) (*spiffebundle.Bundle, bool) {
	b, ok := (*s.fed.Load())[td]
	if !ok {
		return nil, false
	}
	return b.spiffe.Clone(), true
}

// GetX509BundleForTrustDomain implements x509bundle.Source. It takes no lock
// and does not allocate; the returned bundle is shared: do not modify it.
func (s *Set) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td == s.local.td {
		return s.local.state.Load().x509, nil
	}
	if b, ok := (*s.fed.Load())[td]; ok {
		return b.x509, nil
	}
	return nil, fmt.Errorf("bundles: no X.509 bundle for trust domain %q: %w; federate with it or check the peer's SPIFFE ID", td, ErrUnknownTrustDomain)
}

// GetBundleForTrustDomain implements spiffebundle.Source. The returned bundle
// is shared: do not modify it.
func (s *Set) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td == s.local.td {
		return s.local.state.Load().spiffe, nil
	}
	if b, ok := (*s.fed.Load())[td]; ok {
		return b.spiffe, nil
	}
	return nil, fmt.Errorf("bundles: no SPIFFE bundle for trust domain %q: %w; federate with it or check the peer's SPIFFE ID", td, ErrUnknownTrustDomain)
}

// Version increases on every change of the set.
func (s *Set) Version() uint64 { return s.version.Load() }

// Snapshot is a consistent view of the set.
func (s *Set) Snapshot() SetSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	fed := *s.fed.Load()
	snap := SetSnapshot{Version: s.version.Load(), Local: s.local.state.Load().spiffe, Federated: make([]*spiffebundle.Bundle, 0, len(fed))}
	for _, b := range fed {
		snap.Federated = append(snap.Federated, b.spiffe)
	}
	sort.Slice(snap.Federated, func(i, j int) bool {
		return snap.Federated[i].TrustDomain().Name() < snap.Federated[j].TrustDomain().Name()
	})
	return snap
}

// Subscribe returns a channel that receives a value after the set changes,
// and a function that ends the subscription and closes the channel. Wake-ups
// coalesce: a subscriber that is slow gets one value for many changes, and
// should read Snapshot after each. A writer never blocks on a subscriber.
func (s *Set) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, ch)
			s.mu.Unlock()
			close(ch)
		})
	}
}

package federation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// peerIndex is the exporter's peers by trust domain and cluster. Immutable
// once stored.
type peerIndex map[spiffeid.TrustDomain]map[string]*ExportPeer

func indexPeers(peers []ExportPeer) *peerIndex {
	idx := peerIndex{}
	for i := range peers {
		p := peers[i] // a copy: the caller's slice stays theirs
		if idx[p.TrustDomain] == nil {
			idx[p.TrustDomain] = map[string]*ExportPeer{}
		}
		idx[p.TrustDomain][p.Cluster] = &p
	}
	return &idx
}

// liveStreams are the exporter's admitted streams by peer, so that SetPeers
// can end the streams of a peer that was removed or changed.
type liveStreams struct {
	mu      sync.Mutex
	streams map[*ExportPeer]map[*context.CancelFunc]struct{}
	// resync holds the peers added or changed by SetPeers: their next
	// stream gets a full resync, never a resumption of what was sent under
	// another filter.
	resync map[*ExportPeer]bool
}

// takeResync reports (once) whether p's next stream must resync in full.
func (l *liveStreams) takeResync(p *ExportPeer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.resync[p]
	delete(l.resync, p)
	return r
}

// track derives the stream's context; untrack must be called when the
// stream ends.
// A stream admitted under peers that SetPeers replaced meanwhile is ended
// at once (SetPeers stores the peers under l.mu).
func (l *liveStreams) track(ctx context.Context, p *ExportPeer, peers *atomic.Pointer[peerIndex]) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if (*peers.Load())[p.TrustDomain][p.Cluster] != p {
		cancel()
	}
	if l.streams == nil {
		l.streams = map[*ExportPeer]map[*context.CancelFunc]struct{}{}
	}
	if l.streams[p] == nil {
		l.streams[p] = map[*context.CancelFunc]struct{}{}
	}
	l.streams[p][&cancel] = struct{}{}
	return ctx, func() {
		cancel()
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.streams[p], &cancel)
		if len(l.streams[p]) == 0 {
			delete(l.streams, p)
		}
	}
}

// end cancels every stream of the peers for which gone returns true.
func (l *liveStreams) end(gone func(*ExportPeer) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for p, cs := range l.streams {
		if !gone(p) {
			continue
		}
		for c := range cs {
			(*c)()
			n++
		}
	}
	return n
}

// SetPeers replaces the peers allowed to import (ServerConfig.Peers, with
// the same checks). Streams of a peer that is unchanged keep going; those
// of a peer that was removed, or whose Filter changed, are ended (a
// changed peer reconnects and resyncs under its new filter). Safe from any
// goroutine; on error nothing changes.
func (s *Server) SetPeers(peers []ExportPeer) error {
	var errs []error
	seen := map[[2]string]bool{}
	for i, p := range peers {
		f := fmt.Sprintf("federation: SetPeers: peers[%d]", i)
		if p.TrustDomain.IsZero() {
			errs = append(errs, fmt.Errorf("%s.TrustDomain: required", f))
		}
		if p.Cluster == "" {
			errs = append(errs, fmt.Errorf("%s.Cluster: required: the peer's cluster name", f))
		}
		k := [2]string{p.TrustDomain.Name(), p.Cluster}
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s: duplicate peer %s in trust domain %s: keep one entry", f, p.Cluster, p.TrustDomain))
		}
		seen[k] = true
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	next := indexPeers(peers)
	prev := s.peers.Load()
	s.live.mu.Lock()
	if s.live.resync == nil {
		s.live.resync = map[*ExportPeer]bool{}
	}
	for p := range s.live.resync { // forget the peers replaced now
		if (*next)[p.TrustDomain][p.Cluster] != p {
			delete(s.live.resync, p)
		}
	}
	for td, byCluster := range *next {
		for c, p := range byCluster {
			if old, ok := (*prev)[td][c]; ok && sameFilter(&old.Filter, &p.Filter) && !s.live.resync[old] {
				(*next)[td][c] = old // unchanged: keep the peer its streams were admitted as
				continue
			}
			// New or changed: whatever the importer holds from an earlier
			// admission was sent under another filter (or none).
			s.live.resync[p] = true
		}
	}
	s.peers.Store(next)
	s.live.mu.Unlock()
	n := s.live.end(func(old *ExportPeer) bool {
		return (*next)[old.TrustDomain][old.Cluster] != old
	})
	if n > 0 {
		s.cfg.Logger.Info("federation: peers changed; ended the streams of removed or changed peers", "streams", n)
	}
	return nil
}

// Peers returns the current peers allowed to import, in no order.
func (s *Server) Peers() []ExportPeer {
	var out []ExportPeer
	for _, byCluster := range *s.peers.Load() {
		for _, p := range byCluster {
			out = append(out, *p)
		}
	}
	return out
}

func sameFilter(a, b *Filter) bool {
	if len(a.Namespaces) != len(b.Namespaces) || len(a.Names) != len(b.Names) {
		return false
	}
	for i := range a.Namespaces {
		if a.Namespaces[i] != b.Namespaces[i] {
			return false
		}
	}
	for i := range a.Names {
		if a.Names[i] != b.Names[i] {
			return false
		}
	}
	return true
}

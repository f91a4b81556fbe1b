package federation

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/causewaymesh/causeway/federation/federationpb"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// PeerStatus is the state of the import from one peer.
type PeerStatus struct {
	Cluster     string
	TrustDomain spiffeid.TrustDomain
	Address     string
	// Connected: a stream is up and has caught up with the peer.
	Connected bool
	// Stale: the stream was lost (or has not caught up since); the imports
	// are the last-known-good since StaleSince and are withdrawn at
	// StaleSince + StalenessWindow.
	Stale      bool
	StaleSince time.Time
	// Withdrawn: the peer's imports were withdrawn after the staleness
	// window and nothing was imported since.
	Withdrawn bool
	// LastSync is when the last message from the peer arrived.
	LastSync time.Time
	// LastSequence is the last message sequence accepted; Epoch and
	// Revision name the peer state the imports are at.
	LastSequence uint64
	Epoch        string
	Revision     uint64
	// Services and Endpoints imported (endpoints behind a gateway are
	// counted from the locality summaries).
	Services, Endpoints int
	// LastError is why the last stream ended or could not start (a
	// *RefusedError for refusals); nil when none did.
	LastError error
	// Counters since the Importer started.
	// Failures counts streams that ended or could not start.
	Connects, Failures, Messages, Resyncs, Upserts, Deletes, Refusals uint64
}

// Imports is the merged imports of all peers. It is immutable: its slices
// are shared and must not be modified.
type Imports struct {
	// Services sorted by namespace and name, one per namespace/name, with
	// the endpoints of every peer that exports it (Cluster is the peer's
	// cluster, canonical order) and the union of their ports. A locality
	// behind a peer's gateway is one endpoint with the gateway's address
	// (see LocalitySummary for its exact counts and SNI).
	Services []model.Service
	// Localities behind peers' gateways, sorted by service, cluster and
	// locality.
	Localities []LocalitySummary

	memo *importsMemo // an Importer's: its last MergeImports (mergeimports.go)
	from *mergedFrom  // MergeImports': what each service was merged from
}

// Importer imports exported services from peers: one goroutine and one
// stream per peer.
type Importer struct {
	cfg     ImporterConfig
	metrics *importerMetrics
	peers   []*peerLink // sorted by cluster
	kick    chan struct{}
	imports atomic.Pointer[Imports]
}

// NewImporter validates cfg and returns an Importer; Run starts it.
func NewImporter(cfg ImporterConfig) (*Importer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newImporterMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	im := &Importer{cfg: cfg, metrics: m, kick: make(chan struct{}, 1)}
	im.imports.Store(&Imports{})
	for _, pc := range cfg.Peers {
		p := &peerLink{im: im, cfg: pc}
		p.stat = PeerStatus{Cluster: pc.Cluster, TrustDomain: pc.TrustDomain, Address: pc.Address}
		p.publishStatus()
		p.view.Store(&peerView{})
		p.tlsConfig = p.newTLSConfig()
		im.peers = append(im.peers, p)
	}
	slices.SortFunc(im.peers, func(a, b *peerLink) int { return cmp.Compare(a.cfg.Cluster, b.cfg.Cluster) })
	return im, nil
}

// Run imports from every peer until ctx is done, calling OnImports on this
// goroutine; it returns nil once every peer goroutine stopped. Call it once.
func (im *Importer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range im.peers {
		wg.Go(func() { p.run(ctx) })
	}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-im.kick:
			im.merge()
		}
	}
}

// Imports returns the latest merged imports.
func (im *Importer) Imports() *Imports { return im.imports.Load() }

// Status returns the status of every peer, sorted by cluster.
func (im *Importer) Status() []PeerStatus {
	out := make([]PeerStatus, len(im.peers))
	for i, p := range im.peers {
		out[i] = *p.status.Load()
	}
	return out
}

func (im *Importer) changed() {
	select {
	case im.kick <- struct{}{}:
	default:
	}
}

// peerView is what one peer contributes: its services, sorted. Immutable.
type peerView struct {
	services []*importedService
}

// peerLink is the import from one peer. Fields below the line belong to the
// peer's goroutine.
type peerLink struct {
	im        *Importer
	cfg       ImportPeer
	tlsConfig *tls.Config
	view      atomic.Pointer[peerView]
	status    atomic.Pointer[PeerStatus]
	authErr   atomic.Pointer[RefusedError] // set by the TLS verifier of the current attempt

	// --- owned by the peer goroutine
	stat       PeerStatus
	epoch      string
	rev        uint64
	lastSeq    uint64
	services   []*importedService // sorted by name
	staging    map[NamespacedName]*importedService
	staleTimer Timer
}

// Timer is the part of *time.Timer the federation uses.
type Timer = bundles.Timer

func (p *peerLink) publishStatus() {
	s := p.stat
	p.status.Store(&s)
}

func (p *peerLink) newTLSConfig() *tls.Config {
	want := bundles.ControlPlaneID(p.cfg.TrustDomain)
	authorize := func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if id == want {
			return nil
		}
		r := refused(p.cfg.Cluster, ReasonUnknownPeer, "the server at %s presented %s; expected %s", p.cfg.Address, id, want)
		if id.TrustDomain() != p.cfg.TrustDomain {
			r.Reason = ReasonWrongTrustDomain
		}
		p.authErr.Store(r)
		return r
	}
	cfg := tlsconfig.MTLSClientConfig(p.im.cfg.SVID, p.im.cfg.Bundles, authorize)
	cfg.MinVersion = tls.VersionTLS13
	verify := cfg.VerifyPeerCertificate
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil && p.authErr.Load() == nil {
			p.authErr.Store(refused(p.cfg.Cluster, ReasonWrongTrustDomain, "the server at %s does not authenticate as trust domain %s: %v", p.cfg.Address, p.cfg.TrustDomain, err))
		}
		return err
	}
	return cfg
}

func (p *peerLink) staleC() <-chan time.Time {
	if p.staleTimer == nil {
		return nil
	}
	return p.staleTimer.C()
}

func (p *peerLink) run(ctx context.Context) {
	cfg := &p.im.cfg
	backoff := cfg.BackoffInitial
	defer func() {
		if p.staleTimer != nil {
			p.staleTimer.Stop()
		}
	}()
	for {
		synced, err := p.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if synced {
			backoff = cfg.BackoffInitial
		}
		d := backoff/2 + time.Duration(cfg.Rand()*float64(backoff/2))
		backoff = min(2*backoff, cfg.BackoffMax)
		t := cfg.Clock.NewTimer(d)
		p.disconnected(err)
	wait:
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.staleC():
			p.withdraw()
			goto wait
		case <-t.C():
		}
	}
}

// disconnected records the end of a stream; held imports become stale.
func (p *peerLink) disconnected(err error) {
	cfg := &p.im.cfg
	m := p.im.metrics
	var r *RefusedError
	if errors.As(err, &r) {
		m.refused.WithLabelValues(p.cfg.Cluster, string(r.Reason)).Inc()
		p.stat.Refusals++
		cfg.Logger.Warn("federation: import stream refused", "peer", p.cfg.Cluster, "reason", r.Reason, "error", r.Detail)
	} else {
		cfg.Logger.Info("federation: import stream ended", "peer", p.cfg.Cluster, "error", err)
	}
	p.staging = nil
	p.stat.Failures++
	p.stat.Connected = false
	p.stat.LastError = err
	m.connected.WithLabelValues(p.cfg.Cluster).Set(0)
	if len(p.services) > 0 && p.staleTimer == nil {
		p.staleTimer = cfg.Clock.NewTimer(cfg.StalenessWindow)
		p.stat.Stale, p.stat.StaleSince = true, cfg.Clock.Now()
		m.stale.WithLabelValues(p.cfg.Cluster).Set(1)
	}
	p.publishStatus()
}

// withdraw drops the peer's imports at the end of the staleness window.
func (p *peerLink) withdraw() {
	cfg := &p.im.cfg
	p.staleTimer = nil
	p.services, p.epoch, p.rev = nil, "", 0
	p.stat.Stale, p.stat.Withdrawn = false, true
	p.stat.Epoch, p.stat.Revision = "", 0
	cfg.Logger.Warn("federation: withdrew a peer's imports after the staleness window", "peer", p.cfg.Cluster, "window", cfg.StalenessWindow)
	p.im.metrics.stale.WithLabelValues(p.cfg.Cluster).Set(0)
	p.im.metrics.withdrawn.WithLabelValues(p.cfg.Cluster).Inc()
	p.publish()
}

// publish makes the peer's current services visible to the merger.
func (p *peerLink) publish() {
	p.view.Store(&peerView{services: slices.Clone(p.services)})
	n := 0
	for _, s := range p.services {
		n += s.endpoints
	}
	p.stat.Services, p.stat.Endpoints = len(p.services), n
	m := p.im.metrics
	m.services.WithLabelValues(p.cfg.Cluster).Set(float64(len(p.services)))
	m.endpoints.WithLabelValues(p.cfg.Cluster).Set(float64(n))
	p.publishStatus()
	p.im.changed()
}

type readResult struct {
	m   *pb.SyncResponse
	err error
}

// session runs one stream: connect, subscribe, apply messages. synced
// reports whether it caught up with the peer.
func (p *peerLink) session(ctx context.Context) (synced bool, err error) {
	cfg := &p.im.cfg
	sctx, cancel := context.WithCancel(ctx)
	msgs := make(chan readResult)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	p.authErr.Store(nil)
	sub := &pb.Subscribe{
		Cluster: cfg.Cluster, Network: cfg.Network, Epoch: p.epoch, Revision: p.rev,
		LastSequence: p.lastSeq, MaxMessageBytes: uint32(cfg.MaxMessageBytes),
	}
	wg.Go(func() { p.read(sctx, sub, msgs) })

	s := &sessionState{}
	timeout := cfg.Clock.NewTimer(cfg.ConnectTimeout)
	defer func() { timeout.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return s.synced, ctx.Err()
		case <-p.staleC():
			p.withdraw()
		case <-timeout.C():
			if s.hello == nil {
				return s.synced, fmt.Errorf("federation: peer %s at %s: no hello within %v", p.cfg.Cluster, p.cfg.Address, cfg.ConnectTimeout)
			}
			return s.synced, fmt.Errorf("federation: peer %s at %s: nothing received for %v (heartbeat timeout)", p.cfg.Cluster, p.cfg.Address, cfg.HeartbeatTimeout)
		case r := <-msgs:
			if r.err != nil {
				return s.synced, p.classify(r.err)
			}
			if err := p.handle(r.m, s); err != nil {
				return s.synced, err
			}
			timeout.Stop()
			timeout = cfg.Clock.NewTimer(cfg.HeartbeatTimeout)
		}
	}
}

// read dials, subscribes and forwards every message (or the error that
// ended the stream) until ctx is done.
func (p *peerLink) read(ctx context.Context, sub *pb.Subscribe, out chan<- readResult) {
	fail := func(err error) {
		select {
		case out <- readResult{err: err}:
		case <-ctx.Done():
		}
	}
	max := p.im.cfg.MaxMessageBytes
	conn, err := grpc.NewClient("passthrough:///"+p.cfg.Address,
		grpc.WithTransportCredentials(credentials.NewTLS(p.tlsConfig)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(max), grpc.MaxCallSendMsgSize(max)))
	if err != nil {
		fail(fmt.Errorf("federation: peer %s: dialing %s: %w", p.cfg.Cluster, p.cfg.Address, err))
		return
	}
	defer conn.Close()
	stream, err := pb.NewFederationClient(conn).Sync(ctx)
	if err != nil {
		fail(err)
		return
	}
	if err := stream.Send(&pb.SyncRequest{Subscribe: sub}); err != nil {
		_, err = stream.Recv() // the real error
		fail(err)
		return
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			fail(err)
			return
		}
		select {
		case out <- readResult{m: m}:
		case <-ctx.Done():
			return
		}
	}
}

// classify turns the error that ended a stream into a refusal when it is
// one.
func (p *peerLink) classify(err error) error {
	if r := p.authErr.Load(); r != nil {
		return r
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("federation: peer %s at %s: %w", p.cfg.Cluster, p.cfg.Address, err)
	}
	switch st.Code() {
	case codes.ResourceExhausted:
		return refused(p.cfg.Cluster, ReasonOversized, "%s (ImporterConfig.MaxMessageBytes is %d)", st.Message(), p.im.cfg.MaxMessageBytes)
	case codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition, codes.Unauthenticated:
		return refused(p.cfg.Cluster, ReasonRefusedByPeer, "%s: %s", st.Code(), st.Message())
	}
	return fmt.Errorf("federation: peer %s at %s: %w", p.cfg.Cluster, p.cfg.Address, err)
}

// sessionState is what one stream has established.
type sessionState struct {
	hello    *pb.Hello
	info     peerInfo
	synced   bool   // caught up at least once
	chunkRev uint64 // revision of the change being received in chunks
	inChunks bool
}

func (p *peerLink) bad(r Reason, format string, a ...any) error {
	return refused(p.cfg.Cluster, r, format, a...)
}

// handle validates one message completely, then applies it.
func (p *peerLink) handle(m *pb.SyncResponse, s *sessionState) error {
	cfg := &p.im.cfg
	if seq := m.GetSequence(); seq <= p.lastSeq {
		verb := "went backwards"
		if seq == p.lastSeq {
			verb = "was replayed"
		}
		return p.bad(ReasonSequence, "message sequence %d %s (last accepted %d)", seq, verb, p.lastSeq)
	}
	kind, complete := "", false
	switch x := m.GetMessage().(type) {
	case *pb.SyncResponse_Hello:
		kind = "hello"
		h := x.Hello
		switch {
		case s.hello != nil:
			return p.bad(ReasonMalformed, "a second hello on one stream")
		case h.GetTrustDomain() != p.cfg.TrustDomain.Name():
			return p.bad(ReasonWrongTrustDomain, "hello.trust_domain %q; expected %q", h.GetTrustDomain(), p.cfg.TrustDomain.Name())
		case h.GetCluster() != p.cfg.Cluster:
			return p.bad(ReasonUnknownPeer, "hello.cluster %q; the peer at %s is configured as cluster %q", h.GetCluster(), p.cfg.Address, p.cfg.Cluster)
		case h.GetMode() != pb.Mode_MODE_DIRECT && h.GetMode() != pb.Mode_MODE_GATEWAY:
			return p.bad(ReasonMalformed, "hello.mode %v: must be MODE_DIRECT or MODE_GATEWAY", h.GetMode())
		case h.GetEpoch() == "":
			return p.bad(ReasonMalformed, "hello.epoch is empty")
		case h.GetResumed() && (h.GetEpoch() != p.epoch || p.rev == 0):
			return p.bad(ReasonMalformed, "hello.resumed for epoch %q, but this importer holds revision %d of epoch %q", h.GetEpoch(), p.rev, p.epoch)
		}
		s.hello = h
		s.info = peerInfo{cluster: p.cfg.Cluster, network: h.GetNetwork(), td: p.cfg.TrustDomain, mode: h.GetMode()}
		p.stat.Connects++
	case *pb.SyncResponse_Heartbeat:
		kind = "heartbeat"
		if s.hello == nil {
			return p.bad(ReasonMalformed, "heartbeat before hello")
		}
	case *pb.SyncResponse_Delta:
		kind = "delta"
		var err error
		if complete, err = p.applyDelta(x.Delta, s); err != nil {
			return err
		}
		if x.Delta.GetFullResync() {
			kind = "resync"
		}
	default:
		return p.bad(ReasonMalformed, "message %d carries no hello, delta or heartbeat", m.GetSequence())
	}
	p.lastSeq = m.GetSequence()
	p.stat.LastSequence = p.lastSeq
	p.stat.LastSync = cfg.Clock.Now()
	p.stat.Messages++
	p.im.metrics.messages.WithLabelValues(p.cfg.Cluster, kind).Inc()
	if complete {
		p.publish() // publishes the status too
	} else {
		p.publishStatus()
	}
	return nil
}

// applyDelta validates d, then applies it; complete reports whether it
// ended a change (the imports are consistent and must be published).
func (p *peerLink) applyDelta(d *pb.Delta, s *sessionState) (complete bool, err error) {
	switch {
	case s.hello == nil:
		return false, p.bad(ReasonMalformed, "delta before hello")
	case !s.synced && !s.hello.GetResumed() && !d.GetFullResync():
		return false, p.bad(ReasonMalformed, "delta revision %d: expected a full resync after a hello that did not resume", d.GetRevision())
	case s.inChunks && d.GetRevision() != s.chunkRev:
		return false, p.bad(ReasonMalformed, "delta revision %d while chunks of revision %d are incomplete", d.GetRevision(), s.chunkRev)
	case s.inChunks && d.GetFullResync() != (p.staging != nil):
		return false, p.bad(ReasonMalformed, "delta revision %d: full_resync changed within one change", d.GetRevision())
	case !d.GetFullResync() && d.GetRevision() < p.rev:
		return false, p.bad(ReasonSequence, "delta revision %d went backwards (at revision %d)", d.GetRevision(), p.rev)
	case d.GetFullResync() && len(d.GetDeletes()) > 0:
		return false, p.bad(ReasonMalformed, "delta revision %d: a full resync carries no deletes", d.GetRevision())
	}
	// Validate everything before applying anything.
	ups := make([]*importedService, len(d.GetUpserts()))
	seen := make(map[NamespacedName]bool, len(ups)+len(d.GetDeletes()))
	for i, es := range d.GetUpserts() {
		is, err := convertService(es, &s.info)
		if err != nil {
			return false, err
		}
		if seen[is.name] {
			return false, p.bad(ReasonMalformed, "delta revision %d: service %s appears twice", d.GetRevision(), is.name)
		}
		seen[is.name] = true
		ups[i] = is
	}
	for _, ref := range d.GetDeletes() {
		n := NamespacedName{ref.GetNamespace(), ref.GetName()}
		if !validLabel(n.Namespace) || !validLabel(n.Name) {
			return false, p.bad(ReasonMalformed, "delta revision %d: delete %q: namespace and name must be DNS labels", d.GetRevision(), n)
		}
		if seen[n] {
			return false, p.bad(ReasonMalformed, "delta revision %d: service %s appears twice", d.GetRevision(), n)
		}
		seen[n] = true
	}

	s.inChunks, s.chunkRev = d.GetMore(), d.GetRevision()
	p.stat.Upserts += uint64(len(ups))
	p.stat.Deletes += uint64(len(d.GetDeletes()))
	if d.GetFullResync() {
		if p.staging == nil {
			p.staging = make(map[NamespacedName]*importedService, len(p.services))
		}
		for _, is := range ups {
			p.staging[is.name] = is
		}
		if d.GetMore() {
			return false, nil
		}
		p.services = make([]*importedService, 0, len(p.staging))
		for _, is := range p.staging {
			p.services = append(p.services, is)
		}
		slices.SortFunc(p.services, func(a, b *importedService) int { return compareNames(a.name, b.name) })
		p.staging = nil
		p.epoch = s.hello.GetEpoch()
		p.stat.Resyncs++
	} else {
		for _, is := range ups {
			i, found := slices.BinarySearchFunc(p.services, is.name, func(x *importedService, n NamespacedName) int { return compareNames(x.name, n) })
			if found {
				p.services[i] = is
			} else {
				p.services = slices.Insert(p.services, i, is)
			}
		}
		for _, ref := range d.GetDeletes() {
			n := NamespacedName{ref.GetNamespace(), ref.GetName()}
			if i, found := slices.BinarySearchFunc(p.services, n, func(x *importedService, n NamespacedName) int { return compareNames(x.name, n) }); found {
				p.services = slices.Delete(p.services, i, i+1)
			}
		}
		if d.GetMore() {
			return false, nil
		}
	}
	// The change is complete: the imports are consistent at d.revision.
	p.rev = d.GetRevision()
	p.stat.Epoch, p.stat.Revision = p.epoch, p.rev
	if !s.synced {
		s.synced = true
		p.stat.Connected, p.stat.Withdrawn, p.stat.LastError = true, false, nil
		p.im.metrics.connected.WithLabelValues(p.cfg.Cluster).Set(1)
		if p.staleTimer != nil {
			p.staleTimer.Stop()
			p.staleTimer = nil
			p.stat.Stale, p.stat.StaleSince = false, time.Time{}
			p.im.metrics.stale.WithLabelValues(p.cfg.Cluster).Set(0)
		}
	}
	return true, nil
}

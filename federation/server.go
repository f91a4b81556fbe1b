package federation

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/causewaymesh/causeway/federation/federationpb"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// envelope bounds what a SyncResponse adds around the services of a Delta.
const envelope = 64

// Server is the exporter: it serves the Federation service to the peers of
// ServerConfig.Peers and streams them the exported services of the
// snapshots given to Update.
type Server struct {
	cfg     ServerConfig
	peers   atomic.Pointer[peerIndex] // replaced whole by SetPeers
	live    liveStreams
	metrics *serverMetrics

	mu    sync.Mutex // serialises Update
	state atomic.Pointer[exportState]
}

// NewServer validates cfg and returns an exporter at revision 0 with
// nothing exported.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newServerMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	if cfg.Epoch == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Epoch = hex.EncodeToString(b[:])
	}
	s := &Server{cfg: cfg, metrics: m}
	s.peers.Store(indexPeers(cfg.Peers))
	s.state.Store(&exportState{epoch: cfg.Epoch, services: map[NamespacedName]*exportEntry{}, next: make(chan struct{})})
	return s, nil
}

// Update sets the exported state from snap: its services with Exported set,
// with their endpoints of this cluster only. snap must be canonical and must
// not be modified afterwards (its slices are shared). When what is exported
// changed, the revision increases and every stream sends the difference.
// It returns the revision after the update.
func (s *Server) Update(snap *model.Snapshot) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.state.Load()
	st := buildState(old, snap, &s.cfg)
	if st != old {
		s.state.Store(st)
		close(old.next)
		s.metrics.revision.Set(float64(st.rev))
	}
	return st.rev
}

// Revision is the current revision of the exported state.
func (s *Server) Revision() uint64 { return s.state.Load().rev }

// Epoch names this run of the exporter.
func (s *Server) Epoch() string { return s.cfg.Epoch }

// TLSConfig is the server side of the federation's mutual TLS: it presents
// ServerConfig.SVID and accepts clients whose SVID chains to Bundles; which
// of them may subscribe is decided per stream (see doc.go). A client that
// does not authenticate is counted with reason wrong_trust_domain.
func (s *Server) TLSConfig() *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(s.cfg.SVID, s.cfg.Bundles, tlsconfig.AuthorizeAny())
	cfg.MinVersion = tls.VersionTLS13
	verify := cfg.VerifyPeerCertificate
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil {
			td := ""
			if len(raw) > 0 {
				if c, perr := x509.ParseCertificate(raw[0]); perr == nil {
					if id, ierr := x509svid.IDFromCert(c); ierr == nil {
						td = id.TrustDomain().Name()
					}
				}
			}
			s.metrics.refused.WithLabelValues(td, string(ReasonWrongTrustDomain)).Inc()
			s.cfg.Logger.Warn("federation: refused a client that does not authenticate", "trust_domain", td, "error", err)
		}
		return err
	}
	return cfg
}

// Serve serves the Federation service with mutual TLS on ln until ctx is
// done, then stops every stream and returns nil; it returns the listener's
// error otherwise. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.TLSConfig())),
		grpc.MaxRecvMsgSize(s.cfg.MaxMessageBytes),
		grpc.MaxSendMsgSize(s.cfg.MaxMessageBytes),
	)
	pb.RegisterFederationServer(gs, syncService{s: s})
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	select {
	case <-ctx.Done():
		gs.Stop()
		<-errc
		return nil
	case err := <-errc:
		gs.Stop()
		return fmt.Errorf("federation: serving on %s: %w", ln.Addr(), err)
	}
}

type syncService struct {
	pb.UnimplementedFederationServer
	s *Server
}

func (x syncService) Sync(stream pb.Federation_SyncServer) error { return x.s.sync(stream) }

// refuse counts a refusal and returns the gRPC status error for it.
func (s *Server) refuse(td string, code codes.Code, e *RefusedError) error {
	s.metrics.refused.WithLabelValues(td, string(e.Reason)).Inc()
	s.cfg.Logger.Warn("federation: refused an importer", "trust_domain", td, "reason", e.Reason, "error", e.Detail)
	return status.Error(code, e.Error())
}

// authenticate returns the SPIFFE ID of the stream's client.
func authenticate(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, errors.New("no peer in the stream context")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("the stream is not mutual TLS")
	}
	return x509svid.IDFromCert(ti.State.PeerCertificates[0])
}

// admit checks the client's ID and subscription against the configured
// peers.
func (s *Server) admit(id spiffeid.ID, sub *pb.Subscribe) (*ExportPeer, codes.Code, *RefusedError) {
	byCluster, ok := (*s.peers.Load())[id.TrustDomain()]
	if !ok {
		return nil, codes.PermissionDenied, refused(id.String(), ReasonWrongTrustDomain,
			"trust domain %q is not a federation peer of cluster %s; add it to the exporter's peers", id.TrustDomain().Name(), s.cfg.Cluster)
	}
	if want := bundles.ControlPlaneID(id.TrustDomain()); id != want {
		return nil, codes.PermissionDenied, refused(id.String(), ReasonUnknownPeer,
			"SPIFFE ID %s is not a control plane; only %s may subscribe", id, want)
	}
	if sub == nil || sub.GetCluster() == "" {
		return nil, codes.InvalidArgument, refused(id.String(), ReasonMalformed,
			"the first message must be a Subscribe naming the importer's cluster")
	}
	p, ok := byCluster[sub.GetCluster()]
	if !ok {
		return nil, codes.PermissionDenied, refused(sub.GetCluster(), ReasonUnknownPeer,
			"cluster %q of trust domain %s is not a federation peer of cluster %s; add it to the exporter's peers", sub.GetCluster(), id.TrustDomain().Name(), s.cfg.Cluster)
	}
	if n := sub.GetMaxMessageBytes(); n != 0 && n < MinMaxMessageBytes {
		return nil, codes.InvalidArgument, refused(sub.GetCluster(), ReasonMalformed,
			"subscribe.max_message_bytes %d is below the minimum %d", n, MinMaxMessageBytes)
	}
	return p, codes.OK, nil
}

type recvResult struct {
	sub *pb.Subscribe
	err error
}

func (s *Server) sync(stream pb.Federation_SyncServer) error {
	ctx := stream.Context()
	id, err := authenticate(ctx)
	if err != nil {
		return s.refuse("", codes.Unauthenticated, refused("unknown", ReasonWrongTrustDomain, "%v", err))
	}
	td := id.TrustDomain().Name()
	if _, ok := (*s.peers.Load())[id.TrustDomain()]; !ok { // refuse before reading anything
		_, code, r := s.admit(id, nil)
		return s.refuse(td, code, r)
	}

	// One goroutine reads: the Subscribe, then only the end of the stream.
	first := make(chan recvResult, 1)
	closed := make(chan error, 1)
	go func() {
		m, err := stream.Recv()
		first <- recvResult{m.GetSubscribe(), err}
		if err != nil {
			return
		}
		_, err = stream.Recv()
		closed <- err
	}()
	timeout := s.cfg.Clock.NewTimer(max(3*s.cfg.HeartbeatInterval, DefaultConnectTimeout))
	var sub *pb.Subscribe
	select {
	case r := <-first:
		timeout.Stop()
		if r.err != nil {
			if status.Code(r.err) == codes.ResourceExhausted {
				return s.refuse(td, codes.ResourceExhausted, refused(id.String(), ReasonOversized, "subscribe: %v", r.err))
			}
			return r.err
		}
		sub = r.sub
	case <-timeout.C():
		return s.refuse(td, codes.DeadlineExceeded, refused(id.String(), ReasonMalformed, "no Subscribe within %v of opening the stream", max(3*s.cfg.HeartbeatInterval, DefaultConnectTimeout)))
	case <-ctx.Done():
		timeout.Stop()
		return ctx.Err()
	}
	p, code, r := s.admit(id, sub)
	if r != nil {
		return s.refuse(td, code, r)
	}
	ctx, untrack := s.live.track(ctx, p, &s.peers) // SetPeers ends it if p goes
	defer untrack()
	mode := pb.Mode_MODE_DIRECT
	if sub.GetNetwork() != s.cfg.Network {
		if !s.cfg.Gateway.Address.IsValid() {
			return s.refuse(td, codes.FailedPrecondition, refused(p.Cluster, ReasonRefusedByPeer,
				"importer network %q differs from exporter network %q and cluster %s has no east-west gateway; configure its gateway or put both on one network",
				sub.GetNetwork(), s.cfg.Network, s.cfg.Cluster))
		}
		mode = pb.Mode_MODE_GATEWAY
	}
	w := &streamWriter{s: s, stream: stream, peer: p, mode: mode, seq: sub.GetLastSequence(), limit: s.cfg.MaxMessageBytes}
	if n := int(sub.GetMaxMessageBytes()); n != 0 && n < w.limit {
		w.limit = n
	}
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	st := s.state.Load()
	var names []NamespacedName
	resumed := false
	mustResync := s.live.takeResync(p) // added or changed by SetPeers since its last stream
	if sub.GetEpoch() == st.epoch && sub.GetRevision() > 0 && !mustResync {
		names, resumed = st.changedSince(sub.GetRevision())
	}
	s.cfg.Logger.Debug("federation: importer subscribed", "peer", p.Cluster, "trust_domain", td, "mode", mode, "resumed", resumed, "from_revision", sub.GetRevision(), "revision", st.rev)
	if err := w.send(&pb.SyncResponse{Message: &pb.SyncResponse_Hello{Hello: &pb.Hello{
		Cluster: s.cfg.Cluster, Network: s.cfg.Network, TrustDomain: s.cfg.TrustDomain.Name(), Epoch: st.epoch,
		Mode: mode, Resumed: resumed, HeartbeatIntervalMs: uint64(s.cfg.HeartbeatInterval.Milliseconds()),
	}}}, "hello"); err != nil {
		return err
	}
	if !resumed {
		names = st.names
	}
	if err := w.sendChange(st, names, !resumed); err != nil {
		return err
	}
	hb := s.cfg.Clock.NewTimer(s.cfg.HeartbeatInterval)
	defer func() { hb.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-closed:
			if err == nil {
				return s.refuse(td, codes.InvalidArgument, refused(p.Cluster, ReasonMalformed, "importer sent a second message; it must send one Subscribe only"))
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-st.next:
			nst := s.state.Load()
			names, ok := nst.changedSince(st.rev)
			if !ok {
				names = nst.names
			}
			if err := w.sendChange(nst, names, !ok); err != nil {
				return err
			}
			st = nst
		case <-hb.C():
			if err := w.send(&pb.SyncResponse{Message: &pb.SyncResponse_Heartbeat{Heartbeat: &pb.Heartbeat{Revision: st.rev}}}, "heartbeat"); err != nil {
				return err
			}
		}
		hb.Stop()
		hb = s.cfg.Clock.NewTimer(s.cfg.HeartbeatInterval)
	}
}

// streamWriter numbers and sends the messages of one stream.
type streamWriter struct {
	s      *Server
	stream pb.Federation_SyncServer
	peer   *ExportPeer
	mode   pb.Mode
	seq    uint64
	limit  int
}

func (w *streamWriter) send(m *pb.SyncResponse, kind string) error {
	w.seq++
	m.Sequence = w.seq
	if err := w.stream.Send(m); err != nil {
		return err
	}
	w.s.metrics.messages.WithLabelValues(w.peer.Cluster, kind).Inc()
	return nil
}

// sendChange sends the named services of st that the peer's filter admits
// (upserts, or deletes for those st no longer exports) as one Delta, split
// into chunks below the size limit.
func (w *streamWriter) sendChange(st *exportState, names []NamespacedName, full bool) error {
	kind := "delta"
	if full {
		kind = "resync"
	}
	limit := w.limit - envelope
	d := &pb.Delta{Revision: st.rev, FullResync: full}
	size := 0
	flush := func(more bool) error {
		d.More = more
		err := w.send(&pb.SyncResponse{Message: &pb.SyncResponse_Delta{Delta: d}}, kind)
		d = &pb.Delta{Revision: st.rev, FullResync: full}
		size = 0
		return err
	}
	del := func(n NamespacedName) error {
		sz := len(n.Namespace) + len(n.Name) + 12
		if size+sz > limit {
			if err := flush(true); err != nil {
				return err
			}
		}
		d.Deletes = append(d.Deletes, &pb.ServiceRef{Namespace: n.Namespace, Name: n.Name})
		size += sz
		return nil
	}
	for _, n := range names {
		if !w.peer.Filter.Admits(n) {
			continue
		}
		e, ok := st.services[n]
		if !ok {
			if full {
				continue
			}
			if err := del(n); err != nil {
				return err
			}
			continue
		}
		svc, sz := e.forMode(w.mode)
		sz += 6
		if sz > limit {
			w.s.metrics.refused.WithLabelValues(w.peer.TrustDomain.Name(), string(ReasonOversized)).Inc()
			w.s.cfg.Logger.Error("federation: exported service too large for one message; not sent",
				"service", n.String(), "peer", w.peer.Cluster, "bytes", sz, "limit", w.limit)
			if !full {
				if err := del(n); err != nil {
					return err
				}
			}
			continue
		}
		if size+sz > limit {
			if err := flush(true); err != nil {
				return err
			}
		}
		d.Upserts = append(d.Upserts, svc)
		size += sz
	}
	return flush(false)
}

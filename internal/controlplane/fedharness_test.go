package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/trustplane"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// This file holds the parts shared by the partition test
// (partition_test.go) and the cross-cluster propagation benchmark
// (fedbench_test.go): a cluster wired as `causeway control-plane --mtls
// --federation-listen --peer ...` wires it, on fixed ports of its own
// loopback address (127.72.0.0/16), a TCP relay the test can cut, an ADS
// client that ACKs EDS, and the projection that compares imports with
// exports.

// Fixed ports on each node's own loopback address.
const (
	nodeXDSPort    = 17010
	nodeIssuerPort = 17012
	nodeBundlePort = 17013
	nodeFedPort    = 17014
)

// fedNode is one cluster: a trust plane, a federation, a Merger and a
// control plane.
type fedNode struct {
	name   string
	ip     string
	td     spiffeid.TrustDomain
	dir    string // the folder source's directory
	plane  *trustplane.Plane
	fedLn  net.Listener
	reg    *prometheus.Registry
	merger *Merger
	fed    *Federation
	cp     *ControlPlane
	// trace, when set before start, is called with "import" when the
	// federation hands the Merger new imports and "emit" when the Merger
	// hands the control plane a new model (benchmark stages).
	trace func(stage string)
}

// tracedSource calls trace("emit") before each snapshot src emits.
type tracedSource struct {
	src   *Merger
	trace func(string)
}

func (s tracedSource) Run(ctx context.Context, emit func(*model.Snapshot)) error {
	return s.src.Run(ctx, func(m *model.Snapshot) {
		s.trace("emit")
		emit(m)
	})
}

func newFedNode(tb testing.TB, name, ip string) *fedNode {
	tb.Helper()
	n := &fedNode{name: name, ip: ip, td: spiffeid.RequireTrustDomainFromString(name + ".local"), dir: tb.TempDir(), reg: prometheus.NewRegistry()}
	tokens := filepath.Join(tb.TempDir(), "tokens")
	if err := issuer.WriteTokenFile(tokens, nil); err != nil {
		tb.Fatal(err)
	}
	authn, err := issuer.NewTokenFileAuthenticator(tokens, n.td)
	if err != nil {
		tb.Fatal(err)
	}
	n.plane, err = trustplane.Start(trustplane.Options{TrustDomain: n.td, CADir: tb.TempDir(),
		IssuerAddress: fmt.Sprintf("%s:%d", ip, nodeIssuerPort), BundleAddress: fmt.Sprintf("%s:%d", ip, nodeBundlePort),
		Authenticator: authn, Registerer: n.reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	if n.fedLn, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, nodeFedPort)); err != nil {
		tb.Fatal(err)
	}
	return n
}

// peerOf is n as a peer of another cluster, reached at address ("": n's
// own federation listener).
func (n *fedNode) peerOf(tb testing.TB, address string) FederationPeer {
	tb.Helper()
	b, err := x509bundle.Parse(n.td, n.plane.RootsPEM())
	if err != nil {
		tb.Fatal(err)
	}
	if address == "" {
		address = n.fedLn.Addr().String()
	}
	return FederationPeer{Cluster: n.name, TrustDomain: n.td, Address: address,
		BundleURL: n.plane.BundleURL(), Bootstrap: spiffebundle.FromX509Bundle(b)}
}

// fastReconnect makes a lost stream come back within ~100 ms once the
// path is open again.
func fastReconnect(_ *federation.ServerConfig, ic *federation.ImporterConfig) {
	ic.BackoffInitial, ic.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
	ic.ConnectTimeout = 2 * time.Second
}

// start wires n with src (nil: the folder source on n.dir) and its peers
// and runs it until tb's cleanup.
func (n *fedNode) start(tb testing.TB, ctx context.Context, src discovery.Source, peers []FederationPeer, staleness, debounce time.Duration, log *slog.Logger) {
	tb.Helper()
	if src == nil {
		folder, err := discovery.NewFolder(discovery.FolderOptions{Dir: n.dir, Interval: 20 * time.Millisecond, Logger: log,
			BuildOptions: discovery.BuildOptions{Cluster: n.name, Network: "flat", TrustDomain: n.td.Name()}})
		if err != nil {
			tb.Fatal(err)
		}
		src = folder
	}
	var err error
	n.merger, err = NewMerger(MergerOptions{Local: src, OnLocal: func(s *model.Snapshot) { n.fed.Update(s) },
		Cluster: n.name, Registerer: n.reg, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	onImports := n.merger.SetImports
	var served discovery.Source = n.merger
	if n.trace != nil {
		onImports = func(im *federation.Imports) {
			n.trace("import")
			n.merger.SetImports(im)
		}
		served = tracedSource{n.merger, n.trace}
	}
	n.fed, err = NewFederation(FederationOptions{Cluster: n.name, Network: "flat", TrustDomain: n.td,
		SVID: n.plane, Bundles: n.plane.Set, Listener: n.fedLn, Peers: peers, Staleness: staleness,
		OnImports: onImports, Tune: fastReconnect, Registerer: n.reg, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	n.cp, err = New(Options{Cluster: n.name, Network: "flat", XDSAddress: fmt.Sprintf("%s:%d", n.ip, nodeXDSPort),
		Debounce: debounce, Registry: n.reg, Logger: log,
		Translate: xds.TranslateOptions{MTLS: &xds.MTLS{Bundles: n.plane.Bundles}}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = n.plane.Run(ctx, n.cp.Republish) })
	wg.Go(func() { _ = n.fed.Run(ctx) })
	wg.Go(func() { _ = n.cp.Run(ctx, served) })
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// relay is a test-owned TCP relay in the path of one federation link: Cut
// closes every relayed connection and refuses new ones (accepted, then
// closed at once) until Heal.
type relay struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	cut      bool
	conns    map[net.Conn]struct{}
	accepted int // connections relayed (not refused)
	refused  int
}

func startRelay(tb testing.TB, addr, target string) *relay {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.serve)
	tb.Cleanup(func() {
		ln.Close()
		r.Cut()
		r.wg.Wait()
	})
	return r
}

func (r *relay) Addr() string { return r.ln.Addr().String() }

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.cut {
			r.refused++
			r.mu.Unlock()
			c.Close()
			continue
		}
		r.accepted++
		r.conns[c] = struct{}{}
		r.mu.Unlock()
		r.wg.Go(func() { r.pipe(c) })
	}
}

func (r *relay) pipe(down net.Conn) {
	defer r.drop(down)
	up, err := net.DialTimeout("tcp", r.target, 2*time.Second)
	if err != nil {
		return
	}
	if !r.track(up) {
		up.Close()
		return
	}
	defer r.drop(up)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go cp(up, down)
	go cp(down, up)
	<-done
	<-done
}

// track registers c unless the relay was cut meanwhile.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cut {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) drop(c net.Conn) {
	c.Close()
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// Cut closes every relayed connection and refuses new ones.
func (r *relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = true
	for c := range r.conns {
		c.Close()
	}
}

// Heal lets connections through again.
func (r *relay) Heal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = false
}

func (r *relay) counts() (accepted, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted, r.refused
}

// edsClient is an xDS client on a real ADS stream (state of the world)
// subscribed to one EDS resource: it ACKs every response and keeps the
// last load assignment it ACKed.
type edsClient struct {
	name string
	mu   sync.Mutex
	last *endpointv3.ClusterLoadAssignment
	acks int
	// onAck, when set, is called after each ACK was sent, on the client's
	// goroutine.
	onAck func(*endpointv3.ClusterLoadAssignment)
	err   error
	done  chan struct{}
}

// watchEDS connects to the control plane at addr as a sidecar of cluster
// in namespace shop and subscribes to the EDS resource name. It stops in
// tb's cleanup.
func watchEDS(tb testing.TB, ctx context.Context, addr, cluster, name string, onAck func(*endpointv3.ClusterLoadAssignment)) *edsClient {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"namespace": "shop", "cluster": cluster, "service_account": "watcher"})
	node := &corev3.Node{Id: "eds-watcher.shop." + cluster, Cluster: cluster, Metadata: md,
		Locality: &corev3.Locality{Region: "r1", Zone: "z1"}}
	ctx, cancel := context.WithCancel(ctx)
	c := &edsClient{name: name, onAck: onAck, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = c.run(ctx, conn, node)
	}()
	tb.Cleanup(func() {
		cancel()
		<-c.done
		conn.Close()
	})
	return c
}

func (c *edsClient) run(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(64<<20))
	if err != nil {
		return err
	}
	req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{c.name}}
	if err := stream.Send(req); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var cla *endpointv3.ClusterLoadAssignment
		for _, a := range resp.GetResources() {
			x := &endpointv3.ClusterLoadAssignment{}
			if err := a.UnmarshalTo(x); err != nil {
				return fmt.Errorf("EDS response: %w", err)
			}
			if x.GetClusterName() == c.name {
				cla = x
			}
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{c.name},
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := stream.Send(ack); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.mu.Lock()
		c.last, c.acks = cla, c.acks+1
		c.mu.Unlock()
		if c.onAck != nil {
			c.onAck(cla)
		}
	}
}

// addresses are the endpoints ("ip:port") of the last ACKed assignment,
// sorted.
func (c *edsClient) addresses() []string {
	c.mu.Lock()
	cla := c.last
	c.mu.Unlock()
	return claAddresses(cla)
}

func claAddresses(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	slices.Sort(out)
	return out
}

// exportProjection is what one cluster exports, or what another imported
// from it, in the terms the federation must keep: service, ports,
// endpoints (address, ports, locality, weight, readiness), one line each,
// sorted. Duplicates stay (they are a bug the comparison must see).
func exportProjection(s *model.Snapshot, from string, exportedOnly bool) []string {
	var out []string
	if s == nil {
		return nil
	}
	for _, sv := range s.Services {
		if exportedOnly && !sv.Exported {
			continue
		}
		var ports []string
		for _, p := range sv.Ports {
			ports = append(ports, fmt.Sprintf("%s/%d/%s/%s", p.Name, p.Port, p.Protocol, p.AppProtocol))
		}
		head := fmt.Sprintf("%s/%s ports=[%s]", sv.Namespace, sv.Name, strings.Join(ports, ","))
		for _, e := range sv.Endpoints {
			if e.Cluster != from {
				continue
			}
			var eps []string
			for _, p := range e.Ports {
				eps = append(eps, fmt.Sprintf("%s=%d", p.Name, p.Port))
			}
			out = append(out, fmt.Sprintf("%s ep=%s [%s] loc=%s/%s/%s w=%d ready=%t", head, e.Address, strings.Join(eps, ","),
				e.Locality.Region, e.Locality.Zone, e.Locality.SubZone, e.Weight, e.Ready))
		}
	}
	slices.Sort(out)
	return out
}

// diffLines names what is only in want and only in got.
func diffLines(want, got []string) error {
	var errs []error
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || (i < len(want) && want[i] < got[j]):
			errs = append(errs, fmt.Errorf("missing: %s", want[i]))
			i++
		case i == len(want) || got[j] < want[i]:
			errs = append(errs, fmt.Errorf("extra (orphan or duplicate): %s", got[j]))
			j++
		default:
			i++
			j++
		}
	}
	return errors.Join(errs...)
}

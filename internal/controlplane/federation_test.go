package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/trustplane"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/runner"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// fedCluster is one cluster of the federation test: a folder source, a
// trust plane (CA, SVID issuer with bootstrap tokens, bundle endpoint), a
// federation (exporter, importer, bundle fetcher), a Merger and a control
// plane, wired as `causeway control-plane --mtls --federation-listen
// --peer ...` wires them.
type fedCluster struct {
	name       string
	td         spiffeid.TrustDomain
	dir, files string
	plane      *trustplane.Plane
	fedLn      net.Listener
	roots      string            // the trust domain's roots (sidecars' --trust-bundle)
	tokens     map[string]string // workload -> token file
	merger     *Merger
	fed        *Federation
	cp         *ControlPlane
	reg        *prometheus.Registry
	stopFed    context.CancelFunc // stops the federation alone (a peer going away)
}

// newFedCluster makes the parts that listen, so that peers can be told
// each other's addresses before anything runs.
func newFedCluster(t *testing.T, name string, workloads ...string) *fedCluster {
	t.Helper()
	c := &fedCluster{name: name, td: spiffeid.RequireTrustDomainFromString(name + ".local"), dir: t.TempDir(), files: t.TempDir(),
		tokens: map[string]string{}, reg: prometheus.NewRegistry()}
	var entries []issuer.TokenEntry
	for _, w := range workloads {
		tok, err := issuer.GenerateToken(nil)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, issuer.TokenEntry{ID: spiffeid.RequireFromPath(c.td, "/ns/shop/sa/"+w), Token: tok})
		c.tokens[w] = filepath.Join(c.files, w+".token")
		if err := os.WriteFile(c.tokens[w], []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tokens := filepath.Join(c.files, "tokens")
	if err := issuer.WriteTokenFile(tokens, entries); err != nil {
		t.Fatal(err)
	}
	authn, err := issuer.NewTokenFileAuthenticator(tokens, c.td)
	if err != nil {
		t.Fatal(err)
	}
	c.plane, err = trustplane.Start(trustplane.Options{TrustDomain: c.td, CADir: t.TempDir(), IssuerAddress: "127.0.0.1:0",
		BundleAddress: "127.0.0.1:0", Authenticator: authn, Registerer: c.reg, Logger: testLogger(t, name)})
	if err != nil {
		t.Fatal(err)
	}
	c.roots = filepath.Join(c.files, "roots.pem")
	if err := os.WriteFile(c.roots, c.plane.RootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if c.fedLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return c
}

// peerOf is c as a peer of another cluster: what --peer says.
func (c *fedCluster) peerOf(t *testing.T) FederationPeer {
	t.Helper()
	b, err := x509bundle.Parse(c.td, c.plane.RootsPEM())
	if err != nil {
		t.Fatal(err)
	}
	return FederationPeer{Cluster: c.name, TrustDomain: c.td, Address: c.fedLn.Addr().String(),
		BundleURL: c.plane.BundleURL(), Bootstrap: spiffebundle.FromX509Bundle(b)}
}

// run wires and starts c with peer; everything stops in t's cleanup.
func (c *fedCluster) run(t *testing.T, ctx context.Context, peer *fedCluster, staleness time.Duration) {
	t.Helper()
	log := testLogger(t, c.name)
	folder, err := discovery.NewFolder(discovery.FolderOptions{Dir: c.dir, Interval: 20 * time.Millisecond, Logger: log,
		BuildOptions: discovery.BuildOptions{Cluster: c.name, Network: "flat", TrustDomain: c.td.Name()}})
	if err != nil {
		t.Fatal(err)
	}
	c.merger, err = NewMerger(MergerOptions{Local: folder, OnLocal: func(s *model.Snapshot) { c.fed.Update(s) },
		Cluster: c.name, Registerer: c.reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c.fed, err = NewFederation(FederationOptions{Cluster: c.name, Network: "flat", TrustDomain: c.td,
		SVID: c.plane, Bundles: c.plane.Set, Listener: c.fedLn, Peers: []FederationPeer{peer.peerOf(t)},
		Staleness: staleness, OnImports: c.merger.SetImports, Registerer: c.reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c.cp, err = New(Options{Cluster: c.name, Network: "flat", Debounce: 10 * time.Millisecond, Registry: c.reg, Logger: log,
		Translate: xds.TranslateOptions{EphemeralPorts: true, MTLS: &xds.MTLS{Bundles: c.plane.Bundles}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	go func() { c.plane.Run(ctx, c.cp.Republish); done <- struct{}{} }()
	fedCtx, stopFed := context.WithCancel(ctx)
	c.stopFed = stopFed
	go func() { c.fed.Run(fedCtx); done <- struct{}{} }()
	go func() { c.cp.Run(ctx, c.merger); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
	})
}

func (c *fedCluster) sidecar(t *testing.T, ctx context.Context, workload string, mod func(*runner.Config)) *runner.Process {
	t.Helper()
	cfg := runner.DefaultConfig()
	cfg.XDS, cfg.Admin, cfg.NodeID = c.cp.Addr(), "127.0.0.1:0", workload+".shop."+c.name
	cfg.Workload, cfg.Namespace, cfg.Cluster, cfg.Network, cfg.Locality = workload, "shop", c.name, "flat", "r1/z1"
	cfg.AccessLog, cfg.DrainTimeout = filepath.Join(c.files, workload+".log"), 2*time.Second
	cfg.SVIDIssuer, cfg.SVIDTokenFile, cfg.TrustDomain, cfg.TrustBundle = c.plane.IssuerAddr(), c.tokens[workload], c.td.Name(), c.roots
	if mod != nil {
		mod(&cfg)
	}
	p, err := runner.Start(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown() })
	return p
}

// TestFederationEndToEnd: two control planes in one process, two trust
// domains, federated over real mutual-TLS gRPC on loopback. A sidecar in
// east calls cart.shop.svc.clusterset.local, which only west runs (behind
// west's sidecar, mesh mTLS across the trust domains). West withdraws its
// ServiceExport: the import leaves east's model and the call gets a 404
// naming the host; west exports again and the call succeeds again.
func TestFederationEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	east := newFedCluster(t, "east", "client")
	west := newFedCluster(t, "west", "cart")

	// west runs cart (its app behind its sidecar's inbound port) and
	// exports it; east has only web, whose port 8080 keeps east's outbound
	// listener up when cart is gone.
	// The inbound listener takes port 8080 on a loopback "pod IP" of its
	// own, so no other test can hold it.
	app := startHTTP(t, "cart-in-west")
	podIP, inbound := podLoopbackIP(), 8080
	write(t, west.dir, "nodes.yaml", nodesYAML)
	write(t, west.dir, "cart.yaml", workloadYAML("cart", "node-z2", podIP, inbound))
	const export = `apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
`
	write(t, west.dir, "export.yaml", export)
	write(t, east.dir, "nodes.yaml", nodesYAML)
	write(t, east.dir, "web.yaml", webService)

	const staleness = 300 * time.Millisecond // east keeps west's imports this long after losing it
	east.run(t, ctx, west, staleness)
	west.run(t, ctx, east, 0)
	cart := west.sidecar(t, ctx, "cart", func(c *runner.Config) {
		c.InboundIP, c.InboundPorts = podIP, fmt.Sprintf("%d=127.0.0.1:%d", inbound, app.port)
	})
	client := east.sidecar(t, ctx, "client", nil)

	cartID := "spiffe://west.local/ns/shop/sa/cart"
	imported := func() *model.Service {
		if m := east.cp.Model(); m != nil {
			if sv, ok := m.Service("shop", "cart"); ok {
				return sv
			}
		}
		return nil
	}
	waitUntil(t, 20*time.Second, "west's cart imported into east's model", func() bool { return imported() != nil })
	t.Logf("federated: cart in east's model %s after start", time.Since(start).Round(time.Millisecond))
	t.Run("the import in east's model", func(t *testing.T) {
		sv := imported()
		if !sv.Imported || sv.Exported || len(sv.Endpoints) != 1 {
			t.Fatalf("imported cart: %+v, want imported (not exported here) with west's one endpoint", sv)
		}
		e := sv.Endpoints[0]
		if e.Cluster != "west" || e.Identity != cartID || e.Address != podIP {
			t.Errorf("imported endpoint %+v, want cluster west, identity %s", e, cartID)
		}
		if err := east.cp.Model().Validate(); err != nil {
			t.Errorf("east's served model: %v", err)
		}
		if _, ok := west.cp.Model().Service("shop", "web"); ok {
			t.Error("east's web (not exported) reached west")
		}
		st := east.fed.ImportStatus()
		if len(st) != 1 || !st[0].Connected || st[0].Services != 1 {
			t.Errorf("east's import status: %+v, want west connected with 1 service", st)
		}
	})

	var outbound string
	waitUntil(t, 15*time.Second, "east's client outbound listener and west's cart inbound listener", func() bool {
		a, b := client.Proxy.ListenerAddr("outbound_8080"), cart.Proxy.ListenerAddr(xds.InboundName(uint32(inbound)))
		if a != nil && b != nil {
			outbound = a.String()
			return true
		}
		return false
	})
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	callHost := func(host string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+outbound+"/items", nil)
		req.Host = host
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	call := func() (int, string) { return callHost("cart.shop.svc.clusterset.local") }
	var code int
	var body string
	waitUntil(t, 20*time.Second, "east's client to reach cart in west through both sidecars", func() bool {
		code, body = call()
		return code == 200
	})
	if body != "cart-in-west" {
		t.Fatalf("clusterset call answered %q, want west's cart", body)
	}
	t.Logf("first clusterset request answered %s after start", time.Since(start).Round(time.Millisecond))
	t.Run("mesh mTLS across trust domains: west's sidecar saw east's client SPIFFE ID", func(t *testing.T) {
		e := lastLogEntry(t, filepath.Join(west.files, "cart.log"))
		if want := "spiffe://east.local/ns/shop/sa/client"; e["source_identity"] != want {
			t.Errorf("cart's inbound access log: %v, want source_identity %s", e, want)
		}
	})
	t.Run("an imported-only service has no endpoint under its cluster.local name", func(t *testing.T) {
		code, body := callHost("cart.shop.svc.cluster.local")
		if code != 503 || !strings.Contains(body, "no healthy upstream") {
			t.Errorf("cart.shop.svc.cluster.local from east: %d %q, want 503 no healthy upstream", code, body)
		}
	})
	t.Run("each trust plane fetched its peer's bundle from the bundle endpoint", func(t *testing.T) {
		for _, c := range []*fedCluster{east, west} {
			waitUntil(t, 10*time.Second, c.name+"'s first bundle fetch", func() bool {
				st := c.fed.BundleStatus()
				return len(st) == 1 && st[0].Healthy && st[0].Refreshes > 0
			})
			if got := c.plane.Bundles(); len(got) != 2 {
				t.Errorf("%s's bundle set: %d trust domains, want its own and its peer's", c.name, len(got))
			}
		}
	})

	t.Run("west withdraws its ServiceExport: east withdraws the import and the call stops", func(t *testing.T) {
		t0 := time.Now()
		if err := os.Remove(filepath.Join(west.dir, "export.yaml")); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 15*time.Second, "cart to leave east's model", func() bool { return imported() == nil })
		tModel := time.Since(t0)
		waitUntil(t, 15*time.Second, "the clusterset call to fail with no route", func() bool {
			code, body = call()
			return code == 404
		})
		if !strings.Contains(body, "no route matches cart.shop.svc.clusterset.local") {
			t.Errorf("after the withdrawal: %d %q, want a 404 naming the clusterset host", code, body)
		}
		t.Logf("withdrawal: import gone from east's model in %s, calls 404 in %s", tModel.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		if _, ok := west.cp.Model().Service("shop", "cart"); !ok {
			t.Error("west's own cart left west's model with the ServiceExport")
		}
	})

	t.Run("west exports again: east converges", func(t *testing.T) {
		t0 := time.Now()
		write(t, west.dir, "export.yaml", export)
		waitUntil(t, 15*time.Second, "cart back in east's model", func() bool { return imported() != nil })
		tModel := time.Since(t0)
		waitUntil(t, 15*time.Second, "the clusterset call to reach west again", func() bool {
			code, body = call()
			return code == 200 && body == "cart-in-west"
		})
		t.Logf("re-export: import back in east's model in %s, calls 200 in %s", tModel.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	})

	t.Run("west's control plane goes away: east serves the stale import for --staleness, then withdraws it", func(t *testing.T) {
		t0 := time.Now()
		west.stopFed()
		waitUntil(t, 15*time.Second, "east to see west stale", func() bool {
			st := east.fed.ImportStatus()
			return len(st) == 1 && !st[0].Connected && (st[0].Stale || st[0].Withdrawn)
		})
		waitUntil(t, 15*time.Second, "the stale import to be withdrawn", func() bool { return imported() == nil })
		tGone := time.Since(t0)
		if tGone < staleness {
			t.Errorf("the import was withdrawn %s after the peer went, before the staleness window %s", tGone, staleness)
		}
		if st := east.fed.ImportStatus(); !st[0].Withdrawn {
			t.Errorf("east's import status %+v, want withdrawn", st[0])
		}
		waitUntil(t, 15*time.Second, "the clusterset call to fail with no route", func() bool {
			code, body = call()
			return code == 404
		})
		t.Logf("peer lost: import withdrawn after %s (staleness %s)", tGone.Round(time.Millisecond), staleness)
	})
}

func testLogger(t *testing.T, cluster string) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("cluster", cluster)
}

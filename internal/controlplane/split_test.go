package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/gateway"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/trustplane"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/runner"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// This file is the end-to-end test of a GAMMA split across clusters
// (issue 6's acceptance): an HTTPRoute whose parentRef is the local
// Service web sends 90% to that Service and 10% to the ServiceImport web,
// which only the other cluster backs. Two control planes, each with its
// own trust domain, federated over the real mutual-TLS stream; real
// sidecars (runner.Start) with SVIDs from their cluster's issuer; mesh
// mTLS across the trust domains.
//
// Loopback: east is 127.76.0.0/16, west 127.77.0.0/16, fixed ports. The
// outbound listeners bind port 0 on the cluster's address
// (TranslateOptions.EphemeralPorts): east runs two sidecars, which would
// otherwise both take <ip>:8080.

// Fixed ports on a split cluster's control-plane address (x.y.0.1).
const (
	splitXDSPort    = 17310
	splitIssuerPort = 17312
	splitBundlePort = 17313
	splitFedPort    = 17314
	splitAdminPort  = 17320 // + the sidecar's index
	splitAppPort    = 18080 // on x.y.2.<index>
)

// splitCluster is one cluster: a folder source, a trust plane, a
// federation, a Merger (local model + imports + Gateway API routes) and a
// control plane, on loopback 127.<octet>.0.0/16.
type splitCluster struct {
	name       string
	octet      int // the second octet of the cluster's addresses
	td         spiffeid.TrustDomain
	dir, files string
	plane      *trustplane.Plane
	fedLn      net.Listener
	roots      string
	tokens     map[string]string // workload -> token file
	reg        *prometheus.Registry
	merger     *Merger
	fed        *Federation
	cp         *ControlPlane
	sidecars   int
}

// ip is 127.<octet>.<sub>.<host>.
func (c *splitCluster) ip(sub, host int) string {
	return fmt.Sprintf("127.%d.%d.%d", c.octet, sub, host)
}

func newSplitCluster(t *testing.T, name string, octet int, workloads ...string) *splitCluster {
	t.Helper()
	c := &splitCluster{name: name, octet: octet, td: spiffeid.RequireTrustDomainFromString(name + ".local"),
		dir: t.TempDir(), files: t.TempDir(), tokens: map[string]string{}, reg: prometheus.NewRegistry()}
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
	cpIP := c.ip(0, 1)
	c.plane, err = trustplane.Start(trustplane.Options{TrustDomain: c.td, CADir: t.TempDir(),
		IssuerAddress: fmt.Sprintf("%s:%d", cpIP, splitIssuerPort), BundleAddress: fmt.Sprintf("%s:%d", cpIP, splitBundlePort),
		Authenticator: authn, Registerer: c.reg, Logger: testLogger(t, name)})
	if err != nil {
		t.Fatal(err)
	}
	c.roots = filepath.Join(c.files, "roots.pem")
	if err := os.WriteFile(c.roots, c.plane.RootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if c.fedLn, err = net.Listen("tcp", fmt.Sprintf("%s:%d", cpIP, splitFedPort)); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *splitCluster) peerOf(t *testing.T) FederationPeer {
	t.Helper()
	b, err := x509bundle.Parse(c.td, c.plane.RootsPEM())
	if err != nil {
		t.Fatal(err)
	}
	return FederationPeer{Cluster: c.name, TrustDomain: c.td, Address: c.fedLn.Addr().String(),
		BundleURL: c.plane.BundleURL(), Bootstrap: spiffebundle.FromX509Bundle(b)}
}

// run wires c as `causeway control-plane --mtls --federation-listen
// --peer` does and runs it until t's cleanup.
func (c *splitCluster) run(t *testing.T, ctx context.Context, peer *splitCluster) {
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
		OnImports: c.merger.SetImports, Tune: fastReconnect, Registerer: c.reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c.cp, err = New(Options{Cluster: c.name, Network: "flat", XDSAddress: fmt.Sprintf("%s:%d", c.ip(0, 1), splitXDSPort),
		Debounce: 10 * time.Millisecond, Registry: c.reg, Logger: log,
		Translate: xds.TranslateOptions{ListenerIP: c.ip(0, 1), EphemeralPorts: true, MTLS: &xds.MTLS{Bundles: c.plane.Bundles},
			Ingress: &xds.IngressOptions{Address: c.gatewayAddress}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	go func() { _ = c.plane.Run(ctx, c.cp.Republish); done <- struct{}{} }()
	go func() { _ = c.fed.Run(ctx); done <- struct{}{} }()
	go func() { _ = c.cp.Run(ctx, c.merger); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
	})
}

// gatewayAddress is xds.IngressOptions.Address: Gateway infra/gw is on
// x.y.3.1, and no other Gateway has an address.
func (c *splitCluster) gatewayAddress(namespace, name string) string {
	if namespace == "infra" && name == "gw" {
		return c.ip(3, 1)
	}
	return ""
}

// sidecar starts workload's sidecar (admin on a fixed port of the
// cluster's address); mod adjusts its configuration.
func (c *splitCluster) sidecar(t *testing.T, ctx context.Context, workload string, mod func(*runner.Config)) *runner.Process {
	t.Helper()
	cfg := runner.DefaultConfig()
	cfg.XDS, cfg.NodeID = c.cp.Addr(), workload+".shop."+c.name
	cfg.Admin = fmt.Sprintf("%s:%d", c.ip(0, 1), splitAdminPort+c.sidecars)
	c.sidecars++
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
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

// serveWorkload runs the application of workload web in c (an HTTP server
// on x.y.2.1 that answers with its cluster's name) behind its sidecar,
// whose inbound listener takes the pod IP x.y.1.1:8080.
func (c *splitCluster) serveWorkload(t *testing.T, ctx context.Context, workload string) *runner.Process {
	t.Helper()
	app := fmt.Sprintf("%s:%d", c.ip(2, 1), splitAppPort)
	ln, err := net.Listen("tcp", app)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, c.name)
	})}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return c.sidecar(t, ctx, workload, func(cfg *runner.Config) {
		cfg.InboundIP, cfg.InboundPorts = c.ip(1, 1), "8080="+app
	})
}

// splitRoute is the GAMMA route under test, with the objects it refers
// to, as the Gateway API controller reads them from east's apiserver:
// the Service web (its parent and first backend) and the ServiceImport
// web (the MCS controller's object for the service the clusterset
// exports; its second backend).
const splitRoute = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: web, namespace: shop}
spec: {type: ClusterSetIP, ports: [{name: http, port: 8080, protocol: TCP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 8080}]
  rules:
  - backendRefs:
    - {name: web, port: 8080, weight: 90}
    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: web, port: 8080, weight: 10}
`

// splitIngress is the same split on an ingress Gateway (north-south):
// Gateway infra/gw of the causeway class, port 8081, and an HTTPRoute
// attached to it with the same backends.
const splitIngress = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: causeway}
spec: {controllerName: causeway.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: causeway
  listeners:
  - {name: http, port: 8081, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-ingress, namespace: shop}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - backendRefs:
    - {name: web, port: 8080, weight: 90}
    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: web, port: 8080, weight: 10}
`

const webExport = `apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: web, namespace: shop}
`

// nodeYAML is one node of a cluster, in region/zone.
func nodeYAML(region, zone string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {topology.kubernetes.io/region: %s, topology.kubernetes.io/zone: %s}}
`, region, zone)
}

// translateRoutes runs the Gateway API translation on doc (what
// gateway/controller does with its listers), checks that each of the
// routes was accepted by every parent with its references resolved, and
// returns the route tables, which must be tables.
func translateRoutes(t *testing.T, doc string, routes, tables int) []model.RouteTable {
	t.Helper()
	in, err := gateway.DecodeYAML([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	out, err := gateway.Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.HTTPRoutes) != routes {
		t.Fatalf("route statuses: %+v, want %d", out.HTTPRoutes, routes)
	}
	for _, r := range out.HTTPRoutes {
		for _, p := range r.Status.Parents {
			for _, c := range p.Conditions {
				if (c.Type == string(gatewayv1.RouteConditionAccepted) || c.Type == string(gatewayv1.RouteConditionResolvedRefs)) && c.Status != "True" {
					t.Fatalf("HTTPRoute %s: %s=%s %s: %s", r.Name, c.Type, c.Status, c.Reason, c.Message)
				}
			}
		}
	}
	if len(out.Routes) != tables {
		t.Fatalf("route tables: %d, want %d", len(out.Routes), tables)
	}
	return out.Routes
}

// fileSize is the size of the file at path (0 when it does not exist yet).
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// logEntriesFrom parses the complete JSON lines of the access log at path
// from byte offset on.
func logEntriesFrom(t *testing.T, path string, offset int64) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = b[offset:]
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		return nil
	}
	var out []map[string]any
	for _, line := range bytes.Split(b, []byte("\n")) {
		var e map[string]any
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("access log %s: %v", path, err)
		}
		out = append(out, e)
	}
	return out
}

// binomialTolerance is the half-width of the band around n·p that a
// binomial count stays in except with probability about 6e-5: four
// standard deviations, √(n·p·(1−p)).
func binomialTolerance(n int, p float64) float64 {
	return 4 * math.Sqrt(float64(n)*p*(1-p))
}

// TestGAMMASplitAcrossClusters: east and west both run web (an app that
// answers with its cluster's name, behind its sidecar); only west exports
// it, so east's ServiceImport web is backed by west alone. An HTTPRoute
// in east with parentRef Service web splits 90 to the Service web (east's
// endpoints: the cluster.local EDS cluster) and 10 to the ServiceImport web
// (the clusterset EDS cluster: every exporting cluster's endpoints, east's
// left out because east does not export web). 1,000 requests through
// east's client sidecar: every one succeeds and about 10% reach west.
//
// Then east exports web too: the ServiceImport is backed by both
// clusters, and the sidecar's locality priorities (west is another
// region) keep the import's 10% in east: no request leaves east while its
// endpoint is healthy. A split meant to send traffic to another cluster
// must name a backend only that cluster backs.
func TestGAMMASplitAcrossClusters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	east := newSplitCluster(t, "east", 76, "client", "web", "ingress")
	west := newSplitCluster(t, "west", 77, "web")
	// West is another region (node r2/z1); its web is exported.
	write(t, east.dir, "nodes.yaml", nodeYAML("r1", "z1"))
	write(t, east.dir, "web.yaml", workloadYAML("web", "node-1", east.ip(1, 1), 8080))
	write(t, west.dir, "nodes.yaml", nodeYAML("r2", "z1"))
	write(t, west.dir, "web.yaml", workloadYAML("web", "node-1", west.ip(1, 1), 8080))
	write(t, west.dir, "export.yaml", webExport)
	east.run(t, ctx, west)
	west.run(t, ctx, east)
	eastWeb := east.serveWorkload(t, ctx, "web")
	westWeb := west.serveWorkload(t, ctx, "web")
	client := east.sidecar(t, ctx, "client", nil)

	waitUntil(t, 20*time.Second, "west's web imported into east's model", func() bool {
		m := east.cp.Model()
		if m == nil {
			return false
		}
		sv, ok := m.Service("shop", "web")
		if !ok || !sv.Imported || sv.Exported {
			return false
		}
		for _, e := range sv.Endpoints {
			if e.Cluster == "west" {
				return true
			}
		}
		return false
	})
	var outbound string
	waitUntil(t, 20*time.Second, "the client's outbound listener and both web inbound listeners", func() bool {
		a := client.Proxy.ListenerAddr("outbound_8080")
		in := xds.InboundName(8080)
		if a != nil && eastWeb.Proxy.ListenerAddr(in) != nil && westWeb.Proxy.ListenerAddr(in) != nil {
			outbound = a.String()
			return true
		}
		return false
	})
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	// call sends one request for web (the cluster.local host, which the
	// route's parentRef Service web governs) and returns the status and the
	// cluster that answered.
	call := func(path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+outbound+path, nil)
		req.Host = "web"
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// measure sends n requests and counts the answers per cluster; any
	// failure fails the test. It also counts, from the client sidecar's
	// access log, the upstream cluster each request was routed to, and
	// fails on a retried request (every first attempt must succeed). Each
	// measurement's requests have a path of their own, which picks their
	// lines out of the log.
	clientLog := filepath.Join(east.files, "client.log")
	runs := 0
	measure := func(t *testing.T, n int) (answers, upstreams map[string]int) {
		t.Helper()
		runs++
		prefix := fmt.Sprintf("/run-%d/", runs)
		from := fileSize(t, clientLog)
		answers = map[string]int{}
		for i := range n {
			code, body := call(prefix + strconv.Itoa(i))
			if code != 200 {
				t.Fatalf("request %d of %d: %d %q, want 200", i+1, n, code, body)
			}
			answers[body]++
		}
		var entries []map[string]any
		waitUntil(t, 10*time.Second, fmt.Sprintf("%d access-log lines from the client sidecar", n), func() bool {
			entries = slices.DeleteFunc(logEntriesFrom(t, clientLog, from), func(e map[string]any) bool {
				path, _ := e["path"].(string)
				return !strings.HasPrefix(path, prefix)
			})
			return len(entries) >= n
		})
		if len(entries) != n {
			t.Fatalf("%d access-log lines for %s*, want %d", len(entries), prefix, n)
		}
		upstreams = map[string]int{}
		for _, e := range entries {
			upstreams[fmt.Sprint(e["upstream_cluster"])]++
			if r, _ := e["retries"].(float64); r != 0 || e["response_code"] != float64(200) {
				t.Errorf("client access log: %v, want a 200 without retries", e)
			}
		}
		return answers, upstreams
	}
	local, set := xds.ClusterName("shop", "web", 8080), xds.ClustersetName("shop", "web", 8080)

	waitUntil(t, 20*time.Second, "web answered by east through both sidecars", func() bool {
		code, body := call("/")
		return code == 200 && body == "east"
	})
	t.Run("without the route: web stays in east", func(t *testing.T) {
		got, up := measure(t, 100)
		if got["east"] != 100 || up[local] != 100 {
			t.Errorf("answers %v, upstream clusters %v, want all 100 from east through %s", got, up, local)
		}
	})

	east.merger.SetRoutes(translateRoutes(t, splitRoute, 1, 1))
	// The route is programmed once a request reaches west (and the
	// clusterset cluster has west's endpoint).
	waitUntil(t, 20*time.Second, "the split to send a request to west", func() bool {
		code, body := call("/")
		return code == 200 && body == "west"
	})

	const n, p = 1000, 0.10
	t.Run("90/10 Service/ServiceImport: about 10% of 1,000 requests reach west", func(t *testing.T) {
		t0 := time.Now()
		got, up := measure(t, n)
		tol := binomialTolerance(n, p)
		remote := got["west"]
		t.Logf("split measured over %d requests in %s: east %d, west %d (%.1f%%; expected %d ± %.0f); upstream clusters %v",
			n, time.Since(t0).Round(time.Millisecond), got["east"], remote, 100*float64(remote)/n, int(n*p), tol, up)
		if got["east"]+remote != n {
			t.Errorf("answers %v: some came from neither cluster", got)
		}
		if math.Abs(float64(remote)-n*p) > tol {
			t.Errorf("west answered %d of %d, want %d ± %.0f (binomial, 4σ)", remote, n, int(n*p), tol)
		}
		// The clusterset cluster holds west's endpoint only (east does not
		// export web): each request routed there is answered by west.
		if up[set] != remote || up[local] != got["east"] {
			t.Errorf("upstream clusters %v, answers %v: want %s to carry exactly west's answers", up, got, set)
		}
		e := lastLogEntry(t, filepath.Join(west.files, "web.log"))
		if want := "spiffe://east.local/ns/shop/sa/client"; e["source_identity"] != want {
			t.Errorf("west's web inbound access log: %v, want source_identity %s (mesh mTLS across trust domains)", e, want)
		}
	})

	t.Run("the same split on an ingress Gateway", func(t *testing.T) {
		ingress := east.sidecar(t, ctx, "ingress", func(c *runner.Config) { c.Mode, c.Gateways = "ingress", "*" })
		east.merger.SetRoutes(translateRoutes(t, splitRoute+"---\n"+splitIngress, 2, 2))
		waitUntil(t, 20*time.Second, "the ingress listener", func() bool {
			return ingress.Proxy.ListenerAddr(xds.IngressListenerName("infra", "gw", 8081)) != nil
		})
		url := fmt.Sprintf("http://%s:8081/", east.ip(3, 1))
		get := func() (int, string) {
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			resp, err := hc.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		seen := map[string]bool{}
		waitUntil(t, 20*time.Second, "answers from both clusters through the ingress", func() bool {
			if code, body := get(); code == 200 {
				seen[body] = true
			}
			return seen["east"] && seen["west"]
		})
		got := map[string]int{}
		for i := range n {
			code, body := get()
			if code != 200 {
				t.Fatalf("request %d of %d through the ingress: %d %q, want 200", i+1, n, code, body)
			}
			got[body]++
		}
		t.Logf("ingress split over %d requests: east %d, west %d", n, got["east"], got["west"])
		if got["east"]+got["west"] != n || math.Abs(float64(got["west"])-n*p) > binomialTolerance(n, p) {
			t.Errorf("answers %v through the ingress, want %d ± %.0f from west", got, int(n*p), binomialTolerance(n, p))
		}
	})

	t.Run("east exports web too: the ServiceImport's share stays in east by locality", func(t *testing.T) {
		write(t, east.dir, "export.yaml", webExport)
		waitUntil(t, 20*time.Second, "web exported in east's model", func() bool {
			sv, ok := east.cp.Model().Service("shop", "web")
			return ok && sv.Exported && sv.Imported
		})
		// The clusterset assignment now holds east's endpoint at priority
		// 0 and west's (another region) at 2: once pushed, no request
		// leaves east. Wait for a run of answers from east only.
		streak := 0
		waitUntil(t, 20*time.Second, "100 answers in a row from east", func() bool {
			if code, body := call("/"); code == 200 && body == "east" {
				streak++
			} else {
				streak = 0
			}
			return streak >= 100
		})
		got, up := measure(t, n)
		t.Logf("with web exported by both clusters: east %d, west %d of %d; upstream clusters %v", got["east"], got["west"], n, up)
		if got["east"] != n {
			t.Errorf("answers %v, want all %d from east (the clusterset cluster prefers east's healthy endpoint)", got, n)
		}
		// The route still splits: about 10% go through the clusterset
		// cluster, which now answers from east.
		if math.Abs(float64(up[set])-n*p) > binomialTolerance(n, p) {
			t.Errorf("upstream clusters %v, want about %d through %s (the route must still split)", up, int(n*p), set)
		}
	})
}

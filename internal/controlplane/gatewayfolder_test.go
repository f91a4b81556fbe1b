package controlplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/runner"
)

// Loopback for the Gateway-API-in-the-folder test: 127.79.0.0/16, fixed
// ports. The control plane and the sidecar on 127.79.0.1, the backends on
// 127.79.2.<n>.
const (
	gwFolderXDS   = "127.79.0.1:17910"
	gwFolderAdmin = "127.79.0.1:17920"
	gwFolderApp   = 18080
)

// gwFolderService is Service <name> in shop (port 8080) with one endpoint,
// the backend at 127.79.2.<host>:18080.
func gwFolderService(name string, host int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: shop}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s, namespace: shop, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{name: http, port: %[3]d}]
endpoints:
- addresses: [127.79.2.%[2]d]
  nodeName: node-z1
  conditions: {ready: true}
`, name, host, gwFolderApp)
}

// canaryRoute (GAMMA, parentRef the Service web) sends requests with
// x-canary: yes to web-v2; the rest stay on web.
const canaryRoute = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-canary, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 8080}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: web-v2, port: 8080}]
  - backendRefs: [{name: web, port: 8080}]
`

// TestGatewayAPIFromTheFolder: in local mode an HTTPRoute written into the
// folder changes what a connected sidecar does; an undecodable route file
// and a route with an unresolved backend are Problems that leave the good
// route serving; removing the route file restores the default.
func TestGatewayAPIFromTheFolder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, name := range []string{"v1", "v2"} {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.79.2.%d:%d", i+1, gwFolderApp))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
		done := make(chan struct{})
		go func() { _ = srv.Serve(ln); close(done) }()
		t.Cleanup(func() { srv.Close(); <-done })
	}
	dir := t.TempDir()
	write(t, dir, "nodes.yaml", nodesYAML)
	write(t, dir, "web.yaml", gwFolderService("web", 1))
	write(t, dir, "web-v2.yaml", gwFolderService("web-v2", 2))

	// Wired as `causeway control-plane --source folder` does.
	reg := prometheus.NewRegistry()
	log := testLogger(t, "east")
	var gf *GatewayFolder // set before the folder's first scan
	folder, err := discovery.NewFolder(discovery.FolderOptions{Dir: dir, Interval: 20 * time.Millisecond, Logger: log,
		OnFiles:      func(files []discovery.File) { gf.Feed(files) },
		BuildOptions: discovery.BuildOptions{Cluster: "east", Network: "net1", TrustDomain: "east.local"}})
	if err != nil {
		t.Fatal(err)
	}
	merger, err := NewMerger(MergerOptions{Local: folder, Cluster: "east", Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	gf, err = NewGatewayFolder(GatewayFolderOptions{Dir: dir, OnRoutes: merger.SetRoutes, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := New(Options{Cluster: "east", Network: "net1", XDSAddress: gwFolderXDS, Debounce: 10 * time.Millisecond, Registry: reg, Logger: log,
		Translate: xds.TranslateOptions{ListenerIP: "127.79.0.1", EphemeralPorts: true}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = cp.Run(runCtx, merger); close(done) }()
	defer func() { stop(); <-done }()

	cfg := runner.DefaultConfig()
	cfg.XDS, cfg.Admin, cfg.NodeID = cp.Addr(), gwFolderAdmin, "client.shop"
	cfg.Workload, cfg.Namespace, cfg.Cluster, cfg.Network, cfg.Locality = "client", "shop", "east", "net1", "r1/z1"
	cfg.AccessLog, cfg.DrainTimeout = "off", 2*time.Second
	p, err := runner.Start(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()

	var outbound string
	waitUntil(t, 10*time.Second, "listener outbound_8080", func() bool {
		if a := p.Proxy.ListenerAddr("outbound_8080"); a != nil {
			outbound = a.String()
			return true
		}
		return false
	})
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	// call sends a request for web, with x-canary: yes when canary.
	call := func(canary bool) string {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+outbound+"/", nil)
		req.Host = "web"
		if canary {
			req.Header.Set("x-canary", "yes")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	// both checks n canary and n plain requests.
	both := func(t *testing.T, n int, canary, plain string) {
		t.Helper()
		for range n {
			if got := call(true); got != canary {
				t.Fatalf("with x-canary: %q, want %q", got, canary)
			}
			if got := call(false); got != plain {
				t.Fatalf("without x-canary: %q, want %q", got, plain)
			}
		}
	}
	// problems is /problems: the folder's, then the Gateway API's.
	problems := func() []string {
		var out []string
		for _, p := range append(folder.Problems(), gf.Problems()...) {
			out = append(out, p.Error())
		}
		return out
	}
	waitUntil(t, 10*time.Second, "traffic to web", func() bool { return call(false) == "v1" })

	t.Run("without a route everything goes to web", func(t *testing.T) {
		both(t, 10, "v1", "v1")
	})
	t.Run("a route in the folder sends the canary to web-v2", func(t *testing.T) {
		write(t, dir, "route.yaml", canaryRoute)
		waitUntil(t, 10*time.Second, "the canary to reach v2", func() bool { return call(true) == "v2" })
		both(t, 10, "v2", "v1")
		if ps := problems(); len(ps) != 0 {
			t.Fatalf("problems: %q, want none", ps)
		}
	})
	t.Run("bad route files are reported and the good route keeps serving", func(t *testing.T) {
		bad := strings.Replace(canaryRoute, "name: web-canary", "name: broken", 1)
		bad = strings.Replace(bad, "rules:", "rulez:", 1)
		write(t, dir, "broken.yaml", bad)
		missing := strings.Replace(canaryRoute, "name: web-canary", "name: missing", 1)
		missing = strings.Replace(missing, "name: web-v2", "name: nowhere", 1)
		missing = strings.Replace(missing, "x-canary", "x-other", 1)
		write(t, dir, "missing.yaml", missing)
		var got []string
		waitUntil(t, 10*time.Second, "both problems", func() bool { got = problems(); return len(got) == 2 })
		wantPrefix := []string{
			"broken.yaml: document 1: HTTPRoute shop/broken: does not decode as gateway.networking.k8s.io/v1 HTTPRoute: json: unknown field \"rulez\"",
			"missing.yaml: HTTPRoute shop/missing: parentRef Service web:8080: ResolvedRefs=False BackendNotFound: ",
		}
		for i, w := range wantPrefix {
			if !strings.HasPrefix(got[i], w) {
				t.Fatalf("problems:\n%s\nwant prefixes:\n%s", strings.Join(got, "\n"), strings.Join(wantPrefix, "\n"))
			}
		}
		if !strings.Contains(got[0], "file not applied") {
			t.Errorf("problem %q: want it to say the file is not applied", got[0])
		}
		both(t, 10, "v2", "v1")
		// A bad edit of the good route's file keeps its last good contents,
		// and nothing of the file is applied (not its Service either).
		write(t, dir, "route.yaml", strings.Replace(canaryRoute, "rules:", "rulez:", 1)+"---\n"+gwFolderService("web-v3", 3))
		waitUntil(t, 10*time.Second, "the bad edit to be reported", func() bool {
			got = problems()
			return len(got) == 3 && strings.HasPrefix(got[1], "route.yaml: document 1: HTTPRoute shop/web-canary: does not decode") &&
				strings.HasSuffix(got[1], "(file not applied; its last good contents keep serving)")
		})
		both(t, 10, "v2", "v1")
		if _, ok := cp.Model().Service("shop", "web-v3"); ok {
			t.Fatal("Service web-v3 of the rejected route.yaml is in the model")
		}
		write(t, dir, "route.yaml", canaryRoute)
		os.Remove(filepath.Join(dir, "broken.yaml"))
		os.Remove(filepath.Join(dir, "missing.yaml"))
		waitUntil(t, 10*time.Second, "problems to clear", func() bool { return len(problems()) == 0 })
	})
	t.Run("removing the route restores the default", func(t *testing.T) {
		os.Remove(filepath.Join(dir, "route.yaml"))
		waitUntil(t, 10*time.Second, "the canary to go back to v1", func() bool { return call(true) == "v1" })
		both(t, 10, "v1", "v1")
	})
}

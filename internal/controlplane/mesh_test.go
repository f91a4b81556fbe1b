package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/trustplane"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/runner"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// TestMeshMTLSFromTheControlPlane is mesh mTLS with nothing hand-written
// between the parts: a control plane (folder source, TranslateOptions.MTLS)
// serves two real sidecars (runner.Start), each of which makes its own key
// and gets its SVID from the SVID issuer; the control plane sends the trust
// bundle over SDS, mTLS clusters to the caller and an inbound mTLS listener
// with the namespace's AuthorizationPolicy to the server.
func TestMeshMTLSFromTheControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, files := t.TempDir(), t.TempDir() // the folder source's, and the sidecars' files
	td := spiffeid.RequireTrustDomainFromString("east.local")
	clientID := spiffeid.RequireFromString("spiffe://east.local/ns/shop/sa/client")
	cartID := spiffeid.RequireFromString("spiffe://east.local/ns/shop/sa/cart")

	// The cluster's trust plane: CA, bundle, and the SVID issuer over TLS
	// with the control plane's own SVID, as `causeway control-plane --mtls`
	// runs it.
	tokens := map[string]spiffeid.ID{"tok-client": clientID, "tok-cart": cartID}
	plane, err := trustplane.Start(trustplane.Options{TrustDomain: td, CADir: t.TempDir(), IssuerAddress: "127.0.0.1:0",
		Authenticator: issuer.AuthenticatorFunc(func(_ context.Context, tok string) (spiffeid.ID, error) {
			if id, ok := tokens[tok]; ok {
				return id, nil
			}
			return spiffeid.ID{}, issuer.ErrInvalidToken
		})})
	if err != nil {
		t.Fatal(err)
	}
	auth := plane.Authority
	bundleFile := filepath.Join(files, "bundle.pem")
	if err := os.WriteFile(bundleFile, plane.RootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	for tok := range tokens {
		if err := os.WriteFile(filepath.Join(files, tok), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The cart workload: its app, and the address its sidecar's inbound
	// listener takes (the endpoint the model advertises): port 8080 on a
	// loopback IP of its own, so no other test can hold it.
	app := startHTTP(t, "cart")
	podIP, inbound := podLoopbackIP(), 8080
	write(t, dir, "nodes.yaml", nodesYAML)
	write(t, dir, "cart.yaml", workloadYAML("cart", "node-z1", podIP, inbound)+`---
apiVersion: security.causeway.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: cart-api, namespace: shop}
spec:
  targetRefs: [{kind: Service, name: cart}]
  action: Allow
  rules:
  - from: [{namespace: shop}]
    to: [{paths: ["/api/*"]}]
`)

	folder, err := discovery.NewFolder(discovery.FolderOptions{Dir: dir, Interval: 20 * time.Millisecond,
		BuildOptions: discovery.BuildOptions{Cluster: "east", Network: "net1", TrustDomain: td.Name()}})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := New(Options{Cluster: "east", Network: "net1", Debounce: 10 * time.Millisecond,
		Translate: xds.TranslateOptions{EphemeralPorts: true, MTLS: &xds.MTLS{Bundles: plane.Bundles}}})
	if err != nil {
		t.Fatal(err)
	}
	cpCtx, cpCancel := context.WithCancel(ctx)
	cpDone, planeDone := make(chan error, 1), make(chan error, 1)
	go func() { cpDone <- cp.Run(cpCtx, folder) }()
	// A bundle change re-pushes every proxy's bundle secret.
	go func() { planeDone <- plane.Run(cpCtx, cp.Republish) }()
	t.Cleanup(func() { cpCancel(); <-cpDone; <-planeDone })

	sidecar := func(name, token string, mod func(*runner.Config)) (*runner.Process, string) {
		cfg := runner.DefaultConfig()
		cfg.XDS, cfg.Admin, cfg.NodeID = cp.Addr(), "127.0.0.1:0", name+".shop"
		cfg.Workload, cfg.Namespace, cfg.Cluster, cfg.Network, cfg.Locality = name, "shop", "east", "net1", "r1/z1"
		cfg.AccessLog, cfg.DrainTimeout = filepath.Join(files, name+".log"), 2*time.Second
		cfg.SVIDIssuer, cfg.SVIDTokenFile, cfg.TrustDomain, cfg.TrustBundle = plane.IssuerAddr(), filepath.Join(files, token), td.Name(), bundleFile
		if mod != nil {
			mod(&cfg)
		}
		p, err := runner.Start(ctx, cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Shutdown() })
		return p, cfg.AccessLog
	}
	cart, cartLog := sidecar("cart", "tok-cart", func(c *runner.Config) {
		c.InboundIP, c.InboundPorts = podIP, fmt.Sprintf("%d=127.0.0.1:%d", inbound, app.port)
	})
	client, _ := sidecar("client", "tok-client", nil)

	var outbound string
	waitUntil(t, 15*time.Second, "the client's outbound listener and the cart's inbound listener", func() bool {
		a, b := client.Proxy.ListenerAddr("outbound_8080"), cart.Proxy.ListenerAddr(xds.InboundName(uint32(inbound)))
		if a != nil && b != nil {
			outbound = a.String()
			return true
		}
		return false
	})
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	call := func(path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+outbound+path, nil)
		req.Host = "cart"
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitUntil(t, 15*time.Second, "a request through both sidecars", func() bool { c, _ := call("/api/items"); return c == 200 })

	t.Run("the cart sidecar saw the client's SPIFFE ID", func(t *testing.T) {
		e := lastLogEntry(t, cartLog)
		if e["source_identity"] != clientID.String() || e["path"] != "/api/items" {
			t.Errorf("cart's inbound access log: %v, want source_identity %s", e, clientID)
		}
	})
	t.Run("the AuthorizationPolicy applies on the inbound side", func(t *testing.T) {
		code, body := call("/admin")
		if code != 403 || !strings.Contains(body, "no ALLOW policy of authz-allow matched") {
			t.Errorf("GET /admin: %d %q, want 403 from the policy", code, body)
		}
	})
	t.Run("STRICT: a plaintext caller cannot reach the inbound port", func(t *testing.T) {
		resp, err := hc.Get(fmt.Sprintf("http://%s:%d/api/items", podIP, inbound))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("plaintext request got %d through a STRICT inbound listener", resp.StatusCode)
		}
	})
	t.Run("a PERMISSIVE namespace accepts plaintext, without an identity", func(t *testing.T) {
		write(t, dir, "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, annotations: {causeway.dev/mtls-mode: PERMISSIVE}}\n")
		// A new connection per call checks what the listener accepts; kept
		// holds one connection across the switch back to STRICT.
		fresh := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}
		kept := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
		defer kept.CloseIdleConnections()
		get := func(c *http.Client) int {
			resp, err := c.Get(fmt.Sprintf("http://%s:%d/api/items", podIP, inbound))
			if err != nil {
				return 0
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		plain := func() int { return get(fresh) }
		// The plaintext request reaches the listener but has no SPIFFE ID,
		// so the policy (callers from namespace shop) refuses it.
		waitUntil(t, 10*time.Second, "plaintext to be accepted and refused by the policy", func() bool { return plain() == 403 })
		if c, _ := call("/api/items"); c != 200 {
			t.Errorf("mTLS caller in PERMISSIVE mode: %d, want 200", c)
		}
		if c := get(kept); c != 403 {
			t.Fatalf("kept-alive plaintext request: %d, want 403 from the policy", c)
		}
		write(t, dir, "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
		waitUntil(t, 10*time.Second, "STRICT again", func() bool { return plain() == 0 })
		// The plaintext connection accepted in PERMISSIVE mode is refused
		// and closed now, not served.
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s:%d/api/items", podIP, inbound), nil)
		if resp, err := kept.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 403 || !strings.Contains(string(b), "requires mutual TLS (STRICT)") {
				t.Errorf("old plaintext connection after STRICT: %d %q, want 403 requiring mTLS", resp.StatusCode, b)
			}
		}
	})
	t.Run("a caller without a mesh SVID is refused", func(t *testing.T) {
		other, err := trust.NewSelfSignedCA(td, trust.CAOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := other.IssueSVID(clientID, time.Hour)
		cfg := tlsconfig.MTLSClientConfig(s, auth, tlsconfig.AuthorizeID(cartID))
		c := &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		defer c.CloseIdleConnections()
		if resp, err := c.Get(fmt.Sprintf("https://%s:%d/api/items", podIP, inbound)); err == nil {
			resp.Body.Close()
			t.Fatalf("an SVID from a CA outside the bundle got %d", resp.StatusCode)
		}
	})
	t.Run("a new root reaches the proxies over SDS (the trust plane calls Republish)", func(t *testing.T) {
		next, err := trust.NewSelfSignedCA(td, trust.CAOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := auth.Prepare(next); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, "both proxies to hold two roots", func() bool {
			return rootsIn(t, client) == 2 && rootsIn(t, cart) == 2
		})
		if c, body := call("/api/items"); c != 200 {
			t.Fatalf("after the bundle change: %d %q", c, body)
		}
	})
}

// rootsIn counts the roots of the bundle secret in p's /config_dump.
func rootsIn(t *testing.T, p *runner.Process) int {
	t.Helper()
	b, err := json.Marshal(p.Proxy.ConfigDump())
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Secrets []struct {
			Name         string                       `json:"name"`
			TrustDomains map[string][]json.RawMessage `json:"trust_domains"`
		} `json:"secrets"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("config dump: %v", err)
	}
	for _, s := range d.Secrets {
		if s.Name == trust.BundleSecretName {
			return len(s.TrustDomains["east.local"])
		}
	}
	return 0
}

// podLoopbackIP is a random address in 127.64.0.0/10: a "pod IP" on
// loopback that no other test binds.
func podLoopbackIP() string {
	return fmt.Sprintf("127.%d.%d.%d", 64+rand.IntN(64), rand.IntN(256), 1+rand.IntN(254))
}

func lastLogEntry(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	var e map[string]any
	if err := json.Unmarshal(lines[len(lines)-1], &e); err != nil {
		t.Fatalf("access log %s: %v", path, err)
	}
	return e
}

// workloadYAML is one Service (port 8080 named http) with one Pod (service
// account name, on node) and its EndpointSlice at podIP:port: a workload
// whose sidecar's inbound listener takes podIP:port.
func workloadYAML(name, node, podIP string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: %[1]s-0, namespace: shop}
spec: {serviceAccountName: %[1]s, nodeName: %[2]s}
status: {podIP: %[3]s}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s, namespace: shop, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{name: http, port: %[4]d}]
endpoints:
- addresses: [%[3]s]
  nodeName: %[2]s
  conditions: {ready: true}
  targetRef: {kind: Pod, name: %[1]s-0, namespace: shop}
`, name, node, podIP, port)
}

package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// mtlsClient calls the proxy presenting cert (nil: no client certificate)
// and checks the server's SPIFFE ID.
func mtlsClient(t testing.TB, ca *testCA, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{
		RootCAs:            ca.pool,
		InsecureSkipVerify: true, // SVIDs have URI SANs only: verified below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs.PeerCertificates, &config.Secret{Roots: ca.pool}, exact(serverID), false)
		},
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func sm(kind config.StringKind, v string) *config.StringMatch {
	return &config.StringMatch{Kind: kind, Value: v}
}

func principalID(kind config.StringKind, v string) config.Principal {
	return config.Principal{Authenticated: &config.PrincipalName{Name: sm(kind, v)}}
}

// shopPolicies is what the control plane would send for: deny /admin to
// everyone; allow GET from namespace a of c1.test, and POST /orders only
// from the exact client ID; allow anything from trust domain partner.test.
func shopPolicies() []*config.RBAC {
	return []*config.RBAC{
		{Name: "deny", Action: config.RBACDeny, Policies: []config.RBACPolicy{{
			Name:        "shop/no-admin",
			Permissions: []config.Permission{{URLPath: sm(config.StringPrefix, "/admin")}},
			Principals:  []config.Principal{{Any: true}},
		}}},
		{Name: "allow", Action: config.RBACAllow, Policies: []config.RBACPolicy{
			{
				Name:        "shop/ns-a-read",
				Permissions: []config.Permission{{Header: &config.HeaderMatch{Name: ":method", Value: config.StringMatch{Value: "GET"}}}},
				Principals:  []config.Principal{principalID(config.StringPrefix, "spiffe://c1.test/ns/a/")},
			},
			{
				Name: "shop/client-orders",
				Permissions: []config.Permission{{And: []config.Permission{
					{Header: &config.HeaderMatch{Name: ":method", Value: config.StringMatch{Value: "POST"}}},
					{URLPath: sm(config.StringExact, "/orders")},
				}}},
				Principals: []config.Principal{principalID(config.StringExact, clientID)},
			},
			{
				Name:        "shop/partner-td",
				Permissions: []config.Permission{{Any: true}},
				Principals:  []config.Principal{principalID(config.StringPrefix, "spiffe://partner.test/")},
			},
		}},
	}
}

func TestAuthorizationPolicyHTTP(t *testing.T) {
	ca := newTestCA(t)
	serverCert := ca.leaf(t, serverID, 20)
	be := newBackend(t, "app", false)
	s := inboundSnap(ca, serverCert, be.addr())
	l := s.s.Listeners[0]
	l.TLS.MatchSANs = nil // authorization, not the handshake, decides
	l.HTTP.RBAC = shopPolicies()
	mo, reg := withMetrics(t)
	lo, logs := withAccessLog()
	_, addr := start(t, s, mo, lo)
	url := "https://" + addr("in")

	ids := map[string]*http.Client{
		"client":       mtlsClient(t, ca, ca.leaf(t, clientID, 30)),
		"a/other":      mtlsClient(t, ca, ca.leaf(t, "spiffe://c1.test/ns/a/sa/other", 31)),
		"b/other":      mtlsClient(t, ca, ca.leaf(t, "spiffe://c1.test/ns/b/sa/other", 32)),
		"partner":      mtlsClient(t, ca, ca.leaf(t, "spiffe://partner.test/ns/x/sa/y", 33)),
		"lookalike-td": mtlsClient(t, ca, ca.leaf(t, "spiffe://c1.test.evil/ns/a/sa/client", 34)),
		"no-cert":      mtlsClient(t, ca, nil),
	}
	// The listener requires a client certificate: a client without one
	// never gets a response.
	if _, err := ids["no-cert"].Get(url + "/"); err == nil {
		t.Error("a client without a certificate got through a listener that requires one")
	}

	for _, tc := range []struct {
		who, method, path string
		want              int
		reason            string // substring of the access log reason and body
	}{
		{"client", "GET", "/items", 200, ""},
		{"a/other", "GET", "/items", 200, ""},
		{"a/other", "POST", "/orders", 403, "no ALLOW policy of allow matched"},
		{"client", "POST", "/orders", 200, ""},
		{"client", "POST", "/orders/1", 403, "no ALLOW policy"},
		{"b/other", "GET", "/items", 403, "no ALLOW policy"},
		{"client", "GET", "/admin/users", 403, "denied by policy shop/no-admin of deny"},
		{"client", "GET", "/items/../admin", 403, "shop/no-admin"}, // dot segments cannot dodge a deny
		{"client", "GET", "/.//admin", 403, "shop/no-admin"},
		{"client", "GET", "/%2e%2e/admin", 403, "shop/no-admin"},
		{"partner", "DELETE", "/items/1", 200, ""},
		{"partner", "GET", "/admin", 403, "shop/no-admin"},
		{"lookalike-td", "GET", "/items", 403, "no ALLOW policy"},
	} {
		t.Run(tc.who+" "+tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, url+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = tc.path // send the path exactly as written
			before := be.hits.Load()
			r := do(t, ids[tc.who], req)
			if r.code != tc.want {
				t.Fatalf("got %d %q, want %d", r.code, r.body, tc.want)
			}
			if tc.want != 403 {
				return
			}
			if be.hits.Load() != before {
				t.Error("a denied request reached the app")
			}
			if !strings.Contains(r.body, tc.reason) {
				t.Errorf("body %q does not give the reason %q", r.body, tc.reason)
			}
			es := logs.entries(t)
			e := es[len(es)-1]
			if e["response_flags"] != "UAEX" || !strings.Contains(e["reason"].(string), tc.reason) {
				t.Errorf("access log flags %v reason %v, want UAEX and %q", e["response_flags"], e["reason"], tc.reason)
			}
		})
	}
	if v := metric(t, reg, "authz_denied_total", "listener", "in", "policy", "shop/no-admin"); v != 5 {
		t.Errorf("authz_denied_total{policy=shop/no-admin} = %v, want 5", v)
	}
	if v := metric(t, reg, "authz_denied_total", "listener", "in", "policy", "(no allow match)"); v != 4 {
		t.Errorf("authz_denied_total{policy=(no allow match)} = %v, want 4", v)
	}
}

func TestAuthorizationDefaultDenyAndGRPCStatus(t *testing.T) {
	ca := newTestCA(t)
	be := newBackend(t, "app", false)
	s := inboundSnap(ca, ca.leaf(t, serverID, 20), be.addr())
	s.s.Listeners[0].HTTP.RBAC = []*config.RBAC{{Name: "allow-nothing", Action: config.RBACAllow}}
	_, addr := start(t, s)
	c := mtlsClient(t, ca, ca.leaf(t, clientID, 30))
	r := get(t, c, "https://"+addr("in")+"/")
	if r.code != 403 || !strings.Contains(r.body, "no ALLOW policy of allow-nothing matched") {
		t.Errorf("default deny: got %d %q, want 403 naming the filter", r.code, r.body)
	}
	req, _ := http.NewRequest("POST", "https://"+addr("in")+"/pkg.Svc/Method", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if g := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status"); g != "7" {
		t.Errorf("gRPC call denied with grpc-status %q, want 7 (PERMISSION_DENIED)", g)
	}
	if be.hits.Load() != 0 {
		t.Errorf("the app saw %d requests under default deny", be.hits.Load())
	}
}

// tcpEchoServer echoes each connection until the client half-closes.
func tcpEchoServer(t *testing.T) (string, func() int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		hits int
	)
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			hits++
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return hits }
}

func TestAuthorizationTCP(t *testing.T) {
	ca := newTestCA(t)
	echo, hits := tcpEchoServer(t)
	s := newSnap().cluster(&config.Cluster{Name: "db"}, loc("r1", "z1", 0, echo))
	s.s.Listeners = []*config.Listener{{
		Name: "db-in", Address: "127.0.0.1:0", Direction: config.Inbound,
		TLS: &config.DownstreamTLS{CertSecret: "server", ValidationSecret: "ca", RequireClientCert: true},
		TCP: &config.TCPListener{Cluster: "db", RBAC: []*config.RBAC{{Name: "db", Action: config.RBACAllow, Policies: []config.RBACPolicy{{
			Name:        "db/app-only",
			Permissions: []config.Permission{{Any: true}},
			Principals:  []config.Principal{principalID(config.StringExact, clientID)},
		}}}}},
	}}
	s.s.Secrets["ca"] = ca.rootsSecret()
	s.s.Secrets["server"] = &config.Secret{Name: "server", Cert: ca.leaf(t, serverID, 20)}
	mo, reg := withMetrics(t)
	lo, logs := withAccessLog()
	_, addr := start(t, s, mo, lo)

	session := func(id string) (string, error) {
		cert := ca.leaf(t, id, 40)
		c, err := tls.Dial("tcp", addr("db-in"), &tls.Config{Certificates: []tls.Certificate{*cert}, RootCAs: ca.pool, InsecureSkipVerify: true})
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			return "", err
		}
		c.CloseWrite()
		b, err := io.ReadAll(c)
		return string(b), err
	}
	if got, err := session(clientID); got != "ping\n" {
		t.Fatalf("allowed identity: echoed %q (err %v), want ping", got, err)
	}
	before := hits()
	if got, _ := session("spiffe://c1.test/ns/x/sa/intruder"); got != "" {
		t.Errorf("denied identity got %q back", got)
	}
	if hits() != before {
		t.Error("a denied TCP connection reached the upstream")
	}
	// Each session is logged when it ends; the allowed one's entry may
	// come after the denied one's.
	eventually(t, 5*time.Second, "the denial is logged and counted", func() bool {
		es := logs.entries(t)
		if len(es) != 2 {
			return false
		}
		denied := 0
		for _, e := range es {
			if reason, _ := e["reason"].(string); e["response_flags"] == "UAEX" && strings.Contains(reason, "no ALLOW policy of db matched") {
				denied++
			}
		}
		return denied == 1 && metric(t, reg, "authz_denied_total", "listener", "db-in", "policy", "(no allow match)") == 1
	})
}

func TestMTLSPermissiveAndStrict(t *testing.T) {
	ca := newTestCA(t)
	be := newBackend(t, "app", false)
	mk := func(permissive bool) func(string) string {
		s := inboundSnap(ca, ca.leaf(t, serverID, 20), be.addr())
		l := s.s.Listeners[0]
		l.TLS.MatchSANs = nil
		l.TLS.Permissive = permissive
		// Plaintext callers have no identity: only authenticated peers
		// may reach /private.
		l.HTTP.RBAC = []*config.RBAC{{Name: "private", Action: config.RBACDeny, Policies: []config.RBACPolicy{{
			Name:        "unauthenticated-private",
			Permissions: []config.Permission{{URLPath: sm(config.StringPrefix, "/private")}},
			Principals:  []config.Principal{{Not: &config.Principal{Authenticated: &config.PrincipalName{}}}},
		}}}}
		_, addr := start(t, s)
		return addr
	}
	perm, strict := mk(true), mk(false)
	plain, mtls := client(t), mtlsClient(t, ca, ca.leaf(t, clientID, 30))

	if r := get(t, plain, "http://"+perm("in")+"/public"); r.code != 200 {
		t.Errorf("PERMISSIVE, plaintext: got %d %q, want 200", r.code, r.body)
	}
	if r := get(t, plain, "http://"+perm("in")+"/private"); r.code != 403 {
		t.Errorf("PERMISSIVE, plaintext to /private: got %d, want 403 (no identity)", r.code)
	}
	if r := get(t, mtls, "https://"+perm("in")+"/private"); r.code != 200 {
		t.Errorf("PERMISSIVE, mTLS to /private: got %d %q, want 200", r.code, r.body)
	}
	if r := get(t, mtls, "https://"+strict("in")+"/private"); r.code != 200 {
		t.Errorf("STRICT, mTLS: got %d %q, want 200", r.code, r.body)
	}
	if resp, err := plain.Get("http://" + strict("in") + "/public"); err == nil {
		resp.Body.Close()
		t.Errorf("STRICT accepted a plaintext request (status %d)", resp.StatusCode)
	}
}

func TestMTLSPermissiveIdleConnectionClosesOnShutdown(t *testing.T) {
	ca := newTestCA(t)
	be := newBackend(t, "app", false)
	s := inboundSnap(ca, ca.leaf(t, serverID, 20), be.addr())
	s.s.Listeners[0].TLS.Permissive = true
	p, addr := start(t, s)
	c, err := net.Dial("tcp", addr("in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited on a connection that never sent its first byte")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the silent connection is still open after Close")
	}
}

// TestPermissiveToStrictEndsPlaintextTCP: a plaintext TCP session accepted
// while the listener was PERMISSIVE is closed when it turns STRICT.
func TestPermissiveToStrictEndsPlaintextTCP(t *testing.T) {
	ca := newTestCA(t)
	echo, _ := tcpEchoServer(t)
	snap := func(permissive bool) *snap {
		s := newSnap().cluster(&config.Cluster{Name: "db"}, loc("r1", "z1", 0, echo))
		s.s.Listeners = []*config.Listener{{
			Name: "db-in", Address: "127.0.0.1:0", Direction: config.Inbound,
			TLS: &config.DownstreamTLS{CertSecret: "server", ValidationSecret: "ca", RequireClientCert: true, Permissive: permissive},
			TCP: &config.TCPListener{Cluster: "db"},
		}}
		s.s.Secrets["ca"] = ca.rootsSecret()
		s.s.Secrets["server"] = &config.Secret{Name: "server", Cert: ca.leaf(t, serverID, 20)}
		return s
	}
	p, addr := start(t, snap(true))
	a := addr("db-in")
	c, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "ping\n")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("plaintext session under PERMISSIVE: %q, %v", buf, err)
	}
	if err := p.Apply(snap(false).s); err != nil { // the same address: the same socket, updated
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the plaintext session was not closed after the switch to STRICT (%d bytes, %v)", n, err)
	}
}

package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend is a real HTTP server on loopback that names itself in every
// answer and counts what it saw.
type backend struct {
	name  string
	srv   *httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	seen  []*http.Request // header snapshots
	conns atomic.Int64
	// handler answers after the bookkeeping and the x-backend header; it
	// is set before the server starts and never changed.
	handler http.HandlerFunc
}

// newBackend answers "<name> <method> <uri> <body>" and reports the
// protocol it was reached over in x-proto.
func newBackend(t testing.TB, name string, h2c bool) *backend {
	t.Helper()
	return hbackend(t, name, h2c, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("x-proto", r.Proto)
		fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.URL.RequestURI(), body)
	})
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

func (b *backend) last() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return nil
	}
	return b.seen[len(b.seen)-1]
}

// snap builds a snapshot with one outbound HTTP listener on an ephemeral
// port whose single virtual host routes everything by the given routes.
type snap struct {
	s *config.Snapshot
}

func newSnap() *snap {
	return &snap{s: &config.Snapshot{
		Version:   "test",
		Routes:    map[string]*config.RouteConfig{},
		Clusters:  map[string]*config.Cluster{},
		Endpoints: map[string]*config.LoadAssignment{},
		Secrets:   map[string]*config.Secret{},
	}}
}

func (s *snap) httpListener(name string, routes ...*config.Route) *snap {
	s.s.Listeners = append(s.s.Listeners, &config.Listener{
		Name:    name,
		Address: "127.0.0.1:0",
		HTTP:    &config.HTTPListener{StatPrefix: name, RouteConfigName: name, GenerateRequestID: true},
	})
	s.s.Routes[name] = &config.RouteConfig{Name: name, VirtualHosts: []*config.VirtualHost{{
		Name: "all", Domains: []string{"*"}, Routes: routes,
	}}}
	sort.Slice(s.s.Listeners, func(i, j int) bool { return s.s.Listeners[i].Name < s.s.Listeners[j].Name })
	return s
}

// cluster adds a cluster whose endpoints are given per locality:
// "region/zone@priority" -> addresses.
func (s *snap) cluster(c *config.Cluster, locs ...*config.LocalityEndpoints) *snap {
	s.s.Clusters[c.Name] = c
	s.s.Endpoints[c.EndpointsName()] = &config.LoadAssignment{Cluster: c.EndpointsName(), Localities: locs}
	return s
}

func loc(region, zone string, prio uint32, addrs ...string) *config.LocalityEndpoints {
	le := &config.LocalityEndpoints{Locality: config.Locality{Region: region, Zone: zone}, Priority: prio, Cluster: "c-" + region}
	for _, a := range addrs {
		le.Endpoints = append(le.Endpoints, config.Endpoint{Address: a, Health: config.Healthy})
	}
	return le
}

func to(cluster string) *config.ForwardAction {
	return &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: cluster, Weight: 1}}}
}

func prefix(p string, fa *config.ForwardAction) *config.Route {
	return &config.Route{Match: config.RouteMatch{PathKind: config.PathPrefix, Path: p, CaseSensitive: true}, Forward: fa}
}

// start applies s to a new proxy and returns it with the address of the
// named listener.
func start(t testing.TB, s *snap, opts ...func(*Options)) (*Proxy, func(name string) string) {
	t.Helper()
	o := Options{DrainTimeout: 5 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	p := New(o)
	if err := p.Apply(s.s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, func(name string) string {
		a := p.ListenerAddr(name)
		if a == nil {
			t.Fatalf("listener %q not bound", name)
		}
		return a.String()
	}
}

// client returns an HTTP/1.1 client that never uses a proxy from the
// environment and closes its idle connections at test end.
func client(t testing.TB) *http.Client {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h2cClient speaks HTTP/2 with prior knowledge.
func h2cClient(t testing.TB) *http.Client {
	tr := &http.Transport{Proxy: nil}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type result struct {
	code    int
	body    string
	header  http.Header
	proto   string
	flags   string
	backend string
}

func get(t testing.TB, c *http.Client, url string, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return do(t, c, req)
}

func do(t testing.TB, c *http.Client, req *http.Request) result {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return result{code: resp.StatusCode, body: string(b), header: resp.Header, proto: resp.Proto,
		flags: resp.Header.Get("x-causeway-flags"), backend: resp.Header.Get("x-backend")}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/causewaymesh/causeway/proxy/config"
)

// Capture tests run on loopback without nat rules: the original
// destination of a connection is chosen by its source address (the test
// dials from 127.230.1.<n>), through CaptureOptions.OriginalDst. The real
// SO_ORIGINAL_DST path is tested in proxy/capturetest, as root.

// fakeOrigDst maps a client's source IP to the destination it "dialled".
type fakeOrigDst struct {
	mu sync.Mutex
	m  map[netip.Addr]netip.AddrPort
}

func (f *fakeOrigDst) set(src string, dst string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[netip.Addr]netip.AddrPort{}
	}
	f.m[netip.MustParseAddr(src)] = netip.MustParseAddrPort(dst)
}

func (f *fakeOrigDst) get(c net.Conn) (netip.AddrPort, error) {
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.m[src]; ok {
		return d, nil
	}
	return netip.AddrPort{}, fmt.Errorf("no original destination for %s", src)
}

// Fixed addresses of this file (127.230.0.0/16 is this test's block).
const (
	capOut     = "127.230.0.1:15001"
	capIn      = "127.230.0.1:15006"
	capDNS     = "127.230.0.1:15053"
	capOut2    = "127.230.0.2:15001"
	capIn2     = "127.230.0.2:15006"
	tcpEchoA   = "127.230.0.10:17000"
	passTarget = "127.230.0.11:17001"
	capVIP     = "198.19.64.10"
)

// echoServer answers each connection with "<name>\n" and then echoes.
func echoServer(t testing.TB, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, name+"\n"); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// dialFrom connects to addr from source IP src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// firstLine dials addr from src and returns the first line, or an error
// (a closed connection gives io.EOF).
func firstLine(src, addr string) (string, error) {
	c, err := dialFrom(src, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(l, "\n"), err
}

func captureSnap(httpBackend string) *config.Snapshot {
	s := newSnap()
	s.cluster(&config.Cluster{Name: "cart"}, loc("r", "z", 0, httpBackend))
	s.cluster(&config.Cluster{Name: "echo"}, loc("r", "z", 0, tcpEchoA))
	s.s.Routes["outbound_80"] = &config.RouteConfig{Name: "outbound_80", VirtualHosts: []*config.VirtualHost{{
		Name:    "cart",
		Domains: []string{"cart.shop.svc.clusterset.local", capVIP, capVIP + ":80"},
		Routes:  []*config.Route{prefix("/", to("cart"))},
	}}}
	s.s.Listeners = []*config.Listener{
		{Name: "inbound_8080", Address: "127.230.0.30:8080", Direction: config.Inbound,
			TCP: &config.TCPListener{StatPrefix: "in", Cluster: "echo"}},
		{Name: "outbound_" + capVIP + "_80", Address: capVIP + ":80",
			HTTP: &config.HTTPListener{StatPrefix: "cart", RouteConfigName: "outbound_80"}},
		{Name: "outbound_any_9090", Address: "0.0.0.0:9090",
			TCP: &config.TCPListener{StatPrefix: "echo", Cluster: "echo"}},
	}
	return s.s
}

func startCaptureProxy(t testing.TB, o CaptureOptions, s *config.Snapshot) (*Proxy, *Capture) {
	t.Helper()
	p := New(Options{DrainTimeout: 5 * time.Second})
	c, err := p.StartCapture(o)
	if err != nil {
		t.Fatalf("StartCapture: %v", err)
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	if err := p.Apply(s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return p, c
}

func TestCaptureDispatch(t *testing.T) {
	b := newBackend(t, "cart-1", false)
	echoServer(t, tcpEchoA, "echo-a")
	echoServer(t, passTarget, "direct")
	var od fakeOrigDst
	od.set("127.230.1.1", capVIP+":80")        // the service VIP
	od.set("127.230.1.2", "198.19.64.99:9090") // any IP, port 9090
	od.set("127.230.1.3", passTarget)          // no listener: passthrough
	od.set("127.230.1.4", "127.230.0.30:8080") // inbound pod port
	od.set("127.230.1.5", capOut)              // dialled straight, not redirected
	_, c := startCaptureProxy(t, CaptureOptions{OutboundAddr: capOut, InboundAddr: capIn, Passthrough: true, OriginalDst: od.get}, captureSnap(b.addr()))

	t.Run("VIP to HTTP route", func(t *testing.T) {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dialFrom("127.230.1.1", capOut) }}
		defer tr.CloseIdleConnections()
		for _, host := range []string{capVIP, capVIP + ":80", "cart.shop.svc.clusterset.local"} {
			r := get(t, &http.Client{Transport: tr, Timeout: 5 * time.Second}, "http://"+host+"/x")
			if r.code != 200 || !strings.HasPrefix(r.body, "cart-1 GET /x") {
				t.Errorf("Host %s: %d %q, want 200 from cart-1", host, r.code, r.body)
			}
		}
	})
	for _, tc := range []struct {
		name, src, sock, want string
		wantErr               bool
	}{
		{"wildcard IP, port listener", "127.230.1.2", capOut, "echo-a", false},
		{"no listener: passthrough", "127.230.1.3", capOut, "direct", false},
		{"inbound pod port", "127.230.1.4", capIn, "echo-a", false},
		{"outbound socket ignores inbound listeners (passthrough to nothing)", "127.230.1.4", capOut, "", true},
		{"not redirected: refused, no loop", "127.230.1.5", capOut, "", true},
		{"no original destination", "127.230.1.9", capOut, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := firstLine(tc.src, tc.sock)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %q, want the connection closed", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// Per connection: the HTTP requests used two (the transport pools
	// "VIP" and "VIP:80" together); the inbound destination on the
	// outbound socket was passed through (and found nothing there).
	want := CaptureStats{Captured: 4, Passthrough: 2, Refused: 2}
	eventually(t, 5*time.Second, fmt.Sprintf("stats %+v (have %+v)", want, c.Stats()), func() bool { return c.Stats() == want })
}

func TestCapturePassthroughOff(t *testing.T) {
	echoServer(t, passTarget, "direct")
	var od fakeOrigDst
	od.set("127.230.1.3", passTarget)
	_, c := startCaptureProxy(t, CaptureOptions{OutboundAddr: capOut2, InboundAddr: capIn2, OriginalDst: od.get}, captureSnap("127.230.0.99:1"))
	if got, err := firstLine("127.230.1.3", capOut2); err == nil {
		t.Fatalf("got %q; want the connection closed (REGISTRY_ONLY)", got)
	}
	eventually(t, 5*time.Second, "refused counted", func() bool { return c.Stats().Refused == 1 })
}

func TestStartCaptureAfterApply(t *testing.T) {
	p := New(Options{})
	defer p.Close()
	if err := p.Apply(newSnap().s); err != nil {
		t.Fatal(err)
	}
	if _, err := p.StartCapture(CaptureOptions{OutboundAddr: capOut2, InboundAddr: capIn2}); !errors.Is(err, ErrCaptureAfterApply) {
		t.Fatalf("StartCapture after Apply: %v, want ErrCaptureAfterApply", err)
	}
}

func dnsQuery(t testing.TB, network, addr, name string, typ dnsmessage.Type) dnsmessage.Message {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	q, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var resp []byte
	if network == "tcp" {
		if err := writeTCPMsg(c, q); err != nil {
			t.Fatal(err)
		}
		if resp, err = readTCPMsg(c); err != nil {
			t.Fatal(err)
		}
	} else {
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("DNS %s %s: %v", network, name, err)
		}
		resp = buf[:n]
	}
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	return m
}

func answers(m dnsmessage.Message) string {
	var s []string
	for _, a := range m.Answers {
		switch r := a.Body.(type) {
		case *dnsmessage.AResource:
			s = append(s, netip.AddrFrom4(r.A).String())
		case *dnsmessage.AAAAResource:
			s = append(s, netip.AddrFrom16(r.AAAA).String())
		}
	}
	return m.RCode.String() + " " + strings.Join(s, ",")
}

func TestCaptureDNS(t *testing.T) {
	// A fake upstream resolver answers every forwarded query with rcode
	// Refused, so forwarding is visible.
	up, err := net.ListenPacket("udp", "127.230.0.5:15053")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 512)
		for {
			n, from, err := up.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			qs, _ := p.AllQuestions()
			_, _ = up.WriteTo(reply(h, qs, dnsmessage.RCodeRefused, nil), from)
		}
	})
	t.Cleanup(func() { up.Close(); wg.Wait() })

	_, c := startCaptureProxy(t, CaptureOptions{OutboundAddr: "127.230.0.3:15001", InboundAddr: "127.230.0.3:15006",
		DNSAddr: capDNS, DNSUpstream: "127.230.0.5:15053", OriginalDst: (&fakeOrigDst{}).get}, captureSnap("127.230.0.99:1"))
	if c.DNSAddr().String() != capDNS {
		t.Fatalf("DNSAddr %v", c.DNSAddr())
	}
	for _, tc := range []struct {
		network, name string
		typ           dnsmessage.Type
		want          string
	}{
		{"udp", "cart.shop.svc.clusterset.local.", dnsmessage.TypeA, "RCodeSuccess " + capVIP},
		{"udp", "CART.shop.svc.clusterset.local.", dnsmessage.TypeA, "RCodeSuccess " + capVIP},
		{"tcp", "cart.shop.svc.clusterset.local.", dnsmessage.TypeA, "RCodeSuccess " + capVIP},
		{"udp", "cart.shop.svc.clusterset.local.", dnsmessage.TypeAAAA, "RCodeSuccess "},
		{"udp", "nope.shop.svc.clusterset.local.", dnsmessage.TypeA, "RCodeNameError "},
		{"udp", "example.com.", dnsmessage.TypeA, "RCodeRefused "},
	} {
		if got := answers(dnsQuery(t, tc.network, capDNS, tc.name, tc.typ)); got != tc.want {
			t.Errorf("%s %s %v: %q, want %q", tc.network, tc.name, tc.typ, got, tc.want)
		}
	}
}

func TestBuildDNSTable(t *testing.T) {
	s := &config.Snapshot{Routes: map[string]*config.RouteConfig{"r": {VirtualHosts: []*config.VirtualHost{
		{Domains: []string{"a.ns.svc.clusterset.local", "198.19.64.1", "198.19.64.1:80"}},
		{Domains: []string{"a.ns.svc.clusterset.local:8080", "198.19.64.1:8080", "[fd00::1]:8080"}},
		{Domains: []string{"b.ns.svc.cluster.local", "10.0.0.1"}},    // not clusterset: left to kube-dns
		{Domains: []string{"*.svc.clusterset.local", "198.19.64.9"}}, // wildcards are not names
		{Domains: []string{"c.ns.svc.clusterset.local"}},             // no VIP: nothing to answer
	}}}}
	got := buildDNSTable(s)
	want := "a.ns.svc.clusterset.local.=[198.19.64.1 fd00::1]"
	if len(got) != 1 || fmt.Sprintf("a.ns.svc.clusterset.local.=%v", got["a.ns.svc.clusterset.local."]) != want {
		t.Fatalf("table %v, want %s", got, want)
	}
}

// BenchmarkCaptureLookup is the per-connection cost of finding the
// listener of an original destination.
func BenchmarkCaptureLookup(b *testing.B) {
	dt := destTable{exact: map[netip.AddrPort]*listener{}, port: map[uint16]*listener{}}
	for i := range 1000 {
		dt.exact[netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(64 + i/256), byte(i)}), 80)] = &listener{}
	}
	dt.port[9090] = &listener{}
	exact := netip.MustParseAddrPort("198.19.65.10:80")
	wild := netip.MustParseAddrPort("10.1.2.3:9090")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i&1 == 0 {
			_ = dt.lookup(exact)
		} else {
			_ = dt.lookup(wild)
		}
	}
}

// BenchmarkCaptureConnect measures a whole TCP connection (connect, first
// byte back, close) through the capture socket to a TCP listener, next to
// the same through a bound listener: the difference is capture's
// per-connection overhead (without the getsockopt, which the injected
// OriginalDst replaces; see proxy/capture's benchmark for that).
func BenchmarkCaptureConnect(b *testing.B) {
	echoServer(b, tcpEchoA, "echo-a")
	var od fakeOrigDst
	od.set("127.230.1.2", "198.19.64.99:9090")
	_, _ = startCaptureProxy(b, CaptureOptions{OutboundAddr: "127.230.0.4:15001", InboundAddr: "127.230.0.4:15006", OriginalDst: od.get}, captureSnap("127.230.0.99:1"))
	direct := newSnap()
	direct.cluster(&config.Cluster{Name: "echo"}, loc("r", "z", 0, tcpEchoA))
	direct.s.Listeners = []*config.Listener{{Name: "bound", Address: "127.230.0.4:19090", TCP: &config.TCPListener{StatPrefix: "echo", Cluster: "echo"}}}
	p := New(Options{})
	b.Cleanup(func() { p.Close() })
	if err := p.Apply(direct.s); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, addr string }{{"bound", "127.230.0.4:19090"}, {"captured", "127.230.0.4:15001"}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if l, err := firstLine("127.230.1.2", tc.addr); err != nil || l != "echo-a" {
					b.Fatalf("%q %v", l, err)
				}
			}
		})
	}
}

// TestCaptureFollowsApply: the table is rebuilt by every Apply (a removed
// VIP listener stops claiming its destination, an added one starts), and
// Close closes the capture sockets with the proxy.
func TestCaptureFollowsApply(t *testing.T) {
	echoServer(t, tcpEchoA, "echo-a")
	echoServer(t, passTarget, "direct")
	var od fakeOrigDst
	od.set("127.230.1.2", "198.19.64.99:9090")
	od.set("127.230.1.3", "198.19.64.50:7000")
	p := New(Options{DrainTimeout: 5 * time.Second})
	c, err := p.StartCapture(CaptureOptions{OutboundAddr: "127.230.0.6:15001", InboundAddr: "127.230.0.6:15006", OriginalDst: od.get})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s1 := captureSnap("127.230.0.99:1")
	if err := p.Apply(s1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		step, src string
		want      string // "": closed
	}{
		{"port listener claims 9090", "127.230.1.2", "echo-a"},
		{"nothing claims 198.19.64.50:7000", "127.230.1.3", ""},
	} {
		got, err := firstLine(tc.src, "127.230.0.6:15001")
		if tc.want == "" && err == nil || tc.want != "" && got != tc.want {
			t.Fatalf("%s: %q, %v; want %q", tc.step, got, err, tc.want)
		}
	}
	// Second config: the port listener is gone, a VIP listener for
	// 198.19.64.50:7000 appears.
	s2 := captureSnap("127.230.0.99:1")
	s2.Listeners = []*config.Listener{{Name: "outbound_198.19.64.50_7000", Address: "198.19.64.50:7000",
		TCP: &config.TCPListener{StatPrefix: "echo", Cluster: "echo"}}}
	if err := p.Apply(s2); err != nil {
		t.Fatal(err)
	}
	if got, err := firstLine("127.230.1.3", "127.230.0.6:15001"); err != nil || got != "echo-a" {
		t.Fatalf("after Apply, the new VIP listener: %q, %v", got, err)
	}
	if got, err := firstLine("127.230.1.2", "127.230.0.6:15001"); err == nil {
		t.Fatalf("after Apply, the removed port listener still claims 9090: %q", got)
	}
	p.Close()
	if conn, err := net.DialTimeout("tcp", "127.230.0.6:15001", time.Second); err == nil {
		conn.Close()
		t.Fatal("the capture socket still accepts after Proxy.Close")
	}
	if err := c.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

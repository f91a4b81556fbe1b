package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// TestTLSPassthroughBySNI: an SNI listener forwards TLS connections,
// unterminated, to the cluster its ClientHello's server name selects: the
// client completes its handshake with the backend itself.
func TestTLSPassthroughBySNI(t *testing.T) {
	backend := func(name string) *httptest.Server {
		s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	a, b, d := backend("a"), backend("b"), backend("default")
	s := newSnap().
		cluster(&config.Cluster{Name: "a"}, loc("r1", "z1", 0, a.Listener.Addr().String())).
		cluster(&config.Cluster{Name: "b"}, loc("r1", "z1", 0, b.Listener.Addr().String())).
		cluster(&config.Cluster{Name: "d"}, loc("r1", "z1", 0, d.Listener.Addr().String()))
	s.s.Listeners = []*config.Listener{{Name: "ew", Address: "127.0.0.1:0", SNI: []*config.SNIChain{
		{ServerNames: []string{"a.shop.svc.clusterset.local"}, TCP: &config.TCPListener{Cluster: "a"}},
		{ServerNames: []string{"*.billing.svc.clusterset.local"}, TCP: &config.TCPListener{Cluster: "b"}},
		{TCP: &config.TCPListener{Cluster: "d"}},
	}}}
	_, addr := start(t, s)

	get := func(sni string) (string, error) {
		// The backends' test certificates are for 127.0.0.1/example.com:
		// the client trusts them explicitly (the pool) and checks the
		// certificate it got came from the right backend by the body.
		pool := a.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil,
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				d := tls.Dialer{Config: &tls.Config{ServerName: sni, RootCAs: pool, InsecureSkipVerify: true}}
				return d.DialContext(ctx, "tcp", addr("ew"))
			}}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + sni + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	for sni, want := range map[string]string{
		"a.shop.svc.clusterset.local":      "a",
		"A.Shop.svc.clusterset.local":      "a",
		"pay.billing.svc.clusterset.local": "b",
		"other.example":                    "default",
		"billing.svc.clusterset.local":     "default", // the wildcard needs a label before the suffix
		"x.y.billing.svc.clusterset.local": "b",
	} {
		got, err := get(sni)
		if err != nil || got != want {
			t.Errorf("SNI %q: %q, %v; want %q", sni, got, err, want)
		}
	}

	t.Run("not TLS: closed, nothing forwarded", func(t *testing.T) {
		c, err := net.Dial("tcp", addr("ew"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := c.Read(make([]byte, 64)); n != 0 {
			t.Errorf("a plaintext client got %d bytes back", n)
		}
	})
}

func TestPickSNIChain(t *testing.T) {
	exact := &config.SNIChain{ServerNames: []string{"a.b.c"}}
	short := &config.SNIChain{ServerNames: []string{"*.c"}}
	long := &config.SNIChain{ServerNames: []string{"*.b.c"}}
	def := &config.SNIChain{}
	chains := []*config.SNIChain{short, def, long, exact}
	for name, want := range map[string]*config.SNIChain{"a.b.c": exact, "x.b.c": long, "x.c": short, "c": def, "a.b.c.": exact, "": def} {
		if got := pickSNIChain(chains, name); got != want {
			t.Errorf("pickSNIChain(%q) = %v, want %v", name, got, want)
		}
	}
	if pickSNIChain([]*config.SNIChain{exact}, "other") != nil {
		t.Error("no default chain: an unknown name must match nothing")
	}
}

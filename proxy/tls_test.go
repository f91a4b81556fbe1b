package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

const (
	clientID = "spiffe://c1.test/ns/a/sa/client"
	serverID = "spiffe://c1.test/ns/b/sa/server"
)

// testCA is an ECDSA P-256 certificate authority made in the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "causeway test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// leaf issues an X.509-SVID for id with the given serial.
func (ca *testCA) leaf(t testing.TB, id string, serial int64) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		URIs:         []*url.URL{u},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) rootsSecret() *config.Secret {
	return &config.Secret{Name: "ca", Roots: ca.pool, RootsPEM: ca.pem}
}

func exact(v string) []config.StringMatch {
	return []config.StringMatch{{Kind: config.StringExact, Value: v}}
}

// inboundSnap is proxy B: an inbound mTLS listener in front of a plaintext
// backend, presenting serverCert.
func inboundSnap(ca *testCA, serverCert *tls.Certificate, backendAddr string) *snap {
	s := newSnap().
		httpListener("in", prefix("/", to("local"))).
		cluster(&config.Cluster{Name: "local"}, loc("r1", "z1", 0, backendAddr))
	l := s.s.Listeners[0]
	l.Direction = config.Inbound
	l.TLS = &config.DownstreamTLS{CertSecret: "server", ValidationSecret: "ca", RequireClientCert: true, MatchSANs: exact(clientID)}
	s.s.Secrets["ca"] = ca.rootsSecret()
	s.s.Secrets["server"] = &config.Secret{Name: "server", Cert: serverCert}
	return s
}

// outboundSnap is proxy A: a plaintext HTTP listener whose cluster speaks
// mTLS HTTP/2 to proxy B and expects the server identity wantSAN.
func outboundSnap(ca *testCA, clientCert *tls.Certificate, bAddr, wantSAN string) *snap {
	le := loc("r1", "z1", 0)
	le.Endpoints = []config.Endpoint{{Address: bAddr, Health: config.Healthy, Identity: serverID}}
	s := newSnap().
		httpListener("out", prefix("/", to("remote"))).
		cluster(&config.Cluster{Name: "remote", Protocol: config.HTTP2, TLS: &config.UpstreamTLS{
			CertSecret: "client", ValidationSecret: "ca", MatchSANs: exact(wantSAN),
		}}, le)
	s.s.Secrets["ca"] = ca.rootsSecret()
	s.s.Secrets["client"] = &config.Secret{Name: "client", Cert: clientCert}
	return s
}

func TestMutualTLSBetweenProxies(t *testing.T) {
	ca := newTestCA(t)
	clientCert := ca.leaf(t, clientID, 10)
	serverCert := ca.leaf(t, serverID, 20)

	hold := newGate(t)
	be := hbackend(t, "app", false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			hold.wait(r.Context())
		}
		io.WriteString(w, "app "+r.URL.Path)
	})
	bMetrics, bReg := withMetrics(t)
	bLog, bLogs := withAccessLog()
	pb, bAddr := start(t, inboundSnap(ca, serverCert, be.addr()), bMetrics, bLog)
	aLog, aLogs := withAccessLog()
	_, aAddr := start(t, outboundSnap(ca, clientCert, bAddr("in"), serverID), aLog)
	c := client(t)

	t.Run("request crosses mTLS HTTP/2 with identities", func(t *testing.T) {
		r := get(t, c, "http://"+aAddr("out")+"/hello")
		if r.code != 200 || r.body != "app /hello" {
			t.Fatalf("got %d %q flags %q, want 200 from the app behind proxy B", r.code, r.body, r.flags)
		}
		es := bLogs.entries(t)
		if len(es) == 0 {
			t.Fatal("proxy B logged nothing")
		}
		e := es[len(es)-1]
		if e["source_identity"] != clientID {
			t.Errorf("inbound access log source_identity %v, want %s", e["source_identity"], clientID)
		}
		if e["protocol"] != "HTTP/2.0" {
			t.Errorf("inbound protocol %v, want HTTP/2.0 (A must speak h2 over TLS to B)", e["protocol"])
		}
		if v := metric(t, bReg, "requests_total", "direction", "inbound", "source_workload", "client", "source_namespace", "a", "response_code", "200"); v < 1 {
			t.Errorf("inbound requests_total with source client/a = %v, want >= 1", v)
		}
		ae := aLogs.entries(t)
		if len(ae) == 0 || ae[len(ae)-1]["destination_identity"] != serverID {
			t.Errorf("outbound access log %v, want destination_identity %s", ae, serverID)
		}
	})

	t.Run("unexpected server SAN is refused with a clear reason", func(t *testing.T) {
		const impostor = "spiffe://c1.test/ns/b/sa/impostor"
		_, a2 := start(t, outboundSnap(ca, clientCert, bAddr("in"), impostor))
		before := be.hits.Load()
		r := get(t, c, "http://"+a2("out")+"/hello")
		if r.code != http.StatusServiceUnavailable {
			t.Errorf("got %d, want 503", r.code)
		}
		if !strings.Contains(r.body, serverID) || !strings.Contains(r.body, impostor) {
			t.Errorf("body %q should name the peer's identity %s and the expected %s", r.body, serverID, impostor)
		}
		if be.hits.Load() != before {
			t.Errorf("the request reached the app although the server identity was wrong")
		}
	})

	directTo := func(cert *tls.Certificate) (*tls.Conn, error) {
		cfg := &tls.Config{
			RootCAs:    ca.pool,
			NextProtos: []string{"http/1.1"},
			// The server's SVID has a URI SAN only: verify the chain and the
			// SPIFFE ID here instead of a host name.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				return verifyPeer(cs.PeerCertificates, &config.Secret{Roots: ca.pool}, exact(serverID), false)
			},
		}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		d := &net.Dialer{Timeout: 5 * time.Second}
		return tls.DialWithDialer(d, "tcp", bAddr("in"), cfg)
	}
	// reject expects the server to refuse the client during or right after
	// the handshake (with TLS 1.3 the client learns it on its first read).
	reject := func(t *testing.T, cert *tls.Certificate) {
		t.Helper()
		before := be.hits.Load()
		conn, err := directTo(cert)
		if err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: b\r\n\r\n")
			if err == nil {
				_, err = conn.Read(make([]byte, 1))
			}
			conn.Close()
		}
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Errorf("proxy B accepted the connection (err %v); it must fail the handshake", err)
		}
		if be.hits.Load() != before {
			t.Errorf("the app was reached")
		}
	}
	t.Run("client without a certificate is refused", func(t *testing.T) { reject(t, nil) })
	t.Run("client with an unexpected SPIFFE ID is refused", func(t *testing.T) {
		reject(t, ca.leaf(t, "spiffe://c1.test/ns/x/sa/other", 30))
	})
	t.Run("client from another CA is refused", func(t *testing.T) {
		reject(t, newTestCA(t).leaf(t, clientID, 31))
	})

	t.Run("secret rotation", func(t *testing.T) {
		// A long-lived request through A holds the old connection open.
		done := make(chan result, 1)
		go func() {
			r, err := fetch(c, "http://"+aAddr("out")+"/slow")
			if err != nil {
				r.body = err.Error()
			}
			done <- r
		}()
		eventually(t, 5*time.Second, "the long request to reach the app", func() bool { return hold.in.Load() == 1 })

		rotated := ca.leaf(t, serverID, 21)
		if err := pb.Apply(inboundSnap(ca, rotated, be.addr()).s); err != nil {
			t.Fatal(err)
		}
		conn, err := directTo(clientCert)
		if err != nil {
			t.Fatalf("direct mTLS dial to B after rotation: %v", err)
		}
		got := conn.ConnectionState().PeerCertificates[0].SerialNumber
		conn.Close()
		if got.Cmp(big.NewInt(21)) != 0 {
			t.Errorf("new connection got serial %v, want the rotated certificate's 21", got)
		}
		if r := get(t, c, "http://"+aAddr("out")+"/after"); r.code != 200 {
			t.Errorf("request after rotation: %d %q", r.code, r.body)
		}
		hold.open()
		if r := <-done; r.code != 200 || r.body != "app /slow" {
			t.Errorf("the request started before rotation ended with %d %q, want 200", r.code, r.body)
		}
	})
}

package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/eastwest"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/runner"
)

// TestEastWestGateway: one control plane (folder source) serves a real
// causeway-proxy that declares itself an east-west gateway. A TLS client
// that names an exported service by SNI reaches that service's local
// endpoint (a TLS server) through the gateway, which passes the handshake
// through untouched (the client sees the backend's own certificate); an
// unexported service's name, an unknown name and a service whose
// ServiceExport is removed are refused.
func TestEastWestGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	gwIP, port := podLoopbackIP(), uint32(eastwest.DefaultPort)
	gwNode := &corev3.Node{Id: "eastwest.causeway-system", Locality: &corev3.Locality{Region: "r1", Zone: "z1"},
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"namespace": structpb.NewStringValue("causeway-system"), "cluster": structpb.NewStringValue("east"),
			"inbound_ip": structpb.NewStringValue(gwIP), eastwest.RoleKey: structpb.NewStringValue(eastwest.Role),
		}}}
	if _, err := xds.NodeFromProto(gwNode, "east", "net1"); err != nil {
		// TODO(lead): remove once node.go parses east-west nodes (ParseEastWestNode).
		t.Skipf("xds.NodeFromProto refuses east-west gateway nodes (node.go hook not applied): %v", err)
	}

	dir, files := t.TempDir(), t.TempDir()
	cartIP, secretIP := podLoopbackIP(), podLoopbackIP()
	cart, secret := startTLSBackend(t, cartIP, "cart"), startTLSBackend(t, secretIP, "secret")
	write(t, dir, "nodes.yaml", nodesYAML)
	svc := func(name, ip string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: shop}
spec:
  ports: [{name: https, port: 443, targetPort: 8443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s, namespace: shop, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{name: https, port: 8443}]
endpoints:
- addresses: [%[2]s]
  nodeName: node-z1
  conditions: {ready: true}
`, name, ip)
	}
	const cartExport = "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: cart, namespace: shop}\n"
	write(t, dir, "cart.yaml", svc("cart", cartIP))
	write(t, dir, "cart-export.yaml", cartExport)
	write(t, dir, "secret.yaml", svc("secret", secretIP))

	folder, err := discovery.NewFolder(discovery.FolderOptions{Dir: dir, Interval: 20 * time.Millisecond,
		BuildOptions: discovery.BuildOptions{Cluster: "east", Network: "net1", TrustDomain: "east.local"}})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := New(Options{Cluster: "east", Network: "net1", Debounce: 10 * time.Millisecond,
		Translate: xds.TranslateOptions{EphemeralPorts: true}})
	if err != nil {
		t.Fatal(err)
	}
	cpCtx, cpCancel := context.WithCancel(ctx)
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Run(cpCtx, folder) }()
	t.Cleanup(func() { cpCancel(); <-cpDone })

	// The gateway: a causeway-proxy whose node metadata (from its
	// bootstrap) says role east-west; inbound_ip is its own loopback IP.
	boot := filepath.Join(files, "gateway.yaml")
	write(t, files, "gateway.yaml", fmt.Sprintf("node:\n  metadata: {%s: %s, %s: \"%d\"}\n", eastwest.RoleKey, eastwest.Role, eastwest.PortKey, port))
	cfg := runner.DefaultConfig()
	cfg.Bootstrap, cfg.XDS, cfg.Admin, cfg.NodeID = boot, cp.Addr(), "127.0.0.1:0", gwNode.Id
	cfg.Workload, cfg.Namespace, cfg.Cluster, cfg.Network, cfg.Locality = "eastwest", "causeway-system", "east", "net1", "r1/z1"
	cfg.AccessLog, cfg.DrainTimeout, cfg.InboundIP = "off", 2*time.Second, gwIP
	gw, err := runner.Start(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Shutdown() })
	addr := net.JoinHostPort(gwIP, strconv.Itoa(int(port)))
	waitUntil(t, 15*time.Second, "the gateway's SNI listener", func() bool {
		return gw.Proxy.ListenerAddr(xds.EastWestListenerName(port)) != nil
	})

	// get makes one HTTPS request through the gateway with server name
	// sni; it returns the body and the certificate the client saw.
	get := func(sni string) (string, []byte, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second},
			Config: &tls.Config{ServerName: sni, InsecureSkipVerify: true}} // the certificate is compared below
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		c, err := d.DialContext(dctx, "tcp", addr)
		if err != nil {
			return "", nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
			return "", nil, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), c.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw, err
	}

	for _, sni := range []string{eastwest.SNI("shop", "cart"), eastwest.PortSNI("shop", "cart", 443)} {
		t.Run("exported: "+sni, func(t *testing.T) {
			var body string
			var cert []byte
			waitUntil(t, 10*time.Second, "a response through the gateway", func() bool {
				var err error
				body, cert, err = get(sni)
				return err == nil
			})
			if want := "cart sni=" + sni; body != want {
				t.Errorf("body %q, want %q (the backend saw the client's server name)", body, want)
			}
			if !bytes.Equal(cert, cart.Certificate().Raw) {
				t.Error("the client did not see the backend's certificate: the gateway must not terminate TLS")
			}
		})
	}
	t.Run("unexported and unknown names are refused", func(t *testing.T) {
		for _, sni := range []string{eastwest.SNI("shop", "secret"), eastwest.PortSNI("shop", "secret", 443),
			"secret.shop.svc.cluster.local", "nobody.shop.svc.clusterset.local", ""} {
			if body, _, err := get(sni); err == nil {
				t.Errorf("server name %q reached a backend through the gateway: %q", sni, body)
			}
		}
		// The secret backend itself is up: the gateway is what refuses.
		c, err := tls.Dial("tcp", secret.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("the secret backend directly: %v", err)
		}
		c.Close()
	})
	t.Run("a removed ServiceExport closes the name", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, "cart-export.yaml")); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, "cart to be refused at the gateway", func() bool {
			_, _, err := get(eastwest.SNI("shop", "cart"))
			return err != nil
		})
		write(t, dir, "cart-export.yaml", cartExport)
		waitUntil(t, 10*time.Second, "cart to be served again", func() bool {
			_, _, err := get(eastwest.SNI("shop", "cart"))
			return err == nil
		})
	})
}

// startTLSBackend serves HTTPS on ip:8443 (a loopback IP of its own),
// answering "<name> sni=<server name it saw>".
func startTLSBackend(t *testing.T, ip, name string) *httptest.Server {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, "8443"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s sni=%s", name, r.TLS.ServerName)
	}))
	srv.Listener.Close()
	srv.Listener = lis
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

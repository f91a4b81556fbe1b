package capturetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/xds"
	"github.com/causewaymesh/causeway/proxy/capture"
	"github.com/causewaymesh/causeway/trust"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(runHelper(role))
	}
	goleak.VerifyTestMain(m)
}

// The test network: the pod namespace (client app and sidecar) and a peer
// namespace playing every other machine: endpoint A (zone z1, the
// client's), endpoint B (zone z2) and a plain server. The peer forwards
// and answers for nothing in the VIP range, so a VIP is reachable only
// through the sidecar.
const (
	podIP     = "198.18.64.1"
	peerIP    = "198.18.64.2"
	epA       = "198.18.64.3"
	epB       = "198.18.64.4"
	netLen    = 24
	vipRange  = "198.19.64.0/18"
	clusterIP = "198.19.64.10"
	setIP     = "198.19.96.10"
	epPort    = 8443
	plainPort = 9000
	appPort   = 8080 // the app's port in the pod (inbound)
	dbIP      = "198.19.64.11"
	dbPort    = 5432 // an opaque TCP service
	proxyUID  = 1337
	td        = "east.example"
	clientID  = "spiffe://east.example/ns/shop/sa/web"
	serverID  = "spiffe://east.example/ns/shop/sa/cart"
	callerID  = "spiffe://east.example/ns/shop/sa/caller"
)

const requireEnv = "CAUSEWAY_REQUIRE_TESTBINS"

func requireRoot(t *testing.T) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "not root: the test creates network namespaces and nat rules (run the tests as root)"
	} else {
		for _, bin := range []string{"ip", "iptables-save", "iptables-restore"} {
			if _, err := exec.LookPath(bin); err != nil {
				why = bin + " not found: run `make testbins` as root, or apt-get install iproute2 iptables"
				break
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("capturetest: %s (%s=1 turns this skip into a failure)", why, requireEnv)
	}
	t.Skipf("capturetest: skipping, %s", why)
}

func ipCmd(stdin string, args ...string) error {
	cmd := exec.Command("ip", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// sweep deletes cwcapt-<pid>-* namespaces (and their /etc/netns folders)
// and sidecar folders whose test process is gone.
func sweep(t *testing.T) {
	tmp, _ := filepath.Glob(filepath.Join(os.TempDir(), "cwcapt-*"))
	for _, d := range tmp {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "cwcapt-"), "-")
		if _, err := os.Stat("/proc/" + pid); err != nil {
			os.RemoveAll(d)
		}
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "cwcapt-")
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		if err := ipCmd("", "netns", "del", e.Name()); err != nil {
			t.Logf("sweep: %v", err)
		}
		os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
	}
}

type testNet struct{ pod, peer string }

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	sweep(t)
	n := &testNet{pod: fmt.Sprintf("cwcapt-%d-pod", os.Getpid()), peer: fmt.Sprintf("cwcapt-%d-peer", os.Getpid())}
	for _, ns := range []string{n.pod, n.peer} {
		if err := ipCmd("", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := ipCmd("", "netns", "del", ns); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	if err := ipCmd("", "-n", n.pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n.peer); err != nil {
		t.Fatal(err)
	}
	pod := fmt.Sprintf("link set lo up\naddr add %s/%d dev eth0\nlink set eth0 up\nroute add default via %s\n", podIP, netLen, peerIP)
	peer := fmt.Sprintf("link set lo up\naddr add %s/%d dev eth0\naddr add %s/%d dev eth0\naddr add %s/%d dev eth0\nlink set eth0 up\nroute add unreachable %s\n",
		peerIP, netLen, epA, netLen, epB, netLen, vipRange)
	for ns, batch := range map[string]string{n.pod: pod, n.peer: peer} {
		if err := ipCmd(batch, "-n", ns, "-batch", "-"); err != nil {
			t.Fatal(err)
		}
	}
	// The peer forwards, so a packet for a VIP meets the unreachable route
	// and the client gets an error at once instead of a timeout.
	if out, err := exec.Command("ip", "netns", "exec", n.peer, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl in %s: %v: %s", n.peer, err, out)
	}
	// The pod's resolver: the peer's address (any routable address would
	// do: DNS is captured before it leaves), no search list.
	dir := filepath.Join("/etc/netns", n.pod)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+peerIP+"\noptions ndots:1 timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// inNetns runs fn on an OS thread inside namespace ns (see proxy/capture).
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = fn()
		if rerr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); rerr == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	return ln
}

// endpoint is one pod of the service: HTTPS that requires a client
// certificate from the trust domain and answers "<name> <peer SPIFFE ID>".
// Like a sidecar's inbound listener it speaks HTTP/2 and HTTP/1.1 (ALPN):
// callers' sidecars reach sidecars over HTTP/2.
type endpoint struct {
	srv  *http.Server
	done chan struct{}
}

func startEndpoint(t *testing.T, ns, addr, name string, cert tls.Certificate, roots *x509.CertPool) *endpoint {
	ln := listenIn(t, ns, addr)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
		NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	e := &endpoint{done: make(chan struct{})}
	e.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := "no-peer-certificate"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) > 0 {
			peer = r.TLS.PeerCertificates[0].URIs[0].String()
		}
		fmt.Fprintf(w, "%s %s", name, peer)
	})}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(tls.NewListener(ln, cfg))
	}()
	t.Cleanup(e.stop)
	return e
}

func (e *endpoint) stop() {
	e.srv.Close()
	<-e.done
}

// plainServer tells each client the address it connected from (the
// plain server in the peer, and the app in the pod).
func plainServer(t *testing.T, ns, addr string) {
	ln := listenIn(t, ns, addr)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.WriteString(c, c.RemoteAddr().String()+"\n")
				// Read what the client sent until it closes, so that
				// closing never resets the connection under the answer.
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

func svidCert(t *testing.T, ca *trust.CA, id string) (tls.Certificate, []byte, []byte) {
	t.Helper()
	sv, err := ca.IssueSVID(spiffeid.RequireFromString(id), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := sv.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM, keyPEM
}

// controlPlane translates the cluster's model for the capture-mode node
// and writes the resources where the sidecar reads them.
func controlPlane(t *testing.T, dir string, ca *trust.CA) {
	t.Helper()
	ep := func(addr, zone string) model.Endpoint {
		return model.Endpoint{Address: addr, Ports: []model.EndpointPort{{Name: "http", Port: epPort}}, Cluster: "east", Network: "net1",
			Locality: model.Locality{Region: "r1", Zone: zone}, Identity: serverID, Ready: true, Serving: true, Weight: 1}
	}
	db := ep(epA, "z1")
	db.Ports = []model.EndpointPort{{Name: "tcp-pg", Port: dbPort}}
	s := &model.Snapshot{Cluster: "east", Network: "net1", TrustDomain: td, Namespaces: []string{"shop"}, Services: []model.Service{{
		Namespace: "shop", Name: "cart", ClusterIP: clusterIP, ClustersetIP: setIP, Exported: true,
		Ports:     []model.ServicePort{{Name: "http", Port: 80, Protocol: model.TCP}},
		Endpoints: []model.Endpoint{ep(epA, "z1"), ep(epB, "z2")},
	}, {
		Namespace: "shop", Name: "db", ClusterIP: dbIP,
		Ports:     []model.ServicePort{{Name: "tcp-pg", Port: dbPort, Protocol: model.TCP}},
		Endpoints: []model.Endpoint{db},
	}}}
	s.Canonicalize()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	n := xds.Node{ID: "web-1.shop", Namespace: "shop", ServiceAccount: "web", Cluster: "east", Network: "net1",
		Locality: model.Locality{Region: "r1", Zone: "z1"}, Capture: true,
		InboundIP: podIP, InboundPorts: fmt.Sprintf("%d=127.0.0.1:%d", appPort, appPort)}
	res, err := xds.Translate(s, n, xds.TranslateOptions{MTLS: &xds.MTLS{Bundles: func() map[string][]*x509.Certificate {
		return map[string][]*x509.Certificate{td: ca.Roots()}
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var drs []*discoveryv3.DiscoveryResponse
	for _, list := range [][]types.Resource{res.Listeners, res.Routes, res.Clusters, res.Endpoints, res.Secrets} {
		dr := &discoveryv3.DiscoveryResponse{}
		for _, r := range list {
			a, err := anypb.New(r)
			if err != nil {
				t.Fatal(err)
			}
			dr.Resources = append(dr.Resources, a)
		}
		drs = append(drs, dr)
	}
	if err := writeResources(filepath.Join(dir, resourcesFile), drs...); err != nil {
		t.Fatal(err)
	}
}

// sidecar is the helper process running as the proxy UID in the pod.
type sidecar struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
}

func startSidecar(t *testing.T, ns, dir string) *sidecar {
	t.Helper()
	sc := &sidecar{cmd: exec.Command("/proc/self/exe")}
	sc.cmd.Env = append(os.Environ(), helperEnv+"=sidecar", dirEnv+"="+dir)
	sc.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: proxyUID, Gid: proxyUID}, Pdeathsig: syscall.SIGKILL}
	sc.cmd.Stderr = &sc.stderr
	var err error
	if sc.stdin, err = sc.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := sc.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sc.out = bufio.NewReader(stdout)
	if err := inNetns(ns, sc.cmd.Start); err != nil {
		t.Fatalf("start sidecar in %s: %v", ns, err)
	}
	t.Cleanup(func() { sc.stop(t) })
	ready := make(chan string, 1)
	go func() { l, _ := sc.out.ReadString('\n'); ready <- l }()
	select {
	case l := <-ready:
		if !strings.HasPrefix(l, "ready uid=1337") {
			t.Fatalf("sidecar did not start: %q\n%s", l, sc.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("sidecar not ready after 20s\n%s", sc.stderr.String())
	}
	return sc
}

// stop closes the sidecar's stdin and waits for it (killing it after 10s);
// it returns its last stdout line (the stats).
func (sc *sidecar) stop(t *testing.T) string {
	if sc.cmd.ProcessState != nil {
		return ""
	}
	sc.stdin.Close()
	rest, _ := io.ReadAll(sc.out)
	done := make(chan error, 1)
	go func() { done <- sc.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sidecar: %v\n%s", err, sc.stderr.String())
		}
	case <-time.After(10 * time.Second):
		sc.cmd.Process.Kill()
		<-done
		t.Errorf("sidecar did not stop in 10s\n%s", sc.stderr.String())
	}
	return strings.TrimSpace(string(rest))
}

// client runs the test binary as the unmodified client inside the pod
// with `ip netns exec`, which also gives it the pod's resolv.conf. It runs
// as root, so its traffic is captured.
func client(t *testing.T, ns string, env ...string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, exe)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func get(t *testing.T, ns, url string) (string, error) {
	t.Helper()
	return client(t, ns, helperEnv+"=get", urlEnv+"="+url)
}

// dialPlain reports whether the plain server saw the client's own source
// address (true: the connection was not proxied).
func dialPlain(t *testing.T, ns string) bool {
	t.Helper()
	out, err := client(t, ns, helperEnv+"=dial", addrEnv+"="+net.JoinHostPort(peerIP, fmt.Sprint(plainPort)))
	if err != nil {
		t.Fatalf("plain dial: %v", err)
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("plain dial: %q", out)
	}
	return f[0] == f[1]
}

// nsTables runs the iptables tools inside ns.
func nsTables(ns string) *capture.Tables {
	return &capture.Tables{Command: func(ctx context.Context, name string, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	}}
}

// TestCaptureAcceptance: an unmodified client in a pod network namespace
// calls a service by its cluster IP and by its clusterset.local name; the
// sidecar, not the client, does the mTLS, routing and failover; removing
// the rules restores plain traffic.
func TestCaptureAcceptance(t *testing.T) {
	requireRoot(t)
	start := time.Now()
	tn := newTestNet(t)

	ca, err := trust.NewSelfSignedCA(spiffeid.RequireTrustDomainFromString(td), trust.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, c := range ca.Roots() {
		roots.AddCert(c)
	}
	serverCert, _, _ := svidCert(t, ca, serverID)
	a := startEndpoint(t, tn.peer, fmt.Sprintf("%s:%d", epA, epPort), "A", serverCert, roots)
	startEndpoint(t, tn.peer, fmt.Sprintf("%s:%d", epB, epPort), "B", serverCert, roots)
	plainServer(t, tn.peer, fmt.Sprintf("%s:%d", peerIP, plainPort))
	tlsLineServer(t, tn.peer, fmt.Sprintf("%s:%d", epA, dbPort), "db", serverCert, roots)

	// The sidecar's folder must be readable by the proxy UID.
	dir, err := os.MkdirTemp("", fmt.Sprintf("cwcapt-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, certPEM, keyPEM := svidCert(t, ca, clientID)
	if err := os.WriteFile(filepath.Join(dir, "svid.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "svid-key.pem"), keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	controlPlane(t, dir, ca)
	sc := startSidecar(t, tn.pod, dir)
	// The app in the pod listens on every address, as apps do.
	plainServer(t, tn.pod, fmt.Sprintf("0.0.0.0:%d", appPort))
	callerCert, _, _ := svidCert(t, ca, callerID)
	inbound := func(mtls bool) (string, error) { return callPod(tn.peer, mtls, callerCert, roots) }
	if got, err := inbound(false); err != nil || !strings.HasPrefix(got, peerIP+":") {
		t.Fatalf("before capture, a plain call to the pod's port: %q, %v; want the app to see the caller %s", got, err, peerIP)
	}

	// Before the rules: the VIP is nothing, plain traffic is direct.
	if out, err := get(t, tn.pod, "http://"+clusterIP+"/"); err == nil {
		t.Fatalf("before capture, the cluster IP answered: %q", out)
	}
	if !dialPlain(t, tn.pod) {
		t.Fatal("before capture, plain traffic was proxied")
	}

	// The init step's rules, as causeway-init installs them.
	cfg := capture.DefaultConfig()
	cfg.ProxyUID = proxyUID
	cfg.CaptureDNS = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tables := nsTables(tn.pod)
	t.Cleanup(func() { _, _ = tables.Remove(context.Background(), cfg) })
	if _, err := tables.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	want := func(url, wantBody string) {
		t.Helper()
		out, err := get(t, tn.pod, url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		if out != "200 "+wantBody {
			t.Fatalf("GET %s: %q, want %q", url, out, "200 "+wantBody)
		}
	}
	// The client speaks plain HTTP to an IP or a name; the endpoint
	// requires mTLS and sees the sidecar's SPIFFE ID. A (the client's
	// zone) is preferred over B.
	for _, url := range []string{
		"http://" + clusterIP + "/",
		"http://" + clusterIP + ":80/path",
		"http://" + setIP + "/",
		"http://cart.shop.svc.clusterset.local/",
	} {
		want(url, "A "+clientID)
	}
	// Inbound: a mesh peer's mTLS call to the pod's port reaches the app
	// through the sidecar (the app sees loopback), and plaintext is
	// refused (STRICT).
	if got, err := inbound(true); err != nil || !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("captured inbound mTLS call: %q, %v; want the app to see the sidecar at 127.0.0.1", got, err)
	}
	if got, err := inbound(false); err == nil {
		t.Errorf("captured inbound plaintext call reached the app (%q); STRICT mTLS must refuse it", got)
	}
	// An opaque TCP service by its cluster IP: the sidecar originates mTLS.
	if out, err := client(t, tn.pod, helperEnv+"=dial", addrEnv+"="+net.JoinHostPort(dbIP, fmt.Sprint(dbPort))); err != nil || !strings.HasSuffix(strings.TrimSpace(out), "db "+clientID) {
		t.Errorf("TCP service by cluster IP: %q, %v; want the endpoint to see %s", out, err, clientID)
	}
	// Traffic to destinations no listener claims passes through the
	// sidecar (it is not the client's own connection any more).
	if dialPlain(t, tn.pod) {
		t.Error("with capture, plain traffic bypassed the sidecar")
	}

	// Failover: A dies; the same calls succeed on B, within the request.
	a.stop()
	for _, url := range []string{"http://" + clusterIP + "/", "http://cart.shop.svc.clusterset.local/"} {
		want(url, "B "+clientID)
	}

	// Removing the rules restores plain traffic: the VIP is unreachable
	// again, the plain server sees the client itself, and the sidecar,
	// still running, gets nothing more.
	if _, err := tables.Remove(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := get(t, tn.pod, "http://"+clusterIP+"/"); err == nil {
		t.Fatalf("after removal, the cluster IP answered: %q", out)
	}
	if !dialPlain(t, tn.pod) {
		t.Error("after removal, plain traffic still went through the sidecar")
	}
	if got, err := inbound(false); err != nil || !strings.HasPrefix(got, peerIP+":") {
		t.Errorf("after removal, a plain call to the pod's port: %q, %v; want the app to see the caller", got, err)
	}
	stats := sc.stop(t)
	t.Logf("sidecar %s; test took %s", stats, time.Since(start).Round(time.Millisecond))
	if !strings.Contains(stats, "captured=9 ") || !strings.Contains(stats, "passthrough=1 ") {
		t.Errorf("sidecar %s, want 9 captured (6 HTTP calls, the TCP call, the inbound mTLS call, and the inbound plaintext one, which the listener closes) and one passthrough (the plain dial while captured)", stats)
	}
}

// callPod dials the pod's app port from ns (a mesh peer), with mTLS as
// callerCert when mtls, and returns the line the app sends (the address
// it saw the connection come from). With mTLS the server must present
// the sidecar's SVID.
func callPod(ns string, mtls bool, callerCert tls.Certificate, roots *x509.CertPool) (string, error) {
	var c net.Conn
	addr := net.JoinHostPort(podIP, fmt.Sprint(appPort))
	if err := inNetns(ns, func() (err error) { c, err = net.DialTimeout("tcp4", addr, 5*time.Second); return err }); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if mtls {
		tc := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{callerCert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				leaf := cs.PeerCertificates[0]
				inter := x509.NewCertPool()
				for _, ic := range cs.PeerCertificates[1:] {
					inter.AddCert(ic)
				}
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
					return err
				}
				if len(leaf.URIs) != 1 || leaf.URIs[0].String() != clientID {
					return fmt.Errorf("server identity %v, want the sidecar's %s", leaf.URIs, clientID)
				}
				return nil
			}})
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		c = tc
	} else if _, err := io.WriteString(c, "hello\n"); err != nil {
		// Say something, so a TLS server refuses at once.
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// tlsLineServer is an opaque TCP endpoint: mTLS, then one line,
// "<name> <peer SPIFFE ID>".
func tlsLineServer(t *testing.T, ns, addr, name string, cert tls.Certificate, roots *x509.CertPool) {
	ln := tls.NewListener(listenIn(t, ns, addr), &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots, MinVersion: tls.VersionTLS12})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				peer := "no-peer-certificate"
				if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 && len(cs.PeerCertificates[0].URIs) > 0 {
					peer = cs.PeerCertificates[0].URIs[0].String()
				}
				_, _ = io.WriteString(c, name+" "+peer+"\n")
				_ = tc.CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

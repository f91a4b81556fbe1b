package capture

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test network: two namespaces joined by one veth pair, nothing on the
// host. "pod" is the namespace the rules go in (sidecar, app clients);
// "peer" plays every other machine. The /30 comes from 198.18.255.0/24,
// which no internal/testcluster slot uses (their pods are 198.18.<16*slot>.0/20
// for slots below 15, services in 198.19.0.0/16); being inside private
// namespaces it could not clash with them anyway.
const (
	podIP  = "198.18.255.1"
	peerIP = "198.18.255.2"
	netLen = 30
)

// requireEnv is internal/testcluster.RequireEnv: CI sets it, and then a
// machine that cannot run this test fails it instead of skipping.
const requireEnv = "CAUSEWAY_REQUIRE_TESTBINS"

func requireNetns(t testing.TB) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "not root: the capture test creates network namespaces and nat rules (run the tests as root)"
	} else {
		for _, bin := range []string{"ip", "iptables-save", "iptables-restore"} {
			if _, err := exec.LookPath(bin); err != nil {
				why = bin + " not found: run `make testbins` as root (it installs iproute2 and iptables), or apt-get install iproute2 iptables"
				break
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("capture: %s (%s=1 turns this skip into a failure)", why, requireEnv)
	}
	t.Skipf("capture: skipping, %s", why)
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

// sweepNetns deletes cwcap-<pid>-* namespaces whose test process is gone
// (killed before its cleanup ran).
func sweepNetns(t testing.TB) {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "cwcap-")
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
	}
}

type testNet struct{ pod, peer string }

// newTestNet creates the pod and peer namespaces; t.Cleanup deletes them
// (the veth pair goes with them).
func newTestNet(t testing.TB, label string) *testNet {
	t.Helper()
	sweepNetns(t)
	n := &testNet{
		pod:  fmt.Sprintf("cwcap-%d-%s-pod", os.Getpid(), label),
		peer: fmt.Sprintf("cwcap-%d-%s-peer", os.Getpid(), label),
	}
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
	for ns, ip := range map[string]string{n.pod: podIP, n.peer: peerIP} {
		batch := fmt.Sprintf("link set lo up\naddr add %s/%d dev eth0\nlink set eth0 up\n", ip, netLen)
		if err := ipCmd(batch, "-n", ns, "-batch", "-"); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// inNetns runs fn on an OS thread that has joined namespace ns. Sockets fn
// creates belong to ns for their whole life, and processes it starts are
// born in ns. The thread goes back to its own namespace afterwards; if that
// fails it stays locked, so the runtime discards it when the goroutine ends.
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

// nsTables runs the iptables tools inside ns.
func nsTables(ns string) *Tables {
	return &Tables{Command: func(ctx context.Context, name string, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	}}
}

// natSave returns `iptables-save -t nat` of ns without its timestamped
// comments.
func natSave(t testing.TB, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save in %s: %v: %s", ns, err, out)
	}
	var b strings.Builder
	for l := range strings.Lines(string(out)) {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// server accepts on ln until cleanup and answers every connection with
// reply(conn) + "\n"; cleanup waits for its goroutines.
func server(t testing.TB, ln net.Listener, reply func(net.Conn) string) {
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
				_, _ = io.WriteString(c, reply(c)+"\n")
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// udpServer answers every datagram on pc with reply until cleanup.
func udpServer(t testing.TB, pc net.PacketConn, reply string) {
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(reply), from)
		}
	})
	t.Cleanup(func() { pc.Close(); wg.Wait() })
}

func listen(t testing.TB, ns, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) { ln, err = net.Listen(network, addr); return err }); err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns, err)
	}
	return ln
}

// ask dials addr from namespace ns and returns the line the server sends.
func ask(t testing.TB, ns, addr string) string {
	t.Helper()
	var c net.Conn
	if err := inNetns(ns, func() (err error) { c, err = net.DialTimeout("tcp4", addr, 5*time.Second); return err }); err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s (dialled from %s): %v", addr, ns, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// askUDP sends one datagram to addr from ns and returns the answer.
func askUDP(t testing.TB, ns, addr string) string {
	t.Helper()
	var c net.Conn
	if err := inNetns(ns, func() (err error) { c, err = net.Dial("udp4", addr); return err }); err != nil {
		t.Fatalf("dial udp %s from %s: %v", addr, ns, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("query")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp answer from %s (sent from %s): %v", addr, ns, err)
	}
	return string(buf[:n])
}

// askAsUID is ask from a separate process running as uid: the test binary
// in helper mode, born in ns because it is forked from a thread inside ns.
// It execs /proc/self/exe, which uid can run even when the go-build
// directory holding the binary is closed to it.
func askAsUID(t testing.TB, ns, addr string, uid uint32) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Env = append(os.Environ(), helperDialEnv+"="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := inNetns(ns, cmd.Start); err != nil {
		t.Fatalf("start helper as uid %d in %s: %v", uid, ns, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper as uid %d dialling %s: %v: %s", uid, addr, err, stderr.Bytes())
	}
	return strings.TrimSuffix(stdout.String(), "\n")
}

func originalDstReply(prefix string) func(net.Conn) string {
	return func(c net.Conn) string {
		dst, err := OriginalDst(c)
		if err != nil {
			return prefix + " error: " + err.Error()
		}
		return prefix + " " + dst.String()
	}
}

func fixed(s string) func(net.Conn) string { return func(net.Conn) string { return s } }

// captureLines keeps the lines of a nat dump that are this package's.
func captureLines(save string) []string {
	var out []string
	for l := range strings.Lines(save) {
		l = strings.TrimSuffix(l, "\n")
		if strings.HasPrefix(l, ":"+ChainPrefix) || strings.HasPrefix(l, "-A "+ChainPrefix) || jumpsToOurs(l) {
			out = append(out, l)
		}
	}
	return out
}

func TestCaptureInNetns(t *testing.T) {
	requireNetns(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := newTestNet(t, "main")

	// The sidecar, in the pod: outbound on tcp4, inbound on a dual-stack
	// socket (what net.Listen("tcp", ":port") makes), DNS on loopback.
	server(t, listen(t, n.pod, "tcp4", "0.0.0.0:15001"), originalDstReply("sidecar-out"))
	server(t, listen(t, n.pod, "tcp", ":15006"), originalDstReply("sidecar-in"))
	server(t, listen(t, n.pod, "tcp4", "127.0.0.1:15053"), fixed("sidecar-dns-tcp"))
	var dnsPC net.PacketConn
	if err := inNetns(n.pod, func() (err error) { dnsPC, err = net.ListenPacket("udp4", "127.0.0.1:15053"); return err }); err != nil {
		t.Fatal(err)
	}
	udpServer(t, dnsPC, "sidecar-dns")
	// The app's own servers in the pod, and the rest of the world in peer.
	server(t, listen(t, n.pod, "tcp4", podIP+":9091"), fixed("pod 9091"))
	server(t, listen(t, n.pod, "tcp4", "127.0.0.1:9092"), fixed("pod lo 9092"))
	server(t, listen(t, n.peer, "tcp4", peerIP+":8080"), fixed("peer 8080"))
	server(t, listen(t, n.peer, "tcp4", peerIP+":8081"), fixed("peer 8081"))
	var peerDNS net.PacketConn
	if err := inNetns(n.peer, func() (err error) { peerDNS, err = net.ListenPacket("udp4", peerIP+":53"); return err }); err != nil {
		t.Fatal(err)
	}
	udpServer(t, peerDNS, "peer dns")

	peer8080 := peerIP + ":8080"
	if got := ask(t, n.pod, peer8080); got != "peer 8080" {
		t.Fatalf("before capture, %s answered %q", peer8080, got)
	}

	// A rule someone else owns: it must survive Apply and Remove.
	foreign := "*nat\n:FOREIGN - [0:0]\n-A FOREIGN -p tcp -m tcp --dport 9999 -j RETURN\n-A OUTPUT -p tcp -m tcp --dport 9998 -j FOREIGN\nCOMMIT\n"
	cmd := exec.Command("ip", "netns", "exec", n.pod, "iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(foreign)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("foreign rules: %v: %s", err, out)
	}
	before := natSave(t, n.pod)

	c := DefaultConfig()
	c.CaptureDNS = true
	c.ExcludeInboundPorts = []uint16{9091}
	c.ExcludeOutboundPorts = []uint16{8081}
	tables := nsTables(n.pod)
	res, err := tables.Apply(ctx, c)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res) != 1 || !res[0].Changed {
		t.Fatalf("first Apply: %+v, want one changed IPv4 result", res)
	}
	applied := natSave(t, n.pod)
	want, _ := Rules(c, IPv4)
	if d := diffLines(want, captureLines(applied)); d != "" {
		t.Errorf("iptables-save does not show Rules() as rendered:\n%s\nfull dump:\n%s", d, applied)
	}

	// Idempotent: a second Apply runs nothing and the table is unchanged.
	res, err = tables.Apply(ctx, c)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if res[0].Changed {
		t.Errorf("second Apply changed the table; script:\n%s", res[0].Script)
	}
	if again := natSave(t, n.pod); again != applied {
		t.Errorf("nat table changed by a re-apply:\nbefore:\n%s\nafter:\n%s", applied, again)
	}

	for _, tc := range []struct {
		name string
		got  func() string
		want string
	}{
		{"outbound TCP lands on the sidecar with its original destination",
			func() string { return ask(t, n.pod, peer8080) }, "sidecar-out " + peer8080},
		{"the proxy UID is not captured",
			func() string { return askAsUID(t, n.pod, peer8080, c.ProxyUID) }, "peer 8080"},
		{"another UID is captured",
			func() string { return askAsUID(t, n.pod, peer8080, c.ProxyUID+1) }, "sidecar-out " + peer8080},
		{"an excluded outbound port is not captured",
			func() string { return ask(t, n.pod, peerIP+":8081") }, "peer 8081"},
		{"loopback is not captured",
			func() string { return ask(t, n.pod, "127.0.0.1:9092") }, "pod lo 9092"},
		{"inbound TCP lands on the sidecar with its original destination",
			func() string { return ask(t, n.peer, podIP+":9090") }, "sidecar-in " + podIP + ":9090"},
		{"an excluded inbound port is not captured",
			func() string { return ask(t, n.peer, podIP+":9091") }, "pod 9091"},
		{"DNS over UDP goes to the sidecar",
			func() string { return askUDP(t, n.pod, peerIP+":53") }, "sidecar-dns"},
		{"DNS over TCP goes to the sidecar",
			func() string { return ask(t, n.pod, peerIP+":53") }, "sidecar-dns-tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.got(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}

	res, err = tables.Remove(ctx, c)
	if err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if !res[0].Changed {
		t.Errorf("Remove changed nothing")
	}
	if after := natSave(t, n.pod); after != before {
		t.Errorf("Remove did not restore the table:\nbefore Apply:\n%s\nafter Remove:\n%s", before, after)
	}
	if got := ask(t, n.pod, peer8080); got != "peer 8080" {
		t.Errorf("after Remove, %s answered %q", peer8080, got)
	}
	if got := askUDP(t, n.pod, peerIP+":53"); got != "peer dns" {
		t.Errorf("after Remove, DNS answered %q", got)
	}
	if res, err := tables.Remove(ctx, c); err != nil || res[0].Changed {
		t.Errorf("second Remove = %+v, %v; want no change", res, err)
	}
	t.Logf("netns capture test body took %v", time.Since(start).Round(time.Millisecond))
}

// TestApplyReplacesConfig: a new Config replaces the rules in place, and
// chains it no longer needs go.
func TestApplyReplacesConfig(t *testing.T) {
	requireNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := newTestNet(t, "replace")
	tables := nsTables(n.pod)
	first := DefaultConfig()
	first.OutboundCIDRs = prefixes("198.18.255.0/30")
	second := DefaultConfig()
	second.ExcludeOutboundCIDRs = prefixes("198.18.255.2/32")
	for _, c := range []Config{first, second} {
		if _, err := tables.Apply(ctx, c); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		want, _ := Rules(c, IPv4)
		if d := diffLines(want, captureLines(natSave(t, n.pod))); d != "" {
			t.Errorf("after Apply(%v):\n%s", c.OutboundCIDRs, d)
		}
	}
	// second excludes the peer: its traffic goes straight there.
	server(t, listen(t, n.peer, "tcp4", peerIP+":8080"), fixed("peer 8080"))
	if got := ask(t, n.pod, peerIP+":8080"); got != "peer 8080" {
		t.Errorf("excluded CIDR: got %q", got)
	}
	if _, err := tables.Remove(ctx, second); err != nil {
		t.Fatal(err)
	}
	if left := captureLines(natSave(t, n.pod)); len(left) != 0 {
		t.Errorf("Remove left %q", left)
	}
}

// TestApplyIPv6 installs, re-installs and removes the rules with ip6tables
// too (rules only: the test network has no IPv6 addresses).
func TestApplyIPv6(t *testing.T) {
	requireNetns(t)
	if _, err := exec.LookPath("ip6tables-restore"); err != nil {
		t.Skip("ip6tables-restore not found (Debian's iptables package ships it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := newTestNet(t, "v6")
	tables := nsTables(n.pod)
	c := DefaultConfig()
	c.IPv6, c.CaptureDNS = true, true
	c.ExcludeOutboundCIDRs = prefixes("10.0.0.0/8", "fd00::/8")
	save6 := func() string {
		out, err := exec.Command("ip", "netns", "exec", n.pod, "ip6tables-save", "-t", "nat").CombinedOutput()
		if err != nil {
			t.Fatalf("ip6tables-save: %v: %s", err, out)
		}
		return string(out)
	}
	for i, wantChanged := range []bool{true, false} {
		res, err := tables.Apply(ctx, c)
		if err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
		if len(res) != 2 || res[1].Family != IPv6 || res[1].Changed != wantChanged {
			t.Fatalf("Apply #%d = %+v, want an IPv6 result with Changed=%v", i+1, res, wantChanged)
		}
	}
	want, _ := Rules(c, IPv6)
	if d := diffLines(want, captureLines(save6())); d != "" {
		t.Errorf("ip6tables-save does not show Rules(IPv6):\n%s", d)
	}
	if _, err := tables.Remove(ctx, c); err != nil {
		t.Fatal(err)
	}
	if left := captureLines(save6()); len(left) != 0 {
		t.Errorf("Remove left %q", left)
	}
}

// TestOriginalDstNotRedirected: a socket that is not a TCP connection, and
// an untracked connection, give errors that say so.
func TestOriginalDstNotRedirected(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := OriginalDst(a); err == nil || !strings.Contains(err.Error(), "has no socket") {
		t.Errorf("OriginalDst(pipe) = %v", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Loopback of the test's own namespace: either conntrack tracks the
	// connection (the answer is its own address) or it does not (an error
	// wrapping ErrNotRedirected).
	dst, err := OriginalDst(s)
	switch {
	case err == nil:
		if want := netip.MustParseAddrPort(ln.Addr().String()); dst != want {
			t.Errorf("OriginalDst = %v, want the local address %v", dst, want)
		}
	case !errors.Is(err, ErrNotRedirected):
		t.Errorf("OriginalDst = %v, want ErrNotRedirected", err)
	}
}

func diffLines(want, got []string) string {
	if slices.Equal(want, got) {
		return ""
	}
	return "want:\n  " + strings.Join(want, "\n  ") + "\ngot:\n  " + strings.Join(got, "\n  ") + "\n(" + strconv.Itoa(len(got)) + " lines)"
}

// BenchmarkOriginalDst measures the per-connection cost the proxy pays: one
// getsockopt on a connection the nat table really redirected.
func BenchmarkOriginalDst(b *testing.B) {
	requireNetns(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := newTestNet(b, "bench")
	if _, err := nsTables(n.pod).Apply(ctx, DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	ln := listen(b, n.pod, "tcp4", "0.0.0.0:15001")
	defer ln.Close()
	var c net.Conn
	if err := inNetns(n.pod, func() (err error) { c, err = net.DialTimeout("tcp4", peerIP+":8080", 5*time.Second); return err }); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	want := netip.MustParseAddrPort(peerIP + ":8080")
	b.ReportAllocs()
	for b.Loop() {
		dst, err := OriginalDst(s)
		if err != nil || dst != want {
			b.Fatalf("OriginalDst = %v, %v; want %v", dst, err, want)
		}
	}
}

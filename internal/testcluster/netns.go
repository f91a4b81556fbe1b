package testcluster

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// hostSideIP is the address of every host-side veth and the pods' default
// gateway. It is link-local: it never routes off the machine.
const hostSideIP = "169.254.1.1"

// CanRunRealPods returns nil if this process can create network namespaces:
// it runs as root and iproute2's `ip` is installed.
func CanRunRealPods() error {
	if os.Geteuid() != 0 {
		return errors.New("real pods need root to create network namespaces (run the tests as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("real pods need iproute2's `ip` (run `make testbins`, which installs it, or apt-get install iproute2)")
	}
	return nil
}

// netnsPrefix is the prefix of every namespace of slot s; hostVethPrefix of
// every host-side veth. Both stay unique per slot so a sweep never touches
// another live cluster's objects.
func netnsPrefix(s int) string    { return fmt.Sprintf("cwtc%02d-", s) }
func hostVethPrefix(s int) string { return fmt.Sprintf("cwtc%02dh", s) }

// podNet is one pod's namespace and veth pair.
type podNet struct {
	ns       string // network namespace name
	hostVeth string
	ip       netip.Addr
}

// ip runs `ip args...` and returns a precise error with its output.
func ipCmd(stdin string, args ...string) error {
	cmd := exec.Command("ip", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// setupPodNet creates namespace ns holding ip on eth0, a veth to the host
// (hostVeth, address 169.254.1.1/32, forwarding on) and a /32 route to ip
// on the host.
func setupPodNet(ns, hostVeth string, ip netip.Addr) (*podNet, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("pod IP %s: only IPv4 is supported", ip)
	}
	pn := &podNet{ns: ns, hostVeth: hostVeth, ip: ip}
	if err := ipCmd("", "netns", "add", ns); err != nil {
		return nil, err
	}
	host := fmt.Sprintf(`link add %[1]s type veth peer name eth0 netns %[2]s
addr add %[3]s/32 dev %[1]s
link set %[1]s up
`, hostVeth, ns, hostSideIP)
	if err := ipCmd(host, "-batch", "-"); err != nil {
		pn.teardown()
		return nil, err
	}
	inside := fmt.Sprintf(`link set lo up
addr add %[1]s/32 dev eth0
link set eth0 up
route add %[2]s dev eth0 scope link
route add default via %[2]s dev eth0
`, ip, hostSideIP)
	if err := ipCmd(inside, "-n", ns, "-batch", "-"); err != nil {
		pn.teardown()
		return nil, err
	}
	if err := ipCmd("", "route", "add", ip.String()+"/32", "dev", hostVeth, "src", hostSideIP); err != nil {
		pn.teardown()
		return nil, err
	}
	// Pods reach each other through the host, as on a node: IPv4
	// forwarding is decided by the interface a packet comes in on, so
	// this forwards what the pod sends and nothing else.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+hostVeth+"/forwarding", []byte("1"), 0o644); err != nil {
		pn.teardown()
		return nil, fmt.Errorf("enable forwarding from pod %s (veth %s): %w", ip, hostVeth, err)
	}
	return pn, nil
}

// teardown deletes the host veth (its peer and the route go with it) and
// the namespace.
func (pn *podNet) teardown() error {
	var errs []error
	if linkExists(pn.hostVeth) {
		errs = append(errs, ipCmd("", "link", "del", pn.hostVeth))
	}
	if netnsExists(pn.ns) {
		errs = append(errs, ipCmd("", "netns", "del", pn.ns))
	}
	return errors.Join(errs...)
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// sweepSlot deletes namespaces and host veths of slot s. Only call it while
// holding the slot, or for a slot no one holds.
func sweepSlot(s int) error {
	var errs []error
	if links, err := os.ReadDir("/sys/class/net"); err == nil {
		for _, l := range links {
			if strings.HasPrefix(l.Name(), hostVethPrefix(s)) {
				errs = append(errs, ipCmd("", "link", "del", l.Name()))
			}
		}
	}
	if nss, err := os.ReadDir("/run/netns"); err == nil {
		for _, n := range nss {
			if strings.HasPrefix(n.Name(), netnsPrefix(s)) {
				errs = append(errs, ipCmd("", "netns", "del", n.Name()))
			}
		}
	}
	return errors.Join(errs...)
}

// Sweep removes the network namespaces and links of every slot that no
// running cluster holds: what a test binary killed with SIGKILL leaves.
func Sweep() error {
	if err := CanRunRealPods(); err != nil {
		return nil // nothing could have been created
	}
	if err := os.MkdirAll(lockDir(), 0o755); err != nil {
		return err
	}
	var errs []error
	for i := 0; i < MaxSlots; i++ {
		s, err := tryLockSlot(i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s == nil {
			continue // held by a live cluster
		}
		errs = append(errs, sweepSlot(i))
		s.release()
	}
	return errors.Join(errs...)
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		noIptables bool // PATH without iptables
		wantCode   int
		wantOut    []string // substrings of stdout
		wantErr    []string // substrings of stderr
	}{
		{"help", []string{"-h"}, false, exitOK, nil, []string{"usage: causeway-init", "-exclude-outbound-cidrs CIDRs"}},
		{"version", []string{"--version"}, false, exitOK, []string{"causeway-init dev"}, nil},
		{"dry run", []string{"--dry-run", "--capture-dns", "--exclude-inbound-ports=15021"}, true, exitOK,
			[]string{"dry run: ipv4 nat table would hold:", "-A CAUSEWAY_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
				"-A CAUSEWAY_OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053"}, nil},
		{"dry run ipv6", []string{"--dry-run", "--ipv6"}, true, exitOK, []string{"dry run: ipv6 nat table would hold:", "-d ::1/128 -j RETURN"}, nil},
		{"dry run remove", []string{"--dry-run", "--remove"}, true, exitOK, []string{"--remove would delete every CAUSEWAY_* chain"}, nil},
		{"invalid config lists every problem", []string{"--inbound-port=0", "--exclude-outbound-cidrs=10.0.0.1/8"}, false, exitUsage, nil,
			[]string{"--inbound-port 0: port 0 is not a port", "did you mean 10.0.0.0/8?"}},
		{"bad flag value", []string{"--exclude-inbound-ports=ssh"}, false, exitUsage, nil, []string{`port "ssh": want a number from 1 to 65535`}},
		{"stray argument", []string{"apply"}, false, exitUsage, nil, []string{`unexpected argument "apply"`}},
		{"iptables missing", nil, true, exitNoIptables, nil,
			[]string{"iptables-save: iptables not found: install iptables", "or run with --dry-run"}},
		{"iptables missing on remove", []string{"--remove"}, true, exitNoIptables, nil, []string{"iptables not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noIptables {
				t.Setenv("PATH", t.TempDir())
			}
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, &stdout, &stderr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, &stdout)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, &stderr)
				}
			}
		})
	}
}

// TestRunInNetns runs the command for real in a throwaway network
// namespace: install, re-install (nothing changes), remove, remove again.
func TestRunInNetns(t *testing.T) {
	var why string
	if os.Geteuid() != 0 {
		why = "not root: the test creates a network namespace (run the tests as root)"
	} else if _, err := exec.LookPath("iptables-restore"); err != nil {
		why = "iptables not found: run `make testbins` as root, or apt-get install iptables"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "ip not found: run `make testbins` as root, or apt-get install iproute2"
	}
	if why != "" {
		if os.Getenv("CAUSEWAY_REQUIRE_TESTBINS") == "1" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	ns := fmt.Sprintf("cwcap-%d-init", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del: %v: %s", err, out)
		}
	})
	steps := []struct {
		args    []string
		wantOut string
	}{
		{[]string{"--capture-dns"}, "ipv4 nat table: installed"},
		{[]string{"--capture-dns"}, "ipv4 nat table: already in place, nothing changed"},
		{[]string{"--remove"}, "ipv4 nat table: removed the CAUSEWAY_* chains"},
		{[]string{"--remove"}, "nothing to remove"},
	}
	for _, s := range steps {
		var stdout, stderr bytes.Buffer
		var code int
		// The iptables tools run by the command are forked from this
		// thread, so they act on ns.
		if err := inNetns(ns, func() { code = run(s.args, &stdout, &stderr) }); err != nil {
			t.Fatal(err)
		}
		if code != exitOK || !strings.Contains(stdout.String(), s.wantOut) {
			t.Fatalf("causeway-init %q: exit %d, want 0 and %q\nstdout:\n%s\nstderr:\n%s", s.args, code, s.wantOut, &stdout, &stderr)
		}
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "iptables-save", "-t", "nat").CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("CAUSEWAY_")) {
		t.Errorf("after --remove: %v\n%s", err, out)
	}
}

// inNetns runs fn on an OS thread inside namespace ns, then returns the
// thread to its namespace (or, if that fails, leaves it locked so the
// runtime discards it).
func inNetns(ns string, fn func()) error {
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
		fn()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- nil
	}()
	return <-errc
}

// TestInitStaysLean: the init container's binary links neither client-go
// nor package testing.
func TestInitStaysLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "testing" || strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "google.golang.org/grpc") {
			t.Errorf("cmd/causeway-init depends on %s; the init binary must stay small", dep)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// execMainEnv makes the test binary run `causeway` itself (TestMain), so
// the link and check tests start real `causeway control-plane` processes
// without building the binary.
const execMainEnv = "CAUSEWAY_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	code := m.Run()
	shared.stop()
	os.Exit(code)
}

// federatedPair is two real control planes, east (127.220.1.1) and west
// (127.220.2.1), with mTLS, federated with each other, started once for
// the package by the first test that needs them and stopped by TestMain.
type federatedPair struct {
	once  sync.Once
	dir   string
	procs []*exec.Cmd
	err   error
}

var shared federatedPair

var pairIPs = map[string]string{"east": "127.220.1.1", "west": "127.220.2.1"}

func (p *federatedPair) start(t *testing.T) string {
	t.Helper()
	p.once.Do(func() { p.err = p.startOnce() })
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.dir
}

func (p *federatedPair) startOnce() error {
	dir, err := os.MkdirTemp("", "causeway-linkcheck-")
	if err != nil {
		return err
	}
	p.dir = dir
	for name := range pairIPs {
		td := spiffeid.RequireTrustDomainFromString(name + ".local")
		for _, d := range []string{"folder", "ca"} {
			if err := os.MkdirAll(filepath.Join(dir, name, d), 0o700); err != nil {
				return err
			}
		}
		ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{Validity: 365 * 24 * time.Hour})
		if err != nil {
			return err
		}
		if err := ca.WriteFiles(filepath.Join(dir, name, "ca")); err != nil {
			return err
		}
		if err := issuer.WriteTokenFile(filepath.Join(dir, name, "tokens.txt"), nil); err != nil {
			return err
		}
	}
	for name, ip := range pairIPs {
		peer := "west"
		if name == "west" {
			peer = "east"
		}
		args := []string{"control-plane", "--source", "folder", "--dir", filepath.Join(dir, name, "folder"), "--cluster", name,
			"--network", "flat", "--poll", "100ms", "--xds", ip + ":15010", "--admin", ip + ":15011", "--mtls",
			"--ca-dir", filepath.Join(dir, name, "ca"), "--tokens-file", filepath.Join(dir, name, "tokens.txt"),
			"--svid-listen", ip + ":15012", "--bundle-listen", ip + ":15013", "--federation-listen", ip + ":15014",
			"--peer", fmt.Sprintf("cluster=%s,trust-domain=%s.local,federation=%s:15014,bundle=https://%s:15013/,bundle-file=%s",
				peer, peer, pairIPs[peer], pairIPs[peer], filepath.Join(dir, peer, "ca", trust.CACertFile))}
		log, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return err
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), execMainEnv+"=1")
		cmd.Stdout, cmd.Stderr = log, log // files: no copying goroutines
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		log.Close()
		if err != nil {
			return fmt.Errorf("start %s control plane: %w", name, err)
		}
		p.procs = append(p.procs, cmd)
	}
	// Ready: both serve a model, their link is connected and each has
	// fetched the other's bundle.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := 0
		for _, ip := range pairIPs {
			var rep controlplane.StatusReport
			resp, err := hc.Get("http://" + ip + ":15011/status")
			if err != nil {
				continue
			}
			err = json.NewDecoder(resp.Body).Decode(&rep)
			resp.Body.Close()
			if err == nil && rep.Ready && len(rep.Links) == 1 && rep.Links[0].Healthy && len(rep.Trust) == 1 && rep.Trust[0].Healthy {
				ready++
			}
		}
		if ready == len(pairIPs) {
			return nil
		}
		select {
		case <-ctx.Done():
			logs, _ := os.ReadFile(filepath.Join(dir, "east.log"))
			return fmt.Errorf("east and west control planes not federated in 30s; east's log:\n%s", logs)
		case <-tick.C:
		}
	}
}

func (p *federatedPair) stop() {
	for _, c := range p.procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range p.procs {
		timer := time.AfterFunc(5*time.Second, func() { _ = c.Process.Kill() }) // SIGTERM ignored: do not hang
		_ = c.Wait()
		timer.Stop()
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// normalize replaces the temporary directory and east's roots (random
// keys) so golden files are stable.
func normalize(t *testing.T, dir string, out []byte) []byte {
	t.Helper()
	s := string(out)
	pemText, err := os.ReadFile(filepath.Join(dir, "east", "ca", trust.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	var ind []string
	for l := range strings.SplitSeq(strings.TrimRight(string(pemText), "\n"), "\n") {
		ind = append(ind, "    "+l)
	}
	s = strings.ReplaceAll(s, strings.Join(ind, "\n"), "    <east's ca.crt>")
	s = strings.ReplaceAll(s, dir, "$TMP")
	return []byte(s)
}

// TestLinkGolden prints the link (Peer object) of a real, running east
// control plane.
func TestLinkGolden(t *testing.T) {
	dir := shared.start(t)
	defer goleak.VerifyNone(t)
	var stdout, stderr bytes.Buffer
	if code := runLink([]string{"--admin", "127.220.1.1:15011"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("no trust bundle in:\n%s", stdout.String())
	}
	golden(t, "link-east.golden", normalize(t, dir, stdout.Bytes()))

	stdout.Reset()
	if code := runLink([]string{"--admin", "127.220.1.1:15011", "-o", "json", "--federation-address", "east.example.com:15014"}, &stdout, &stderr); code != 0 {
		t.Fatalf("-o json: exit %d: %s", code, stderr.String())
	}
	var li linkInfo
	if err := json.Unmarshal(stdout.Bytes(), &li); err != nil || li.Federation != "east.example.com:15014" || li.TrustDomain != "east.local" ||
		li.BundleEndpointID != "spiffe://east.local/causeway/control-plane" {
		t.Errorf("-o json: %+v (%v)", li, err)
	}
}

func TestLinkRefuses(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--admin", "127.220.9.1:15011", "--timeout", "2s"}, 1, "connection refused"},
		{[]string{"--admin", "nope"}, 2, "want host:port"},
		{[]string{"-o", "xml"}, 2, `-o "xml": want "yaml" or "json"`},
		{[]string{"--bundle-endpoint", "http://x/"}, 2, "want an https:// URL"},
		{[]string{"--state", "/nonexistent/causeway-up.json"}, 2, "no causeway up found"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runLink(tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// TestCheckGolden runs `causeway check` against the real east and west
// control planes (and one that is not running), and the pre-flight of a
// control-plane command line whose xds address east already holds.
func TestCheckGolden(t *testing.T) {
	dir := shared.start(t)
	defer goleak.VerifyNone(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{"check-post.golden", []string{"--admin", "127.220.1.1:15011,127.220.2.1:15011,127.220.9.1:15011", "--timeout", "2s"}, 1},
		{"check-post-ok.golden", []string{"--admin", "127.220.1.1:15011,127.220.2.1:15011"}, 0},
		{"check-preflight.golden", []string{"--control-plane", "--cluster", "north", "--dir", filepath.Join(dir, "north-folder"),
			"--xds", "127.220.1.1:15010", "--admin", "127.220.3.1:15011", "--mtls", "--ca-dir", filepath.Join(dir, "east", "ca"),
			"--tokens-file", filepath.Join(dir, "north-tokens.txt"), "--svid-listen", "127.220.3.1:15012", "--bundle-listen", "127.220.3.1:15013",
			"--federation-listen", "127.220.3.1:15014",
			"--peer", "cluster=east,trust-domain=east.local,federation=127.220.1.1:15014,bundle=https://127.220.1.1:15013/,bundle-file=" + filepath.Join(dir, "east", "ca", trust.CACertFile),
			"--peer", "cluster=west,trust-domain=west.local,federation=127.220.2.1:15014,bundle=https://127.220.2.1:15013/,bundle-file=" + filepath.Join(dir, "west-missing.pem"),
		}, 1},
		{"check-up-preflight.golden", []string{"--state", filepath.Join(dir, "no-up.json"), "--example", filepath.Join(dir, "missing.yaml")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runCheck(tt.args, &stdout, &stderr); code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.wantCode, stderr.String())
			}
			golden(t, tt.name, normalize(t, dir, stdout.Bytes()))
		})
	}
}

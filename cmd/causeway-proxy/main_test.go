package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMDrainsGracefully runs the real binary from a static bootstrap,
// starts a slow request, sends SIGTERM, and checks that the request
// completes, that new connections are refused, and that the process exits 0.
func TestSIGTERMDrainsGracefully(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "causeway-proxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	// A backend that holds one request until told to answer.
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	})}
	go backend.Serve(lis)
	defer backend.Close()

	// The proxy's own listeners go on a loopback IP of their own with fixed
	// ports, so no concurrent test can take them before the proxy binds.
	ip, listen, admin := fmt.Sprintf("127.%d.%d.%d", 64+rand.IntN(64), rand.IntN(256), 1+rand.IntN(254)), 15001, 15000
	boot := filepath.Join(dir, "bootstrap.yaml")
	_, bport, _ := net.SplitHostPort(lis.Addr().String())
	os.WriteFile(boot, []byte(fmt.Sprintf(bootstrap, ip, admin, ip, listen, bport)), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "sidecar", "--bootstrap", boot, "--access-log", "off", "--drain-timeout", "10s")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	defer cmd.Process.Kill()

	url := fmt.Sprintf("http://%s:%d/slow", ip, listen)
	waitReady(t, fmt.Sprintf("http://%s:%d/ready", ip, admin))

	result := make(chan string, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the request never reached the backend")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once the listener has closed.
	deadline := time.Now().Add(10 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", ip, listen), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts connections 10s after SIGTERM")
		}
		<-poll.C
	}
	close(release)
	if got := <-result; got != "200 finished" {
		t.Errorf("in-flight request during drain: %q, want 200 finished", got)
	}
	if err := cmd.Wait(); err != nil {
		var all []string
		for l := range logs {
			all = append(all, l)
		}
		t.Fatalf("exit after SIGTERM: %v\n%s", err, strings.Join(all, "\n"))
	}
}

const bootstrap = `
admin:
  address: {socket_address: {address: %s, port_value: %d}}
static_resources:
  listeners:
  - name: out
    address: {socket_address: {address: %s, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: out
          route_config:
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: backend}}]}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}
`

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 20s: %v", url, err)
		}
		<-tick.C
	}
}

package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/internal/up"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// e2eBlock is this test's loopback block (up.Options.Block): 127.170-210.x.x.
const e2eBlock = 170

// browserTools finds chromium, node and hack/dashboard's playwright-core;
// without them the test is skipped, or fails with
// $CAUSEWAY_REQUIRE_TESTBINS=1 (make test).
func browserTools(t *testing.T) (chromium, node, script string) {
	t.Helper()
	var missing []string
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		missing = append(missing, "chromium (as root: apt-get install chromium)")
	}
	node, err = exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node (apt-get install nodejs npm)")
	}
	dir, _ := filepath.Abs(filepath.Join("..", "..", "hack", "dashboard"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "playwright-core (make dashboard-deps, which runs npm install in hack/dashboard)")
	}
	if len(missing) > 0 {
		msg := "dashboard end-to-end test needs " + strings.Join(missing, ", ")
		if os.Getenv("CAUSEWAY_REQUIRE_TESTBINS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return chromium, node, filepath.Join(dir, "drive.mjs")
}

// browser is a running drive.mjs: steps go to its stdin, "ok"/"fail"
// lines come back.
type browser struct {
	t     *testing.T
	in    io.WriteCloser
	lines chan string
	cmd   *exec.Cmd
	done  chan struct{}
}

func openBrowser(ctx context.Context, t *testing.T, url string) *browser {
	t.Helper()
	chromium, node, script := browserTools(t)
	cmd := exec.CommandContext(ctx, node, script, url, chromium)
	cmd.Dir = filepath.Dir(script)
	cmd.Stderr = &testWriter{t: t, prefix: "drive.mjs: "}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, in: in, lines: make(chan string, 16), cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
		close(b.lines)
	}()
	b.expect("ok open")
	return b
}

// expect waits for the next line and fails unless it starts with want.
func (b *browser) expect(want string) string {
	b.t.Helper()
	select {
	case l, ok := <-b.lines:
		if !ok || !strings.HasPrefix(l, want) {
			b.t.Fatalf("drive.mjs: got %q (open %v), want %q", l, ok, want)
		}
		return l
	case <-time.After(90 * time.Second):
		b.t.Fatalf("drive.mjs: no answer in 90s, want %q", want)
	}
	return ""
}

// step sends one step and waits for its "ok".
func (b *browser) step(n int, s map[string]any) string {
	b.t.Helper()
	j, _ := json.Marshal(s)
	if _, err := fmt.Fprintf(b.in, "%s\n", j); err != nil {
		b.t.Fatalf("drive.mjs: %v", err)
	}
	return b.expect(fmt.Sprintf("ok %d", n))
}

func (b *browser) close() {
	b.in.Close()
	for range b.lines {
	}
	<-b.done
	_ = b.cmd.Wait()
}

type testWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestDashboardFailover brings up the three-cluster example (block 170),
// drives traffic from east's client to checkout, opens the dashboard in
// headless Chromium, and checks that it shows the federation (6 links
// connected, 6 peer bundles with a sequence), east's checkout endpoints
// ready and the traffic staying in the client's zone; then SIGKILLs east's
// checkout pods (endpoints marked not ready, as Kubernetes would) and
// checks that the page shows them unhealthy, their sidecars down, and the
// traffic moving to west. The last screenshot is docs/dashboard.png
// (with CAUSEWAY_DASHBOARD_SCREENSHOT=1).
func TestDashboardFailover(t *testing.T) {
	browserTools(t) // skip or fail before bringing anything up
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	top, err := up.LoadTopology(filepath.Join("..", "..", "examples", "three-clusters", "federation.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// $CAUSEWAY_UP_BIN_DIR: binaries already built (causeway,
	// causeway-proxy, demoapp); by default they are built for this test.
	bins := os.Getenv("CAUSEWAY_UP_BIN_DIR")
	if bins == "" {
		bins = t.TempDir()
	}
	var progress strings.Builder
	f, err := up.Start(ctx, up.Options{Topology: top, BinDir: bins, Out: &progress, StateFile: "-", Block: e2eBlock, ReadyTimeout: 45 * time.Second})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	defer f.Close()
	t.Logf("federation ready in %s (%s since the test started, binaries built included)", f.Ready.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	tctx, stopTraffic := context.WithCancel(ctx)
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}, Timeout: 5 * time.Second}
	var traffic sync.WaitGroup
	var result up.PhaseResult
	traffic.Go(func() { result = f.Drive(tctx, hc, f.ClustersetHost("checkout"), 50, 2*time.Minute) })
	defer func() {
		stopTraffic()
		traffic.Wait()
		hc.CloseIdleConnections()
		t.Logf("traffic: %d requests, %d failed, by zone %v", result.Requests, result.Failed, result.ByZone)
	}()

	opened := time.Now()
	b := openBrowser(ctx, t, f.DashboardURL())
	defer b.close()
	t.Logf("chromium opened the page in %s", time.Since(opened).Round(time.Millisecond))
	b.step(1, map[string]any{"wait": `document.querySelectorAll('[data-link][data-state="connected"]').length === 6 &&
		[...document.querySelectorAll('#trust tbody tr[data-trust] td:nth-child(4)')].filter(td => /^[0-9]+$/.test(td.textContent)).length === 6 &&
		document.querySelector('[data-loc="checkout/east/region-1a"][data-ready="2"]') !== null &&
		document.querySelector('[data-loc="checkout/west/region-1c"][data-ready="2"]') !== null &&
		Number(document.querySelector('[data-flow="east>east/region-1a"]')?.dataset.rps || 0) > 10`, "timeout_ms": 45000})
	t.Logf("page shows the federation and the traffic %s after it opened", time.Since(opened).Round(time.Millisecond))

	// Each control plane serves its own cluster's dashboard too.
	var own struct {
		Clusters []struct {
			Name      string `json:"name"`
			Reachable bool   `json:"reachable"`
		} `json:"clusters"`
	}
	resp, err := hc.Get(fmt.Sprintf("http://127.%d.1.1:15011/dashboard/state.json", e2eBlock))
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&own)
	resp.Body.Close()
	if err != nil || len(own.Clusters) != 1 || own.Clusters[0].Name != "east" || !own.Clusters[0].Reachable {
		t.Errorf("east control plane's /dashboard/state.json: %+v (%v), want east reachable", own, err)
	}

	killed, err := f.Kill(func(p *up.Pod) bool { return p.Cluster == "east" && p.Service == "checkout" })
	if err != nil || len(killed) != 3 {
		t.Fatalf("Kill: %d pods, %v; want east's 3 checkout pods", len(killed), err)
	}
	killedAt := time.Now()
	b.step(2, map[string]any{"wait": `document.querySelector('[data-loc="checkout/east/region-1a"][data-ready="0"]') !== null &&
		document.querySelector('[data-loc="checkout/east/region-1b"][data-ready="0"]') !== null &&
		document.querySelector('[data-pod="east/checkout-0"][data-up="false"]') !== null &&
		Number(document.querySelector('[data-flow="east>west/region-1c"]')?.dataset.rps || 0) > 10 &&
		Number(document.querySelector('[data-flow="east>east/region-1a"]')?.dataset.rps || 0) === 0`, "timeout_ms": 45000})
	t.Logf("page shows east's checkout down and the traffic in west %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	// The screenshot goes to the test's temporary directory, or to
	// docs/dashboard.png with CAUSEWAY_DASHBOARD_SCREENSHOT=1 (so a test
	// run never dirties the tree).
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("CAUSEWAY_DASHBOARD_SCREENSHOT") == "1" {
		shot, _ = filepath.Abs(filepath.Join("..", "..", "docs", "dashboard.png"))
	}
	b.step(3, map[string]any{"screenshot": shot})
	t.Logf("screenshot: %s; whole test %s", shot, time.Since(start).Round(time.Millisecond))
}

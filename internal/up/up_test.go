package up

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binDir holds the binaries, built once per test binary by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "causeway-up-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := 1
	if _, err := ensureBinaries(context.Background(), dir, "", os.Stderr); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
	} else if code = m.Run(); code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func loadExample(t *testing.T) *Topology {
	t.Helper()
	top, err := LoadTopology(filepath.Join("..", "..", "examples", "three-clusters", "federation.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// TestFailoverAcrossClusters brings up the three-cluster example as real
// processes, drives 200 req/s from east's client sidecar to
// checkout.shop.svc.clusterset.local, SIGKILLs east's checkout pods (app
// and sidecar) and expects every request answered by west, with zero
// failures; then restores them and expects traffic back in east.
func TestFailoverAcrossClusters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var progress strings.Builder
	f, err := Start(ctx, Options{Topology: loadExample(t), BinDir: binDir, Out: &progress})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	t.Cleanup(f.Close)
	t.Logf("ready in %s:\n%s", f.Ready.Round(time.Millisecond), progress.String())

	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	host := f.ClustersetHost("checkout")
	const rate, phase = 200, 3 * time.Second
	check := func(name string, r PhaseResult, want func(map[string]int) bool, wantText string) {
		t.Helper()
		t.Logf("%-28s requests %d failed %d by zone %v errors %v", name, r.Requests, r.Failed, r.ByZone, r.Errors)
		if r.Requests != int(phase.Seconds()*rate) {
			t.Errorf("%s: %d requests counted, want %d", name, r.Requests, int(phase.Seconds()*rate))
		}
		if r.Failed != 0 {
			t.Errorf("%s: %d of %d requests failed (%v), want 0", name, r.Failed, r.Requests, r.Errors)
		}
		if !want(r.ByZone) {
			t.Errorf("%s: served by %v, want %s", name, r.ByZone, wantText)
		}
	}
	only := func(zone string) func(map[string]int) bool {
		return func(m map[string]int) bool { return len(m) == 1 && m[zone] > 0 }
	}
	// Once east's checkout is gone, west (same region) takes the traffic.
	// A request whose first tries hit dead east pods retries in a locality
	// no try used yet, which may be south's (lb: a retry changes locality,
	// crossing priorities if need be), so south may answer a few.
	toWest := func(m map[string]int) bool {
		return m["east/region-1a"]+m["east/region-1b"] == 0 && m["west/region-1c"]*4 > 3*(m["west/region-1c"]+m["south/region-2a"])
	}

	check("all up", f.Drive(ctx, hc, host, rate, phase), only("east/region-1a"), "only east/region-1a (the client's zone)")

	killed, err := f.Kill(func(p *Pod) bool { return p.Service == "checkout" && p.Cluster == "east" })
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 3 {
		t.Fatalf("killed %d pods, want east's 3 checkout pods", len(killed))
	}
	check("east's checkout killed", f.Drive(ctx, hc, host, rate, phase), toWest,
		"none in east, over 3/4 in west/region-1c (same region, next priority), the rest in south")

	t0 := time.Now()
	if _, err := f.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restored east's checkout pods in %s", time.Since(t0).Round(time.Millisecond))
	check("east restored", f.Drive(ctx, hc, host, rate, phase), func(m map[string]int) bool {
		return m["east/region-1a"] > m["west/region-1c"]
	}, "mostly east/region-1a again")

	// The same failure with the control planes still advertising east's
	// endpoints: only the client's sidecar (retries to another locality,
	// outlier detection) can keep every request answered.
	if killed := f.KillProcesses(func(p *Pod) bool { return p.Service == "checkout" && p.Cluster == "east" }); len(killed) != 3 {
		t.Fatalf("killed %d pods, want east's 3 checkout pods", len(killed))
	}
	check("killed, endpoints still advertised", f.Drive(ctx, hc, host, rate, phase), toWest,
		"none in east, over 3/4 in west/region-1c: the data plane alone fails over")
}

// TestCloseLeavesNothingRunning: after Close, no process of the
// federation is alive.
func TestCloseLeavesNothingRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a federation")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	top := &Topology{Clusters: []ClusterSpec{{Name: "a", Region: "r", Zones: []string{"z1"}}, {Name: "b", Region: "r", Zones: []string{"z2"}}},
		Services: []ServiceSpec{{Name: "echo", Export: true, Replicas: map[string]int{"b/z2": 1}}},
		Client:   Placement{Cluster: "a", Zone: "z1"}}
	state := filepath.Join(t.TempDir(), "causeway-up.json")
	f, err := Start(ctx, Options{Topology: top, BinDir: binDir, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	checkStatus(t, ctx, state)
	var pids []int
	for _, p := range f.Pods() {
		for _, pr := range []*proc{p.app, p.sidecar} {
			if pr != nil {
				pids = append(pids, pr.cmd.Process.Pid)
			}
		}
	}
	for _, p := range append(f.cps, f.gws...) {
		pids = append(pids, p.cmd.Process.Pid)
	}
	f.Close()
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after Close: %v, want removed", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still has processes after Close (kill -0: %v)", pid, err)
		}
	}
}

// TestStartFailureNamesTheComponent: with west's admin port taken, Start
// fails naming west's control plane and its log, and stops what it started.
func TestStartFailureNamesTheComponent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.10.2.1:15011")
	if err != nil {
		t.Skipf("cannot hold west's admin port: %v", err)
	}
	defer ln.Close()
	_, err = Start(ctx, Options{Topology: loadExample(t), BinDir: binDir, ReadyTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "west control plane admin: 127.10.2.1:15011 is not free") {
		t.Fatalf("Start: %v, want west's control plane named with its address", err)
	}
	t.Logf("error: %v", err)
}

// checkStatus reads the state file and cluster a's /status: a imports
// echo from b over a connected link.
func checkStatus(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	s, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Clusters) != 2 || s.Clusters[0].Name != "a" {
		t.Fatalf("state %+v, want clusters a and b", s)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Clusters[0].Admin+"/status", nil)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Cluster  string
		Links    []struct{ Peer, State string }
		Imported []struct{ Name string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Cluster != "a" || len(r.Links) != 1 || r.Links[0].Peer != "b" || r.Links[0].State != "connected" || len(r.Imported) != 1 || r.Imported[0].Name != "echo" {
		t.Errorf("a's /status: %+v, want echo imported from b over a connected link", r)
	}
}

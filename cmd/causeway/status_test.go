package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/internal/up"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run go test ./cmd/causeway -run %s -update", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./cmd/causeway -run %s -update rewrites it)\ngot:\n%s\nwant:\n%s", path, t.Name(), got, want)
	}
}

// fixedReports is two clusters of a federation, one link stale with an
// error and one bundle that has never been fetched.
func fixedReports() []controlplane.StatusReport {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	seq := uint64(7)
	return []controlplane.StatusReport{
		{
			Cluster: "east", Network: "flat", TrustDomain: "east.local", Time: now, Ready: true, Services: 3, Endpoints: 7,
			Export: &controlplane.ExportStatus{Listen: "127.10.1.1:15014", Epoch: "e1", Revision: 4},
			Links: []controlplane.LinkStatus{
				{Peer: "north", TrustDomain: "north.local", Address: "127.10.3.1:15014", State: "stale", StaleSince: now.Add(-20 * time.Second),
					LastSync: now.Add(-21 * time.Second), Epoch: "n1", Revision: 2, Services: 1, Endpoints: 2, Connects: 1, Failures: 3,
					LastError: "rpc error: code = Unavailable desc = connection refused"},
				{Peer: "west", TrustDomain: "west.local", Address: "127.10.2.1:15014", State: "connected", Healthy: true,
					LastSync: now.Add(-2 * time.Second), Epoch: "w1", Revision: 9, Services: 2, Endpoints: 4, Connects: 1},
			},
			Trust: []controlplane.TrustStatus{
				{TrustDomain: "north.local", URL: "https://127.10.3.1:15013/", Profile: "https_spiffe", ConsecutiveFailures: 4,
					NextAttempt: now.Add(5 * time.Second), LastError: "fetching bundle: connection refused"},
				{TrustDomain: "west.local", URL: "https://127.10.2.1:15013/", Profile: "https_spiffe", Healthy: true, Sequence: &seq,
					Expiry: now.Add(364 * 24 * time.Hour), LastRefresh: now.Add(-90 * time.Second), Refreshes: 3},
			},
			Exported: []controlplane.ServiceStatus{{Namespace: "shop", Name: "checkout", Clusters: []string{"east"}, Endpoints: 2, Ready: 1}},
			Imported: []controlplane.ServiceStatus{{Namespace: "shop", Name: "checkout", Clusters: []string{"north", "west"}, Endpoints: 4, Ready: 4}},
			Proxies: []controlplane.ProxyStatus{
				{ID: "checkout-0.shop.east", Namespace: "shop", Cluster: "east", Locality: "us-east/us-east-1a", Kind: "sidecar", Streams: 1,
					Acked: map[string]string{"lds": "3f2a9c1d0b7e", "cds": "8e1b2c3d", "eds": "77aa0b1c2d", "sds": "c0ffee12"}},
				{ID: "client-0.shop.east", Namespace: "shop", Cluster: "east", Locality: "us-east/us-east-1a", Kind: "sidecar", Streams: 1},
			},
		},
		{
			Cluster: "west", TrustDomain: "west.local", Time: now, Ready: false,
			Problems: []string{"cart.yaml: document 2: Service shop/cart: spec.ports[0].port: must be 1-65535"},
		},
	}
}

func TestStatusGolden(t *testing.T) {
	var table bytes.Buffer
	writeStatusTable(&table, fixedReports())
	golden(t, "status-table.golden", table.Bytes())

	out := statusOutput{Clusters: fixedReports(), Errors: []statusError{{Cluster: "south", Admin: "http://127.10.4.1:15011",
		Error: "cluster south: admin http://127.10.4.1:15011: connection refused; is its control plane running? see /w/logs/south-control-plane.log"}}}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-json.golden", js.Bytes())

	var back statusOutput // the JSON is what `causeway status` reads back
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	writeStatusTable(&again, back.Clusters)
	if again.String() != table.String() {
		t.Errorf("table from the decoded JSON differs:\n%s\nwant:\n%s", again.String(), table.String())
	}
}

func TestStatusRefuses(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.json")
	// pid_max is at most 2^22: this pid cannot exist.
	if err := os.WriteFile(stale, []byte(`{"pid": 4194305, "work_dir": "/w", "clusters": [{"name": "east", "admin": "http://127.10.1.1:15011"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.json")
	if err := os.WriteFile(junk, []byte(`{`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no up", []string{"--state", filepath.Join(dir, "none.json")}, 2, "no causeway up found (no " + filepath.Join(dir, "none.json") + "): start one with `make up`, or pass --admin"},
		{"stale up", []string{"--state", stale}, 2, "names pid 4194305, which is not running"},
		{"junk state", []string{"--state", junk}, 2, "not a `causeway up` state file"},
		{"bad output", []string{"-o", "yaml", "--admin", "127.0.0.1:1"}, 2, `-o "yaml": want "table" or "json"`},
		{"bad admin", []string{"--admin", "127.0.0.1:1,nohost"}, 2, `--admin "nohost": want host:port`},
		{"admin path", []string{"--admin", "http://127.0.0.1:1/metrics"}, 2, `--admin "http://127.0.0.1:1/metrics": want host:port`},
		{"argument", []string{"east"}, 2, `unexpected argument "east"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runStatus(tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// oneSnapshot emits s once and waits for the end.
type oneSnapshot struct{ s *model.Snapshot }

func (o oneSnapshot) Run(ctx context.Context, emit func(*model.Snapshot)) error {
	emit(o.s)
	<-ctx.Done()
	return ctx.Err()
}

// TestStatusOfARunningControlPlane starts a control plane in-process with
// /status on a real admin listener and one proxy connected over ADS, finds
// it through a `causeway up` state file, and reads it with `causeway
// status`; a second cluster of the file, down, is named with its log.
func TestStatusOfARunningControlPlane(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ep := func(cluster string) model.Endpoint {
		return model.Endpoint{Address: "127.0.0.1", Ports: []model.EndpointPort{{Name: "http", Port: 18080}}, Cluster: cluster,
			Network: "flat", Locality: model.Locality{Region: "r1", Zone: "z1"}, Ready: true, Serving: true, Weight: 1}
	}
	ports := []model.ServicePort{{Name: "http", Port: 8080, Protocol: model.TCP}}
	snap := &model.Snapshot{Cluster: "east", Network: "flat", TrustDomain: "east.local", Namespaces: []string{"shop"},
		Services: []model.Service{
			{Namespace: "shop", Name: "cart", Ports: ports, Imported: true, Endpoints: []model.Endpoint{ep("west")}},
			{Namespace: "shop", Name: "web", Ports: ports, Exported: true, Endpoints: []model.Endpoint{ep("east")}},
		}}
	cp, err := controlplane.New(controlplane.Options{Cluster: "east", Network: "flat"})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { runDone <- cp.Run(rctx, oneSnapshot{snap}) }()
	defer func() { stop(); <-runDone }()

	mux := http.NewServeMux()
	mux.Handle("/status", cp.StatusHandler(controlplane.StatusSources{TrustDomain: "east.local"}))
	admin := httptest.NewServer(mux)
	defer admin.Close()

	conn, err := grpc.NewClient(cp.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	md := &structpb.Struct{Fields: map[string]*structpb.Value{"namespace": structpb.NewStringValue("shop"), "cluster": structpb.NewStringValue("east")}}
	if err := st.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType,
		Node: &corev3.Node{Id: "web-0.shop.east", Locality: &corev3.Locality{Region: "r1", Zone: "z1"}, Metadata: md}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	// ACK it, and wait until the control plane has seen the ACK.
	if err := st.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	acked := func() string {
		r, err := http.Get(admin.URL + "/status")
		if err != nil {
			return ""
		}
		defer r.Body.Close()
		var rep controlplane.StatusReport
		if json.NewDecoder(r.Body).Decode(&rep) != nil || len(rep.Proxies) != 1 {
			return ""
		}
		return rep.Proxies[0].Acked["cds"]
	}
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for acked() != resp.GetVersionInfo() {
		select {
		case <-deadline:
			t.Fatalf("the proxy's ACK of CDS version %q never showed in /status", resp.GetVersionInfo())
		case <-tick.C:
		}
	}

	// west's admin: an address on a loopback IP nothing listens on.
	down := "http://127.250.0.11:15011"
	state := filepath.Join(t.TempDir(), "causeway-up.json")
	b, _ := json.Marshal(up.State{PID: os.Getpid(), WorkDir: "/w", Clusters: []up.StateCluster{{Name: "east", Admin: admin.URL}, {Name: "west", Admin: down}}})
	if err := os.WriteFile(state, b, 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	code := runStatus([]string{"--state", state, "-o", "json", "--timeout", "5s"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "cluster west: admin "+down) || !strings.Contains(stderr.String(), "see /w/logs/west-control-plane.log") {
		t.Errorf("exit %d, stderr %q; want 1 and west named with its log", code, stderr.String())
	}
	var out statusOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if len(out.Clusters) != 1 || len(out.Errors) != 1 || out.Errors[0].Cluster != "west" {
		t.Fatalf("clusters %d, errors %+v; want east read and west failed", len(out.Clusters), out.Errors)
	}
	r := out.Clusters[0]
	if r.Cluster != "east" || !r.Ready || r.Services != 2 || r.TrustDomain != "east.local" {
		t.Errorf("report %+v, want east ready with 2 services", r)
	}
	if len(r.Exported) != 1 || r.Exported[0].Name != "web" || len(r.Imported) != 1 || r.Imported[0].Name != "cart" || r.Imported[0].Clusters[0] != "west" {
		t.Errorf("exported %+v imported %+v, want web and cart from west", r.Exported, r.Imported)
	}
	if len(r.Proxies) != 1 || r.Proxies[0].ID != "web-0.shop.east" || r.Proxies[0].Kind != "sidecar" || r.Proxies[0].Locality != "r1/z1" {
		t.Errorf("proxies %+v, want web-0.shop.east", r.Proxies)
	}

	stdout.Reset()
	stderr.Reset()
	if code := runStatus([]string{"--admin", strings.TrimPrefix(admin.URL, "http://")}, &stdout, &stderr); code != 0 {
		t.Fatalf("--admin: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"EXPORTED SERVICES", "shop/web", "IMPORTED SERVICES", "shop/cart", "web-0.shop.east"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
}

package discovery

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/internal/model"
)

// The ignores are client-go's and the test clusters' background
// goroutines (klog's flusher, idle HTTP connections, workqueue metrics).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

func TestDecodeProblems(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {prots: []}\n", `f.yaml: document 1: Service default/web: does not decode as v1 Service: json: unknown field "prots"`},
		{"bad port", "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{port: 0}]\n", "f.yaml: document 1: Service shop/web: spec.ports[0].port: 0: must be 1-65535"},
		{"second document", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: shop}\naddressType: IPv4\nendpoints: [{addresses: [nope]}]\n",
			"f.yaml: document 2: EndpointSlice shop/s: metadata.labels[kubernetes.io/service-name]: required"},
		{"bad address", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [\"::1\"]}]\n",
			`EndpointSlice default/s: endpoints[0].addresses[0]: "::1": addressType is IPv4`},
		{"no kind", "metadata: {name: x}\n", "apiVersion/kind: required"},
		{"not yaml", "a: [\n", "f.yaml: document 1: not valid YAML"},
		{"bad locality", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {causeway.dev/locality: a/b/c/d}}\n", "Pod default/p: metadata.annotations[causeway.dev/locality]"},
		{"bad policy", "apiVersion: security.causeway.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  action: Allow\n  rules: [{from: [{namespace: web, spiffeID: spiffe://x/y}]}]\n",
			`f.yaml: document 1: AuthorizationPolicy shop/p: spec.rules[0].from[0]: "spiffeID=spiffe://x/y namespace=web": set exactly one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, ps := decodeFile("f.yaml", []byte(tt.yaml))
			if objs != nil || len(ps) == 0 || !strings.Contains(ps[0].Error(), tt.want) {
				t.Fatalf("got %v, want a problem starting %q", ps, tt.want)
			}
		})
	}
	objs, ps := decodeFile("policy.yaml", []byte("apiVersion: security.causeway.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec: {action: Deny, rules: [{to: [{paths: [/admin/*]}]}]}\n"))
	if len(ps) != 0 || objs == nil {
		t.Fatalf("a good policy: %v", ps)
	}
	if s := Build(&objs.objs, BuildOptions{Cluster: "c"}); len(s.Policies) != 1 || s.Policies[0].Action != "Deny" || s.Policies[0].Rules[0].To[0].Paths[0] != "/admin/*" {
		t.Fatalf("the policy did not reach the model: %+v", s.Policies)
	}
	objs, ps = decodeFile("ok.yaml", []byte("# only a comment\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"))
	if len(ps) != 0 || objs == nil {
		t.Fatalf("unknown kinds and empty documents must be skipped: %v", ps)
	}
}

// TestFolderRun drives Run with an injected ticker: a bad file keeps its
// last good contents, a no-op rewrite emits nothing, a deleted file
// removes its objects.
func TestFolderRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{port: 80}]\n"
	// Write then rename, so a scan racing the write never sees a
	// half-written (e.g. empty, hence valid) file.
	write := func(name, s string) {
		tmp := filepath.Join(dir, ".tmp-"+name)
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("web.yaml", svc)
	write(".hidden.yaml", "garbage: [")
	tick := make(chan time.Time)
	f, err := NewFolder(FolderOptions{Dir: dir, Tick: tick, BuildOptions: BuildOptions{Cluster: "east"}})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *model.Snapshot, 10)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, func(s *model.Snapshot) { out <- s }) }()
	next := func() *model.Snapshot {
		select {
		case s := <-out:
			return s
		case <-ctx.Done():
			t.Fatal("no snapshot")
			return nil
		}
	}
	if s := next(); len(s.Services) != 1 {
		t.Fatalf("first snapshot: %s", s)
	}
	write("web.yaml", strings.Replace(svc, "port: 80", "port: 0", 1)) // bad: keep the last good
	tick <- time.Now()
	write("web.yaml", svc) // same as the last good: nothing to emit
	tick <- time.Now()
	// Run scans and emits on its own goroutine before it takes the next
	// tick, so once this send is received both scans above have finished
	// and anything they emitted is already in out.
	tick <- time.Now()
	select {
	case s := <-out:
		t.Fatalf("emitted without a change: %s %v", s, f.Problems())
	default:
	}
	os.Remove(filepath.Join(dir, "web.yaml"))
	tick <- time.Now()
	if s := next(); len(s.Services) != 0 {
		t.Fatalf("after delete: %s", s)
	}
	cancel()
	<-done
}

// TestFolderOnFiles: OnFiles gets the accepted files' last good contents
// on the first scan and only when one of them changes; a bad edit leaves
// the last good contents (no call), a fix back to them changes nothing,
// and a deleted file leaves the list.
func TestFolderOnFiles(t *testing.T) {
	dir := t.TempDir()
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{port: 80}]\n"
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var calls [][]File
	f, err := NewFolder(FolderOptions{Dir: dir, BuildOptions: BuildOptions{Cluster: "east"}, OnFiles: func(fs []File) { calls = append(calls, fs) }})
	if err != nil {
		t.Fatal(err)
	}
	// contents renders one call as "path=data|path=data".
	contents := func(fs []File) string {
		var parts []string
		for _, f := range fs {
			parts = append(parts, f.Path+"="+string(f.Data))
		}
		return strings.Join(parts, "|")
	}
	f.Scan()
	if len(calls) != 1 || len(calls[0]) != 0 {
		t.Fatalf("first scan of an empty folder: %d calls %v, want one with no files", len(calls), calls)
	}
	route := "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec: {}\n"
	write("a.yaml", svc)
	write("b.yaml", route)
	f.Scan()
	if want := "a.yaml=" + svc + "|b.yaml=" + route; len(calls) != 2 || contents(calls[1]) != want {
		t.Fatalf("after writing two files: %d calls, last %q, want %q", len(calls), contents(calls[len(calls)-1]), want)
	}
	f.Scan()
	if len(calls) != 2 {
		t.Fatalf("a scan without a change called OnFiles: %q", contents(calls[len(calls)-1]))
	}
	write("b.yaml", strings.Replace(route, "spec: {}", "spec: {rulez: []}", 1)) // rejected
	f.Scan()
	if len(calls) != 2 || len(f.Problems()) != 1 {
		t.Fatalf("a rejected edit: %d calls (want 2), problems %v (want 1)", len(calls), f.Problems())
	}
	write("b.yaml", route) // back to the last good contents
	f.Scan()
	if len(calls) != 2 || len(f.Problems()) != 0 {
		t.Fatalf("back to the good contents: %d calls (want 2), problems %v", len(calls), f.Problems())
	}
	route2 := strings.Replace(route, "name: r,", "name: r2,", 1)
	write("b.yaml", route2)
	f.Scan()
	if want := "a.yaml=" + svc + "|b.yaml=" + route2; len(calls) != 3 || contents(calls[2]) != want {
		t.Fatalf("after a good edit: %d calls, last %q, want %q", len(calls), contents(calls[len(calls)-1]), want)
	}
	os.Remove(filepath.Join(dir, "a.yaml"))
	f.Scan()
	if want := "b.yaml=" + route2; len(calls) != 4 || contents(calls[3]) != want {
		t.Fatalf("after deleting a.yaml: %d calls, last %q, want %q", len(calls), contents(calls[len(calls)-1]), want)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/internal/testcluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// client-go's (TestRunKubernetes): process-wide, not ours to stop.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

func ds(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ds(7), 99, 7 * time.Millisecond},
		{"p50 of 4 is the 2nd", ds(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p100 is the max", ds(4, 1, 3, 2), 100, 4 * time.Millisecond},
		{"p99 of 100", ds(hundred...), 99, 99 * time.Millisecond},
		{"p99 of 50 is the max", ds(hundred[:50]...), 99, 100 * time.Millisecond},
		{"tiny p is the min", ds(5, 9), 0.001, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.in)
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.in, tt.p, got, tt.want)
			}
			if !slices.Equal(before, tt.in) {
				t.Errorf("percentile modified its input")
			}
		})
	}
}

func TestChangeMarker(t *testing.T) {
	ch := newChange(0, "c", "10.0.0.23", time.Now(), []bool{true})
	tests := []struct {
		name string
		raw  [][]byte
		want bool
	}{
		{"exact field", [][]byte{append([]byte{0x0a, 0x01, 'x'}, markerBytes("10.0.0.23")...)}, true},
		{"in the second resource", [][]byte{[]byte("nothing"), markerBytes("10.0.0.23")}, true},
		{"longer address", [][]byte{markerBytes("10.0.0.230")}, false},
		{"bare string without length prefix", [][]byte{[]byte("10.0.0.23")}, false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ch.in(tt.raw); got != tt.want {
				t.Errorf("in = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestChangeAck(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		name        string
		affected    []bool
		acks        []int // client ids, one ms apart
		wantDone    bool
		wantConv    time.Duration
		wantLat     int
		wantMissing int
		wantExtra   int
	}{
		{"all ack", []bool{true, true, true}, []int{2, 0, 1}, true, 3 * time.Millisecond, 3, 0, 0},
		{"duplicate counts once", []bool{true, true}, []int{0, 0, 1}, true, 3 * time.Millisecond, 2, 0, 1},
		{"unaffected ignored", []bool{true, false}, []int{1, 0}, true, 2 * time.Millisecond, 1, 0, 1},
		{"one missing", []bool{true, true}, []int{0}, false, 0, 1, 1, 0},
		{"out of range", []bool{true}, []int{5, 0}, true, 2 * time.Millisecond, 1, 0, 1},
		{"nobody affected is done at once", []bool{false, false}, nil, true, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := newChange(1, "c", "10.0.0.1", start, tt.affected)
			for i, id := range tt.acks {
				ch.ack(id, start.Add(time.Duration(i+1)*time.Millisecond))
			}
			done := false
			select {
			case <-ch.done:
				done = true
			default:
			}
			conv, lat, missing := ch.result()
			if done != tt.wantDone || conv != tt.wantConv || len(lat) != tt.wantLat || missing != tt.wantMissing || ch.extra != tt.wantExtra {
				t.Errorf("done %v conv %v acks %d missing %d extra %d; want %v %v %d %d %d",
					done, conv, len(lat), missing, ch.extra, tt.wantDone, tt.wantConv, tt.wantLat, tt.wantMissing, tt.wantExtra)
			}
		})
	}
}

func TestWithChangeCanonicalAndCopy(t *testing.T) {
	c := config{services: 3, eps: 12, changes: 2}
	s := snapshotOf(c)
	if err := s.Validate(); err != nil {
		t.Fatalf("generated snapshot: %v", err)
	}
	orig := s.Services[1].Endpoints[0].Address
	n := withChange(s, 1, addrOf(c, 1, c.eps+1))
	if err := n.Validate(); err != nil {
		t.Fatalf("changed snapshot not canonical: %v", err)
	}
	if s.Services[1].Endpoints[0].Address != orig || s.Equal(n) {
		t.Fatalf("withChange modified the original or changed nothing")
	}
	seen := map[string]bool{}
	for i := range c.services {
		for j := range c.eps + c.changes {
			a := addrOf(c, i, j)
			if seen[a] {
				t.Fatalf("address %s twice", a)
			}
			seen[a] = true
		}
	}
}

func TestWriteSection(t *testing.T) {
	tests := []struct{ name, old, want string }{
		{"append", "# B\n\n## Results\nx\n", "# B\n\n## Results\nx\n\n## Control plane convergence\nnew\n"},
		{"replace at end", "# B\n\n## Control plane convergence\nold\n", "# B\n\n## Control plane convergence\nnew\n"},
		{"replace in the middle", "# B\n## Control plane convergence\nold\n\n## Next\ny\n", "# B\n## Control plane convergence\nnew\n## Next\ny\n"},
		{"new file", "", "## Control plane convergence\nnew\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "b.md")
			if tt.old != "" {
				if err := os.WriteFile(p, []byte(tt.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := writeSection(p, "## Control plane convergence\nnew\n"); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRunSmall runs the whole bench on a tiny model: real ADS streams on
// 127.0.0.1, every change ACKed by every client, EDS pushes only; state of
// the world and delta, the clients in this process (a test binary cannot
// re-execute itself as the client runner).
func TestRunSmall(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := config{services: 5, eps: 3, clients: 3, changes: 4, debounce: 0, delta: delta, clientBDP: delta,
				setupTimeout: 20 * time.Second, changeTimeout: 5 * time.Second, budget: 25 * time.Second, connectParallel: 2, inProcess: true}
			r, err := run(ctx, c, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.converged) != c.changes || r.timeouts != 0 || len(r.acks) != c.changes*c.clients || r.extraAcks != 0 || len(r.clientErrs) != 0 {
				t.Fatalf("converged %d timeouts %d acks %d extra %d errs %v", len(r.converged), r.timeouts, len(r.acks), r.extraAcks, r.clientErrs)
			}
			if r.pushes["eds"] != float64(c.changes*c.clients) || r.pushes["lds"]+r.pushes["rds"]+r.pushes["cds"] != 0 {
				t.Errorf("pushes %v: want only eds, one per client per change", r.pushes)
			}
			if r.recvd[3] != int64(c.changes*c.clients) || r.recvd[0]+r.recvd[1]+r.recvd[2] != 0 {
				t.Errorf("clients received %v during the changes: want one EDS response per client per change", r.recvd)
			}
			if md := r.markdown(c); !strings.Contains(md, "## Control plane convergence") || !strings.Contains(md, "4 / 0 / 0") {
				t.Errorf("markdown:\n%s", md)
			}
		})
	}
}

// TestRunKubernetes is a smoke test of -source kubernetes: a real etcd and
// kube-apiserver, the informer source behind a Merger, each change one
// EndpointSlice Update, every client ACKing it (delta clients, in this
// process).
func TestRunKubernetes(t *testing.T) {
	testcluster.RequireBinaries(t, false)
	if testing.Short() {
		t.Skip("-short: starts etcd and kube-apiserver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := config{services: 6, eps: 3, clients: 3, changes: 3, debounce: 0, delta: true, source: sourceKubernetes,
		setupTimeout: 60 * time.Second, changeTimeout: 10 * time.Second, budget: 150 * time.Second, connectParallel: 2, inProcess: true}
	r, err := run(ctx, c, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.converged) != c.changes || r.timeouts != 0 || len(r.acks) != c.changes*c.clients || r.extraAcks != 0 || len(r.clientErrs) != 0 {
		t.Fatalf("converged %d timeouts %d acks %d extra %d errs %v", len(r.converged), r.timeouts, len(r.acks), r.extraAcks, r.clientErrs)
	}
	for i := range r.converged {
		if r.emitted[i] <= 0 || r.emitted[i] > r.converged[i] || r.updated[i] <= 0 {
			t.Errorf("change %d: Update returned after %v, model emitted after %v, converged after %v: want 0 < emitted <= converged", i, r.updated[i], r.emitted[i], r.converged[i])
		}
	}
	// 3 changes may take less than one 10 ms clock tick of CPU: only
	// check that both processes were found.
	if _, ok := r.kubeCPU["kube-apiserver"]; !ok || r.kubeHWM["kube-apiserver"] == 0 || r.kubeHWM["etcd"] == 0 {
		t.Errorf("kube-apiserver and etcd not found among the bench's children: CPU %v, peak RSS %v", r.kubeCPU, r.kubeHWM)
	}
	md := r.markdown(c)
	for _, want := range []string{"-source kubernetes", "EndpointSlice Update call", "3 / 0 / 0", "kube-apiserver / etcd"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// testWriter logs each write through t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

package xds

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/internal/model"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the current translation")

type goldenNode struct {
	ID             string         `json:"id"`
	Namespace      string         `json:"namespace"`
	ServiceAccount string         `json:"serviceAccount"`
	Cluster        string         `json:"cluster"`
	Proxyless      bool           `json:"proxyless"`
	Locality       model.Locality `json:"locality"`
}

// TestTranslateGolden: testdata/in/<case>/cluster (Kubernetes YAML, read by
// the folder source) + testdata/in/<case>/node.json → testdata/out/<case>.json
// (every resource, canonical JSON) and <case>.model.txt (the model's String).
// Regenerate with `go test ./internal/xds -run Golden -update`.
func TestTranslateGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/in/*")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range cases {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			f, err := discovery.NewFolder(discovery.FolderOptions{Dir: filepath.Join(dir, "cluster"),
				BuildOptions: discovery.BuildOptions{Cluster: "east", Network: "net1", TrustDomain: "east.example"}})
			if err != nil {
				t.Fatal(err)
			}
			snap, _ := f.Scan()
			if ps := f.Problems(); len(ps) > 0 {
				t.Fatalf("input problems: %v", ps)
			}
			raw, err := os.ReadFile(filepath.Join(dir, "node.json"))
			if err != nil {
				t.Fatal(err)
			}
			var gn goldenNode
			if err := json.Unmarshal(raw, &gn); err != nil {
				t.Fatal(err)
			}
			n := Node{ID: gn.ID, Namespace: gn.Namespace, ServiceAccount: gn.ServiceAccount, Cluster: gn.Cluster, Network: "net1", Locality: gn.Locality, Proxyless: gn.Proxyless}
			res, err := Translate(snap, n, TranslateOptions{})
			if err != nil {
				t.Fatalf("translate: %v", err)
			}
			again, _ := Translate(snap, n, TranslateOptions{})
			got := dumpResources(t, res)
			if !bytes.Equal(got, dumpResources(t, again)) {
				t.Fatal("translation is not deterministic")
			}
			golden(t, filepath.Join("testdata/out", name+".json"), got)
			golden(t, filepath.Join("testdata/out", name+".model.txt"), []byte(snap.String()))
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the translation (run with -update if the change is intended); got:\n%s", path, got)
	}
}

// dumpResources prints every resource as canonical, indented JSON
// (protojson's whitespace is deliberately unstable, so it is re-indented).
func dumpResources(t *testing.T, r Resources) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, group := range []struct {
		kind string
		rs   []types.Resource
	}{{"listeners", r.Listeners}, {"routes", r.Routes}, {"clusters", r.Clusters}, {"endpoints", r.Endpoints}} {
		b.WriteString("# " + group.kind + "\n")
		for _, res := range group.rs {
			js, err := protojson.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			var c, ind bytes.Buffer
			if err := json.Compact(&c, js); err != nil {
				t.Fatal(err)
			}
			if err := json.Indent(&ind, c.Bytes(), "", "  "); err != nil {
				t.Fatal(err)
			}
			b.Write(ind.Bytes())
			b.WriteString("\n")
		}
	}
	return []byte(strings.TrimSpace(b.String()) + "\n")
}

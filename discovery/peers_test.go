package discovery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/causewaymesh/causeway/federation/peerapi"
)

const goodPeer = `apiVersion: federation.causeway.dev/v1alpha1
kind: Peer
metadata:
  name: west
spec:
  cluster: west
  trustDomain: west.local
  federation: 127.0.0.1:15012
  bundleEndpoint:
    url: https://127.0.0.1:15013/
`

func TestFolderPeers(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"good", goodPeer, ""},
		{"bad trust domain", strings.Replace(goodPeer, "west.local", "spiffe://West", 1), `f.yaml: document 1: Peer west: spec.trustDomain: "spiffe://West" is not a SPIFFE trust domain name`},
		{"no federation", strings.Replace(goodPeer, "  federation: 127.0.0.1:15012\n", "", 1), "Peer west: spec.federation: required for direction Both"},
		{"unknown field", strings.Replace(goodPeer, "cluster: west", "clustr: west", 1), `Peer west: does not decode as federation.causeway.dev/v1alpha1 Peer: json: unknown field "clustr"`},
		{"namespaced", strings.Replace(goodPeer, "name: west", "name: west\n  namespace: x", 1), "Peer west: metadata.namespace: \"x\": Peer is cluster-scoped"},
		{"import with export filter", strings.Replace(goodPeer, "spec:\n", "spec:\n  direction: Import\n  export: {namespaces: [shop]}\n", 1), "Peer west: spec.export: the link only imports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, ps := decodeFile("f.yaml", []byte(tt.yaml))
			if tt.want == "" {
				if len(ps) != 0 || len(objs.objs.Peers) != 1 || objs.objs.Peers[0].Spec.Cluster != "west" {
					t.Fatalf("got %v, %+v", ps, objs)
				}
				return
			}
			if objs != nil || len(ps) == 0 || !strings.Contains(ps[0].Error(), tt.want) {
				t.Fatalf("got %v, want a problem containing %q", ps, tt.want)
			}
		})
	}
}

// TestFolderOnPeers: OnPeers gets the good Peers on the first scan and on
// each change; a bad Peer file is a Problem and the others keep serving.
func TestFolderOnPeers(t *testing.T) {
	dir := t.TempDir()
	var got [][]*peerapi.Peer
	f, err := NewFolder(FolderOptions{Dir: dir, BuildOptions: BuildOptions{Cluster: "east"}, OnPeers: func(ps []*peerapi.Peer) { got = append(got, ps) }})
	if err != nil {
		t.Fatal(err)
	}
	f.Scan()
	if len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("first scan: OnPeers %v, want one call with no peers", got)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("west.yaml", goodPeer)
	write("north.yaml", strings.ReplaceAll(goodPeer, "west", "north"))
	f.Scan()
	if len(got) != 2 || len(got[1]) != 2 || got[1][0].Name != "north" || got[1][1].Name != "west" {
		t.Fatalf("OnPeers %v, want north and west", got)
	}
	f.Scan()
	if len(got) != 2 {
		t.Fatalf("no change: OnPeers called again")
	}
	write("north.yaml", strings.ReplaceAll(strings.Replace(goodPeer, "west.local", "North!", 1), "west", "north"))
	f.Scan() // a write within 2s of the last scan is always re-read
	if ps := f.Problems(); len(ps) != 1 || ps[0].File != "north.yaml" || ps[0].Field != "spec.trustDomain" {
		t.Fatalf("problems %v, want north.yaml's spec.trustDomain", ps)
	}
	if last := got[len(got)-1]; len(last) != 2 {
		t.Fatalf("OnPeers %v: a bad file keeps its last good contents (north) serving", last)
	}
	if err := os.Remove(filepath.Join(dir, "north.yaml")); err != nil {
		t.Fatal(err)
	}
	f.Scan()
	if last := got[len(got)-1]; len(last) != 1 || last[0].Name != "west" {
		t.Fatalf("OnPeers %v: want west alone once north.yaml is gone", last)
	}
}

package xds

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/internal/model"
)

// podLocalities is a static PodLocator: namespace/pod -> locality.
type podLocalities map[string]model.Locality

func (p podLocalities) PodLocality(namespace, pod string) (model.Locality, error) {
	if l, ok := p[namespace+"/"+pod]; ok {
		return l, nil
	}
	return model.Locality{}, fmt.Errorf("pod %s/%s not found (label its node topology.kubernetes.io/zone)", namespace, pod)
}

// TestNodeLocalityDerived: a node with no locality gets its pod's node's,
// found by its id <pod>.<namespace>; a node with one keeps it; one whose
// pod cannot be found is refused with the locator's reason.
func TestNodeLocalityDerived(t *testing.T) {
	loc := podLocalities{"shop/web-1": {Region: "r1", Zone: "a", SubZone: "rack1"}}
	node := func(id string, l *corev3.Locality) *corev3.Node {
		st, _ := structpb.NewStruct(map[string]any{"namespace": "shop", "cluster": "east"})
		return &corev3.Node{Id: id, Metadata: st, Locality: l}
	}
	for _, tc := range []struct {
		name    string
		node    *corev3.Node
		loc     PodLocator
		want    model.Locality
		wantErr []string // substrings of the refusal
	}{
		{name: "derived from the pod's node", node: node("web-1.shop", nil), loc: loc, want: model.Locality{Region: "r1", Zone: "a", SubZone: "rack1"}},
		{name: "empty locality message counts as none", node: node("web-1.shop", &corev3.Locality{}), loc: loc, want: model.Locality{Region: "r1", Zone: "a", SubZone: "rack1"}},
		{name: "the node's own wins", node: node("web-1.shop", &corev3.Locality{Region: "r2", Zone: "b"}), loc: loc, want: model.Locality{Region: "r2", Zone: "b"}},
		{name: "pod not found", node: node("web-2.shop", nil), loc: loc,
			wantErr: []string{`node "web-2.shop"`, "node.locality is empty and cannot be derived: pod shop/web-2 not found", "topology.kubernetes.io/zone"}},
		{name: "id not pod.namespace", node: node("web", nil), loc: loc,
			wantErr: []string{`node.id "web" is not <pod>.<namespace>`, "--locality"}},
		{name: "id names another namespace", node: node("web-1.other", nil), loc: loc,
			wantErr: []string{`names namespace "other", not the node's metadata namespace "shop"`}},
		{name: "no locator: refused as before", node: node("web-1.shop", nil), loc: nil,
			wantErr: []string{"region and zone are required"}},
		{name: "only a region sent: not derived, refused", node: node("web-1.shop", &corev3.Locality{Region: "r1"}), loc: loc,
			wantErr: []string{`node.locality "r1": region and zone are required`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := NodeFromProtoLocating(tc.node, "east", "net1", tc.loc)
			if len(tc.wantErr) > 0 {
				if !errors.Is(err, ErrNodeRefused) {
					t.Fatalf("err %v, want ErrNodeRefused", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("refusal %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Locality != tc.want {
				t.Errorf("locality %v, want %v", n.Locality, tc.want)
			}
		})
	}
	// The derived locality is part of the class: nodes in different zones
	// get different snapshots.
	loc["shop/web-3"] = model.Locality{Region: "r1", Zone: "b"}
	a, _ := NodeFromProtoLocating(node("web-1.shop", nil), "east", "net1", loc)
	b, _ := NodeFromProtoLocating(node("web-3.shop", nil), "east", "net1", loc)
	if a.Key() == b.Key() {
		t.Error("nodes derived into zones a and b share a class key")
	}
}

func BenchmarkNodeFromProtoLocating(b *testing.B) {
	loc := podLocalities{"shop/web-1": {Region: "r1", Zone: "a"}}
	st, _ := structpb.NewStruct(map[string]any{"namespace": "shop", "cluster": "east"})
	n := &corev3.Node{Id: "web-1.shop", Metadata: st}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NodeFromProtoLocating(n, "east", "net1", loc); err != nil {
			b.Fatal(err)
		}
	}
}

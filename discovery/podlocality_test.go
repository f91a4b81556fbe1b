package discovery

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/causewaymesh/causeway/internal/model"
)

// TestPodLocality reads the same caches Run fills (listers over an
// indexer): the node's topology labels, else the pod's annotation, and a
// refusal that names the pod, the node and the label to set.
func TestPodLocality(t *testing.T) {
	node := func(name string, labels map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	pod := func(name, nodeName string, ann map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Annotations: ann}, Spec: corev1.PodSpec{NodeName: nodeName}}
	}
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, n := range []*corev1.Node{
		node("full", map[string]string{LabelRegion: "r1", LabelZone: "a", LabelSubZone: "rack1"}),
		node("no-zone", map[string]string{LabelRegion: "r1"}),
		node("bare", nil),
	} {
		if err := nodes.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*corev1.Pod{
		pod("web", "full", nil),
		pod("half", "no-zone", nil),
		pod("annotated", "bare", map[string]string{AnnotationLocality: "r2/b"}),
		pod("bare", "bare", nil),
		pod("pending", "", nil),
		pod("lost", "gone", nil),
	} {
		if err := pods.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	pl, nl := listersv1.NewPodLister(pods), listersv1.NewNodeLister(nodes)
	for _, tc := range []struct {
		pod     string
		want    model.Locality
		wantErr []string
	}{
		{pod: "web", want: model.Locality{Region: "r1", Zone: "a", SubZone: "rack1"}},
		{pod: "annotated", want: model.Locality{Region: "r2", Zone: "b"}},
		{pod: "half", wantErr: []string{`node "no-zone" of pod shop/half has no label topology.kubernetes.io/zone`, "kubectl label node no-zone topology.kubernetes.io/zone=<value>"}},
		{pod: "bare", wantErr: []string{`node "bare" of pod shop/bare has no label topology.kubernetes.io/region`}},
		{pod: "pending", wantErr: []string{"pod shop/pending is not scheduled"}},
		{pod: "lost", wantErr: []string{`node "gone" of pod shop/lost not found`}},
		{pod: "nobody", wantErr: []string{"pod shop/nobody not found"}},
	} {
		t.Run(tc.pod, func(t *testing.T) {
			got, err := podLocality(pl, nl, "shop", tc.pod)
			if len(tc.wantErr) > 0 {
				if !errors.Is(err, ErrNoLocality) {
					t.Fatalf("err %v, want ErrNoLocality", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	// Before Run has synced its caches there is no answer.
	var k Kubernetes
	if _, err := k.PodLocality("shop", "web"); !errors.Is(err, ErrNoLocality) || !strings.Contains(err.Error(), "not synced yet") {
		t.Errorf("unsynced source: %v", err)
	}
}

func BenchmarkPodLocality(b *testing.B) {
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = nodes.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{LabelRegion: "r1", LabelZone: "a"}}})
	_ = pods.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.PodSpec{NodeName: "n1"}})
	pl, nl := listersv1.NewPodLister(pods), listersv1.NewNodeLister(nodes)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := podLocality(pl, nl, "shop", "web"); err != nil {
			b.Fatal(err)
		}
	}
}

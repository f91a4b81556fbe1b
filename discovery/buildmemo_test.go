package discovery

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/causewaymesh/causeway/internal/model"
)

// TestBuildWithMemo: over a series of changes, each made as an informer
// makes it (a changed object is a new pointer), BuildWith with a memo
// returns what Build returns from scratch, rebuilds only the services
// whose own objects changed (all of them after a Node or Pod change), and
// a taken-over service shares its endpoints with the previous snapshot.
func TestBuildWithMemo(t *testing.T) {
	const n = 12
	o := BuildOptions{Cluster: "east", Network: "net1", TrustDomain: "east.local"}
	node := func(name, zone string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelRegion: "r1", LabelZone: zone}}}
	}
	svc := func(i, port int) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("s%02d", i)},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.0.%d", i+1), Ports: []corev1.ServicePort{{Name: "http", Port: int32(port), Protocol: corev1.ProtocolTCP}}}}
	}
	slice := func(i int, addrs ...string) *discoveryv1.EndpointSlice {
		sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("s%02d-abc", i),
			Labels: map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("s%02d", i)}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080))}}}
		for j, a := range addrs {
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, NodeName: new([]string{"n1", "n2"}[j%2]),
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: fmt.Sprintf("p%02d-%d", i, j)}})
		}
		return sl
	}
	objs := &Objects{
		Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}},
		Nodes:      []*corev1.Node{node("n1", "a"), node("n2", "b")},
		Pods:       []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p00-0"}, Spec: corev1.PodSpec{ServiceAccountName: "web"}}},
	}
	for i := range n {
		objs.Services = append(objs.Services, svc(i, 80))
		objs.EndpointSlices = append(objs.EndpointSlices, slice(i, fmt.Sprintf("10.0.%d.1", i), fmt.Sprintf("10.0.%d.2", i)))
	}
	var memo BuildMemo
	var last *model.Snapshot
	steps := []struct {
		name          string
		change        func()
		reused, built int
	}{
		{"first build", func() {}, 0, n},
		{"nothing changed", func() {}, n, 0},
		{"one slice changed", func() { objs.EndpointSlices[3] = slice(3, "10.0.3.9") }, n - 1, 1},
		{"one service changed", func() { objs.Services[5] = svc(5, 81) }, n - 1, 1},
		{"one service exported", func() {
			objs.ServiceExports = []*mcsv1alpha1.ServiceExport{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "s07"}}}
		}, n - 1, 1},
		{"a second slice for a service", func() {
			extra := slice(8, "10.0.8.7")
			extra.Name = "s08-def"
			objs.EndpointSlices = append(objs.EndpointSlices, extra)
		}, n - 1, 1},
		{"a service deleted", func() { objs.Services = objs.Services[1:] }, n - 1, 0},
		{"a node relabelled: every service", func() { objs.Nodes[1] = node("n2", "c") }, 0, n - 1},
		{"a pod changed: every service", func() {
			objs.Pods = []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p01-1"}, Spec: corev1.PodSpec{ServiceAccountName: "api"}}}
		}, 0, n - 1},
	}
	for _, st := range steps {
		st.change()
		got := BuildWith(objs, o, &memo)
		want := Build(objs, o)
		if !got.Equal(want) {
			t.Fatalf("%s: BuildWith with a memo:\n%s\nBuild:\n%s", st.name, got, want)
		}
		if memo.Reused != st.reused || memo.Built != st.built {
			t.Errorf("%s: %d services taken over, %d built; want %d and %d", st.name, memo.Reused, memo.Built, st.reused, st.built)
		}
		if last != nil && st.reused > 0 {
			shared := 0
			for i := range got.Services {
				for j := range last.Services {
					a, b := &got.Services[i], &last.Services[j]
					if a.Name == b.Name && len(a.Endpoints) > 0 && len(b.Endpoints) > 0 && &a.Endpoints[0] == &b.Endpoints[0] {
						shared++
					}
				}
			}
			if shared != st.reused {
				t.Errorf("%s: %d services share their endpoints with the last snapshot, want %d", st.name, shared, st.reused)
			}
		}
		last = got
	}
}

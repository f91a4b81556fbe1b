package xds

import (
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
)

func captureModel() *model.Snapshot {
	ep := func(addr string) model.Endpoint {
		return model.Endpoint{Address: addr, Ports: []model.EndpointPort{{Name: "http", Port: 8080}}, Cluster: "east",
			Locality: model.Locality{Region: "r1", Zone: "z1"}, Ready: true, Weight: 1}
	}
	s := &model.Snapshot{Cluster: "east", Network: "net1", Namespaces: []string{"shop"}, Services: []model.Service{
		{Namespace: "shop", Name: "cart", ClusterIP: "198.19.64.10", ClustersetIP: "198.19.96.10", Exported: true,
			Ports:     []model.ServicePort{{Name: "http", Port: 80, Protocol: model.TCP}},
			Endpoints: []model.Endpoint{ep("198.18.64.20")}},
		{Namespace: "shop", Name: "db", ClusterIP: "198.19.64.11",
			Ports:     []model.ServicePort{{Name: "tcp-pg", Port: 5432, Protocol: model.TCP}},
			Endpoints: []model.Endpoint{ep("198.18.64.21")}},
		{Namespace: "shop", Name: "local", ClusterIP: "198.19.64.12", ClustersetIP: "198.19.96.12", // not exported: no clusterset VIP
			Ports:     []model.ServicePort{{Name: "http", Port: 80, Protocol: model.TCP}},
			Endpoints: []model.Endpoint{ep("198.18.64.22")}},
	}}
	s.Canonicalize()
	return s
}

func TestCaptureTranslate(t *testing.T) {
	s := captureModel()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		capture       bool
		wantListeners []string
	}{
		{"plain node: one listener per port on loopback", false, []string{"outbound_80@127.0.0.1:80"}},
		{"capture node: one listener per VIP and port", true, []string{
			"outbound_198.19.64.10_80@198.19.64.10:80", "outbound_198.19.64.11_5432@198.19.64.11:5432 tcp db.shop.svc.cluster.local:5432",
			"outbound_198.19.64.12_80@198.19.64.12:80", "outbound_198.19.96.10_80@198.19.96.10:80"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := Node{ID: "web-1", Namespace: "shop", Cluster: "east", Network: "net1", Locality: model.Locality{Region: "r1", Zone: "z1"}, Capture: tc.capture}
			res, err := Translate(s, n, TranslateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range res.Listeners {
				l, err := xdsclient.TranslateListener(r.(*listenerv3.Listener))
				if err != nil {
					t.Fatalf("the proxy refuses listener %s: %v", resourceName(r), err)
				}
				if l.TCP != nil {
					got = append(got, l.Name+"@"+l.Address+" tcp "+l.TCP.Cluster)
					continue
				}
				if l.HTTP == nil || l.HTTP.RouteConfigName != "outbound_80" {
					t.Errorf("listener %s: routes %+v, want RDS outbound_80", l.Name, l.HTTP)
				}
				got = append(got, l.Name+"@"+l.Address)
			}
			if !slices.Equal(got, tc.wantListeners) {
				t.Errorf("listeners %q, want %q", got, tc.wantListeners)
			}
			// An opaque TCP port has a cluster (and endpoints) only on a
			// capture node, where its VIP tells its connections apart.
			hasDB := slices.ContainsFunc(res.Clusters, func(r types.Resource) bool { return resourceName(r) == "db.shop.svc.cluster.local:5432" })
			hasDBEndpoints := slices.ContainsFunc(res.Endpoints, func(r types.Resource) bool { return resourceName(r) == "db.shop.svc.cluster.local:5432" })
			if hasDB != tc.capture || hasDBEndpoints != tc.capture {
				t.Errorf("TCP cluster and endpoints of db: %t, %t; want %t", hasDB, hasDBEndpoints, tc.capture)
			}
			// The route configuration is the same for both kinds of node,
			// and lists each VIP among its virtual host's domains.
			if len(res.Routes) != 1 {
				t.Fatalf("routes: %d, want 1", len(res.Routes))
			}
			rc, err := xdsclient.TranslateRouteConfig(res.Routes[0].(*routev3.RouteConfiguration))
			if err != nil {
				t.Fatal(err)
			}
			domains := map[string]string{}
			for _, vh := range rc.VirtualHosts {
				domains[vh.Name] = strings.Join(vh.Domains, " ")
			}
			for vh, want := range map[string]string{
				"cart.shop.svc.cluster.local:80":    "cart.shop.svc.cluster.local cart.shop.svc cart.shop cart 198.19.64.10 198.19.64.10:80",
				"cart.shop.svc.clusterset.local:80": "cart.shop.svc.clusterset.local 198.19.96.10 198.19.96.10:80",
				"local.shop.svc.cluster.local:80":   "local.shop.svc.cluster.local local.shop.svc local.shop local 198.19.64.12 198.19.64.12:80",
			} {
				if domains[vh] != want {
					t.Errorf("virtual host %s domains %q, want %q", vh, domains[vh], want)
				}
			}
		})
	}
}

func TestCaptureNode(t *testing.T) {
	md := func(mode string) *corev3.Node {
		st, _ := structpb.NewStruct(map[string]any{"namespace": "shop", "cluster": "east", "interception_mode": mode})
		return &corev3.Node{Id: "web-1", Metadata: st, Locality: &corev3.Locality{Region: "r1", Zone: "z1"}}
	}
	for _, tc := range []struct {
		mode string
		want bool
	}{{"REDIRECT", true}, {"redirect", true}, {"", false}, {"NONE", false}} {
		n, err := NodeFromProto(md(tc.mode), "east", "net1")
		if err != nil {
			t.Fatal(err)
		}
		if n.Capture != tc.want {
			t.Errorf("interception_mode %q: Capture %t, want %t", tc.mode, n.Capture, tc.want)
		}
	}
	a, _ := NodeFromProto(md("REDIRECT"), "east", "net1")
	b, _ := NodeFromProto(md(""), "east", "net1")
	if a.Key() == b.Key() {
		t.Error("capture and plain nodes share a class key; they need different listeners")
	}
}

func TestVIPConflicts(t *testing.T) {
	s := captureModel()
	if got := VIPConflicts(s); len(got) != 0 {
		t.Fatalf("conflicts %q, want none", got)
	}
	s.Services[2].ClusterIP = "198.19.64.10"
	if got := VIPConflicts(s); len(got) != 1 || got[0] != "198.19.64.10:80: [shop/cart shop/local]" {
		t.Fatalf("conflicts %q", got)
	}
}

func TestVIPDomains(t *testing.T) {
	for _, tc := range []struct {
		vip  string
		want string
	}{{"", ""}, {"10.0.0.1", "10.0.0.1 10.0.0.1:80"}, {"fd00::1", "[fd00::1] [fd00::1]:80"}} {
		if got := strings.Join(vipDomains(tc.vip, 80), " "); got != tc.want {
			t.Errorf("vipDomains(%q) = %q, want %q", tc.vip, got, tc.want)
		}
	}
}

// TestCaptureTranslatorMatchesTranslate: the memoising Translator gives a
// capture-mode node what Translate gives, as the model changes.
func TestCaptureTranslatorMatchesTranslate(t *testing.T) {
	n := Node{ID: "web-1", Namespace: "shop", Cluster: "east", Network: "net1", Locality: model.Locality{Region: "r1", Zone: "z1"}, Capture: true}
	set := func(i int, f func(*model.Service)) func(*model.Snapshot) *model.Snapshot {
		return func(s *model.Snapshot) *model.Snapshot {
			c := *s
			c.Services = slices.Clone(s.Services)
			sv := c.Services[i]
			sv.Endpoints = slices.Clone(sv.Endpoints)
			f(&sv)
			c.Services[i] = sv
			return &c
		}
	}
	tr := NewTranslator(TranslateOptions{})
	s := captureModel()
	for _, st := range []struct {
		name string
		next func(*model.Snapshot) *model.Snapshot
	}{
		{"first", func(s *model.Snapshot) *model.Snapshot { return s }},
		{"again", func(s *model.Snapshot) *model.Snapshot { return s }},
		{"TCP endpoint moves", set(1, func(sv *model.Service) { sv.Endpoints[0].Address = "198.18.64.99" })},
		{"cluster IP changes", set(0, func(sv *model.Service) { sv.ClusterIP = "198.19.64.20" })},
		{"TCP service exported", set(1, func(sv *model.Service) { sv.Exported, sv.ClustersetIP = true, "198.19.96.11" })},
		{"clusterset IP goes", set(0, func(sv *model.Service) { sv.ClustersetIP = "" })},
	} {
		s = st.next(s)
		got, err := tr.Translate(s, n)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		want, err := Translate(s, n, TranslateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		resourcesEqual(t, st.name, got, want)
	}
}

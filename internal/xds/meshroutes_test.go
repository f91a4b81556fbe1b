package xds

import (
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/router"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
)

// meshModel: in namespace shop, reviews and reviews-v2 (port 9080),
// catalog (port 80, not exported here, with an endpoint imported from
// cluster west) and ratings (port 80, exported); the route tables given.
func meshModel(tables ...model.RouteTable) *model.Snapshot {
	ep := func(addr, cluster string) model.Endpoint {
		return model.Endpoint{Address: addr, Ports: []model.EndpointPort{{Name: "http", Port: 8080}}, Cluster: cluster,
			Locality: model.Locality{Region: "r1", Zone: "z1"}, Ready: true, Weight: 1}
	}
	port := func(p uint32) []model.ServicePort {
		return []model.ServicePort{{Name: "http", Port: p, Protocol: model.TCP}}
	}
	s := &model.Snapshot{Cluster: "east", Services: []model.Service{
		{Namespace: "shop", Name: "reviews", Ports: port(9080), Endpoints: []model.Endpoint{ep("10.0.0.1", "east")}},
		{Namespace: "shop", Name: "reviews-v2", Ports: port(9080), Endpoints: []model.Endpoint{ep("10.0.0.2", "east")}},
		{Namespace: "shop", Name: "catalog", Ports: port(80), Imported: true, Endpoints: []model.Endpoint{ep("10.0.1.1", "east"), ep("10.1.1.1", "west")}},
		{Namespace: "shop", Name: "ratings", Exported: true, Ports: port(80), Endpoints: []model.Endpoint{ep("10.0.2.1", "east")}},
	}, Routes: slices.Clone(tables)}
	s.Canonicalize()
	return s
}

func meshParent(kind model.ParentKind, name string, port uint32, consumer string) model.RouteParent {
	return model.RouteParent{Kind: kind, Namespace: "shop", Name: name, Port: port, Protocol: "HTTP", ConsumerNamespace: consumer}
}

func meshTable(p model.RouteParent, routes ...model.HTTPRoute) model.RouteTable {
	for i := range routes {
		routes[i].Namespace = cmpOr(p.ConsumerNamespace, p.Namespace)
		routes[i].Rule = i
	}
	return model.RouteTable{Parent: p, VirtualHosts: []model.VirtualHost{{Hostname: "*", Routes: routes}}}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func prefixRoute(name, path string, backends ...model.Backend) model.HTTPRoute {
	return model.HTTPRoute{Name: name, PathKind: model.PathPrefix, Path: path, Backends: backends}
}

func svcBackend(name string, port, weight uint32) model.Backend {
	return model.Backend{Kind: model.BackendService, Namespace: "shop", Name: name, Port: port, Weight: weight}
}

func importBackend(name string, port, weight uint32) model.Backend {
	return model.Backend{Kind: model.BackendServiceImport, Namespace: "shop", Name: name, Port: port, Weight: weight}
}

// The GAMMA tables of the tests.

// canaryTable routes reviews: /slow with a retry of its own; x-version: v2
// to reviews-v2; everything else split v1/v2 between reviews and
// reviews-v2.
func canaryTable(v1, v2 uint32) model.RouteTable {
	slow := prefixRoute("reviews", "/slow", svcBackend("reviews", 9080, 1))
	slow.Retry = &model.Retry{Codes: []int{503}, Attempts: 3}
	hdr := prefixRoute("reviews", "/", svcBackend("reviews-v2", 9080, 1))
	hdr.Headers = []model.ValueMatch{{Name: "x-version", Value: "v2"}}
	return meshTable(meshParent(model.ParentService, "reviews", 9080, ""), slow, hdr,
		prefixRoute("reviews", "/", svcBackend("reviews", 9080, v1), svcBackend("reviews-v2", 9080, v2)))
}

// consumerTable routes reviews for callers in namespace web: everything
// to reviews-v2.
func consumerTable() model.RouteTable {
	return meshTable(meshParent(model.ParentService, "reviews", 9080, "web"),
		prefixRoute("reviews-web", "/", svcBackend("reviews-v2", 9080, 1)))
}

// importTable routes catalog's clusterset name: /gone to a ServiceImport
// no service of the model serves, everything else 50/50 between the local
// Service and the ServiceImport.
func importTable() model.RouteTable {
	return meshTable(meshParent(model.ParentServiceImport, "catalog", 80, ""),
		prefixRoute("catalog", "/gone", importBackend("gone", 80, 1)),
		prefixRoute("catalog", "/", svcBackend("catalog", 80, 50), importBackend("catalog", 80, 50)))
}

// apiOnlyTable routes ratings' cluster.local name: only /api.
func apiOnlyTable() model.RouteTable {
	return meshTable(meshParent(model.ParentService, "ratings", 80, ""),
		prefixRoute("ratings", "/api", svcBackend("ratings", 80, 1)))
}

// ingressTable is a Gateway listener's table: the sidecar translation
// ignores it (its ServiceImport backend must not create reviews'
// clusterset cluster).
func ingressTable() model.RouteTable {
	return model.RouteTable{
		Parent: model.RouteParent{Kind: model.ParentGateway, Namespace: "shop", Name: "gw", Listener: "http", Port: 80, Protocol: "HTTP"},
		VirtualHosts: []model.VirtualHost{{Hostname: "*", Routes: []model.HTTPRoute{
			prefixRoute("ingress", "/", importBackend("reviews", 9080, 1)),
		}}},
	}
}

func meshNode(ns string) Node {
	return Node{ID: "caller." + ns, Namespace: ns, Cluster: "east", Locality: model.Locality{Region: "r1", Zone: "z1"}}
}

// dataPlaneTables runs every route configuration through the proxy's xDS
// client translation and router, by name.
func dataPlaneTables(t *testing.T, res Resources) map[string]*router.Table {
	t.Helper()
	out := map[string]*router.Table{}
	for _, r := range res.Routes {
		rc, err := xdsclient.TranslateRouteConfig(r.(*routev3.RouteConfiguration))
		if err != nil {
			t.Fatalf("the data plane rejects %s: %v", resourceName(r), err)
		}
		out[rc.Name] = router.Compile(rc)
	}
	return out
}

// checkResources: every resource passes ValidateAll and the data plane's
// translation, and every cluster a route names exists with a load
// assignment.
func checkResources(t *testing.T, res Resources) {
	t.Helper()
	clusters, clas := map[string]bool{}, map[string]bool{}
	for _, list := range [][]types.Resource{res.Listeners, res.Routes, res.Clusters, res.Endpoints} {
		for _, r := range list {
			if err := r.(validator).ValidateAll(); err != nil {
				t.Errorf("%s: %v", resourceName(r), err)
			}
		}
	}
	for _, r := range res.Clusters {
		if _, err := xdsclient.TranslateCluster(r.(*clusterv3.Cluster)); err != nil {
			t.Errorf("the data plane rejects cluster %s: %v", resourceName(r), err)
		}
		clusters[resourceName(r)] = true
	}
	for _, r := range res.Endpoints {
		if _, err := xdsclient.TranslateLoadAssignment(r.(*endpointv3.ClusterLoadAssignment)); err != nil {
			t.Errorf("the data plane rejects load assignment %s: %v", resourceName(r), err)
		}
		clas[resourceName(r)] = true
	}
	for _, r := range res.Routes {
		for _, vh := range r.(*routev3.RouteConfiguration).VirtualHosts {
			for _, rt := range vh.Routes {
				a := rt.GetRoute()
				if a == nil {
					continue
				}
				names := []string{a.GetCluster()}
				for _, wc := range a.GetWeightedClusters().GetClusters() {
					names = append(names, wc.GetName())
				}
				for _, name := range names {
					if name != "" && (!clusters[name] || !clas[name]) {
						t.Errorf("route %s of %s names cluster %s, which has no cluster or load assignment", rt.Name, vh.Name, name)
					}
				}
			}
		}
	}
}

// TestMeshRoutes: GAMMA tables in the model → Translate → the data plane's
// route translation and router → which cluster a request goes to, with
// fixed random numbers for weighted splits.
func TestMeshRoutes(t *testing.T) {
	all := []model.RouteTable{canaryTable(90, 10), consumerTable(), importTable(), apiOnlyTable(), ingressTable()}
	reviews, v2 := ClusterName("shop", "reviews", 9080), ClusterName("shop", "reviews-v2", 9080)
	catalog, catalogSet := ClusterName("shop", "catalog", 80), ClustersetName("shop", "catalog", 80)
	const rv, cat, rat = "http://reviews.shop.svc.cluster.local:9080", "http://catalog.shop.svc.clusterset.local", "http://ratings.shop"
	tests := []struct {
		name    string
		tables  []model.RouteTable
		ns      string // caller's namespace
		port    uint32
		url     string
		hdr     map[string]string
		rnd     uint64
		route   string // route name; "" = no route (404)
		cluster string
		retries int   // effective: the route's, else the virtual host's
		codes   []int // retriable status codes
	}{
		{"no tables: default route", nil, "shop", 9080, rv + "/x", nil, 0, "default", reviews, 2, nil},
		{"canary 90/10: 0", all, "shop", 9080, rv + "/", nil, 0, "httproute/shop/reviews/rule/2/match/0", reviews, 2, nil},
		{"canary 90/10: 89", all, "shop", 9080, rv + "/x", nil, 89, "httproute/shop/reviews/rule/2/match/0", reviews, 2, nil},
		{"canary 90/10: 90", all, "shop", 9080, rv + "/x", nil, 90, "httproute/shop/reviews/rule/2/match/0", v2, 2, nil},
		{"canary 90/10: 99", all, "shop", 9080, rv + "/x", nil, 99, "httproute/shop/reviews/rule/2/match/0", v2, 2, nil},
		{"canary, short name in own namespace", all, "shop", 9080, "http://reviews:9080/", nil, 95, "httproute/shop/reviews/rule/2/match/0", v2, 2, nil},
		{"header x-version: v2", all, "shop", 9080, rv + "/x", map[string]string{"X-Version": "v2"}, 0, "httproute/shop/reviews/rule/1/match/0", v2, 2, nil},
		{"header other value: canary", all, "shop", 9080, rv + "/x", map[string]string{"X-Version": "v3"}, 0, "httproute/shop/reviews/rule/2/match/0", reviews, 2, nil},
		{"route retry overrides the default", all, "shop", 9080, rv + "/slow/q", nil, 0, "httproute/shop/reviews/rule/0/match/0", reviews, 3, []int{503}},
		{"unrouted service keeps the default", all, "shop", 9080, "http://reviews-v2.shop:9080/", nil, 0, "default", v2, 2, nil},
		{"producer table for another namespace", all, "other", 9080, rv + "/", nil, 95, "httproute/shop/reviews/rule/2/match/0", v2, 2, nil},
		{"consumer table wins in its namespace", all, "web", 9080, rv + "/", nil, 0, "httproute/web/reviews-web/rule/0/match/0", v2, 2, nil},
		{"consumer table replaces the producer's routes", all, "web", 9080, rv + "/slow", map[string]string{"X-Version": "v1"}, 0, "httproute/web/reviews-web/rule/0/match/0", v2, 2, nil},
		{"no short name outside the namespace", all, "web", 9080, "http://reviews:9080/", nil, 0, "", "", 0, nil},
		{"ServiceImport parent: local share", all, "shop", 80, cat + "/", nil, 49, "httproute/shop/catalog/rule/1/match/0", catalog, 2, nil},
		{"ServiceImport parent: clusterset share", all, "shop", 80, cat + "/", nil, 50, "httproute/shop/catalog/rule/1/match/0", catalogSet, 2, nil},
		{"ServiceImport backend without a service", all, "web", 80, cat + "/gone", nil, 0, "httproute/shop/catalog/rule/0/match/0", ClustersetName("shop", "gone", 80), 2, nil},
		{"ServiceImport parent leaves cluster.local alone", all, "shop", 80, "http://catalog.shop/", nil, 60, "default", catalog, 2, nil},
		{"Service parent: matched", all, "shop", 80, rat + "/api/v1", nil, 0, "httproute/shop/ratings/rule/0/match/0", ClusterName("shop", "ratings", 80), 2, nil},
		{"Service parent: unmatched is 404", all, "shop", 80, rat + "/x", nil, 0, "", "", 0, nil},
		{"a table without routes: 404", []model.RouteTable{meshTable(meshParent(model.ParentService, "reviews-v2", 0, ""))}, "shop", 9080, "http://reviews-v2.shop:9080/", nil, 0, "", "", 0, nil},
		{"a table of every port (0)", []model.RouteTable{meshTable(meshParent(model.ParentService, "reviews-v2", 0, ""), prefixRoute("all", "/", svcBackend("reviews", 9080, 1)))}, "shop", 9080, "http://reviews-v2.shop:9080/", nil, 0, "httproute/shop/all/rule/0/match/0", reviews, 2, nil},
		{"Service parent leaves clusterset.local alone", all, "shop", 80, "http://ratings.shop.svc.clusterset.local/x", nil, 0, "default", ClustersetName("shop", "ratings", 80), 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Translate(meshModel(tt.tables...), meshNode(tt.ns), TranslateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkResources(t, res)
			tbl := dataPlaneTables(t, res)[OutboundName(tt.port)]
			if tbl == nil {
				t.Fatalf("no route configuration %s", OutboundName(tt.port))
			}
			req := httptest.NewRequest("GET", tt.url, nil)
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			vh, rt := tbl.Match(req)
			if rt == nil {
				if tt.route != "" {
					t.Fatalf("no route, want %s", tt.route)
				}
				return
			}
			if rt.Name != tt.route {
				t.Fatalf("route %s, want %s", rt.Name, cmpOr(tt.route, "none"))
			}
			if rt.Forward == nil {
				t.Fatalf("route %s does not forward", rt.Name)
			}
			if c := router.PickCluster(rt.Forward, tt.rnd); c == nil || c.Name != tt.cluster {
				t.Errorf("PickCluster(%d) = %+v, want %s", tt.rnd, c, tt.cluster)
			}
			retry := cmpOrRetry(rt.Forward.Retry, vh.Retry)
			if retry == nil || retry.NumRetries != tt.retries || !slices.Equal(retry.RetriableStatusCodes, tt.codes) {
				t.Errorf("retry %+v, want %d retries on %v", retry, tt.retries, tt.codes)
			}
		})
	}
}

func cmpOrRetry(a, b *config.RetryPolicy) *config.RetryPolicy {
	if a != nil {
		return a
	}
	return b
}

// TestMeshRoutesClusters: the clusters GAMMA tables add, and those they
// do not.
func TestMeshRoutesClusters(t *testing.T) {
	all := []model.RouteTable{canaryTable(90, 10), consumerTable(), importTable(), apiOnlyTable(), ingressTable()}
	endpoints := func(res Resources, name string) int {
		for _, r := range res.Endpoints {
			if resourceName(r) == name {
				n := 0
				for _, le := range r.(*endpointv3.ClusterLoadAssignment).Endpoints {
					n += len(le.LbEndpoints)
				}
				return n
			}
		}
		return -1
	}
	tests := []struct {
		name   string
		tables []model.RouteTable
		ns     string
		want   map[string]int // cluster → endpoints in its load assignment; -1: no such cluster
	}{
		{"no tables", nil, "shop", map[string]int{
			ClustersetName("shop", "catalog", 80): 1, // imported: the clusterset name exists
			ClustersetName("shop", "gone", 80):    -1,
			ClustersetName("shop", "ratings", 80): 1, ClusterName("shop", "catalog", 80): 1,
		}},
		{"ServiceImport parent and backends", all, "shop", map[string]int{
			// Imported, not exported here: the clusterset backends are
			// the peers' endpoints only (MCS: exporting clusters back a
			// ServiceImport).
			ClustersetName("shop", "catalog", 80): 1, ClusterName("shop", "catalog", 80): 1,
			// Not in the model: an empty assignment.
			ClustersetName("shop", "gone", 80): 0,
			// The gateway table is ignored.
			ClustersetName("shop", "reviews", 9080): -1,
		}},
		{"a consumer table of another namespace adds nothing", []model.RouteTable{
			meshTable(meshParent(model.ParentService, "reviews", 9080, "web"), prefixRoute("r", "/", importBackend("reviews", 9080, 1))),
		}, "shop", map[string]int{ClustersetName("shop", "reviews", 9080): -1}},
		{"a consumer table's ServiceImport backend", []model.RouteTable{
			meshTable(meshParent(model.ParentService, "reviews", 9080, "web"), prefixRoute("r", "/", importBackend("reviews", 9080, 1))),
		}, "web", map[string]int{ClustersetName("shop", "reviews", 9080): 0}}, // exported by no cluster: no backends
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Translate(meshModel(tt.tables...), meshNode(tt.ns), TranslateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkResources(t, res)
			for name, want := range tt.want {
				if got := endpoints(res, name); got != want {
					t.Errorf("%s: %d endpoints, want %d (-1: absent)", name, got, want)
				}
				found := slices.ContainsFunc(res.Clusters, func(r types.Resource) bool { return resourceName(r) == name })
				if found != (want >= 0) {
					t.Errorf("%s: cluster present %t, want %t", name, found, want >= 0)
				}
			}
		})
	}
}

// TestTranslatorMeshRoutes: through a sequence of route changes the
// Translator produces what Translate does, rebuilds the route
// configurations only when a table that applies to the class changed, and
// keeps the clusters of services whose clusters did not change.
func TestTranslatorMeshRoutes(t *testing.T) {
	steps := []struct {
		name   string
		tables []model.RouteTable
		edit   bool // also move an endpoint of ratings
		// clusters: every cluster message is last step's; routes: the
		// node ids whose route configurations are all last step's.
		clusters bool
		routes   []string
	}{
		{"no tables", nil, false, false, nil},
		{"canary", []model.RouteTable{canaryTable(90, 10)}, false, true, nil},
		{"canary weights", []model.RouteTable{canaryTable(50, 50)}, false, true, nil},
		{"consumer table", []model.RouteTable{canaryTable(50, 50), consumerTable()}, false, true, []string{"caller.shop"}},
		{"ServiceImport parent", []model.RouteTable{canaryTable(50, 50), consumerTable(), importTable()}, false, false, nil},
		{"an endpoint moves", []model.RouteTable{canaryTable(50, 50), consumerTable(), importTable()}, true, true, []string{"caller.shop", "caller.web"}},
		{"gateway table", []model.RouteTable{canaryTable(50, 50), consumerTable(), importTable(), ingressTable()}, true, true, []string{"caller.shop", "caller.web"}},
		{"consumer table goes", []model.RouteTable{canaryTable(50, 50), importTable(), ingressTable()}, true, true, []string{"caller.shop"}},
		{"every table goes", nil, true, false, nil},
	}
	nodes := []Node{meshNode("shop"), meshNode("web"), {ID: "grpc", Namespace: "shop", Cluster: "east", Locality: model.Locality{Region: "r1", Zone: "z1"}, Proxyless: true}}
	for _, n := range nodes {
		t.Run(n.ID, func(t *testing.T) {
			tr := NewTranslator(TranslateOptions{})
			var last Resources
			for i, st := range steps {
				s := meshModel(st.tables...)
				if st.edit {
					s = edit(s, 1, func(sv *model.Service) { sv.Endpoints[0].Address = "10.9.9.9" })
					if s.Services[1].Name != "ratings" {
						t.Fatalf("service 1 is %s", s.Services[1].Name)
					}
				}
				got, err := tr.Translate(s, n)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				want, err := Translate(s, n, TranslateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				resourcesEqual(t, st.name, got, want)
				if i == 0 {
					last = got
					continue
				}
				if st.clusters && !slices.Equal(got.Clusters, last.Clusters) {
					t.Errorf("%s: clusters were rebuilt", st.name)
				}
				if slices.Contains(st.routes, n.ID) && !slices.Equal(got.Routes, last.Routes) {
					t.Errorf("%s: route configurations were rebuilt", st.name)
				}
				if !n.Proxyless && !slices.Contains(st.routes, n.ID) && slices.Equal(got.Routes, last.Routes) {
					t.Errorf("%s: route configurations were not rebuilt", st.name)
				}
				last = got
			}
		})
	}
}

// benchMeshModel is the bench model with a 90/10 GAMMA split on every
// tenth service (to the next service).
func benchMeshModel(services, eps int) *model.Snapshot {
	s := benchModel(services, eps)
	for i := 0; i+1 < services; i += 10 {
		a, b := s.Services[i].Name, s.Services[i+1].Name
		p := model.RouteParent{Kind: model.ParentService, Namespace: "ns", Name: a, Port: 8080, Protocol: "HTTP"}
		s.Routes = append(s.Routes, model.RouteTable{Parent: p, VirtualHosts: []model.VirtualHost{{Hostname: "*", Routes: []model.HTTPRoute{{
			Namespace: "ns", Name: a, Path: "/",
			Backends: []model.Backend{{Namespace: "ns", Name: a, Port: 8080, Weight: 90}, {Namespace: "ns", Name: b, Port: 8080, Weight: 10}},
		}}}}})
	}
	s.Canonicalize()
	return s
}

// BenchmarkTranslatorOneChangeMesh: BenchmarkTranslatorOneChange with 100
// GAMMA tables in the model (unchanged).
func BenchmarkTranslatorOneChangeMesh(b *testing.B) {
	s := benchMeshModel(1000, 10)
	n := Node{ID: "n", Namespace: "ns", Cluster: "east", Locality: model.Locality{Region: "r1", Zone: "z1"}}
	tr := NewTranslator(TranslateOptions{})
	if _, err := tr.Translate(s, n); err != nil {
		b.Fatal(err)
	}
	snaps := make([]*model.Snapshot, 16)
	for i := range snaps {
		snaps[i] = edit(s, i*61%1000, func(sv *model.Service) { sv.Endpoints[0].Address = fmt.Sprintf("10.200.0.%d", i) })
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := tr.Translate(snaps[i%len(snaps)], n); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkTranslatorOneRouteChange: one GAMMA table's weights change per
// iteration (in a fresh Routes slice, as a new gateway translation gives).
func BenchmarkTranslatorOneRouteChange(b *testing.B) {
	s := benchMeshModel(1000, 10)
	n := Node{ID: "n", Namespace: "ns", Cluster: "east", Locality: model.Locality{Region: "r1", Zone: "z1"}}
	tr := NewTranslator(TranslateOptions{})
	if _, err := tr.Translate(s, n); err != nil {
		b.Fatal(err)
	}
	snaps := make([]*model.Snapshot, 16)
	for i := range snaps {
		c := *s
		c.Routes = slices.Clone(s.Routes)
		t := &c.Routes[i*7%len(c.Routes)]
		vh := slices.Clone(t.VirtualHosts)
		vh[0].Routes = slices.Clone(vh[0].Routes)
		vh[0].Routes[0].Backends = slices.Clone(vh[0].Routes[0].Backends)
		vh[0].Routes[0].Backends[0].Weight = uint32(50 + i)
		t.VirtualHosts = vh
		snaps[i] = &c
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := tr.Translate(snaps[i%len(snaps)], n); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

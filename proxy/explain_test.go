package proxy

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/lb"
)

// explainSnap: /api splits 90/10 between "stable" (P0 in r1 with 2 of 4
// endpoints unhealthy, P1 in r2) and "canary" (two endpoints, one of which
// the test ejects); "/moved" redirects; /x with x-canary: yes goes to the
// canary only.
func explainSnap() *snap {
	p0 := loc("r1", "a", 0, "10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80")
	p0.Endpoints[0].Health = config.Unhealthy
	p0.Endpoints[1].Health = config.Unhealthy
	split := &config.ForwardAction{
		Clusters: []config.WeightedCluster{{Name: "stable", Weight: 90}, {Name: "canary", Weight: 10}},
		Timeout:  3 * time.Second,
		Retry:    &config.RetryPolicy{On: config.Retry5xx | config.RetryConnectFailure, NumRetries: 2},
	}
	header := prefix("/x", to("canary"))
	header.Name = "canary-by-header"
	header.Match.Headers = []config.HeaderMatch{{Name: "x-canary", Value: config.StringMatch{Value: "yes"}}}
	api := prefix("/api", split)
	api.Name = "api"
	moved := &config.Route{Name: "moved", Match: config.RouteMatch{PathKind: config.PathExact, Path: "/moved", CaseSensitive: true},
		Redirect: &config.RedirectAction{Path: "/new", StatusCode: 302}}
	return newSnap().httpListener("outbound_8080", header, api, moved).
		cluster(&config.Cluster{Name: "stable", PanicThreshold: 50}, p0, loc("r2", "b", 1, "10.2.0.1:80", "10.2.0.2:80")).
		cluster(&config.Cluster{Name: "canary", Outlier: &config.OutlierDetection{Consecutive5xx: 1, MaxEjectionPercent: 100}},
			loc("r1", "a", 0, "10.3.0.1:80", "10.3.0.2:80"))
}

func TestExplainSplitAndPriorities(t *testing.T) {
	p, _ := start(t, explainSnap())
	// Eject one canary endpoint through the live balancer.
	u := p.state.Load().upstreams["canary"]
	h, err := u.lb.Pick(nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Begin()
	h.End(lb.Status5xx)

	e := p.Explain("", "reviews.default:8080", "/api/v1?q=1", "", nil)
	if e.Listener != "outbound_8080" || e.VirtualHost != "all" || e.Action != "forward" || e.Route == nil || e.Route.Name != "api" {
		t.Fatalf("explanation %+v", e)
	}
	if e.Route.Match != `prefix "/api"` {
		t.Errorf("match %q", e.Route.Match)
	}
	if e.Timeout != "3s" || e.Retry == nil || e.Retry.NumRetries != 2 || !slices.Equal(e.Retry.On, []string{"5xx", "connect-failure"}) || e.Retry.From != "route" {
		t.Errorf("policy: timeout %q retry %+v", e.Timeout, e.Retry)
	}
	if len(e.Clusters) != 2 {
		t.Fatalf("clusters %+v", e.Clusters)
	}
	st, ca := e.Clusters[0], e.Clusters[1]
	if st.Name != "stable" || st.Weight != 90 || st.WeightPercent != 90 || ca.Name != "canary" || ca.WeightPercent != 10 {
		t.Errorf("split: %s %d %.1f%%, %s %.1f%%", st.Name, st.Weight, st.WeightPercent, ca.Name, ca.WeightPercent)
	}
	// stable: P0 health 140*2/4 = 70 → P0 70%, P1 30%; no panic (2/4 = 50%).
	if len(st.Priorities) != 2 {
		t.Fatalf("stable priorities %+v", st.Priorities)
	}
	p0, p1 := st.Priorities[0], st.Priorities[1]
	if p0.LoadPercent != 70 || p0.Healthy != 2 || p0.Total != 4 || p0.Panic || p1.LoadPercent != 30 || p1.Healthy != 2 {
		t.Errorf("stable levels: %+v / %+v", p0, p1)
	}
	if l := p0.Localities[0]; l.Region != "r1" || l.Zone != "a" || l.Cluster != "c-r1" || l.Healthy != 2 || l.Total != 4 ||
		math.Abs(l.SharePercent-70) > 0.01 || !slices.Equal(l.Candidates, []string{"10.1.0.3:80", "10.1.0.4:80"}) {
		t.Errorf("stable P0 locality %+v", l)
	}
	if l := p1.Localities[0]; l.Region != "r2" || math.Abs(l.SharePercent-30) > 0.01 || len(l.Candidates) != 2 {
		t.Errorf("stable P1 locality %+v", l)
	}
	if !strings.Contains(st.Why, "spilling over") {
		t.Errorf("stable why %q", st.Why)
	}
	// canary: one endpoint ejected with its reason; the other takes it all.
	if len(ca.Ejected) != 1 || ca.Ejected[0].Address != h.Address || ca.Ejected[0].Reason != lb.ReasonConsecutive5xx || ca.Ejected[0].Until.IsZero() {
		t.Errorf("canary ejected %+v", ca.Ejected)
	}
	if l := ca.Priorities[0].Localities[0]; l.Healthy != 1 || l.Total != 2 || len(l.Candidates) != 1 || l.Candidates[0] == h.Address {
		t.Errorf("canary locality %+v (ejected %s)", l, h.Address)
	}
	if !strings.Contains(strings.Join(e.Why, "\n"), "split by weight: stable 90%, canary 10%") {
		t.Errorf("why:\n%s", strings.Join(e.Why, "\n"))
	}
	if _, err := json.Marshal(e); err != nil {
		t.Fatal(err)
	}
}

func TestExplainDecisions(t *testing.T) {
	p, _ := start(t, explainSnap())
	tests := []struct {
		name, listener, authority, path string
		hdr                             http.Header
		action, route                   string
		why                             string
	}{
		{"header route", "outbound_8080", "reviews", "/x", http.Header{"X-Canary": {"yes"}}, "forward", "canary-by-header", `header x-canary exact "yes"`},
		{"header missing", "outbound_8080", "reviews", "/x", nil, "none", "", "no route of virtual host all matches GET /x"},
		{"redirect", "", "reviews", "/moved", nil, "redirect", "moved", "redirect: 302 to http://reviews/new"},
		{"unknown listener", "nope", "reviews", "/api", nil, "none", "", `no listener "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := p.Explain(tc.listener, tc.authority, tc.path, "GET", tc.hdr)
			route := ""
			if e.Route != nil {
				route = e.Route.Name
			}
			if e.Action != tc.action || route != tc.route {
				t.Errorf("action %q route %q, want %q %q", e.Action, route, tc.action, tc.route)
			}
			if all := strings.Join(e.Why, "\n"); !strings.Contains(all, tc.why) {
				t.Errorf("why does not contain %q:\n%s", tc.why, all)
			}
		})
	}
}

func BenchmarkExplain(b *testing.B) {
	p, _ := start(b, explainSnap())
	b.ReportAllocs()
	for b.Loop() {
		p.Explain("", "reviews:8080", "/api/v1", "GET", nil)
	}
}

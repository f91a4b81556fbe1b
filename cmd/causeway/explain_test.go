package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/proxy"
	"github.com/causewaymesh/causeway/proxy/admin"
	"github.com/causewaymesh/causeway/proxy/config"
)

// fixedExplanation is a 90/10 split whose stable cluster spills from an
// unhealthy P0 to P1 and whose canary has an ejected endpoint.
func fixedExplanation() proxy.Explanation {
	return proxy.Explanation{
		Listener: "outbound_8080", Authority: "reviews.default:8080", Path: "/api/v1", Method: "GET",
		RouteConfig: "outbound_8080", VirtualHost: "reviews.default.svc",
		Route:  &proxy.ExplainRoute{Name: "api", Match: `prefix "/api" header x-canary exact "yes"`},
		Action: "forward", Timeout: "3s",
		Retry: &proxy.ExplainRetry{On: []string{"5xx", "connect-failure"}, NumRetries: 2, PerTryTimeout: "1s", From: "route"},
		Clusters: []proxy.ExplainCluster{
			{
				Name: "stable", Weight: 90, WeightPercent: 90, Configured: true, Policy: "ROUND_ROBIN",
				Priorities: []proxy.ExplainPriority{
					{Priority: 0, LoadPercent: 70, HealthPercent: 70, Healthy: 2, Total: 4, Localities: []proxy.ExplainLocality{
						{Region: "us-east1", Zone: "us-east1-b", Cluster: "east", Healthy: 2, Total: 4, SharePercent: 70, Candidates: []string{"10.1.0.3:80", "10.1.0.4:80"}},
					}},
					{Priority: 1, LoadPercent: 30, HealthPercent: 100, Healthy: 2, Total: 2, Localities: []proxy.ExplainLocality{
						{Region: "us-west1", Zone: "us-west1-a", Cluster: "west", Healthy: 2, Total: 2, SharePercent: 30, Candidates: []string{"10.2.0.1:80", "10.2.0.2:80"}},
					}},
				},
				Why: "ROUND_ROBIN over P0 70% (2/4 healthy), P1 30% (2/2 healthy); spilling over because P0 is below full health (overprovisioning 140%)",
			},
			{
				Name: "canary", Weight: 10, WeightPercent: 10, Configured: true, Policy: "LEAST_REQUEST",
				Priorities: []proxy.ExplainPriority{
					{Priority: 0, LoadPercent: 100, HealthPercent: 70, Healthy: 1, Total: 2, Localities: []proxy.ExplainLocality{
						{Region: "us-east1", Zone: "us-east1-b", Cluster: "east", Healthy: 1, Total: 2, SharePercent: 100, Candidates: []string{"10.3.0.2:80"}},
					}},
				},
				Ejected: []proxy.ExplainEjected{{Address: "10.3.0.1:80", Locality: "us-east1/us-east1-b/", Cluster: "east", Reason: "consecutive_5xx",
					Until: time.Date(2026, 11, 23, 12, 0, 30, 0, time.UTC)}},
				Why: "LEAST_REQUEST over P0 100% (1/2 healthy); 1 ejected",
			},
			{Name: "legacy", Weight: 0, Why: "not configured on this proxy: requests picking it get 503"},
		},
		Why: []string{
			"listener outbound_8080 (10.0.0.5:8080): outbound HTTP listener on the authority's port 8080",
			"virtual host reviews.default.svc: domains reviews.default.svc.cluster.local, reviews.default:8080",
			`route api: first route whose match holds (prefix "/api" header x-canary exact "yes")`,
			"timeout 3s, up to 2 retries on 5xx,connect-failure (policy of the route); a retry prefers another locality",
			"split by weight: stable 90%, canary 10%, legacy 0%",
		},
	}
}

func TestExplainGolden(t *testing.T) {
	var table bytes.Buffer
	writeExplain(&table, fixedExplanation())
	golden(t, "explain-table.golden", table.Bytes())

	redirect := proxy.Explanation{Listener: "outbound_80", Authority: "shop", Path: "/old", Method: "GET", RouteConfig: "outbound_80",
		VirtualHost: "shop", Route: &proxy.ExplainRoute{Match: `exact "/old"`}, Action: "redirect", Redirect: "http://shop/new", RedirectStatus: 301,
		Why: []string{"redirect: 301 to http://shop/new"}}
	var rd bytes.Buffer
	writeExplain(&rd, redirect)
	golden(t, "explain-redirect.golden", rd.Bytes())

	js, err := json.MarshalIndent(fixedExplanation(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "explain-json.golden", append(js, '\n'))
}

func TestParseDestination(t *testing.T) {
	tests := []struct{ in, authority, path, err string }{
		{"reviews", "reviews", "/", ""},
		{"reviews.default:8080", "reviews.default:8080", "/", ""},
		{"reviews.default:8080/api/v1?x=1", "reviews.default:8080", "/api/v1?x=1", ""},
		{"http://reviews:9080/a%2Fb", "reviews:9080", "/a%2Fb", ""},
		{"https://[fd00::1]:443/", "[fd00::1]:443", "/", ""},
		{"/just/a/path", "", "", "names no host"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			a, p, err := parseDestination(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || a != tc.authority || p != tc.path {
				t.Errorf("got %q %q %v, want %q %q", a, p, err, tc.authority, tc.path)
			}
		})
	}
}

func TestExplainFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no destination", []string{"--admin", "127.0.0.1:1"}, "exactly one destination"},
		{"no admin", []string{"reviews"}, "--admin is required"},
		{"bad output", []string{"--admin", "127.0.0.1:1", "-o", "yaml", "reviews"}, `-o "yaml"`},
		{"bad header", []string{"--admin", "127.0.0.1:1", "-H", "novalue", "reviews"}, `want "Name: value"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := runExplain(tc.args, &out, &errb); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tc.want)
			}
		})
	}
}

// TestExplainLive asks a real proxy through a real admin server on
// loopback.
func TestExplainLive(t *testing.T) {
	defer goleak.VerifyNone(t)
	px := proxy.New(proxy.Options{DrainTimeout: time.Second})
	defer px.Close()
	le := func(region string, prio uint32, addrs ...string) *config.LocalityEndpoints {
		l := &config.LocalityEndpoints{Locality: config.Locality{Region: region, Zone: region + "-a"}, Priority: prio, Cluster: region}
		for _, a := range addrs {
			l.Endpoints = append(l.Endpoints, config.Endpoint{Address: a, Health: config.Healthy})
		}
		return l
	}
	p0 := le("east", 0, "10.1.0.1:80", "10.1.0.2:80")
	p0.Endpoints[0].Health = config.Unhealthy
	snap := &config.Snapshot{
		Version:   "1",
		Listeners: []*config.Listener{{Name: "outbound_8080", Address: "127.0.0.1:0", HTTP: &config.HTTPListener{RouteConfigName: "outbound_8080"}}},
		Routes: map[string]*config.RouteConfig{"outbound_8080": {Name: "outbound_8080", VirtualHosts: []*config.VirtualHost{{
			Name: "reviews", Domains: []string{"reviews", "reviews:8080"},
			Routes: []*config.Route{{Name: "all", Match: config.RouteMatch{Path: "/", CaseSensitive: true},
				Forward: &config.ForwardAction{Clusters: []config.WeightedCluster{{Name: "reviews-v1", Weight: 90}, {Name: "reviews-v2", Weight: 10}}}}},
		}}}},
		Clusters: map[string]*config.Cluster{
			"reviews-v1": {Name: "reviews-v1"},
			"reviews-v2": {Name: "reviews-v2"},
		},
		Endpoints: map[string]*config.LoadAssignment{
			"reviews-v1": {Cluster: "reviews-v1", Localities: []*config.LocalityEndpoints{p0, le("west", 1, "10.2.0.1:80")}},
			"reviews-v2": {Cluster: "reviews-v2", Localities: []*config.LocalityEndpoints{le("east", 0, "10.3.0.1:80")}},
		},
	}
	if err := px.Apply(snap); err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New("127.0.0.1:0", admin.Sources{
		Explain: func(l, a, p, m string, h http.Header) any { return px.Explain(l, a, p, m, h) },
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	var out, errb bytes.Buffer
	if code := runExplain([]string{"--admin", "http://" + srv.Addr(), "-o", "json", "-H", "x-user: alice", "reviews:8080/api"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var e proxy.Explanation
	if err := json.Unmarshal(out.Bytes(), &e); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if e.Listener != "outbound_8080" || e.VirtualHost != "reviews" || e.Action != "forward" || len(e.Clusters) != 2 ||
		e.Clusters[0].WeightPercent != 90 || e.Clusters[1].WeightPercent != 10 {
		t.Fatalf("explanation %s", out.String())
	}
	// v1: P0 health 140*1/2 = 70 → 70% east, 30% west.
	v1 := e.Clusters[0]
	if len(v1.Priorities) != 2 || v1.Priorities[0].LoadPercent != 70 || v1.Priorities[1].LoadPercent != 30 ||
		v1.Priorities[0].Localities[0].Candidates[0] != "10.1.0.2:80" {
		t.Errorf("reviews-v1 %+v", v1)
	}

	out.Reset()
	if code := runExplain([]string{"--admin", srv.Addr(), "--listener", "outbound_8080", "reviews:8080/"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"Route:         all", "reviews-v1", "share 70%", "Why:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

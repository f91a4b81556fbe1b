package lb

import (
	"testing"

	"github.com/causewaymesh/causeway/proxy/config"
)

// TestGatewayLocalities: a peer's east-west gateway advertised once per
// locality behind it (one address, several localities, weights = the
// healthy weight there) gives one host per locality, each ejected alone,
// and a level's health counts the capacity behind the gateway, not one
// host: east's dead local zone (1 host, ejected) beside west's gateway
// standing for 2 endpoints keeps the level at 2/3 capacity (health 93),
// where a host count (1/2, health 70) would spill 30% to the next region.
func TestGatewayLocalities(t *testing.T) {
	gw := "127.40.2.1:15443"
	la := &config.LoadAssignment{OverprovisioningFactor: 140, Localities: []*config.LocalityEndpoints{
		{Locality: config.Locality{Region: "r1", Zone: "1b"}, Priority: 0, Cluster: "east", Weight: 1,
			Endpoints: []config.Endpoint{{Address: "127.20.1.3:8080"}}},
		{Locality: config.Locality{Region: "r1", Zone: "1c"}, Priority: 0, Cluster: "west", Network: "west", Weight: 2,
			Endpoints: []config.Endpoint{{Address: gw, Weight: 2}}},
		{Locality: config.Locality{Region: "r1", Zone: "1d"}, Priority: 0, Cluster: "west", Network: "west", Weight: 1,
			Endpoints: []config.Endpoint{{Address: gw, Weight: 1}}},
		{Locality: config.Locality{Region: "r2", Zone: "2a"}, Priority: 1, Cluster: "south", Network: "south", Weight: 1,
			Endpoints: []config.Endpoint{{Address: "127.40.3.1:15443", Weight: 1}}},
	}}
	od := &config.OutlierDetection{ConsecutiveGatewayFailure: 2, MaxEjectionPercent: 100}
	e := newEnv(t, &config.Cluster{Outlier: od, PanicThreshold: 50}, la)
	st := e.c.Status()
	if len(st.Hosts) != 4 {
		t.Fatalf("%d hosts, want 4 (the gateway once per locality): %+v", len(st.Hosts), st.Hosts)
	}
	fail(e.host(t, "127.20.1.3:8080"), GatewayFailure, 2)
	st = e.c.Status()
	if got := st.Levels[0]; got.Healthy != 2 || got.Total != 3 || got.HealthPercent != 100 {
		t.Errorf("level 0 with east ejected: %+v, want 2 of 3 hosts healthy, capacity 3 of 4 (health 100)", got)
	}
	// Both of west's localities answer through the same gateway address.
	got := picks(t, e.c, 1000, nil)
	if got[gw] < 990 {
		t.Errorf("picks %v, want (nearly) all through west's gateway", got)
	}
	// Eject the gateway host of one locality: the other stays.
	var first *Host
	e.c.mu.Lock()
	for _, s := range e.c.sortedStatesLocked() {
		if s.host.Address == gw && s.host.Locality.Zone == "1c" {
			first = s.host
		}
	}
	e.c.mu.Unlock()
	fail(first, GatewayFailure, 2)
	st = e.c.Status()
	ejected := 0
	for _, h := range st.Hosts {
		if h.Ejected {
			ejected++
		}
	}
	if ejected != 2 || st.Levels[0].Healthy != 1 {
		t.Errorf("after ejecting west/1c: %d ejected, level 0 %+v; want east and west/1c ejected, west/1d usable", ejected, st.Levels[0])
	}
	// Capacity 1 of 4 at P0: health 35, the rest to south.
	if st.Levels[0].HealthPercent != 35 || st.Levels[1].LoadPercent != 65 {
		t.Errorf("levels %+v, want P0 health 35 and P1 load 65", st.Levels)
	}
}

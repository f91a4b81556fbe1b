package lb

import (
	"math"
	"testing"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestLocalityLoads(t *testing.T) {
	type want struct {
		zone           string
		prio           uint32
		healthy, total int
		level, share   float64
		mode           string
	}
	tests := []struct {
		name string
		cfg  config.Cluster
		la   *config.LoadAssignment
		want []want
	}{
		{
			name: "all healthy: P0 split by locality weight, P1 idle",
			la:   mkLA(0, grp{zone: "a", weight: 3, n: 2}, grp{zone: "b", weight: 1, n: 2}, grp{prio: 1, zone: "c", n: 2}),
			want: []want{
				{"a", 0, 2, 2, 75, 75, ModeLocalityWeighted},
				{"b", 0, 2, 2, 25, 25, ModeLocalityWeighted},
				{"c", 1, 2, 2, 100, 0, ModeLocalityWeighted},
			},
		},
		{
			// P0 health = 140*3/5 = 84 → P0 84%, P1 16%. Locality a:
			// weight 1 × min(1, 1.4*2/4=0.7); b: 1 × 1 → 0.7/1.7 and 1/1.7.
			name: "unhealthy hosts spill to P1",
			la:   mkLA(0, grp{zone: "a", n: 4, unhealthy: 2}, grp{zone: "b", n: 1}, grp{prio: 1, zone: "c", n: 3}),
			want: []want{
				{"a", 0, 2, 4, 100 * 0.7 / 1.7, 84 * 0.7 / 1.7, ModeLocalityWeighted},
				{"b", 0, 1, 1, 100 / 1.7, 84 / 1.7, ModeLocalityWeighted},
				{"c", 1, 3, 3, 100, 16, ModeLocalityWeighted},
			},
		},
		{
			// Single level, 1 of 4 usable (25% < 50%): panic over all hosts.
			name: "panic ignores health",
			cfg:  config.Cluster{PanicThreshold: 50},
			la:   mkLA(0, grp{zone: "a", n: 3, unhealthy: 3}, grp{zone: "b", n: 1}),
			want: []want{
				{"a", 0, 0, 3, 75, 75, ModePanic},
				{"b", 0, 1, 1, 25, 25, ModePanic},
			},
		},
		{
			name: "nothing usable and panic off",
			la:   mkLA(0, grp{zone: "a", n: 2, unhealthy: 2}),
			want: []want{{"a", 0, 0, 2, 0, 0, ModeNone}},
		},
		{
			name: "ring hash ignores localities",
			cfg:  config.Cluster{LB: config.RingHash},
			la:   mkLA(0, grp{zone: "a", weight: 9, n: 1}, grp{zone: "b", weight: 1, n: 3}),
			want: []want{
				{"a", 0, 1, 1, 25, 25, ModeHashed},
				{"b", 0, 3, 3, 75, 75, ModeHashed},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			e := newEnv(t, &cfg, tc.la)
			got := e.c.LocalityLoads()
			if len(got) != len(tc.want) {
				t.Fatalf("got %d localities %+v, want %d", len(got), got, len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Locality.Zone != w.zone || g.Priority != w.prio || g.Healthy != w.healthy || g.Total != w.total || g.Mode != w.mode {
					t.Errorf("[%d] = %+v, want zone %s prio %d healthy %d/%d mode %s", i, g, w.zone, w.prio, w.healthy, w.total, w.mode)
				}
				if math.Abs(g.LevelPercent-w.level) > 0.01 || math.Abs(g.SharePercent-w.share) > 0.01 {
					t.Errorf("[%d] %s: level %.3f%% share %.3f%%, want %.3f%% %.3f%%", i, w.zone, g.LevelPercent, g.SharePercent, w.level, w.share)
				}
			}
		})
	}
}

func TestLocalityLoadsSeesEjection(t *testing.T) {
	od := &config.OutlierDetection{Consecutive5xx: 1, MaxEjectionPercent: 100}
	e := newEnv(t, &config.Cluster{Outlier: od}, mkLA(0, grp{zone: "a", n: 2}, grp{prio: 1, zone: "b", n: 2}))
	fail(e.host(t, addr(0, 0)), Status5xx, 1)
	got := e.c.LocalityLoads()
	// P0: 1 of 2 usable, health 70 → P0 70%, P1 30%.
	if got[0].Healthy != 1 || math.Abs(got[0].SharePercent-70) > 0.01 || math.Abs(got[1].SharePercent-30) > 0.01 {
		t.Errorf("after ejection: %+v", got)
	}
	// The split agrees with what Pick does.
	n := 20000
	c := picks(t, e.c, n, nil)
	within(t, "P1 share", float64(c[addr(1, 0)]+c[addr(1, 1)])/float64(n), 0.30, 0.02)
}

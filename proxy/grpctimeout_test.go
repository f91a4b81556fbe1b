package proxy

import (
	"testing"
	"time"
)

func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"100m", 100 * time.Millisecond, true},
		{"1S", time.Second, true},
		{"2M", 2 * time.Minute, true},
		{"1H", time.Hour, true},
		{"5u", 5 * time.Microsecond, true},
		{"7n", 7, true},
		{"99999999S", 99999999 * time.Second, true},
		{"", 0, false},
		{"m", 0, false},
		{"100", 0, false},
		{"-1S", 0, false},
		{"100x", 0, false},
		{"123456789S", 0, false}, // more than 8 digits
	} {
		got, ok := parseGRPCTimeout(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWorkloadFromID(t *testing.T) {
	for _, tc := range []struct{ id, ns, sa string }{
		{"spiffe://east.test/ns/shop/sa/cart", "shop", "cart"},
		{"spiffe://east.test/sa/cart/ns/shop", "shop", "cart"},
		{"spiffe://east.test/ns/shop", "shop", ""},
		{"spiffe://east.test", "", ""},
		{"https://not/ns/x/sa/y", "", ""},
		{"", "", ""},
	} {
		w := workloadFromID(tc.id)
		if w.Namespace != tc.ns || w.Name != tc.sa {
			t.Errorf("workloadFromID(%q) = ns %q sa %q; want %q %q", tc.id, w.Namespace, w.Name, tc.ns, tc.sa)
		}
	}
	if n := testing.AllocsPerRun(100, func() { workloadFromID("spiffe://east.test/ns/shop/sa/cart") }); n != 0 {
		t.Errorf("workloadFromID allocates %v times; it runs per request", n)
	}
}

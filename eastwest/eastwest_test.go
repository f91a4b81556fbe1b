package eastwest

import "testing"

func TestNames(t *testing.T) {
	if got := SNI("shop", "cart"); got != "cart.shop.svc.clusterset.local" {
		t.Errorf("SNI: %q", got)
	}
	if got := PortSNI("shop", "cart", 8080); got != "8080.cart.shop.svc.clusterset.local" {
		t.Errorf("PortSNI: %q", got)
	}
	if got := PortSNIFrom("cart.shop.svc.clusterset.local", 9090); got != "9090.cart.shop.svc.clusterset.local" {
		t.Errorf("PortSNIFrom: %q", got)
	}
}

func TestParseSNI(t *testing.T) {
	for _, tc := range []struct {
		in       string
		ns, name string
		port     uint32
		ok       bool
	}{
		{"cart.shop.svc.clusterset.local", "shop", "cart", 0, true},
		{"8080.cart.shop.svc.clusterset.local", "shop", "cart", 8080, true},
		{"8080.Cart.Shop.svc.clusterset.local.", "shop", "cart", 8080, true},
		{"cart.shop.svc.cluster.local", "", "", 0, false},
		{"x.8080.cart.shop.svc.clusterset.local", "", "", 0, false},
		{"http.cart.shop.svc.clusterset.local", "", "", 0, false},
		{"0.cart.shop.svc.clusterset.local", "", "", 0, false},
		{"70000.cart.shop.svc.clusterset.local", "", "", 0, false},
		{".shop.svc.clusterset.local", "", "", 0, false},
		{"shop.svc.clusterset.local", "", "", 0, false},
	} {
		ns, name, port, ok := ParseSNI(tc.in)
		if ns != tc.ns || name != tc.name || port != tc.port || ok != tc.ok {
			t.Errorf("ParseSNI(%q) = %q %q %d %t, want %q %q %d %t", tc.in, ns, name, port, ok, tc.ns, tc.name, tc.port, tc.ok)
		}
		if tc.ok {
			want := SNI(tc.ns, tc.name)
			if tc.port != 0 {
				want = PortSNI(tc.ns, tc.name, tc.port)
			}
			if back, _, _, _ := ParseSNI(want); back != tc.ns {
				t.Errorf("round trip of %q", want)
			}
		}
	}
}

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		err  bool
	}{{"", DefaultPort, false}, {"15443", 15443, false}, {" 443 ", 443, false}, {"0", 0, true}, {"x", 0, true}, {"65536", 0, true}} {
		got, err := ParsePort(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParsePort(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func BenchmarkPortSNI(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = PortSNI("shop", "cart", 8080)
	}
}

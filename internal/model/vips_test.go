package model

import (
	"net/netip"
	"strings"
	"testing"
)

func TestServiceVIPs(t *testing.T) {
	base := Service{Namespace: "shop", Name: "cart", Ports: []ServicePort{{Port: 80, Protocol: TCP}}}
	for _, tc := range []struct {
		name                string
		clusterIP, setIP    string
		wantErr, wantString string
	}{
		{"none", "", "", "", "service shop/cart\n"},
		{"both", "10.96.0.10", "198.19.64.10", "", "service shop/cart cluster-ip=10.96.0.10 clusterset-ip=198.19.64.10\n"},
		{"ipv6", "fd00::a", "", "", "service shop/cart cluster-ip=fd00::a\n"},
		{"not an IP", "None", "", "clusterIP: \"None\": not an IP literal", ""},
		{"mapped", "", "::ffff:10.0.0.1", "write it as 10.0.0.1", ""},
		{"loopback", "127.0.0.1", "", "not a unicast address", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sv := base
			sv.ClusterIP, sv.ClustersetIP = tc.clusterIP, tc.setIP
			s := &Snapshot{Cluster: "east", Services: []Service{sv}}
			err := s.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := s.String(); !strings.HasPrefix(got, "cluster east network - trust-domain -\n"+tc.wantString) {
				t.Errorf("String:\n%s\nwant the service line %q", got, tc.wantString)
			}
			other := sv
			other.ClusterIP = "10.96.0.99"
			if sv.Equal(&other) {
				t.Error("Equal ignores ClusterIP")
			}
			other = sv
			other.ClustersetIP = "198.19.64.99"
			if sv.Equal(&other) {
				t.Error("Equal ignores ClustersetIP")
			}
			if got := strings.Join(sv.VIPs(), ","); got != strings.Trim(tc.clusterIP+","+tc.setIP, ",") {
				t.Errorf("VIPs %q", got)
			}
		})
	}
}

func TestWithClustersetIPs(t *testing.T) {
	mk := func(name string, exported, imported bool, setIP string) Service {
		return Service{Namespace: "shop", Name: name, Exported: exported, Imported: imported, ClustersetIP: setIP,
			Ports: []ServicePort{{Port: 80, Protocol: TCP}}}
	}
	s := &Snapshot{Cluster: "east", Services: []Service{
		mk("a", true, false, ""), mk("b", false, true, ""), mk("c", false, false, ""), mk("d", true, false, "240.240.9.9"),
	}}
	got := WithClustersetIPs(s, DefaultClustersetPrefix)
	if got == s || s.Services[0].ClustersetIP != "" {
		t.Fatal("WithClustersetIPs modified its input or returned it although it assigned VIPs")
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	p := DefaultClustersetPrefix
	for i, want := range []bool{true, true, false, true} {
		sv := got.Services[i]
		if (sv.ClustersetIP != "") != want {
			t.Errorf("%s: ClustersetIP %q, want one: %t", sv.Name, sv.ClustersetIP, want)
		}
		if sv.ClustersetIP != "" && !p.Contains(netip.MustParseAddr(sv.ClustersetIP)) {
			t.Errorf("%s: %s outside %s", sv.Name, sv.ClustersetIP, p)
		}
	}
	if got.Services[0].ClustersetIP == got.Services[1].ClustersetIP {
		t.Error("two services got the same VIP")
	}
	if got.Services[3].ClustersetIP != "240.240.9.9" {
		t.Error("a given VIP was replaced")
	}
	// Deterministic, and idempotent.
	if again := WithClustersetIPs(s, p); !again.Equal(got) {
		t.Error("two runs gave different VIPs")
	}
	if WithClustersetIPs(got, p) != got {
		t.Error("nothing to assign, yet a copy was made")
	}
	// Collisions move to the next free address: a /30 has two usable.
	tiny := netip.MustParsePrefix("240.240.0.0/30")
	two := WithClustersetIPs(&Snapshot{Cluster: "east", Services: []Service{mk("a", true, false, ""), mk("b", true, false, ""), mk("c", true, false, "")}}, tiny)
	seen := map[string]bool{}
	for _, sv := range two.Services {
		if sv.ClustersetIP != "" {
			seen[sv.ClustersetIP] = true
		}
	}
	if len(seen) != 2 {
		t.Errorf("a /30 holds two VIPs; got %v", seen)
	}
}

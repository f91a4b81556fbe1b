package testcluster

import "testing"

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"POD_NAME": "web-1", "POD_NAMESPACE": "shop", "EMPTY": ""}
	for _, tc := range []struct{ in, want string }{
		{"--node-id=$(POD_NAME).$(POD_NAMESPACE)", "--node-id=web-1.shop"},
		{"--x=$(UNKNOWN)", "--x=$(UNKNOWN)"},
		{"--e=$(EMPTY)", "--e="},
		{"plain", "plain"},
		{"$POD_NAME", "$POD_NAME"},
	} {
		if got := expandVars(tc.in, vars); got != tc.want {
			t.Errorf("expandVars(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHostIP(t *testing.T) {
	for s := 0; s < MaxSlots; s++ {
		ip := hostIP(s)
		if !podCIDR(s).Contains(ip) {
			t.Errorf("hostIP(%d) = %s is outside the slot's pod range %s", s, ip, podCIDR(s))
		}
		if !ip.Is4() || ip.As4()[3] != 254 {
			t.Errorf("hostIP(%d) = %s, want x.x.x.254", s, ip)
		}
	}
}

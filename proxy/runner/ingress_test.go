package runner

import (
	"strings"
	"testing"

	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
)

func TestIngressMode(t *testing.T) {
	base := func(mode, gateways string) Config {
		c := DefaultConfig()
		c.Mode, c.Gateways, c.XDS = mode, gateways, "127.0.0.1:15010"
		return c
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
		wantMD  map[string]string
	}{
		{"every gateway", base("ingress", "*"), "", map[string]string{"role": "ingress", "gateways": "*"}},
		{"a list", base("ingress", "web/gw, other/gw2"), "", map[string]string{"role": "ingress", "gateways": "web/gw,other/gw2"}},
		{"no gateways", base("ingress", ""), "--gateways: required in ingress mode", nil},
		{"bad entry", base("ingress", "gw"), `entry "gw": want namespace/name`, nil},
		{"gateways on a sidecar", base("sidecar", "*"), "--gateways \"*\": only in ingress mode", nil},
		{"unknown mode", base("router", ""), `mode "router"`, nil},
		{"inbound on an ingress", func() Config {
			c := base("ingress", "*")
			c.InboundIP, c.InboundPorts = "127.0.0.1", "80=127.0.0.1:8080"
			return c
		}(),
			"not in ingress mode", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := &corev3.Node{}
			fillNode(n, tc.cfg, tc.cfg.locality())
			for k, v := range tc.wantMD {
				if got := n.GetMetadata().GetFields()[k].GetStringValue(); got != v {
					t.Errorf("metadata %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

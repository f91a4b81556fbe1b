package runner

import (
	"strings"
	"testing"

	"github.com/causewaymesh/causeway/eastwest"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
)

// TestEastWestConfig: east-west mode needs --inbound-ip, refuses inbound
// ports and an SVID issuer, and declares role and port in the node
// metadata; other modes refuse --eastwest-port.
func TestEastWestConfig(t *testing.T) {
	base := func(mode string) Config {
		c := DefaultConfig()
		c.Mode, c.XDS = mode, "127.0.0.1:15010"
		return c
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" : valid
		meta    map[string]string
	}{
		{name: "default port", edit: func(c *Config) { c.InboundIP = "127.0.0.1" },
			meta: map[string]string{"role": "east-west", "eastwest_port": "15443", "inbound_ip": "127.0.0.1"}},
		{name: "own port", edit: func(c *Config) { c.InboundIP, c.EastWestPort = "127.0.0.1", 16443 },
			meta: map[string]string{"role": "east-west", "eastwest_port": "16443"}},
		{name: "no inbound ip", edit: func(c *Config) {}, wantErr: "--inbound-ip \"\": required in east-west mode"},
		{name: "inbound ip with port", edit: func(c *Config) { c.InboundIP = "127.0.0.1:15443" }, wantErr: "--inbound-ip \"127.0.0.1:15443\""},
		{name: "inbound ports", edit: func(c *Config) { c.InboundIP, c.InboundPorts = "127.0.0.1", "8080=127.0.0.1:18080" },
			wantErr: "--inbound-ports \"8080=127.0.0.1:18080\": not in east-west mode"},
		{name: "svid issuer", edit: func(c *Config) {
			c.InboundIP, c.SVIDIssuer, c.SVIDTokenFile, c.TrustDomain, c.TrustBundle = "127.0.0.1", "127.0.0.1:15012", "t", "td", "b"
		}, wantErr: "--svid-issuer: not in east-west mode"},
		{name: "port too large", edit: func(c *Config) { c.InboundIP, c.EastWestPort = "127.0.0.1", 70000 }, wantErr: "--eastwest-port 70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base(eastwest.Role)
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := &corev3.Node{}
			fillNode(n, c, c.locality())
			for k, v := range tt.meta {
				if got := n.GetMetadata().GetFields()[k].GetStringValue(); got != v {
					t.Errorf("metadata %s = %q, want %q", k, got, v)
				}
			}
		})
	}
	t.Run("sidecar refuses --eastwest-port", func(t *testing.T) {
		c := base("sidecar")
		c.EastWestPort = 15443
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--eastwest-port 15443: only in east-west mode") {
			t.Fatalf("Validate: %v", err)
		}
		n := &corev3.Node{}
		c.EastWestPort = 0
		fillNode(n, c, c.locality())
		if _, ok := n.GetMetadata().GetFields()[eastwest.RoleKey]; ok {
			t.Error("a sidecar declares a role")
		}
	})
}

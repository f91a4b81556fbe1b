package capture

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current rendering")

func prefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

func TestRulesGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Family
		edit func(*Config)
	}{
		{"default", IPv4, func(*Config) {}},
		{"dns", IPv4, func(c *Config) { c.CaptureDNS = true }},
		{"excludes", IPv4, func(c *Config) {
			c.ExcludeInboundPorts = []uint16{22, 15021, 22}
			c.ExcludeOutboundPorts = []uint16{3306}
			c.ExcludeOutboundCIDRs = prefixes("169.254.169.254/32", "10.96.0.0/12")
		}},
		{"includes", IPv4, func(c *Config) {
			c.ProxyUID = 2000
			c.InboundPorts = []uint16{8080, 80}
			c.OutboundPorts = []uint16{443, 80}
			c.OutboundCIDRs = prefixes("10.0.0.0/8", "fd00::/8")
			c.ExcludeOutboundCIDRs = prefixes("10.1.0.0/16")
			c.IPv6 = true
		}},
		{"includes-ipv6", IPv6, func(c *Config) {
			c.ProxyUID = 2000
			c.InboundPorts = []uint16{8080, 80}
			c.OutboundPorts = []uint16{443, 80}
			c.OutboundCIDRs = prefixes("10.0.0.0/8", "fd00::/8")
			c.ExcludeOutboundCIDRs = prefixes("10.1.0.0/16")
			c.IPv6 = true
		}},
		{"ipv6-dns", IPv6, func(c *Config) {
			c.IPv6, c.CaptureDNS = true, true
			c.ExcludeOutboundCIDRs = prefixes("10.0.0.0/8", "fd00:ec2::254/128")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			lines, err := Rules(c, tc.f)
			if err != nil {
				t.Fatalf("Rules: %v", err)
			}
			got := strings.Join(lines, "\n") + "\n"
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestRulesGolden -update to create it)", err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("%s drifted (-golden +got; -update rewrites it):\n%s", path, d)
			}
		})
	}
}

// TestRulesDoNotTouchCallerSlices: Rules sorts a copy, never the caller's lists.
func TestRulesDoNotTouchCallerSlices(t *testing.T) {
	c := DefaultConfig()
	c.ExcludeOutboundPorts = []uint16{9, 3, 9}
	if _, err := Rules(c, IPv4); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]uint16{9, 3, 9}, c.ExcludeOutboundPorts); d != "" {
		t.Errorf("caller's slice changed: %s", d)
	}
}

func TestValidate(t *testing.T) {
	type want struct {
		Field string
		Err   error
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []want
	}{
		{"default is valid", func(*Config) {}, nil},
		{"uid 0", func(c *Config) { c.ProxyUID = 0 }, []want{{"--proxy-uid", ErrRootUID}}},
		{"inbound port 0", func(c *Config) { c.InboundPort = 0 }, []want{{"--inbound-port", ErrPortZero}}},
		{"dns port 0 only matters with dns", func(c *Config) { c.DNSPort = 0 }, nil},
		{"dns port 0", func(c *Config) { c.DNSPort, c.CaptureDNS = 0, true }, []want{{"--dns-port", ErrPortZero}}},
		{"ports clash", func(c *Config) { c.OutboundPort = c.InboundPort }, []want{{"--outbound-port", ErrPortClash}}},
		{"dns clashes", func(c *Config) { c.DNSPort, c.CaptureDNS = c.OutboundPort, true }, []want{{"--dns-port", ErrPortClash}}},
		{"port 0 in list", func(c *Config) { c.ExcludeOutboundPorts = []uint16{80, 0} }, []want{{"--exclude-outbound-ports", ErrPortZero}}},
		{"inbound overlap", func(c *Config) {
			c.InboundPorts, c.ExcludeInboundPorts = []uint16{80, 443}, []uint16{443}
		}, []want{{"--exclude-inbound-ports", ErrOverlap}}},
		{"outbound overlap", func(c *Config) {
			c.OutboundPorts, c.ExcludeOutboundPorts = []uint16{80}, []uint16{80, 81}
		}, []want{{"--exclude-outbound-ports", ErrOverlap}}},
		{"host bits", func(c *Config) { c.ExcludeOutboundCIDRs = prefixes("10.0.0.1/8") }, []want{{"--exclude-outbound-cidrs", ErrBadCIDR}}},
		{"zero prefix", func(c *Config) { c.OutboundCIDRs = []netip.Prefix{{}} }, []want{{"--include-outbound-cidrs", ErrBadCIDR}}},
		{"mapped", func(c *Config) {
			c.IPv6 = true
			c.OutboundCIDRs = prefixes("::ffff:10.0.0.0/104")
		}, []want{{"--include-outbound-cidrs", ErrBadCIDR}}},
		{"ipv6 cidr without ipv6", func(c *Config) { c.ExcludeOutboundCIDRs = prefixes("fd00::/8") }, []want{{"--exclude-outbound-cidrs", ErrFamily}}},
		{"include inside exclude", func(c *Config) {
			c.OutboundCIDRs, c.ExcludeOutboundCIDRs = prefixes("10.1.0.0/16"), prefixes("10.0.0.0/8")
		}, []want{{"--include-outbound-cidrs", ErrOverlap}}},
		{"include equals exclude", func(c *Config) {
			c.OutboundCIDRs, c.ExcludeOutboundCIDRs = prefixes("10.0.0.0/8"), prefixes("10.0.0.0/8")
		}, []want{{"--include-outbound-cidrs", ErrOverlap}}},
		{"exclude carves include", func(c *Config) {
			c.OutboundCIDRs, c.ExcludeOutboundCIDRs = prefixes("10.0.0.0/8"), prefixes("10.1.0.0/16")
		}, nil},
		{"every problem at once", func(c *Config) {
			c.ProxyUID, c.OutboundPort = 0, 0
			c.ExcludeOutboundCIDRs = prefixes("10.0.0.1/8")
		}, []want{{"--proxy-uid", ErrRootUID}, {"--outbound-port", ErrPortZero}, {"--exclude-outbound-cidrs", ErrBadCIDR}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			var got []want
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("%v is not a *FieldError", e)
					}
					got = append(got, want{fe.Field, fe.Err})
					if fe.Fix == "" || !strings.Contains(e.Error(), fe.Field) {
						t.Errorf("%q: want the field and a fix in the message", e)
					}
				}
			}
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); d != "" {
				t.Errorf("Validate() = %v; diff (-want +got):\n%s", err, d)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		edit    func(*Config)
		wantErr string
	}{
		{"defaults", nil, func(*Config) {}, ""},
		{"all", []string{"--proxy-uid=2000", "--inbound-port=7000", "--outbound-port=7001", "--capture-dns", "--dns-port=7053",
			"--include-inbound-ports=80,443", "--exclude-inbound-ports=22", "--include-outbound-ports=*",
			"--exclude-outbound-ports= 3306 , 5432", "--include-outbound-cidrs=10.0.0.0/8", "--exclude-outbound-cidrs=10.1.0.0/16,fd00::/8", "--ipv6"},
			func(c *Config) {
				c.ProxyUID, c.InboundPort, c.OutboundPort, c.CaptureDNS, c.DNSPort = 2000, 7000, 7001, true, 7053
				c.InboundPorts, c.ExcludeInboundPorts = []uint16{80, 443}, []uint16{22}
				c.ExcludeOutboundPorts = []uint16{3306, 5432}
				c.OutboundCIDRs, c.ExcludeOutboundCIDRs = prefixes("10.0.0.0/8"), prefixes("10.1.0.0/16", "fd00::/8")
				c.IPv6 = true
			}, ""},
		{"port too big", []string{"--exclude-inbound-ports=70000"}, nil, `port "70000": want a number from 1 to 65535`},
		{"bad cidr", []string{"--exclude-outbound-cidrs=10.0.0/8"}, nil, `CIDR "10.0.0/8": want an address and prefix length`},
		{"bare address", []string{"--exclude-outbound-cidrs=10.0.0.1"}, nil, `write 10.0.0.1/32 for one address`},
		{"uid", []string{"--proxy-uid=proxy"}, nil, "want a numeric UID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			c.Flags(fs)
			err := fs.Parse(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig()
			tc.edit(&want)
			if d := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

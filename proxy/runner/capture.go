package runner

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/causewaymesh/causeway/proxy"
	"github.com/causewaymesh/causeway/proxy/capture"
)

// Capture mode (`causeway-proxy sidecar --capture`): the pod's traffic
// reaches the sidecar through the nat rules causeway-init installed
// (docs/capture.md), not by the app dialling the sidecar. The sidecar binds
// the capture sockets on the same ports as causeway-init's flags, tells the
// control plane (node metadata interception_mode REDIRECT), which then
// sends one outbound listener per service VIP, and serves every captured
// connection by the listener of its original destination. It must run as
// causeway-init's --proxy-uid, or it would capture its own traffic.

// CaptureConfig holds the capture-mode flags.
type CaptureConfig struct {
	Enabled bool
	// Ports, as causeway-init's --outbound-port, --inbound-port and
	// --dns-port; zero outbound and inbound ports mean causeway-init's
	// defaults (15001, 15006); DNSPort 0 turns the DNS responder off.
	OutboundPort, InboundPort, DNSPort uint
	// DNSUpstream gets the queries the sidecar does not answer; default:
	// the first nameserver of /etc/resolv.conf, port 53.
	DNSUpstream string
	// Passthrough forwards connections to destinations no listener serves
	// (default true); false closes them.
	Passthrough bool
}

// ports returns the outbound and inbound ports, defaults filled in.
func (cc CaptureConfig) ports() (out, in uint) {
	def := capture.DefaultConfig()
	return cmp.Or(cc.OutboundPort, uint(def.OutboundPort)), cmp.Or(cc.InboundPort, uint(def.InboundPort))
}

// interceptionModeKey is the node metadata that says the proxy captures.
const interceptionModeKey = "interception_mode"

func (c *Config) captureFlags(fs *flag.FlagSet) {
	if c.Capture.OutboundPort == 0 && c.Capture.InboundPort == 0 {
		def := capture.DefaultConfig()
		c.Capture.DNSPort = uint(def.DNSPort)
		c.Capture.Passthrough = true
	}
	c.Capture.OutboundPort, c.Capture.InboundPort = c.Capture.ports()
	fs.BoolVar(&c.Capture.Enabled, "capture", c.Capture.Enabled, "capture mode: serve the traffic causeway-init redirects (run as its --proxy-uid)")
	fs.UintVar(&c.Capture.OutboundPort, "capture-outbound-port", c.Capture.OutboundPort, "capture mode: causeway-init's --outbound-port (listens on 127.0.0.1)")
	fs.UintVar(&c.Capture.InboundPort, "capture-inbound-port", c.Capture.InboundPort, "capture mode: causeway-init's --inbound-port (listens on every address)")
	fs.UintVar(&c.Capture.DNSPort, "capture-dns-port", c.Capture.DNSPort, "capture mode: causeway-init's --dns-port (UDP and TCP on 127.0.0.1); 0: no DNS")
	fs.StringVar(&c.Capture.DNSUpstream, "dns-upstream", c.Capture.DNSUpstream, "capture mode: resolver host:port for names other than clusterset.local (default: /etc/resolv.conf's first nameserver)")
	fs.BoolVar(&c.Capture.Passthrough, "capture-passthrough", c.Capture.Passthrough, "capture mode: forward connections to destinations the mesh does not know (false: close them)")
}

// validateCapture checks the capture fields; nil when capture is off.
func (c *Config) validateCapture() error {
	if !c.Capture.Enabled {
		return nil
	}
	var errs []error
	if c.Mode != "sidecar" {
		errs = append(errs, fmt.Errorf("--capture: only in sidecar mode, not %q", c.Mode))
	}
	seen := map[uint]string{}
	out, in := c.Capture.ports()
	for _, f := range []struct {
		name string
		v    uint
	}{{"--capture-outbound-port", out}, {"--capture-inbound-port", in}, {"--capture-dns-port", c.Capture.DNSPort}} {
		switch {
		case f.v == 0: // DNS off
			continue
		case f.v > 65535:
			errs = append(errs, fmt.Errorf("%s %d: want 1-65535, the same as causeway-init's", f.name, f.v))
		case seen[f.v] != "":
			errs = append(errs, fmt.Errorf("%s %d: also %s; each capture socket needs its own port", f.name, f.v, seen[f.v]))
		}
		seen[f.v] = f.name
	}
	if u := c.Capture.DNSUpstream; u != "" {
		if _, _, err := net.SplitHostPort(u); err != nil {
			errs = append(errs, fmt.Errorf("--dns-upstream %q: want host:port, e.g. 10.96.0.10:53", u))
		}
	}
	return errors.Join(errs...)
}

// captureMetadata is the node metadata of capture mode; nil otherwise.
func (c *Config) captureMetadata() map[string]string {
	if !c.Capture.Enabled {
		return nil
	}
	return map[string]string{interceptionModeKey: "REDIRECT"}
}

// startCapture turns on px's capture mode when configured; px.Close and
// px.Drain close it.
func startCapture(px *proxy.Proxy, c Config, log *slog.Logger) error {
	if !c.Capture.Enabled {
		return nil
	}
	out, in := c.Capture.ports()
	o := proxy.CaptureOptions{
		OutboundAddr: "127.0.0.1:" + strconv.FormatUint(uint64(out), 10),
		InboundAddr:  ":" + strconv.FormatUint(uint64(in), 10),
		Passthrough:  c.Capture.Passthrough,
		DNSUpstream:  c.Capture.DNSUpstream,
	}
	if c.Capture.DNSPort != 0 {
		o.DNSAddr = "127.0.0.1:" + strconv.FormatUint(uint64(c.Capture.DNSPort), 10)
		if o.DNSUpstream == "" {
			o.DNSUpstream = resolvConfNameserver("/etc/resolv.conf")
			if o.DNSUpstream == "" {
				log.Warn("capture: no nameserver in /etc/resolv.conf; names outside clusterset.local will get SERVFAIL (set --dns-upstream)")
			}
		}
	}
	if uid := os.Getuid(); uid == 0 {
		log.Warn("capture: running as root; unless causeway-init's --proxy-uid is 0 (it refuses), the sidecar's own traffic is captured too")
	}
	_, err := px.StartCapture(o)
	return err
}

// resolvConfNameserver returns "<first nameserver>:53", or "".
func resolvConfNameserver(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return net.JoinHostPort(fields[1], "53")
		}
	}
	return ""
}

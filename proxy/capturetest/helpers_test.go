package capturetest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/causewaymesh/causeway/proxy"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/xdsclient"
	"github.com/causewaymesh/causeway/trust"
)

// The test binary doubles as the sidecar and as the client: helperEnv
// selects the role, the other variables its inputs.
const (
	helperEnv = "CWCAPT_HELPER" // "sidecar", "get" or "dial"
	dirEnv    = "CWCAPT_DIR"    // sidecar: the folder with resources.pb, svid.pem, svid-key.pem
	urlEnv    = "CWCAPT_URL"    // get: the URL
	addrEnv   = "CWCAPT_ADDR"   // dial: host:port
)

// Capture ports, as causeway-init's defaults.
const (
	outboundAddr = "127.0.0.1:15001"
	inboundAddr  = ":15006"
	dnsAddr      = "127.0.0.1:15053"
)

func runHelper(role string) int {
	var err error
	switch role {
	case "sidecar":
		err = runSidecar(os.Getenv(dirEnv))
	case "get":
		err = runGet(os.Getenv(urlEnv))
	case "dial":
		err = runDial(os.Getenv(addrEnv))
	default:
		err = fmt.Errorf("unknown helper role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// runGet is the unmodified client: net/http with the system resolver,
// no proxy settings, no TLS. It prints "<status> <body>".
func runGet(url string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Printf("%d %s", resp.StatusCode, b)
	return nil
}

// runDial connects, reads the line the server sends (the client address
// it saw) and prints "<own local address> <what the server saw>".
func runDial(addr string) error {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Printf("%s %s", c.LocalAddr(), line)
	return nil
}

// resourcesFile holds the control plane's output for the sidecar: one
// DiscoveryResponse per type, length-prefixed.
const resourcesFile = "resources.pb"

func writeResources(path string, rs ...*discoveryv3.DiscoveryResponse) error {
	var out []byte
	for _, r := range rs {
		b, err := proto.Marshal(r)
		if err != nil {
			return err
		}
		out = append(out, byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b)))
		out = append(out, b...)
	}
	return os.WriteFile(path, out, 0o644)
}

// loadSnapshot reads the resources through the proxy's own xDS
// translators, as the ADS client would, and adds the workload's SVID.
func loadSnapshot(dir string) (*config.Snapshot, error) {
	raw, err := os.ReadFile(filepath.Join(dir, resourcesFile))
	if err != nil {
		return nil, err
	}
	s := &config.Snapshot{Version: "capturetest", Routes: map[string]*config.RouteConfig{}, Clusters: map[string]*config.Cluster{},
		Endpoints: map[string]*config.LoadAssignment{}, Secrets: map[string]*config.Secret{}}
	for len(raw) >= 4 {
		n := int(raw[0])<<24 | int(raw[1])<<16 | int(raw[2])<<8 | int(raw[3])
		if len(raw) < 4+n {
			return nil, errors.New("resources.pb is truncated")
		}
		var dr discoveryv3.DiscoveryResponse
		if err := proto.Unmarshal(raw[4:4+n], &dr); err != nil {
			return nil, err
		}
		raw = raw[4+n:]
		for _, a := range dr.GetResources() {
			m, err := a.UnmarshalNew()
			if err != nil {
				return nil, err
			}
			switch r := m.(type) {
			case *listenerv3.Listener:
				l, err := xdsclient.TranslateListener(r)
				if err != nil {
					return nil, err
				}
				s.Listeners = append(s.Listeners, l)
			case *routev3.RouteConfiguration:
				rc, err := xdsclient.TranslateRouteConfig(r)
				if err != nil {
					return nil, err
				}
				s.Routes[rc.Name] = rc
			case *clusterv3.Cluster:
				c, err := xdsclient.TranslateCluster(r)
				if err != nil {
					return nil, err
				}
				s.Clusters[c.Name] = c
			case *endpointv3.ClusterLoadAssignment:
				la, err := xdsclient.TranslateLoadAssignment(r)
				if err != nil {
					return nil, err
				}
				s.Endpoints[la.Cluster] = la
			case *tlsv3.Secret:
				sec, err := xdsclient.TranslateSecret(r)
				if err != nil {
					return nil, err
				}
				s.Secrets[sec.Name] = sec
			default:
				return nil, fmt.Errorf("unexpected resource %T", m)
			}
		}
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid-key.pem"))
	if err != nil {
		return nil, err
	}
	s.Secrets[trust.SVIDSecretName] = &config.Secret{Name: trust.SVIDSecretName, Cert: &cert}
	return s, nil
}

// runSidecar is causeway-proxy in capture mode: it serves until its stdin
// closes (or SIGTERM), having printed "ready" once configured.
func runSidecar(dir string) error {
	s, err := loadSnapshot(dir)
	if err != nil {
		return err
	}
	p := proxy.New(proxy.Options{DrainTimeout: 2 * time.Second})
	c, err := p.StartCapture(proxy.CaptureOptions{OutboundAddr: outboundAddr, InboundAddr: inboundAddr, DNSAddr: dnsAddr, Passthrough: true})
	if err != nil {
		return err
	}
	if err := p.Apply(s); err != nil {
		c.Close()
		p.Close()
		return err
	}
	fmt.Printf("ready uid=%d\n", os.Getuid())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	<-ctx.Done()
	st := c.Stats()
	c.Close()
	p.Close()
	fmt.Printf("stats captured=%d passthrough=%d refused=%d\n", st.Captured, st.Passthrough, st.Refused)
	return nil
}

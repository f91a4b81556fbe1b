package up

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/causewaymesh/causeway/eastwest"
)

// Each cluster is a network of its own and runs an east-west gateway: a
// `causeway-proxy east-west` on 127.<block+30>.<i>.1, its SNI passthrough
// listener on port 15443 and its admin on 15000. The cluster's control
// plane advertises it to its peers (--eastwest-address), so they import
// per-locality summaries behind it instead of pod IPs, and their sidecars
// reach the cluster's exported services through it by SNI, with mTLS end
// to end.

// portGatewayAdmin is the gateway's admin listener, on its own IP.
const portGatewayAdmin = 15000

// gatewayAddr is cluster i's east-west gateway, as peers reach it.
func (f *Federation) gatewayAddr(i int) string {
	return fmt.Sprintf("%s:%d", f.net().gatewayIP(i), eastwest.DefaultPort)
}

func (f *Federation) gatewayAdminURL(i int) string {
	return fmt.Sprintf("http://%s:%d", f.net().gatewayIP(i), portGatewayAdmin)
}

// gatewayChecks are the fixed addresses of the gateways, for preflight.
func (f *Federation) gatewayChecks() map[string]string {
	out := map[string]string{}
	for i, c := range f.top.Clusters {
		out[f.gatewayAddr(i)] = c.Name + " east-west gateway"
		out[fmt.Sprintf("%s:%d", f.net().gatewayIP(i), portGatewayAdmin)] = c.Name + " east-west gateway admin"
	}
	return out
}

// startGateway starts cluster i's east-west gateway; the caller holds f.mu
// or owns f.
func (f *Federation) startGateway(i int) error {
	c := f.top.Clusters[i]
	ip := f.net().gatewayIP(i)
	zone := c.Zones[0]
	p, err := startProc(c.Name+" east-west gateway", filepath.Join(f.o.WorkDir, "logs", c.Name+"-eastwest-gateway.log"), f.bins.proxy,
		"east-west", "--xds", fmt.Sprintf("%s:%d", f.net().cpIP(i), portXDS), "--admin", fmt.Sprintf("%s:%d", ip, portGatewayAdmin),
		"--node-id", "eastwest.causeway-system."+c.Name, "--workload", "eastwest", "--namespace", "causeway-system",
		"--cluster", c.Name, "--network", c.Name, "--locality", c.Region+"/"+zone, "--inbound-ip", ip,
		"--access-log", "off", "--log-level", "warn", "--drain-timeout", "2s")
	if err != nil {
		return err
	}
	if len(f.gws) <= i {
		f.gws = append(f.gws, make([]*proc, i+1-len(f.gws))...)
	}
	f.gws[i] = p
	return nil
}

// exportsHere reports whether cluster c runs an exported service, so its
// gateway has a listener.
func (f *Federation) exportsHere(c string) bool {
	exported := map[string]bool{}
	for _, s := range f.top.Services {
		exported[s.Name] = s.Export
	}
	for _, p := range f.pods {
		if p.Cluster == c && exported[p.Service] {
			return true
		}
	}
	return false
}

// waitGateways waits for the gateways of clusters (indexes; nil: all):
// admin /ready, and the SNI listener accepting when the cluster exports
// something.
func (f *Federation) waitGateways(ctx context.Context, clusters []int) error {
	if clusters == nil {
		for i := range f.top.Clusters {
			clusters = append(clusters, i)
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, i := range clusters {
		c, gw := f.top.Clusters[i], f.gws[i]
		wg.Go(func() {
			listens := f.exportsHere(c.Name)
			err := poll(ctx, fmt.Sprintf("%s east-west gateway %s/ready and %s", c.Name, f.gatewayAdminURL(i), f.gatewayAddr(i)), func() (bool, error) {
				if err := alive(gw); err != nil {
					return false, err
				}
				if !get200(ctx, f.gatewayAdminURL(i)+"/ready") {
					return false, nil
				}
				if !listens {
					return true, nil
				}
				conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", f.gatewayAddr(i))
				if err != nil {
					return false, nil
				}
				conn.Close()
				return true, nil
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%w; its log %s ends:\n%s", err, gw.log, gw.tail(8)))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return joinErrs(errs)
}

// GatewayAddr is cluster's east-west gateway (ip:port), "" for an unknown
// cluster.
func (f *Federation) GatewayAddr(cluster string) string {
	if _, i := f.top.cluster(cluster); i >= 0 {
		return f.gatewayAddr(i)
	}
	return ""
}

// KillGateway SIGKILLs cluster's east-west gateway, as a dying gateway pod
// would. Its control plane keeps advertising it: only the callers' data
// plane (retries in another locality, outlier detection) fails over.
func (f *Federation) KillGateway(cluster string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, i := f.top.cluster(cluster)
	if i < 0 {
		return fmt.Errorf("up: KillGateway: no cluster %q in the topology", cluster)
	}
	if gw := f.gws[i]; gw != nil {
		if dead, _ := gw.exited(); !dead {
			gw.kill()
		}
	}
	return nil
}

// RestoreGateway restarts cluster's east-west gateway if it is not running
// and waits until it is ready.
func (f *Federation) RestoreGateway(ctx context.Context, cluster string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, i := f.top.cluster(cluster)
	if i < 0 {
		return fmt.Errorf("up: RestoreGateway: no cluster %q in the topology", cluster)
	}
	if dead, _ := f.gws[i].exited(); !dead {
		return nil
	}
	if err := f.startGateway(i); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.ReadyTimeout)
	defer cancel()
	return f.waitGateways(ctx, []int{i})
}

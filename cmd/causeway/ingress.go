package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/causewaymesh/causeway/gateway/controller"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/xds"
)

// gatewayIngress is the ingress side of --gateway-controller: Gateway
// addresses from the --gateway-addresses pool (written to status and bound
// by `causeway-proxy ingress`) and the certificates of HTTPS listeners,
// served over SDS. Both republish the proxies' configuration when they
// change.
type gatewayIngress struct {
	pool    *controller.AddressPool // nil: no pool, Gateways get no address
	secrets *controller.TLSSecrets
	cp      atomic.Pointer[controlplane.ControlPlane]
}

func newGatewayIngress(cidr string, rc *rest.Config) (*gatewayIngress, error) {
	g := &gatewayIngress{}
	if cidr != "" {
		pool, err := controller.NewAddressPool(cidr, g.republish)
		if err != nil {
			return nil, fmt.Errorf("--gateway-addresses: %w", err)
		}
		g.pool = pool
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("gateway TLS secrets: %w", err)
	}
	g.secrets = controller.NewTLSSecrets(cs, g.republish)
	return g, nil
}

// republish asks the control plane, once it exists, to translate again.
// It never blocks (controlplane.Republish does not).
func (g *gatewayIngress) republish() {
	if cp := g.cp.Load(); cp != nil {
		cp.Republish()
	}
}

// addresses is controller.Options.Addresses.
func (g *gatewayIngress) addresses(gw types.NamespacedName) []gatewayv1.GatewayStatusAddress {
	if g.pool == nil {
		return nil
	}
	return g.pool.StatusAddresses(gw)
}

// options is xds.TranslateOptions.Ingress.
func (g *gatewayIngress) options() *xds.IngressOptions {
	o := &xds.IngressOptions{TLSSecret: g.secrets.Get}
	if g.pool != nil {
		o.Address = g.pool.Lookup
	}
	return o
}

// run watches the TLS Secrets until ctx ends.
func (g *gatewayIngress) run(ctx context.Context) error {
	done, err := g.secrets.Run(ctx, 2*time.Minute)
	if err != nil {
		return err
	}
	<-done
	return nil
}

package xds

// East-west gateway translation (issue 7). The naming contract (server
// names, node metadata) is package eastwest's; this file turns a model into
// the gateway's resources and gives callers' clusterset clusters the
// server name the gateway expects. See docs/eastwest.md.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/causewaymesh/causeway/eastwest"
	"github.com/causewaymesh/causeway/internal/model"
)

// IsEastWestNode reports whether n declares itself an east-west gateway
// (metadata "role" "east-west").
func IsEastWestNode(n *corev3.Node) bool {
	return n.GetMetadata().GetFields()[eastwest.RoleKey].GetStringValue() == eastwest.Role
}

// ParseEastWestNode reads the east-west gateway metadata of an xDS node:
// port is zero for a node that is not a gateway (metadata "role" is not
// "east-west"), else metadata "eastwest_port" (a string or a number;
// default eastwest.DefaultPort). A gateway must also carry metadata
// "inbound_ip", the address it binds, and no "inbound_ports" (it has no
// application). Every problem is reported, naming the field.
func ParseEastWestNode(n *corev3.Node) (port uint32, err error) {
	if !IsEastWestNode(n) {
		return 0, nil
	}
	md := n.GetMetadata().GetFields()
	var raw string
	switch v := md[eastwest.PortKey].GetKind().(type) {
	case nil:
	case *structpb.Value_StringValue:
		raw = v.StringValue
	case *structpb.Value_NumberValue:
		raw = strconv.FormatFloat(v.NumberValue, 'f', -1, 64)
	default:
		raw = fmt.Sprintf("%v", md[eastwest.PortKey].AsInterface())
	}
	port, err = eastwest.ParsePort(raw)
	if err != nil {
		return 0, fmt.Errorf("east-west gateway %q: %w", n.GetId(), err)
	}
	ip := md["inbound_ip"].GetStringValue()
	if _, perr := netip.ParseAddr(ip); perr != nil {
		return 0, fmt.Errorf(`east-west gateway %q: node.metadata["inbound_ip"] %q: set the IP literal the gateway listens on (other networks reach it there)`, n.GetId(), ip)
	}
	if md["inbound_ports"].GetStringValue() != "" {
		return 0, fmt.Errorf(`east-west gateway %q: node.metadata["inbound_ports"] is set: a gateway has no application; remove it`, n.GetId())
	}
	return port, nil
}

// EastWestListenerName names the gateway's listener: "eastwest_<port>".
func EastWestListenerName(port uint32) string {
	return "eastwest_" + strconv.FormatUint(uint64(port), 10)
}

// GatewaySNI is the server name a caller sends for a service port when
// it may connect through an east-west gateway: the per-port name
// "<port>.<svc>.<ns>.svc.clusterset.local" (eastwest.PortSNI).
func GatewaySNI(ns, svc string, port uint32) string { return eastwest.PortSNI(ns, svc, port) }

// TranslateEastWest builds the resources of an east-west gateway node
// listening on n.InboundIP:port, from the served model: only services
// Exported from this cluster (model.Service.Exported, which a peer's export
// never sets; see internal/merge) and only endpoints of local.Cluster.
//
//   - Listener EastWestListenerName(port), INBOUND, TLS passthrough: one
//     filter chain per TCP port of each exported service that has at least
//     one endpoint in this cluster serving that port (ready or not: a
//     readiness flap changes the endpoints, not the listener), matched on
//     eastwest.PortSNI and, for a service with exactly one TCP port, also
//     eastwest.SNI; a tcp_proxy to the port's cluster. No default chain:
//     any other server name (an unexported service, a typo) is closed.
//     With no chain at all there is no listener (the port is closed).
//   - Clusters ClusterName(ns, svc, port): EDS, plain TCP (the bytes are the
//     caller's TLS session), no outlier detection.
//   - Endpoints: the port's ready endpoints in this cluster, by locality
//     priority relative to the gateway (LocalityPriority).
//
// No routes and no secrets: the gateway never terminates TLS and needs no
// SVID. The output is deterministic and every resource passes ValidateAll.
func TranslateEastWest(local *model.Snapshot, n Node, port uint32) (Resources, error) {
	var r Resources
	if _, err := netip.ParseAddr(n.InboundIP); err != nil {
		return r, fmt.Errorf("xds translate: east-west gateway %q: inbound_ip %q: not an IP literal", n.ID, n.InboundIP)
	}
	if port == 0 || port > 65535 {
		return r, fmt.Errorf("xds translate: east-west gateway %q: port %d: want 1-65535", n.ID, port)
	}
	name := EastWestListenerName(port)
	var chains []*listenerv3.FilterChain
	var errs []error
	for i := range local.Services {
		sv := &local.Services[i]
		if !sv.Exported {
			continue
		}
		tcp := 0
		for _, p := range sv.Ports {
			if p.Protocol == model.TCP {
				tcp++
			}
		}
		for _, p := range sv.Ports {
			if p.Protocol != model.TCP || !hasLocalEndpoint(sv, p, local.Cluster) {
				continue
			}
			cname := ClusterName(sv.Namespace, sv.Name, p.Port)
			names := []string{eastwest.PortSNI(sv.Namespace, sv.Name, p.Port)}
			if tcp == 1 {
				names = append(names, eastwest.SNI(sv.Namespace, sv.Name))
			}
			tp := &tcpproxyv3.TcpProxy{StatPrefix: name + "_" + cname, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cname}}
			chains = append(chains, &listenerv3.FilterChain{
				Name:             cname,
				FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: names},
				Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy",
					ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}},
			})
			c := EDSCluster(cname, ClusterOptions{})
			cla := loadAssignment(cname, sv, p, local.Cluster, "", n)
			errs = append(errs, validate(c), validate(cla))
			r.Clusters = append(r.Clusters, c)
			r.Endpoints = append(r.Endpoints, cla)
		}
	}
	if len(chains) > 0 {
		l := &listenerv3.Listener{
			Name:             name,
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: n.InboundIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
			FilterChains: chains,
		}
		errs = append(errs, validate(l))
		r.Listeners = []types.Resource{l}
	}
	sortByName(r.Clusters)
	sortByName(r.Endpoints)
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("xds translate: east-west gateway %q: %w", n.ID, err)
	}
	return r, nil
}

// EastWestAddress is the address callers in other networks dial to reach
// the gateway of node n listening on port: "<inbound_ip>:<port>".
func EastWestAddress(n Node, port uint32) string {
	return net.JoinHostPort(n.InboundIP, strconv.FormatUint(uint64(port), 10))
}

func hasLocalEndpoint(sv *model.Service, p model.ServicePort, cluster string) bool {
	for i := range sv.Endpoints {
		e := &sv.Endpoints[i]
		if e.Cluster != cluster {
			continue
		}
		if _, ok := e.Port(p.Name); ok {
			return true
		}
	}
	return false
}

// WithGatewaySNI sets sni on the UpstreamTlsContext of c's TLS transport
// socket, in place, and returns c; a cluster without one (no mesh mTLS) is
// returned unchanged. translateService calls it on every clusterset
// cluster with GatewaySNI: an endpoint behind a peer's east-west gateway
// needs it to be routed, and a pod's inbound listener ignores it, so it is
// harmless for direct endpoints. Verification is by SPIFFE ID (the SAN
// matchers), never by this name.
func WithGatewaySNI(c *clusterv3.Cluster, sni string) *clusterv3.Cluster {
	ts := c.GetTransportSocket().GetTypedConfig()
	if ts == nil {
		return c
	}
	up := &tlsv3.UpstreamTlsContext{}
	if err := ts.UnmarshalTo(up); err != nil {
		return c // not an UpstreamTlsContext: not ours to change
	}
	up.Sni = sni
	c.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(up)}
	return c
}

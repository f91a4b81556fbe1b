package xds

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/causewaymesh/causeway/internal/model"
)

// Capture mode (docs/xds.md, "Capture mode"). A node with metadata
// interception_mode REDIRECT runs behind the nat rules of proxy/capture:
// the app dials service VIPs and the sidecar receives the connections on
// its capture sockets, reads their original destination and serves each
// with the listener whose address is that destination. So such a node
// gets, instead of one outbound listener per port on loopback, one
// listener per service VIP and HTTP port, "outbound_<vip>_<port>" on
// <vip>:<port>, whose routes are the port's route configuration
// "outbound_<port>" (shared with every other VIP of that port). The
// virtual hosts list each VIP (and VIP:port) among their domains, so a
// request whose Host is the bare VIP finds its service; the clusterset
// host lists the ServiceImport's VIP, which is also how the sidecar's DNS
// learns the address of <svc>.<ns>.svc.clusterset.local. Inbound
// listeners keep their address (the pod IP and port), which is the
// original destination of captured inbound connections.
//
// In Envoy terms these listeners are bind_to_port: false, fed by a
// virtual listener with use_original_dst; causeway-proxy knows from its
// own flags that it runs in capture mode and binds none of them.

// OutboundVIPName names the capture-mode listener of a VIP and port:
// "outbound_<vip>_<port>".
func OutboundVIPName(vip string, port uint32) string {
	return "outbound_" + vip + "_" + strconv.FormatUint(uint64(port), 10)
}

// captureKey is the part of Node.Key that capture mode adds.
func captureKey(n Node) string {
	if n.Capture {
		return "|capture"
	}
	return ""
}

// vipDomains are the virtual host domains of a VIP on a port: the bare
// VIP (what a client puts in Host for the default port) and VIP:port.
// IPv6 VIPs are bracketed, as in a Host header.
func vipDomains(vip string, port uint32) []string {
	if vip == "" {
		return nil
	}
	host := vip
	if ip, err := netip.ParseAddr(vip); err == nil && ip.Is6() {
		host = "[" + vip + "]"
	}
	return []string{host, net.JoinHostPort(vip, strconv.FormatUint(uint64(port), 10))}
}

// captureListeners are a capture-mode node's outbound listeners: one per
// VIP (ClusterIP; and ClustersetIP when the service answers as
// clusterset.local) and HTTP port among ports, sorted by name. Two
// services claiming one VIP:port keep the first (by namespace/name) and
// the conflict is reported.
func captureListeners(s *model.Snapshot, ports []uint32) []types.Resource {
	routed := map[uint32]bool{}
	for _, p := range ports {
		routed[p] = true
	}
	var out []types.Resource
	owner := map[string]string{}
	for i := range s.Services {
		sv := &s.Services[i]
		vips := []string{sv.ClusterIP}
		if sv.Exported || sv.Imported {
			vips = append(vips, sv.ClustersetIP)
		}
		for _, p := range sv.Ports {
			if portClass(p) == protoOther || !routed[p.Port] {
				continue
			}
			for _, vip := range vips {
				if vip == "" {
					continue
				}
				name := OutboundVIPName(vip, p.Port)
				if _, dup := owner[name]; dup {
					continue
				}
				owner[name] = sv.Namespace + "/" + sv.Name
				out = append(out, HTTPListener(name, net.JoinHostPort(vip, strconv.FormatUint(uint64(p.Port), 10)), false, OutboundName(p.Port)))
			}
		}
	}
	sortByName(out)
	return out
}

// VIPConflicts lists VIP:port pairs that more than one service claims,
// for status and explain: "<vip>:<port>: shop/a, shop/b".
func VIPConflicts(s *model.Snapshot) []string {
	claims := map[string][]string{}
	var keys []string
	for i := range s.Services {
		sv := &s.Services[i]
		for _, vip := range sv.VIPs() {
			for _, p := range sv.Ports {
				k := net.JoinHostPort(vip, strconv.FormatUint(uint64(p.Port), 10))
				if len(claims[k]) == 0 {
					keys = append(keys, k)
				}
				claims[k] = append(claims[k], sv.Namespace+"/"+sv.Name)
			}
		}
	}
	var out []string
	for _, k := range keys {
		if len(claims[k]) > 1 {
			out = append(out, fmt.Sprintf("%s: %v", k, claims[k]))
		}
	}
	return out
}

// dropPortListeners removes the per-port outbound listeners
// (OutboundName of each of ports) from ls.
func dropPortListeners(ls []types.Resource, ports []uint32) []types.Resource {
	names := map[string]bool{}
	for _, p := range ports {
		names[OutboundName(p)] = true
	}
	return slices.DeleteFunc(ls, func(r types.Resource) bool { return names[resourceName(r)] })
}

// captureTCP adds what an opaque TCP port of sv needs on a capture-mode
// node, where a connection to the service's VIP can be told from others
// without a Host header: the EDS clusters (cluster.local, and clusterset
// when the service answers there; with mesh mTLS when ids are given),
// their load assignments, and one listener per VIP, "outbound_<vip>_<port>"
// on <vip>:<port>, whose tcp_proxy sends the bytes to the cluster of that
// VIP. Parts keep says still hold are left as they are.
func (pc *servicePieces) captureTCP(sv *model.Service, p model.ServicePort, cluster string, n Node, co ClusterOptions, ids []string, keep reuse) {
	local := ClusterName(sv.Namespace, sv.Name, p.Port)
	set := ""
	if sv.Exported || sv.Imported {
		set = ClustersetName(sv.Namespace, sv.Name, p.Port)
	}
	if !keep.clusters {
		opts := co
		opts.HTTP2 = false
		eds := func(name string) *clusterv3.Cluster {
			c := EDSCluster(name, opts)
			if len(ids) > 0 {
				withUpstreamMTLS(c, ids, false)
			}
			return c
		}
		pc.clusters = append(pc.clusters, eds(local))
		if sv.ClusterIP != "" {
			pc.listeners = append(pc.listeners, tcpVIPListener(sv.ClusterIP, p.Port, local))
		}
		if set != "" {
			pc.clusters = append(pc.clusters, WithGatewaySNI(eds(set), GatewaySNI(sv.Namespace, sv.Name, p.Port)))
			if sv.ClustersetIP != "" {
				pc.listeners = append(pc.listeners, tcpVIPListener(sv.ClustersetIP, p.Port, set))
			}
		}
	}
	if !keep.endpoints {
		pc.endpoints = append(pc.endpoints, loadAssignment(local, sv, p, cluster, "", n))
		if set != "" {
			pc.endpoints = append(pc.endpoints, loadAssignment(set, sv, p, "", clustersetSkip(sv, cluster), n))
		}
	}
}

// tcpVIPListener is a capture-mode listener for an opaque TCP port.
func tcpVIPListener(vip string, port uint32, cluster string) *listenerv3.Listener {
	name := OutboundVIPName(vip, port)
	tp := &tcpproxyv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}}
	return &listenerv3.Listener{
		Name:             name,
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: vip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.tcp_proxy",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)},
		}}}},
	}
}

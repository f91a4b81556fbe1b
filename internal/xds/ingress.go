package xds

// Ingress gateway translation (issue 6): the Gateway route tables of the
// model (package gateway) become the listeners of `causeway-proxy
// ingress`. See docs/gateway.md, "Ingress".

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/causewaymesh/causeway/internal/model"
)

// Node metadata of an ingress proxy (proxy/runner writes the same keys).
const (
	IngressRole        = "ingress" // metadata "role"
	IngressGatewaysKey = "gateways"
)

// IngressOptions is what the translation of ingress nodes needs beyond
// the model. Both functions are called during translation (with the
// control plane's lock held): they must be fast and must not call back
// into the control plane. When their answers change, call
// controlplane.Republish.
type IngressOptions struct {
	// Address is the IP literal Gateway namespace/name is reachable on
	// (the controller's address pool); "" when none is assigned yet: the
	// Gateway then has no listeners.
	Address func(namespace, name string) string
	// TLSSecret returns the PEM certificate chain and private key of the
	// kubernetes.io/tls Secret namespace/name; ok false when it is missing
	// or malformed: the HTTPS listener that needs it is left out (the
	// Gateway's status says why).
	TLSSecret func(namespace, name string) (cert, key []byte, ok bool)
}

// IsIngressNode reports whether n declares itself an ingress proxy
// (metadata "role" "ingress").
func IsIngressNode(n *corev3.Node) bool {
	return n.GetMetadata().GetFields()["role"].GetStringValue() == IngressRole
}

// ParseIngressNode reads the ingress metadata of an xDS node: gateways is
// "" for a node that is not an ingress, else "*" or the sorted, distinct
// "namespace/name,..." of metadata "gateways" (required).
func ParseIngressNode(n *corev3.Node) (gateways string, err error) {
	if !IsIngressNode(n) {
		return "", nil
	}
	md := n.GetMetadata().GetFields()
	raw := strings.TrimSpace(md[IngressGatewaysKey].GetStringValue())
	if raw == "" {
		return "", fmt.Errorf(`ingress %q: node.metadata["gateways"] is missing: set "*" or "namespace/name,..." of the Gateways it serves`, n.GetId())
	}
	if md["inbound_ports"].GetStringValue() != "" {
		return "", fmt.Errorf(`ingress %q: node.metadata["inbound_ports"] is set: an ingress has no application; remove it`, n.GetId())
	}
	if raw == "*" {
		return raw, nil
	}
	var out []string
	for g := range strings.SplitSeq(raw, ",") {
		g = strings.TrimSpace(g)
		ns, name, ok := strings.Cut(g, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return "", fmt.Errorf(`ingress %q: node.metadata["gateways"] entry %q: want namespace/name (or "*" alone)`, n.GetId(), g)
		}
		out = append(out, g)
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ","), nil
}

// IngressListenerName names the listener (and route configuration) of one
// port of a Gateway: "ingress/<ns>/<name>/<port>".
func IngressListenerName(ns, name string, port uint32) string {
	return "ingress/" + ns + "/" + name + "/" + strconv.FormatUint(uint64(port), 10)
}

// IngressSecretName names the SDS secret of a Gateway certificate
// (a kubernetes.io/tls Secret): "gateway-cert/<ns>/<name>".
func IngressSecretName(ns, name string) string { return "gateway-cert/" + ns + "/" + name }

// servesGateway reports whether the node's gateway list includes ns/name.
func servesGateway(list, ns, name string) bool {
	if list == "*" {
		return true
	}
	key := ns + "/" + name
	for g := range strings.SplitSeq(list, ",") {
		if g == key {
			return true
		}
	}
	return false
}

// gatewayPort is the route tables of one port of one Gateway.
type gatewayPort struct {
	ns, name string
	port     uint32
	tables   []*model.RouteTable
}

// TranslateIngress builds the resources of an ingress node (n.Gateways
// set). Clusters, endpoints and (with mesh mTLS) the bundle secret are
// those of a sidecar in the node's namespace (Translate), plus a plain
// EDS cluster for every backend that needs one and is not among them
// (a port that is not HTTP, for TLS passthrough). Then, for each Gateway
// the node serves that has an address (IngressOptions.Address) and route
// tables, one listener per listener port at <address>:<port>:
//
//   - HTTP: an HTTP connection manager with routes by RDS under the same
//     name (IngressListenerName): the virtual hosts of every table of the
//     port (GatewayVirtualHosts), one per hostname (tables of several
//     Gateway listeners that share a hostname are merged, in table order).
//     A request that matches no host or route gets 404.
//   - HTTPS: the same, with TLS terminated by the certificate of the first
//     table's first certificateRef, sent as SDS secret IngressSecretName.
//     A certificate that TLSSecret cannot supply leaves the port out.
//   - TLS (passthrough): chains by SNI (the TLSRoutes' hostnames) to a
//     tcp_proxy to the first resolved backend (none: InvalidBackendCluster,
//     so the connection is closed); no default chain.
//
// Problems of user input never fail the translation (the Gateway and
// route statuses report them); the error is non-nil only when a resource
// fails validation, which is a bug.
func TranslateIngress(s *model.Snapshot, n Node, o TranslateOptions) (Resources, error) {
	base := n
	base.Gateways = ""
	r, err := translate(s, base, o, nil)
	if err != nil {
		return Resources{}, err
	}
	// A sidecar's outbound listeners are not the ingress's.
	r.Listeners, r.Routes = nil, nil
	if o.Ingress == nil || o.Ingress.Address == nil {
		return r, nil
	}
	co := DefaultClusterOptions
	if o.Cluster != nil {
		co = *o.Cluster
	}
	have := map[string]bool{}
	for _, c := range r.Clusters {
		have[resourceName(c)] = true
	}
	var errs []error
	need := func(b *model.Backend) {
		name := BackendCluster(*b)
		if b.Unresolved != "" || have[name] {
			return
		}
		have[name] = true
		sv, p, ok := findServicePort(s, b.Namespace, b.Name, b.Port)
		if !ok {
			return // the route answers 503 for it: no such cluster
		}
		c := EDSCluster(name, co)
		only, skip := s.Cluster, ""
		if b.Kind == model.BackendServiceImport {
			// The exporting clusters' endpoints: this one's only when
			// exported here, as the sidecars' clusterset cluster.
			only, skip = "", clustersetSkip(sv, s.Cluster)
		}
		cla := loadAssignment(name, sv, p, only, skip, n)
		errs = append(errs, validate(c), validate(cla))
		r.Clusters = append(r.Clusters, c)
		r.Endpoints = append(r.Endpoints, cla)
	}

	var ports []*gatewayPort
	byKey := map[string]*gatewayPort{}
	for i := range s.Routes {
		t := &s.Routes[i]
		p := &t.Parent
		if p.Kind != model.ParentGateway || !servesGateway(n.Gateways, p.Namespace, p.Name) {
			continue
		}
		k := IngressListenerName(p.Namespace, p.Name, p.Port)
		gp := byKey[k]
		if gp == nil {
			gp = &gatewayPort{ns: p.Namespace, name: p.Name, port: p.Port}
			byKey[k] = gp
			ports = append(ports, gp)
		}
		gp.tables = append(gp.tables, t)
	}
	slices.SortFunc(ports, func(a, b *gatewayPort) int {
		return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name), cmp.Compare(a.port, b.port))
	})
	secrets := map[string]bool{}
	for _, gp := range ports {
		ip := o.Ingress.Address(gp.ns, gp.name)
		if ip == "" {
			continue
		}
		name := IngressListenerName(gp.ns, gp.name, gp.port)
		addr := net.JoinHostPort(ip, strconv.FormatUint(uint64(gp.port), 10))
		switch gp.tables[0].Parent.Protocol {
		case "TLS":
			l := passthroughListener(name, addr, gp)
			for _, t := range gp.tables {
				for _, tr := range t.TLS {
					for bi := range tr.Backends {
						need(&tr.Backends[bi])
					}
				}
			}
			if l != nil {
				errs = append(errs, validate(l))
				r.Listeners = append(r.Listeners, l)
			}
		case "HTTP", "HTTPS":
			var certSecret string
			if gp.tables[0].Parent.Protocol == "HTTPS" {
				refs := gp.tables[0].Parent.CertificateRefs
				if len(refs) == 0 || o.Ingress.TLSSecret == nil {
					continue
				}
				sns, sname, _ := strings.Cut(refs[0], "/")
				certSecret = IngressSecretName(sns, sname)
				if !secrets[certSecret] {
					cert, key, ok := o.Ingress.TLSSecret(sns, sname)
					if !ok {
						continue
					}
					sec := &tlsv3.Secret{Name: certSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
						CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cert}},
						PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
					}}}
					errs = append(errs, validate(sec))
					r.Secrets = append(r.Secrets, sec)
					secrets[certSecret] = true
				}
			}
			var vhs []*routev3.VirtualHost
			byDomain := map[string]*routev3.VirtualHost{}
			for _, t := range gp.tables {
				if t.Parent.Protocol != gp.tables[0].Parent.Protocol {
					continue // a protocol conflict on the port: the status says so
				}
				for hi := range t.VirtualHosts {
					for ri := range t.VirtualHosts[hi].Routes {
						rt := &t.VirtualHosts[hi].Routes[ri]
						if rt.Redirect == nil {
							for bi := range rt.Backends {
								need(&rt.Backends[bi])
							}
						}
						for mi := range rt.Mirrors {
							need(&rt.Mirrors[mi].Backend)
						}
					}
				}
				hosts, err := GatewayVirtualHosts(t, HTTPRouteOptions{})
				errs = append(errs, err)
				for _, vh := range hosts {
					if prev := byDomain[vh.Domains[0]]; prev != nil {
						prev.Routes = append(prev.Routes, vh.Routes...)
						continue
					}
					byDomain[vh.Domains[0]] = vh
					vhs = append(vhs, vh)
				}
			}
			l := HTTPListener(name, addr, true, name)
			if certSecret != "" {
				down := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(certSecret)},
					AlpnProtocols:                  []string{"http/1.1"},
				}}
				l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
					ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(down)}}
			}
			rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: vhs}
			errs = append(errs, validate(l), validate(rc))
			r.Listeners = append(r.Listeners, l)
			r.Routes = append(r.Routes, rc)
		}
	}
	sortByName(r.Clusters)
	sortByName(r.Endpoints)
	sortByName(r.Listeners)
	sortByName(r.Routes)
	sortByName(r.Secrets)
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("xds translate: ingress %q: %w", n.ID, err)
	}
	return r, nil
}

// passthroughListener is the TLS passthrough listener of a TLS port, or
// nil when no TLSRoute has a hostname. A route without a resolved backend
// sends its names to InvalidBackendCluster: the connection is closed.
func passthroughListener(name, addr string, gp *gatewayPort) *listenerv3.Listener {
	var chains []*listenerv3.FilterChain
	seen := map[string]bool{}
	for _, t := range gp.tables {
		for _, tr := range t.TLS {
			// No usable backend: connections for these names are closed
			// (the data plane has no such cluster), as Gateway API asks.
			cluster := InvalidBackendCluster
			for _, b := range tr.Backends {
				if b.Unresolved == "" && b.Weight > 0 {
					cluster = BackendCluster(b)
					break
				}
			}
			var names []string
			for _, h := range tr.Hostnames {
				if !seen[h] {
					seen[h] = true
					names = append(names, h)
				}
			}
			if len(names) == 0 {
				continue
			}
			tp := &tcpproxyv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}}
			chains = append(chains, &listenerv3.FilterChain{
				Name:             "tlsroute/" + tr.Namespace + "/" + tr.Name,
				FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: names},
				Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy",
					ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}},
			})
		}
	}
	if len(chains) == 0 {
		return nil
	}
	host, port, _ := net.SplitHostPort(addr)
	pn, _ := strconv.ParseUint(port, 10, 32)
	return &listenerv3.Listener{
		Name:             name,
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(pn)}}}},
		FilterChains: chains,
	}
}

// findServicePort is the service ns/name of s and its port number port.
func findServicePort(s *model.Snapshot, ns, name string, port uint32) (*model.Service, model.ServicePort, bool) {
	i, ok := slices.BinarySearchFunc(s.Services, [2]string{ns, name}, func(sv model.Service, k [2]string) int {
		return cmp.Or(cmp.Compare(sv.Namespace, k[0]), cmp.Compare(sv.Name, k[1]))
	})
	if !ok {
		return nil, model.ServicePort{}, false
	}
	sv := &s.Services[i]
	for _, p := range sv.Ports {
		if p.Port == port && p.Protocol == model.TCP {
			return sv, p, true
		}
	}
	return nil, model.ServicePort{}, false
}

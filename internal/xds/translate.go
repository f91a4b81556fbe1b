package xds

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/causewaymesh/causeway/internal/model"
)

// TranslateOptions shape the translation for every node.
type TranslateOptions struct {
	// ListenerIP is the IP outbound listeners bind unless the node says
	// otherwise (metadata outbound_ip); default 127.0.0.1.
	ListenerIP string
	// EphemeralPorts binds outbound listeners to port 0 instead of the
	// service port (tests and demos find them with Proxy.ListenerAddr).
	EphemeralPorts bool
	// Cluster is the EDS cluster shape; zero: DefaultClusterOptions.
	Cluster *ClusterOptions
	// Retry is the default route retry policy; nil: DefaultRetry.
	Retry *Retry
	// MTLS, when set, turns on mesh mutual TLS (see MTLS).
	MTLS *MTLS
	// Ingress feeds the translation of ingress proxies (ingress.go);
	// nil: ingress nodes get no Gateway listeners.
	Ingress *IngressOptions
}

// DefaultClusterOptions: outlier detection ejects an endpoint after 5
// consecutive 5xx/gateway failures for 30s (doubling up to 300s), up to
// every endpoint of the cluster (locality failover relies on ejecting a
// whole dead zone; the panic threshold still applies).
var DefaultClusterOptions = ClusterOptions{EjectAfter: 5, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectPercent: 100}

// DefaultRetry retries what cannot have reached the application twice.
var DefaultRetry = Retry{On: "connect-failure,refused-stream,reset", NumRetries: 2}

// Protocol classes of a service port.
const (
	protoHTTP1 = iota
	protoHTTP2
	protoGRPC
	protoOther // TCP/TLS/UDP/SCTP: not served by this translation yet
)

// PortProtocol classifies a service port: appProtocol first ("http",
// "http2", "h2c", "kubernetes.io/h2c", "grpc", "grpc-web"; anything else
// is opaque TCP), else the port name's prefix by Istio's convention
// ("grpc", "grpc-*", "http2", "h2c", "http", "tcp", "tls", ...), else
// HTTP/1.1. UDP and SCTP ports are never HTTP.
func PortProtocol(p model.ServicePort) (http, http2, grpc bool) {
	c := portClass(p)
	return c != protoOther, c == protoHTTP2 || c == protoGRPC, c == protoGRPC
}

func portClass(p model.ServicePort) int {
	if p.Protocol != model.TCP {
		return protoOther
	}
	if ap := strings.ToLower(p.AppProtocol); ap != "" {
		switch ap {
		case "http", "http/1.1", "grpc-web", "kubernetes.io/ws":
			return protoHTTP1
		case "http2", "h2c", "kubernetes.io/h2c":
			return protoHTTP2
		case "grpc":
			return protoGRPC
		}
		return protoOther
	}
	name, _, _ := strings.Cut(strings.ToLower(p.Name), "-")
	switch name {
	case "grpc":
		return protoGRPC
	case "http2", "h2c":
		return protoHTTP2
	case "tcp", "tls", "https", "mongo", "mysql", "redis", "udp":
		return protoOther
	}
	return protoHTTP1
}

// Names of generated resources.

// ClusterName is the EDS cluster (and EDS service name) of a service port
// inside its own cluster: "<svc>.<ns>.svc.cluster.local:<port>".
func ClusterName(ns, svc string, port uint32) string {
	return svc + "." + ns + ".svc.cluster.local:" + strconv.FormatUint(uint64(port), 10)
}

// ClustersetName is the EDS cluster of an exported service port across
// the clusterset: "<svc>.<ns>.svc.clusterset.local:<port>".
func ClustersetName(ns, svc string, port uint32) string {
	return svc + "." + ns + ".svc.clusterset.local:" + strconv.FormatUint(uint64(port), 10)
}

// OutboundName names the outbound listener and route configuration of a
// port number: "outbound_<port>".
func OutboundName(port uint32) string { return "outbound_" + strconv.FormatUint(uint64(port), 10) }

// Translate turns one cluster's model into the resources for one node.
// The output is deterministic (every list sorted by name) and every
// resource passes its proto's ValidateAll; a failure there is a bug and is
// returned with the resource's name.
//
// For a Causeway proxy:
//   - Listeners: one outbound HTTP listener per service port number that
//     is HTTP (see PortProtocol), "outbound_<port>" on
//     <outbound_ip or ListenerIP>:<port> (or :0), routes by RDS under the
//     same name.
//   - Routes "outbound_<port>": one virtual host per service with that
//     port, domains <svc>.<ns>.svc.cluster.local, <svc>.<ns>.svc,
//     <svc>.<ns> and, in the node's own namespace, <svc>; an exported
//     service adds a virtual host <svc>.<ns>.svc.clusterset.local. One
//     route, prefix "/", to the EDS cluster, with the default retry policy.
//   - GAMMA: a route table of s.Routes whose parent is the service (for
//     the cluster.local host) or its ServiceImport (the clusterset.local
//     host, then served even when not exported) replaces that route with
//     the table's routes, the default retry policy becoming the virtual
//     host's. Producer tables apply to every node, a consumer table only
//     to nodes of its namespace, where it wins over the producer's.
//     Gateway tables are ignored (they are the ingress proxy's).
//   - Clusters: ClusterName per HTTP service port (this cluster's
//     endpoints) and, when exported or named by a ServiceImport backend or
//     parent of an applicable table, ClustersetName (every cluster's; an
//     empty EDS cluster when no service of s has that HTTP port);
//     HTTP/2 upstream for grpc/http2/h2c ports; outlier detection and the
//     retry budget of EDSCluster.
//   - Endpoints: one ClusterLoadAssignment per cluster, see
//     LocalityPriority. Endpoints that are not ready are left out.
//
// For a proxyless gRPC node, the outbound listeners and their routes are
// replaced by api listeners with inline routes (see serviceAPIListeners) for gRPC
// ports, and no RouteConfigurations; clusters and endpoints are the same.
func Translate(s *model.Snapshot, n Node, o TranslateOptions) (Resources, error) {
	return translate(s, n, o, nil)
}

// servicePieces is what one service contributes to a node's resources.
type servicePieces struct {
	clusters, endpoints, listeners []types.Resource
	vhosts                         map[uint32][]*routev3.VirtualHost // by service port
	ports                          []uint32                          // HTTP ports, in the service's order
	// Validation failures of the clusters and listeners, the endpoints
	// and the virtual hosts (kept apart: each part may be reused alone).
	clusterErrs, endpointErrs, hostErrs []error
}

// reuse says which parts of a service's last translation still hold.
type reuse struct {
	// clusters: clusters, api listeners and ports (the service's ports,
	// export, identities and clusterset needs are unchanged).
	clusters  bool
	endpoints bool // the load assignments (and the above)
	hosts     bool // the virtual hosts: the route tables are equal (and clusters)
}

func (r reuse) all() bool { return r.clusters && r.endpoints && r.hosts }

// translate is Translate; with memo (Translator), a service equal to the
// one the memo saw last time, under equal route tables, reuses its
// resources (the same pointers, so Server.Publish neither compares nor
// marshals them again), and so does a route configuration whose virtual
// hosts are all reused.
func translate(s *model.Snapshot, n Node, o TranslateOptions, memo *classMemo) (Resources, error) {
	if n.EastWestPort != 0 { // an east-west gateway: eastwest.go
		return TranslateEastWest(s, n, n.EastWestPort)
	}
	if n.Gateways != "" { // an ingress proxy: ingress.go
		return TranslateIngress(s, n, o)
	}
	co := DefaultClusterOptions
	if o.Cluster != nil {
		co = *o.Cluster
	}
	retry := DefaultRetry
	if o.Retry != nil {
		retry = *o.Retry
	}
	ip := cmp.Or(n.OutboundIP, o.ListenerIP, "127.0.0.1")
	mtls := o.MTLS != nil && !n.Proxyless

	var r Resources
	var errs []error
	byPort := map[uint32][]*routev3.VirtualHost{}
	var ports []uint32
	mesh := indexMeshRoutes(s, n.Namespace)
	for i := range s.Services {
		sv := &s.Services[i]
		mr := mesh[serviceKey{sv.Namespace, sv.Name}]
		var pc, prev *servicePieces
		var keep reuse
		if memo != nil {
			prev, keep = memo.service(sv, s.Cluster, mr)
			if keep.all() {
				pc = prev
			}
		}
		if pc == nil {
			pc = translateService(sv, s.Cluster, n, co, retry, mtls, mr, prev, keep)
			if memo != nil {
				memo.keep(sv, s.Cluster, mr, pc)
			}
		}
		errs = append(errs, pc.clusterErrs...)
		errs = append(errs, pc.endpointErrs...)
		errs = append(errs, pc.hostErrs...)
		r.Clusters = append(r.Clusters, pc.clusters...)
		r.Endpoints = append(r.Endpoints, pc.endpoints...)
		r.Listeners = append(r.Listeners, pc.listeners...)
		for _, port := range pc.ports {
			if _, ok := byPort[port]; !ok {
				ports = append(ports, port)
			}
			byPort[port] = append(byPort[port], pc.vhosts[port]...)
		}
	}
	for _, name := range orphanSets(s, mesh) {
		var c, cla types.Resource
		if memo != nil {
			c, cla = memo.orphan(name)
		}
		if c == nil {
			c, cla = orphanCluster(name, co)
			errs = append(errs, validate(c), validate(cla))
			if memo != nil {
				memo.keepOrphan(name, c, cla)
			}
		}
		r.Clusters = append(r.Clusters, c)
		r.Endpoints = append(r.Endpoints, cla)
	}
	if memo != nil {
		memo.sweep()
	}
	if !n.Proxyless {
		slices.Sort(ports)
		for _, port := range ports {
			name := OutboundName(port)
			lport := port
			if o.EphemeralPorts {
				lport = 0
			}
			vhs := byPort[port]
			slices.SortFunc(vhs, func(a, b *routev3.VirtualHost) int { return cmp.Compare(a.Name, b.Name) })
			addr := net.JoinHostPort(ip, strconv.FormatUint(uint64(lport), 10))
			if memo != nil {
				if l, rc := memo.port(port, addr, vhs); l != nil {
					r.Listeners = append(r.Listeners, l)
					r.Routes = append(r.Routes, rc)
					continue
				}
			}
			l := HTTPListener(name, addr, false, name)
			rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: vhs}
			// The virtual hosts were validated by translateService: check
			// the configuration's own fields.
			errs = append(errs, validate(l), validate(&routev3.RouteConfiguration{Name: name}))
			if memo != nil {
				memo.keepPort(port, addr, vhs, l, rc)
			}
			r.Listeners = append(r.Listeners, l)
			r.Routes = append(r.Routes, rc)
		}
	}
	if memo != nil {
		memo.sweepPorts()
	}
	if n.Capture && !n.Proxyless {
		// The per-port listeners become per-VIP ones (capture.go).
		r.Listeners = append(dropPortListeners(r.Listeners, ports), captureListeners(s, ports)...)
		sortByName(r.Listeners)
	}
	if mtls {
		var bundles map[string][]*x509.Certificate
		if o.MTLS.Bundles != nil {
			bundles = o.MTLS.Bundles()
		}
		sec, err := bundleSecret(bundles)
		if err != nil {
			errs = append(errs, err)
		} else {
			r.Secrets = append(r.Secrets, sec)
		}
		if n.InboundIP != "" {
			ls, cs, ierrs := inboundListeners(s, n)
			r.Listeners = append(r.Listeners, ls...)
			r.Clusters = append(r.Clusters, cs...)
			errs = append(errs, ierrs...)
		}
	}
	sortByName(r.Clusters)
	sortByName(r.Endpoints)
	sortByName(r.Listeners)
	sortByName(r.Routes)
	return r, errors.Join(errs...)
}

// translateService builds one service's clusters, load assignments,
// virtual hosts (by port; a GAMMA table of mr replaces the default route)
// and, for a proxyless node, api listeners, and validates them. prev, when
// not nil, is the service's last translation and keep says which of its
// parts still hold; only the others are built.
func translateService(sv *model.Service, cluster string, n Node, co ClusterOptions, retry Retry, mtls bool, mr *meshRoutes, prev *servicePieces, keep reuse) *servicePieces {
	pc := &servicePieces{}
	if keep.clusters {
		pc.clusters, pc.listeners, pc.ports, pc.clusterErrs = prev.clusters, prev.listeners, prev.ports, prev.clusterErrs
	}
	if keep.endpoints {
		pc.endpoints, pc.endpointErrs = prev.endpoints, prev.endpointErrs
	}
	if keep.hosts {
		pc.vhosts, pc.hostErrs = prev.vhosts, prev.hostErrs
	} else {
		pc.vhosts = map[uint32][]*routev3.VirtualHost{}
	}
	var ids []string
	if mtls && !keep.clusters {
		ids = identities(sv)
	}
	for _, p := range sv.Ports {
		class := portClass(p)
		if class == protoOther {
			if n.Capture && !n.Proxyless && p.Protocol == model.TCP {
				pc.captureTCP(sv, p, cluster, n, co, ids, keep) // capture.go
			}
			continue
		}
		local := ClusterName(sv.Namespace, sv.Name, p.Port)
		set := ""
		if sv.Exported || sv.Imported || mr.clusterset(p.Port) {
			set = ClustersetName(sv.Namespace, sv.Name, p.Port)
		}
		if !keep.clusters {
			opts := co
			// Between two sidecars (mTLS to the endpoints' identities)
			// HTTP is multiplexed on HTTP/2 whatever the application
			// speaks: the server's sidecar talks to it in its own protocol.
			opts.HTTP2 = class != protoHTTP1 || len(ids) > 0
			eds := func(name string) *clusterv3.Cluster {
				c := EDSCluster(name, opts)
				if len(ids) > 0 {
					withUpstreamMTLS(c, ids, opts.HTTP2)
				}
				return c
			}
			pc.clusters = append(pc.clusters, eds(local))
			if set != "" {
				// The SNI a peer's east-west gateway routes by (eastwest.go).
				pc.clusters = append(pc.clusters, WithGatewaySNI(eds(set), GatewaySNI(sv.Namespace, sv.Name, p.Port)))
			}
			if !slices.Contains(pc.ports, p.Port) {
				pc.ports = append(pc.ports, p.Port)
			}
		}
		if !keep.endpoints {
			pc.endpoints = append(pc.endpoints, loadAssignment(local, sv, p, cluster, "", n))
			if set != "" {
				pc.endpoints = append(pc.endpoints, loadAssignment(set, sv, p, "", clustersetSkip(sv, cluster), n))
			}
		}
		if !keep.hosts && !n.Proxyless {
			domains := []string{sv.Name + "." + sv.Namespace + ".svc.cluster.local", sv.Name + "." + sv.Namespace + ".svc", sv.Name + "." + sv.Namespace}
			if sv.Namespace == n.Namespace {
				domains = append(domains, sv.Name)
			}
			domains = append(domains, vipDomains(sv.ClusterIP, p.Port)...) // capture.go
			pc.vhosts[p.Port] = append(pc.vhosts[p.Port], pc.host(local, domains, mr.table(model.ParentService, p.Port), retry))
			if sv.Exported || sv.Imported || mr.clustersetHost(p.Port) {
				domains := []string{sv.Name + "." + sv.Namespace + ".svc.clusterset.local"}
				domains = append(domains, vipDomains(sv.ClustersetIP, p.Port)...) // capture.go
				pc.vhosts[p.Port] = append(pc.vhosts[p.Port], pc.host(set, domains, mr.table(model.ParentServiceImport, p.Port), retry))
			}
		}
	}
	if !keep.clusters {
		if n.Proxyless {
			pc.listeners = serviceAPIListeners(sv, n)
		}
		pc.clusterErrs = validateAll(nil, pc.clusters, pc.listeners)
	}
	if !keep.endpoints {
		pc.endpointErrs = validateAll(nil, pc.endpoints)
	}
	if !keep.hosts {
		// Virtual hosts are validated here, once when built, not with
		// each route configuration that holds them (a route change then
		// costs its service's hosts, not the whole configuration's).
		for _, port := range pc.ports {
			for _, vh := range pc.vhosts[port] {
				if err := validate(vh); err != nil {
					pc.hostErrs = append(pc.hostErrs, err)
				}
			}
		}
	}
	return pc
}

// host is the virtual host of one service port: the GAMMA table's routes
// when t is not nil, else the default route to cluster.
func (pc *servicePieces) host(cluster string, domains []string, t *model.RouteTable, retry Retry) *routev3.VirtualHost {
	if t == nil {
		return virtualHost(cluster, domains, cluster, retry)
	}
	vh, err := meshHost(cluster, domains, t, retry)
	if err != nil {
		pc.hostErrs = append(pc.hostErrs, fmt.Errorf("xds translate: virtual host %q: %w", cluster, err))
	}
	return vh
}

func validateAll(errs []error, lists ...[]types.Resource) []error {
	for _, list := range lists {
		for _, res := range list {
			if err := validate(res); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

func virtualHost(name string, domains []string, cluster string, retry Retry) *routev3.VirtualHost {
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
	if retry.NumRetries > 0 {
		action.RetryPolicy = &routev3.RetryPolicy{RetryOn: retry.On, NumRetries: wrapperspb.UInt32(retry.NumRetries)}
	}
	return &routev3.VirtualHost{
		Name:    name,
		Domains: domains,
		Routes: []*routev3.Route{{
			Name:   "default",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}},
	}
}

// serviceAPIListeners are what grpc-go's xDS resolver asks for: for
// xds:///<target> it requests the Listener named <target>, which must
// carry an api_listener (an HttpConnectionManager). For each gRPC port of
// each service the targets are <svc>.<ns>.svc.cluster.local:<port>,
// <svc>.<ns>:<port> and, in the node's namespace, <svc>:<port>; a service
// with exactly one gRPC port answers to the same names without ":<port>";
// an exported one also to <svc>.<ns>.svc.clusterset.local[:<port>]. The
// route configuration is inline (one "*" virtual host, prefix "/" to the
// EDS cluster): grpc-go accepts inline and RDS alike, inline saves a round
// trip, and go-control-plane's snapshot consistency check does not follow
// RDS references out of api listeners.
func serviceAPIListeners(sv *model.Service, n Node) []types.Resource {
	var ls []types.Resource
	var grpcPorts []model.ServicePort
	for _, p := range sv.Ports {
		if portClass(p) == protoGRPC {
			grpcPorts = append(grpcPorts, p)
		}
	}
	for _, p := range grpcPorts {
		port := ":" + strconv.FormatUint(uint64(p.Port), 10)
		add := func(cluster string, names []string) {
			for _, name := range names {
				ls = append(ls, apiListener(name+port, cluster))
				if len(grpcPorts) == 1 {
					ls = append(ls, apiListener(name, cluster))
				}
			}
		}
		names := []string{sv.Name + "." + sv.Namespace + ".svc.cluster.local", sv.Name + "." + sv.Namespace}
		if sv.Namespace == n.Namespace {
			names = append(names, sv.Name)
		}
		add(ClusterName(sv.Namespace, sv.Name, p.Port), names)
		if sv.Exported || sv.Imported {
			add(ClustersetName(sv.Namespace, sv.Name, p.Port), []string{sv.Name + "." + sv.Namespace + ".svc.clusterset.local"})
		}
	}
	return ls
}

func apiListener(name, cluster string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         name,
			VirtualHosts: []*routev3.VirtualHost{virtualHost(cluster, []string{"*"}, cluster, Retry{})},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)}}
}

// LocalityPriority is an endpoint locality's tier relative to the node:
// 0 same region and zone, 1 same region, 2 any other region. Endpoints in
// other clusters or networks are ranked by their locality the same way.
// The tiers present in a load assignment are then numbered 0, 1, 2...
// without gaps (Envoy and grpc-go require contiguous priorities), so with
// no endpoint in the node's zone the same-region ones get priority 0.
func LocalityPriority(node, ep model.Locality) uint32 {
	switch {
	case ep.Region == node.Region && ep.Zone == node.Zone:
		return 0
	case ep.Region == node.Region:
		return 1
	}
	return 2
}

type localityKey struct {
	tier             uint32
	cluster, network string
	loc              model.Locality
}

// loadAssignment builds the EDS resource of one service port. onlyCluster
// limits it to endpoints of that cluster; "" takes every cluster.
// clustersetSkip is the cluster whose endpoints the clusterset assignment
// leaves out: this one, when the service is not exported here (MCS: only
// exporting clusters back the ServiceImport).
func clustersetSkip(sv *model.Service, cluster string) string {
	if sv.Exported {
		return ""
	}
	return cluster
}

func loadAssignment(name string, sv *model.Service, p model.ServicePort, onlyCluster, skipCluster string, n Node) *endpointv3.ClusterLoadAssignment {
	groups := map[localityKey][]*model.Endpoint{}
	for i := range sv.Endpoints {
		e := &sv.Endpoints[i]
		if !e.Ready || (onlyCluster != "" && e.Cluster != onlyCluster) || (skipCluster != "" && e.Cluster == skipCluster) {
			continue
		}
		if _, ok := e.Port(p.Name); !ok {
			continue
		}
		k := localityKey{LocalityPriority(n.Locality, e.Locality), e.Cluster, e.Network, e.Locality}
		groups[k] = append(groups[k], e)
	}
	keys := make([]localityKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b localityKey) int {
		return cmp.Or(cmp.Compare(a.tier, b.tier), cmp.Compare(a.cluster, b.cluster), cmp.Compare(a.network, b.network),
			cmp.Compare(a.loc.Region, b.loc.Region), cmp.Compare(a.loc.Zone, b.loc.Zone), cmp.Compare(a.loc.SubZone, b.loc.SubZone))
	})
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	var prio uint32
	for i, k := range keys {
		if i > 0 && k.tier != keys[i-1].tier {
			prio++
		}
		meta := map[string]*structpb.Value{"cluster": structpb.NewStringValue(k.cluster)}
		if k.network != "" {
			meta["network"] = structpb.NewStringValue(k.network)
		}
		le := &endpointv3.LocalityLbEndpoints{
			Locality: &corev3.Locality{Region: k.loc.Region, Zone: k.loc.Zone, SubZone: k.loc.SubZone},
			Priority: prio,
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"causeway": {Fields: meta}}},
		}
		var weight uint32
		for _, e := range groups[k] {
			port, _ := e.Port(p.Name)
			weight += e.Weight
			lb := &endpointv3.LbEndpoint{
				HealthStatus:        corev3.HealthStatus_HEALTHY,
				LoadBalancingWeight: wrapperspb.UInt32(e.Weight),
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: e.Address, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
					}}},
				}},
			}
			if e.Identity != "" {
				lb.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"causeway": {Fields: map[string]*structpb.Value{
					"identity": structpb.NewStringValue(e.Identity),
				}}}}
			}
			le.LbEndpoints = append(le.LbEndpoints, lb)
		}
		le.LoadBalancingWeight = wrapperspb.UInt32(weight)
		cla.Endpoints = append(cla.Endpoints, le)
	}
	return cla
}

type named interface{ GetName() string }

func resourceName(r types.Resource) string {
	switch v := r.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return v.GetClusterName()
	case named:
		return v.GetName()
	}
	return ""
}

func sortByName(rs []types.Resource) {
	slices.SortStableFunc(rs, func(a, b types.Resource) int { return cmp.Compare(resourceName(a), resourceName(b)) })
}

type validator interface{ ValidateAll() error }

// validate runs the proto's ValidateAll; a failure names the resource.
func validate(res types.Resource) error {
	if v, ok := res.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("xds translate: %T %q: %w", res, resourceName(res), err)
		}
	}
	return nil
}

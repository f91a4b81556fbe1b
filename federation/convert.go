package federation

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	pb "github.com/causewaymesh/causeway/federation/federationpb"
	"github.com/causewaymesh/causeway/internal/model"
)

// LocalitySummary is what a peer runs in one locality behind its east-west
// gateway, for one imported service.
type LocalitySummary struct {
	Service  NamespacedName
	Cluster  string // the peer's cluster
	Network  string // the peer's network
	Locality model.Locality
	// HealthyEndpoints of Endpoints are ready; Weight is the sum of their
	// weights.
	HealthyEndpoints, Endpoints uint32
	Weight                      uint64
	// Gateway is the peer's east-west gateway and SNI the TLS server name
	// that routes to the service there.
	Gateway netip.AddrPort
	SNI     string
	// Identities are the SPIFFE IDs of the endpoints, sorted.
	Identities []string
}

// importedService is one service from one peer, validated and converted.
// Immutable once built.
type importedService struct {
	name       NamespacedName
	svc        model.Service // endpoints canonical, Cluster = the peer
	localities []LocalitySummary
	endpoints  int // direct endpoints plus those counted in localities
}

// peerInfo is what conversion needs to know about the peer.
type peerInfo struct {
	cluster, network string
	td               spiffeid.TrustDomain
	mode             pb.Mode
}

// convertService validates es (the peer's whole service) and converts it.
// Every problem is refused with ReasonMalformed naming the field.
func convertService(es *pb.ExportedService, pi *peerInfo) (*importedService, error) {
	obj := "service " + es.GetNamespace() + "/" + es.GetName()
	bad := func(field string, value any, reason string) error {
		return refused(pi.cluster, ReasonMalformed, "%s: %s: %q: %s", obj, field, fmt.Sprint(value), reason)
	}
	if !validLabel(es.GetNamespace()) {
		return nil, bad("namespace", es.GetNamespace(), "must be a DNS label")
	}
	if !validLabel(es.GetName()) {
		return nil, bad("name", es.GetName(), "must be a DNS label")
	}
	is := &importedService{name: NamespacedName{es.GetNamespace(), es.GetName()}}
	sv := &is.svc
	sv.Namespace, sv.Name = es.GetNamespace(), es.GetName()
	sv.Ports = make([]model.ServicePort, 0, len(es.GetPorts()))
	for i, p := range es.GetPorts() {
		f := fmt.Sprintf("ports[%d]", i)
		if p.GetPort() == 0 || p.GetPort() > 65535 {
			return nil, bad(f+".port", p.GetPort(), "must be 1-65535")
		}
		proto := model.Protocol(p.GetProtocol())
		switch proto {
		case model.TCP, model.UDP, model.SCTP:
		default:
			return nil, bad(f+".protocol", p.GetProtocol(), "must be TCP, UDP or SCTP")
		}
		if len(es.GetPorts()) > 1 && p.GetName() == "" {
			return nil, bad(f+".name", "", "required when a service has more than one port")
		}
		if slices.ContainsFunc(sv.Ports, func(q model.ServicePort) bool { return q.Name == p.GetName() }) {
			return nil, bad(f+".name", p.GetName(), "duplicate port name")
		}
		sv.Ports = append(sv.Ports, model.ServicePort{Name: p.GetName(), Port: p.GetPort(), Protocol: proto, AppProtocol: p.GetAppProtocol()})
	}
	slices.SortFunc(sv.Ports, comparePorts)
	identity := func(field, id string) error {
		if id == "" {
			return nil
		}
		sid, err := spiffeid.FromString(id)
		if err != nil {
			return bad(field, id, "must be a SPIFFE ID: "+err.Error())
		}
		if sid.TrustDomain() != pi.td {
			return bad(field, id, "is not in the peer's trust domain "+pi.td.Name())
		}
		return nil
	}
	switch pi.mode {
	case pb.Mode_MODE_DIRECT:
		if len(es.GetLocalities()) > 0 {
			return nil, bad("localities", len(es.GetLocalities()), "must be empty in direct mode (the peer said MODE_DIRECT)")
		}
		sv.Endpoints = make([]model.Endpoint, len(es.GetEndpoints()))
		for i, e := range es.GetEndpoints() {
			f := fmt.Sprintf("endpoints[%d]", i)
			a, err := netip.ParseAddr(e.GetAddress())
			if err != nil || a.Zone() != "" {
				return nil, bad(f+".address", e.GetAddress(), "must be an IP literal without zone")
			}
			if e.GetWeight() == 0 {
				return nil, bad(f+".weight", 0, "must be at least 1")
			}
			if err := identity(f+".identity", e.GetIdentity()); err != nil {
				return nil, err
			}
			me := &sv.Endpoints[i]
			*me = model.Endpoint{
				Address: a.String(), Cluster: pi.cluster, Network: pi.network, Locality: locality(e.GetLocality()),
				Identity: e.GetIdentity(), Ready: e.GetHealthy(), Serving: e.GetHealthy(), Weight: e.GetWeight(),
			}
			me.Ports = make([]model.EndpointPort, len(e.GetPorts()))
			for j, p := range e.GetPorts() {
				if p.GetPort() == 0 || p.GetPort() > 65535 {
					return nil, bad(fmt.Sprintf("%s.ports[%d].port", f, j), p.GetPort(), "must be 1-65535")
				}
				me.Ports[j] = model.EndpointPort{Name: p.GetName(), Port: p.GetPort()}
			}
			slices.SortFunc(me.Ports, func(a, b model.EndpointPort) int { return cmp.Compare(a.Name, b.Name) })
		}
		is.endpoints = len(sv.Endpoints)
	case pb.Mode_MODE_GATEWAY:
		if len(es.GetEndpoints()) > 0 {
			return nil, bad("endpoints", len(es.GetEndpoints()), "must be empty in gateway mode (the peer said MODE_GATEWAY)")
		}
		for i, l := range es.GetLocalities() {
			f := fmt.Sprintf("localities[%d]", i)
			gw, err := netip.ParseAddrPort(l.GetGatewayAddress())
			if err != nil || gw.Port() == 0 || gw.Addr().Zone() != "" {
				return nil, bad(f+".gateway_address", l.GetGatewayAddress(), "must be ip:port with a port and no zone")
			}
			if l.GetHealthyEndpoints() > l.GetEndpoints() {
				return nil, bad(f+".healthy_endpoints", l.GetHealthyEndpoints(), fmt.Sprintf("exceeds endpoints (%d)", l.GetEndpoints()))
			}
			if l.GetSni() == "" || len(l.GetSni()) > 253 {
				return nil, bad(f+".sni", l.GetSni(), "must be a server name of 1-253 bytes")
			}
			for j, id := range l.GetIdentities() {
				if err := identity(fmt.Sprintf("%s.identities[%d]", f, j), id); err != nil {
					return nil, err
				}
			}
			ls := LocalitySummary{
				Service: is.name, Cluster: pi.cluster, Network: pi.network, Locality: locality(l.GetLocality()),
				HealthyEndpoints: l.GetHealthyEndpoints(), Endpoints: l.GetEndpoints(), Weight: l.GetWeight(),
				Gateway: gw, SNI: l.GetSni(), Identities: slices.Clone(l.GetIdentities()),
			}
			slices.Sort(ls.Identities)
			is.localities = append(is.localities, ls)
			is.endpoints += int(l.GetEndpoints())
			sv.Endpoints = append(sv.Endpoints, gatewayEndpoint(&ls, sv.Ports))
		}
		slices.SortFunc(is.localities, func(a, b LocalitySummary) int { return compareLocality(a.Locality, b.Locality) })
		for i := 1; i < len(is.localities); i++ {
			if is.localities[i-1].Locality == is.localities[i].Locality {
				return nil, bad("localities", is.localities[i].Locality.String(), "duplicate locality")
			}
		}
	default:
		return nil, refused(pi.cluster, ReasonMalformed, "hello.mode %v: must be MODE_DIRECT or MODE_GATEWAY", pi.mode)
	}
	slices.SortFunc(sv.Endpoints, compareEndpoints)
	for i := 1; i < len(sv.Endpoints); i++ {
		if compareEndpoints(sv.Endpoints[i-1], sv.Endpoints[i]) == 0 {
			return nil, bad("endpoints", sv.Endpoints[i].Address, "duplicate endpoint (same address and ports)")
		}
	}
	return is, nil
}

// gatewayEndpoint is the model endpoint that stands for one locality behind
// a peer's gateway: the gateway's address, every service port on the
// gateway's port, the healthy weight, ready while any endpoint is healthy.
func gatewayEndpoint(ls *LocalitySummary, ports []model.ServicePort) model.Endpoint {
	healthy := ls.HealthyEndpoints > 0
	w := uint32(1)
	if healthy {
		w = uint32(min(max(ls.Weight, 1), math.MaxUint32))
	}
	// The caller's mTLS goes through the gateway to a workload of the
	// locality: pin its SPIFFE ID. The model holds one identity per
	// endpoint, so a locality whose workloads run as several service
	// accounts is pinned to the first (sorted) one.
	id := ""
	if len(ls.Identities) > 0 {
		id = ls.Identities[0]
	}
	e := model.Endpoint{
		Address: ls.Gateway.Addr().String(), Cluster: ls.Cluster, Network: ls.Network, Locality: ls.Locality,
		Ready: healthy, Serving: healthy, Weight: w, Identity: id,
		Workload: fmt.Sprintf("EastWestGateway %s locality=%s sni=%s healthy=%d/%d", ls.Cluster, ls.Locality, ls.SNI, ls.HealthyEndpoints, ls.Endpoints),
	}
	e.Ports = make([]model.EndpointPort, len(ports))
	for i, p := range ports {
		e.Ports[i] = model.EndpointPort{Name: p.Name, Port: uint32(ls.Gateway.Port())}
	}
	slices.SortFunc(e.Ports, func(a, b model.EndpointPort) int { return cmp.Compare(a.Name, b.Name) })
	return e
}

func locality(l *pb.Locality) model.Locality {
	return model.Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()}
}

func comparePorts(a, b model.ServicePort) int {
	return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Name, b.Name))
}

// compareEndpoints is the model's canonical endpoint order.
func compareEndpoints(a, b model.Endpoint) int {
	return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Address, b.Address),
		slices.CompareFunc(a.Ports, b.Ports, func(x, y model.EndpointPort) int {
			return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.Port, y.Port))
		}), cmp.Compare(a.Workload, b.Workload))
}

func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

package xdsclient

import (
	"google.golang.org/protobuf/proto"

	"github.com/causewaymesh/causeway/proxy/config"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
	endpointv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/endpoint/v3"
)

// TranslateLoadAssignment validates a and translates it. Endpoint
// addresses must be IP literals (as Envoy requires for EDS). All problems
// are reported together, each naming the assignment and field.
//
// m is Envoy's ClusterLoadAssignment: the sidecar's lean copy (package leanxds) or
// any other Go type of it, such as go-control-plane's.
func TranslateLoadAssignment(m proto.Message) (*config.LoadAssignment, error) {
	return translateAs(m, "cluster_load_assignment", translateLoadAssignment)
}

func translateLoadAssignment(a *endpointv3.ClusterLoadAssignment) (*config.LoadAssignment, error) {
	c := newCollector("cluster_load_assignment", a.GetClusterName())
	if a == nil {
		c.addf("", "send a ClusterLoadAssignment", "nil resource")
		return nil, c.err()
	}
	if !c.validate("", a) {
		return nil, c.err()
	}
	out := c.loadAssignment("", a, true)
	if c.failed() {
		return nil, c.err()
	}
	return out, nil
}

func (c *collector) loadAssignment(path string, a *endpointv3.ClusterLoadAssignment, wantIP bool) *config.LoadAssignment {
	c.only(path, a, "cluster_name", "endpoints", "policy")
	out := &config.LoadAssignment{Cluster: a.GetClusterName(), OverprovisioningFactor: 140}
	if p := a.GetPolicy(); p != nil {
		c.only(join(path, "policy"), p, "overprovisioning_factor", "endpoint_stale_after", "weighted_priority_health")
		if f := p.GetOverprovisioningFactor(); f != nil {
			out.OverprovisioningFactor = float64(f.GetValue())
		}
	}
	for i, le := range a.GetEndpoints() {
		p := idx(join(path, "endpoints"), i)
		c.only(p, le, "locality", "lb_endpoints", "load_balancing_weight", "priority", "metadata", "proximity")
		l := &config.LocalityEndpoints{
			Priority: le.GetPriority(),
			Weight:   le.GetLoadBalancingWeight().GetValue(),
			Cluster:  c.metadataString(join(p, "metadata"), le.GetMetadata(), "cluster"),
			Network:  c.metadataString(join(p, "metadata"), le.GetMetadata(), "network"),
		}
		if loc := le.GetLocality(); loc != nil {
			c.only(join(p, "locality"), loc, "region", "zone", "sub_zone")
			l.Locality = config.Locality{Region: loc.GetRegion(), Zone: loc.GetZone(), SubZone: loc.GetSubZone()}
		}
		for j, lb := range le.GetLbEndpoints() {
			q := idx(join(p, "lb_endpoints"), j)
			c.only(q, lb, "endpoint", "health_status", "metadata", "load_balancing_weight")
			ep := lb.GetEndpoint()
			if ep == nil {
				c.addf(join(q, "endpoint"), "set endpoint.address (endpoint_name is not supported)", "missing endpoint")
				continue
			}
			c.only(join(q, "endpoint"), ep, "address", "hostname", "health_check_config")
			e := config.Endpoint{
				Address:  c.socketAddress(join(q, "endpoint.address"), ep.GetAddress(), wantIP),
				Health:   health(lb.GetHealthStatus()),
				Weight:   lb.GetLoadBalancingWeight().GetValue(),
				Identity: c.metadataString(join(q, "metadata"), lb.GetMetadata(), "identity"),
				Hostname: ep.GetHostname(),
			}
			l.Endpoints = append(l.Endpoints, e)
		}
		out.Localities = append(out.Localities, l)
	}
	return out
}

func health(h corev3.HealthStatus) config.Health {
	switch h {
	case corev3.HealthStatus_HEALTHY:
		return config.Healthy
	case corev3.HealthStatus_UNHEALTHY:
		return config.Unhealthy
	case corev3.HealthStatus_DRAINING:
		return config.Draining
	case corev3.HealthStatus_TIMEOUT:
		return config.Timeout
	case corev3.HealthStatus_DEGRADED:
		return config.Degraded
	}
	return config.HealthUnknown
}

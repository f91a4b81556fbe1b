package xds

import (
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only reachable with a nil message: a programming error
	}
	return a
}

// HTTPListener is an HTTP connection manager on addr whose routes come
// from RDS under routeName.
func HTTPListener(name, addr string, inbound bool, routeName string) *listenerv3.Listener {
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads(), RouteConfigName: routeName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	dir := corev3.TrafficDirection_OUTBOUND
	if inbound {
		dir = corev3.TrafficDirection_INBOUND
	}
	return &listenerv3.Listener{
		Name:             name,
		TrafficDirection: dir,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
		}}}},
	}
}

// Retry is a route retry policy.
type Retry struct {
	On         string // e.g. "connect-failure,gateway-error,reset"
	NumRetries uint32
	PerTry     time.Duration
}

// RouteToCluster is a route configuration with one catch-all virtual host
// sending every request to cluster.
func RouteToCluster(name, cluster string, timeout time.Duration, retry *Retry) *routev3.RouteConfiguration {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		Timeout:          durationpb.New(timeout),
	}
	if retry != nil {
		action.RetryPolicy = &routev3.RetryPolicy{RetryOn: retry.On, NumRetries: wrapperspb.UInt32(retry.NumRetries)}
		if retry.PerTry > 0 {
			action.RetryPolicy.PerTryTimeout = durationpb.New(retry.PerTry)
		}
	}
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: action},
			}},
		}},
	}
}

// ClusterOptions shape an EDS cluster.
type ClusterOptions struct {
	HTTP2 bool
	// Consecutive gateway failures before ejection; zero: no outlier
	// detection.
	EjectAfter       uint32
	BaseEjectionTime time.Duration
	MaxEjectionTime  time.Duration // zero: Envoy's default (300s)
	MaxEjectPercent  uint32
}

// Causeway's retry budget: retries may add at most this share of active
// requests to a cluster, but never fewer than retryMinConcurrency may run.
// Envoy's default without a budget (3 concurrent retries per cluster) sheds
// retries exactly when a locality fails and every request needs one; a
// budget scales with traffic and still caps retry storms (Linkerd's default
// budget is also 20%).
const (
	retryBudgetPercent  = 20
	retryMinConcurrency = 10
)

// EDSCluster is a cluster whose endpoints arrive by EDS under its name.
func EDSCluster(name string, o ClusterOptions) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
		ConnectTimeout:       durationpb.New(time.Second),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
				BudgetPercent:       &typev3.Percent{Value: retryBudgetPercent},
				MinRetryConcurrency: wrapperspb.UInt32(retryMinConcurrency),
			},
		}}},
	}
	if o.HTTP2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}},
			}),
		}
	}
	if o.EjectAfter > 0 {
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:                    wrapperspb.UInt32(o.EjectAfter),
			ConsecutiveGatewayFailure:          wrapperspb.UInt32(o.EjectAfter),
			EnforcingConsecutive_5Xx:           wrapperspb.UInt32(100),
			BaseEjectionTime:                   durationpb.New(o.BaseEjectionTime),
			MaxEjectionTime:                    maxEjection(o.MaxEjectionTime),
			MaxEjectionPercent:                 wrapperspb.UInt32(o.MaxEjectPercent),
			EnforcingSuccessRate:               wrapperspb.UInt32(0),
			Interval:                           durationpb.New(time.Second),
			EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		}
	}
	return c
}

// Locality is one locality's endpoints at a priority.
type Locality struct {
	Region, Zone string
	Priority     uint32
	Cluster      string // the Kubernetes cluster the endpoints run in
	Addresses    []string
	Unhealthy    map[string]bool // address -> marked unhealthy
}

// LoadAssignment is the EDS resource for cluster.
func LoadAssignment(cluster string, locs ...Locality) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	for _, l := range locs {
		le := &endpointv3.LocalityLbEndpoints{
			Locality: &corev3.Locality{Region: l.Region, Zone: l.Zone},
			Priority: l.Priority,
		}
		if l.Cluster != "" {
			le.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"causeway": {Fields: map[string]*structpb.Value{"cluster": structpb.NewStringValue(l.Cluster)}},
			}}
		}
		for _, a := range l.Addresses {
			host, portStr, _ := net.SplitHostPort(a)
			port, _ := strconv.Atoi(portStr)
			hs := corev3.HealthStatus_HEALTHY
			if l.Unhealthy[a] {
				hs = corev3.HealthStatus_UNHEALTHY
			}
			le.LbEndpoints = append(le.LbEndpoints, &endpointv3.LbEndpoint{
				HealthStatus: hs,
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
					}}},
				}},
			})
		}
		cla.Endpoints = append(cla.Endpoints, le)
	}
	return cla
}

func maxEjection(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

package xdsclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/leanxds"
	bootstrapv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/bootstrap/v3"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
)

// Bootstrap is what the proxy needs from an Envoy v3 bootstrap file.
type Bootstrap struct {
	Node   *corev3.Node
	Static *config.Snapshot
	// ADSServer is host:port of the ADS server: the first endpoint of the
	// static cluster named by dynamic_resources.ads_config's envoy_grpc, or
	// a google_grpc target_uri. Empty without ads_config.
	ADSServer    string
	AdminAddress string // host:port; empty without admin.address
}

// LoadBootstrap reads an Envoy v3 Bootstrap in YAML or JSON. Static
// resources are translated by the same rules as xDS resources. Fields the
// proxy does not use (stats, tracing, overload, layered_runtime, ...) are
// ignored.
func LoadBootstrap(path string) (*Bootstrap, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	js, err := yamlToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: not YAML or JSON: %w", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := leanxds.UnmarshalJSON(js, &b); err != nil {
		return nil, fmt.Errorf("bootstrap %s: not an envoy.config.bootstrap.v3.Bootstrap: %w", path, err)
	}
	out, err := translateBootstrap(&b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", path, err)
	}
	return out, nil
}

func translateBootstrap(b *bootstrapv3.Bootstrap) (*Bootstrap, error) {
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid: %w", err)
	}
	var errs []error
	out := &Bootstrap{
		Node: b.GetNode(),
		Static: &config.Snapshot{
			Version:   "static",
			Routes:    map[string]*config.RouteConfig{},
			Clusters:  map[string]*config.Cluster{},
			Endpoints: map[string]*config.LoadAssignment{},
			Secrets:   map[string]*config.Secret{},
		},
	}
	sr := b.GetStaticResources()
	for _, l := range sr.GetListeners() {
		v, err := translateListener(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("static_resources.listeners: %w", err))
			continue
		}
		out.Static.Listeners = append(out.Static.Listeners, v)
	}
	for _, c := range sr.GetClusters() {
		v, err := translateCluster(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("static_resources.clusters: %w", err))
			continue
		}
		out.Static.Clusters[v.Name] = v
	}
	for _, s := range sr.GetSecrets() {
		v, err := translateSecret(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("static_resources.secrets: %w", err))
			continue
		}
		out.Static.Secrets[v.Name] = v
	}
	if a := b.GetAdmin().GetAddress(); a != nil {
		c := newCollector("bootstrap", "admin")
		out.AdminAddress = c.socketAddress("admin.address", a, false)
		if err := c.err(); err != nil {
			errs = append(errs, err)
		}
	}
	if ads := b.GetDynamicResources().GetAdsConfig(); ads != nil {
		addr, err := adsServer(ads, out.Static.Clusters)
		if err != nil {
			errs = append(errs, err)
		}
		out.ADSServer = addr
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(out.Static.Listeners, func(a, b *config.Listener) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// adsServer resolves ads_config to host:port.
func adsServer(ads *corev3.ApiConfigSource, clusters map[string]*config.Cluster) (string, error) {
	const p = "dynamic_resources.ads_config"
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC {
		return "", fmt.Errorf("%s.api_type: %s is not supported; use GRPC (state of the world)", p, ads.GetApiType())
	}
	gs := ads.GetGrpcServices()
	if len(gs) == 0 {
		return "", fmt.Errorf("%s.grpc_services: empty; name the ADS server's cluster in envoy_grpc.cluster_name", p)
	}
	switch t := gs[0].GetTargetSpecifier().(type) {
	case *corev3.GrpcService_EnvoyGrpc_:
		name := t.EnvoyGrpc.GetClusterName()
		c, ok := clusters[name]
		if !ok {
			return "", fmt.Errorf("%s.grpc_services[0].envoy_grpc.cluster_name: no static cluster %q; add it to static_resources.clusters", p, name)
		}
		if c.Static == nil {
			return "", fmt.Errorf("%s.grpc_services[0].envoy_grpc.cluster_name: cluster %q has no load_assignment; make it STATIC or STRICT_DNS", p, name)
		}
		for _, l := range c.Static.Localities {
			for _, e := range l.Endpoints {
				return e.Address, nil
			}
		}
		return "", fmt.Errorf("%s.grpc_services[0].envoy_grpc.cluster_name: cluster %q has no endpoints", p, name)
	case *corev3.GrpcService_GoogleGrpc_:
		uri := t.GoogleGrpc.GetTargetUri()
		if _, port, err := net.SplitHostPort(uri); err != nil || port == "" {
			return "", fmt.Errorf("%s.grpc_services[0].google_grpc.target_uri: %q is not host:port", p, uri)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", fmt.Errorf("%s.grpc_services[0].google_grpc.target_uri: bad port in %q", p, uri)
		}
		return uri, nil
	}
	return "", fmt.Errorf("%s.grpc_services[0]: set envoy_grpc or google_grpc", p)
}

// yamlToJSON converts YAML (or JSON, which is YAML) to JSON.
func yamlToJSON(in []byte) ([]byte, error) {
	if t := bytes.TrimSpace(in); len(t) > 0 && t[0] == '{' {
		return in, nil
	}
	var v any
	if err := yaml.Unmarshal(in, &v); err != nil {
		return nil, err
	}
	v, err := jsonable(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// jsonable turns yaml.v3's generic values into ones encoding/json takes.
func jsonable(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			x[k] = j
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				ks = fmt.Sprint(k)
			}
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			m[ks] = j
		}
		return m, nil
	case []any:
		for i, e := range x {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			x[i] = j
		}
		return x, nil
	}
	return v, nil
}

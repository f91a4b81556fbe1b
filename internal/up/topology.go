package up

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Topology is an example federation: what `causeway up` runs. It is read
// from a YAML file (examples/three-clusters/federation.yaml) and validated
// once by LoadTopology; the harness turns it into each cluster's folder of
// Kubernetes YAML, tokens, CA and processes.
type Topology struct {
	// Namespace of every workload (default "shop").
	Namespace string `json:"namespace"`
	// Clusters, at most 50. Each gets its own control plane, trust domain
	// <name>.local and CA.
	Clusters []ClusterSpec `json:"clusters"`
	// Services; each runs its replicas as real processes behind sidecars.
	Services []ServiceSpec `json:"services"`
	// Client is where the traffic driver's sidecar runs.
	Client Placement `json:"client"`
}

// ClusterSpec is one cluster: a region and its zones (zone names are
// unique in the whole topology).
type ClusterSpec struct {
	Name   string   `json:"name"`
	Region string   `json:"region"`
	Zones  []string `json:"zones"`
}

// ServiceSpec is one HTTP service on port 8080 (the app listens on the
// pod IP's port 18080, behind the sidecar's inbound port 8080).
type ServiceSpec struct {
	Name string `json:"name"`
	// Export adds a ServiceExport in every cluster that runs the service,
	// so it answers as <name>.<ns>.svc.clusterset.local everywhere.
	Export bool `json:"export"`
	// Replicas by "cluster/zone".
	Replicas map[string]int `json:"replicas"`
}

// Placement is a cluster and one of its zones.
type Placement struct {
	Cluster string `json:"cluster"`
	Zone    string `json:"zone"`
}

// LoadTopology reads and validates a topology file.
func LoadTopology(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("topology: %w; pass --example with a federation.yaml (see examples/three-clusters)", err)
	}
	var t Topology
	if err := yaml.UnmarshalStrict(b, &t); err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	return &t, nil
}

// Validate checks t, defaults Namespace, and names every bad field.
func (t *Topology) Validate() error {
	if t.Namespace == "" {
		t.Namespace = "shop"
	}
	var errs []error
	if len(t.Clusters) == 0 || len(t.Clusters) > 50 {
		errs = append(errs, fmt.Errorf("clusters: %d given, want 1 to 50", len(t.Clusters)))
	}
	zones := map[string]string{} // zone -> cluster
	names := map[string]bool{}
	for i, c := range t.Clusters {
		if c.Name == "" || strings.ContainsAny(c.Name, "./ ") {
			errs = append(errs, fmt.Errorf("clusters[%d].name %q: want a DNS label", i, c.Name))
		}
		if names[c.Name] {
			errs = append(errs, fmt.Errorf("clusters[%d].name %q: given twice", i, c.Name))
		}
		names[c.Name] = true
		if c.Region == "" {
			errs = append(errs, fmt.Errorf("clusters[%d] (%s).region: required", i, c.Name))
		}
		if len(c.Zones) == 0 {
			errs = append(errs, fmt.Errorf("clusters[%d] (%s).zones: give at least one zone", i, c.Name))
		}
		for _, z := range c.Zones {
			if other, ok := zones[z]; ok {
				errs = append(errs, fmt.Errorf("clusters[%d] (%s).zones: %q is already a zone of %s; zone names are unique", i, c.Name, z, other))
			}
			zones[z] = c.Name
		}
	}
	pods := map[string]int{}
	svcs := map[string]bool{}
	for i, s := range t.Services {
		if s.Name == "" || strings.ContainsAny(s.Name, "./ ") || s.Name == "client" {
			errs = append(errs, fmt.Errorf("services[%d].name %q: want a DNS label other than \"client\"", i, s.Name))
		}
		if svcs[s.Name] {
			errs = append(errs, fmt.Errorf("services[%d].name %q: given twice", i, s.Name))
		}
		svcs[s.Name] = true
		for k, n := range s.Replicas {
			c, z, ok := strings.Cut(k, "/")
			if !ok || zones[z] != c {
				errs = append(errs, fmt.Errorf("services[%d] (%s).replicas[%q]: want \"<cluster>/<zone>\" naming a zone of that cluster", i, s.Name, k))
			}
			if n < 0 || n > 20 {
				errs = append(errs, fmt.Errorf("services[%d] (%s).replicas[%q] = %d: want 0 to 20", i, s.Name, k, n))
			}
			pods[c] += n
		}
	}
	if zones[t.Client.Zone] != t.Client.Cluster || t.Client.Cluster == "" {
		errs = append(errs, fmt.Errorf("client: cluster %q zone %q: want a cluster and one of its zones", t.Client.Cluster, t.Client.Zone))
	}
	for c, n := range pods {
		if n > 200 {
			errs = append(errs, fmt.Errorf("cluster %s: %d pods, at most 200 fit its loopback /24", c, n))
		}
	}
	return errors.Join(errs...)
}

// cluster returns the cluster named name and its index.
func (t *Topology) cluster(name string) (ClusterSpec, int) {
	i := slices.IndexFunc(t.Clusters, func(c ClusterSpec) bool { return c.Name == name })
	if i < 0 {
		return ClusterSpec{}, -1
	}
	return t.Clusters[i], i
}

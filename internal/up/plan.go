package up

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Fixed ports: every address is on a loopback IP of its own, so these
// never collide with other processes.
const (
	portXDS        = 15010
	portAdmin      = 15011
	portSVID       = 15012
	portBundle     = 15013
	portFederation = 15014
	portSidecar    = 15000 // sidecar admin, on the pod IP
	portService    = 8080  // every service's port: the sidecar's inbound port on the pod IP, and the outbound listeners
	portApp        = 18080 // the app, on the pod IP
)

// Pod is one workload replica: an app process and its sidecar, or for the
// client a sidecar alone (the traffic driver is its app).
type Pod struct {
	Name    string // <service>-<n>, unique in its cluster
	Service string // "client" for the traffic driver's pod
	Cluster string
	Region  string
	Zone    string
	// IP is the pod IP (127.<block+10>.<cluster>.<n>): the sidecar's inbound
	// listener (port 8080) and admin (15000), and the app (18080).
	IP string
	// OutboundIP (127.<block+20>.<cluster>.<n>) is where the sidecar binds its
	// outbound listeners (node metadata outbound_ip).
	OutboundIP string

	app, sidecar *proc
	ready        bool // as the EndpointSlice says
	dead         bool // processes killed, not restored yet
}

// Where is "<cluster>/<zone>", the column of the walk-through's table.
func (p *Pod) Where() string { return p.Cluster + "/" + p.Zone }

// AdminURL is the sidecar's admin listener.
func (p *Pod) AdminURL() string { return fmt.Sprintf("http://%s:%d", p.IP, portSidecar) }

// block is the second octet of a federation's loopback addresses
// (Options.Block): control planes on 127.<block>.<i>.1, pods on
// 127.<block+10>.<i>.<n>, their outbound listeners on 127.<block+20>.<i>.<n>,
// east-west gateways on 127.<block+30>.<i>.1.
type block int

// DefaultBlock is the block of `causeway up`: 127.10/20/30/40.
const DefaultBlock = 10

// cpIP is the loopback IP of cluster i's control plane.
func (b block) cpIP(i int) string { return fmt.Sprintf("127.%d.%d.1", b, i+1) }

// gatewayIP is the loopback IP of cluster i's east-west gateway.
func (b block) gatewayIP(i int) string { return fmt.Sprintf("127.%d.%d.1", b+30, i+1) }

// plan lays out t's pods: per cluster, services in topology order, zones
// in cluster order, the client last.
func plan(t *Topology, b block) []*Pod {
	var pods []*Pod
	for ci, c := range t.Clusters {
		n := 0
		add := func(svc, name, zone string) {
			n++
			pods = append(pods, &Pod{Name: name, Service: svc, Cluster: c.Name, Region: c.Region, Zone: zone,
				IP: fmt.Sprintf("127.%d.%d.%d", b+10, ci+1, n), OutboundIP: fmt.Sprintf("127.%d.%d.%d", b+20, ci+1, n), ready: true})
		}
		for _, s := range t.Services {
			i := 0
			for _, z := range c.Zones {
				for range s.Replicas[c.Name+"/"+z] {
					add(s.Name, fmt.Sprintf("%s-%d", s.Name, i), z)
					i++
				}
			}
		}
		if t.Client.Cluster == c.Name {
			add("client", "client-0", t.Client.Zone)
		}
	}
	return pods
}

// folderYAML is cluster c's folder source: its Nodes (one per zone), and
// for each service it runs a Service, its Pods, one EndpointSlice (ready
// as the pods say) and, when exported, a ServiceExport.
func folderYAML(t *Topology, c ClusterSpec, pods []*Pod) map[string]string {
	files := map[string]string{}
	var b strings.Builder
	for _, z := range c.Zones {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Node\nmetadata: {name: node-%s, labels: {topology.kubernetes.io/region: %s, topology.kubernetes.io/zone: %s}}\n", z, c.Region, z)
	}
	files["nodes.yaml"] = b.String()
	bySvc := map[string][]*Pod{}
	for _, p := range pods {
		if p.Cluster == c.Name && p.Service != "client" {
			bySvc[p.Service] = append(bySvc[p.Service], p)
		}
	}
	for _, s := range t.Services {
		ps := bySvc[s.Name]
		if len(ps) == 0 {
			continue
		}
		b.Reset()
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec:\n  ports: [{name: http, port: %d}]\n", s.Name, t.Namespace, portService)
		for _, p := range ps {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec: {serviceAccountName: %s, nodeName: node-%s}\nstatus: {podIP: %s}\n",
				p.Name, t.Namespace, s.Name, p.Zone, p.IP)
		}
		fmt.Fprintf(&b, "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: %s, namespace: %s, labels: {kubernetes.io/service-name: %s}}\naddressType: IPv4\nports: [{name: http, port: %d}]\nendpoints:\n",
			s.Name, t.Namespace, s.Name, portService)
		for _, p := range ps {
			fmt.Fprintf(&b, "- addresses: [%s]\n  nodeName: node-%s\n  conditions: {ready: %t}\n  targetRef: {kind: Pod, name: %s, namespace: %s}\n", p.IP, p.Zone, p.ready, p.Name, t.Namespace)
		}
		if s.Export {
			fmt.Fprintf(&b, "---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: %s, namespace: %s}\n", s.Name, t.Namespace)
		}
		files["svc-"+s.Name+".yaml"] = b.String()
	}
	return files
}

// exportedEndpoints is how many endpoints each cluster exports: what a
// peer's import of it holds once federation has converged.
func exportedEndpoints(t *Topology, pods []*Pod) map[string]int {
	exported := map[string]bool{}
	for _, s := range t.Services {
		exported[s.Name] = s.Export
	}
	out := map[string]int{}
	for _, p := range pods {
		if exported[p.Service] && p.ready {
			out[p.Cluster]++
		}
	}
	return out
}

// Zones is every "<cluster>/<zone>" of t, in topology order.
func (t *Topology) Zones() []string {
	var out []string
	for _, c := range t.Clusters {
		for _, z := range c.Zones {
			out = append(out, c.Name+"/"+z)
		}
	}
	return out
}

// exportedServices are the names of the exported services, sorted.
func (t *Topology) exportedServices() []string {
	set := map[string]bool{}
	for _, s := range t.Services {
		if s.Export {
			set[s.Name] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

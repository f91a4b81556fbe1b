package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/causewaymesh/causeway/internal/model"
)

// Node is what the control plane knows of one xDS client, read from its
// node in the first request of a stream.
type Node struct {
	ID             string
	Namespace      string // metadata "namespace" (required)
	ServiceAccount string // metadata "service_account"
	Cluster        string // metadata "cluster", else node.cluster (required)
	Network        string // metadata "network"; default: the control plane's
	Locality       model.Locality
	// Proxyless: a gRPC library rather than a Causeway proxy, detected by
	// user_agent_name starting with "gRPC" (grpc-go sends "gRPC Go") or
	// metadata "proxyless" true. Proxyless nodes get api listeners.
	Proxyless bool
	// OutboundIP (metadata "outbound_ip") is the IP the proxy's outbound
	// listeners bind; default TranslateOptions.ListenerIP.
	OutboundIP string
	// InboundIP (metadata "inbound_ip") is the workload's endpoint address,
	// where its inbound listeners bind; InboundPorts (metadata
	// "inbound_ports", see ParseInboundPorts) maps each inbound port to the
	// application's local address. Both are needed for inbound listeners.
	InboundIP    string
	InboundPorts string
	// MTLSMode (metadata "mtls_mode") is MTLSStrict or MTLSPermissive for
	// the inbound listeners; empty means the namespace's mode (annotation
	// causeway.dev/mtls-mode on the Namespace), else STRICT.
	MTLSMode string
	// EastWestPort is nonzero for an east-west gateway (metadata role
	// "east-west"): the port it listens on at InboundIP (metadata
	// eastwest_port, default 15443). See ParseEastWestNode.
	EastWestPort uint32
	// Gateways is set for an ingress proxy (metadata role "ingress"): "*"
	// or the sorted "namespace/name,..." of the Gateways it serves
	// (metadata "gateways"). See ParseIngressNode (ingress.go).
	Gateways string
	// Capture: the proxy runs in capture mode (metadata "interception_mode"
	// "REDIRECT", as Istio names it): it binds no listener and serves each
	// captured connection by the listener of its original destination, so
	// outbound listeners are per service VIP (capture.go).
	Capture bool
}

// mTLS modes of a node's inbound listeners.
const (
	MTLSStrict     = "STRICT"
	MTLSPermissive = "PERMISSIVE"
)

// ErrNodeRefused wraps every reason a node is refused.
var ErrNodeRefused = errors.New("xds node refused")

// NodeFromProto reads and checks a node. cluster is the control plane's
// own cluster: a node of another cluster is refused. network is the
// default network.
func NodeFromProto(n *corev3.Node, cluster, network string) (Node, error) {
	return nodeFromProto(n, cluster, network, nil)
}

func nodeFromProto(n *corev3.Node, cluster, network string, loc PodLocator) (Node, error) {
	if n == nil {
		return Node{}, fmt.Errorf("%w: the first request of the stream carries no node; set node.id, node.locality and metadata namespace and cluster", ErrNodeRefused)
	}
	md := n.GetMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	out := Node{
		ID: n.GetId(), Namespace: str("namespace"), ServiceAccount: str("service_account"),
		Cluster: str("cluster"), Network: str("network"), OutboundIP: str("outbound_ip"),
		InboundIP: str("inbound_ip"), InboundPorts: str("inbound_ports"), MTLSMode: strings.ToUpper(str("mtls_mode")),
		Locality: model.Locality{Region: n.GetLocality().GetRegion(), Zone: n.GetLocality().GetZone(), SubZone: n.GetLocality().GetSubZone()},
	}
	if out.Cluster == "" {
		out.Cluster = n.GetCluster()
	}
	if out.Network == "" {
		out.Network = network
	}
	out.Capture = strings.EqualFold(str("interception_mode"), "REDIRECT") // capture.go
	out.Proxyless = strings.HasPrefix(n.GetUserAgentName(), "gRPC") || md["proxyless"].GetBoolValue() || str("proxyless") == "true"
	var problems []string
	ewPort, ewErr := ParseEastWestNode(n) // eastwest.go
	out.EastWestPort = ewPort
	if ewErr != nil {
		problems = append(problems, ewErr.Error())
	}
	gws, igErr := ParseIngressNode(n) // ingress.go
	out.Gateways = gws
	if igErr != nil {
		problems = append(problems, igErr.Error())
	}
	if out.ID == "" {
		problems = append(problems, "node.id is empty: set a unique id per proxy (e.g. <pod>.<namespace>)")
	}
	if out.Namespace == "" {
		problems = append(problems, `node.metadata["namespace"] is missing: set the workload's namespace`)
	}
	switch {
	case out.Cluster == "":
		problems = append(problems, `node.metadata["cluster"] (or node.cluster) is missing: set the Kubernetes cluster name`)
	case out.Cluster != cluster:
		problems = append(problems, fmt.Sprintf("node cluster %q is not this control plane's cluster %q: connect to that cluster's control plane", out.Cluster, cluster))
	}
	if p := locateNode(&out, loc); p != "" { // nodelocality.go
		problems = append(problems, p)
	} else if out.Locality.Region == "" || out.Locality.Zone == "" {
		problems = append(problems, fmt.Sprintf("node.locality %q: region and zone are required (locality priorities are relative to them)", out.Locality))
	}
	if out.OutboundIP != "" {
		if _, err := netip.ParseAddr(out.OutboundIP); err != nil {
			problems = append(problems, fmt.Sprintf(`node.metadata["outbound_ip"] %q: not an IP literal`, out.OutboundIP))
		}
	}
	if out.InboundIP != "" {
		if _, err := netip.ParseAddr(out.InboundIP); err != nil {
			problems = append(problems, fmt.Sprintf(`node.metadata["inbound_ip"] %q: not an IP literal`, out.InboundIP))
		}
	}
	if !IsEastWestNode(n) && (out.InboundIP == "") != (out.InboundPorts == "") {
		problems = append(problems, `node.metadata["inbound_ip"] and ["inbound_ports"] go together: set both (the endpoint address and "<port>=<app ip>:<app port>,...") or neither`)
	}
	if _, err := ParseInboundPorts(out.InboundPorts); err != nil {
		problems = append(problems, `node.metadata["inbound_ports"]: `+err.Error())
	}
	if out.MTLSMode != "" && out.MTLSMode != MTLSStrict && out.MTLSMode != MTLSPermissive {
		problems = append(problems, fmt.Sprintf(`node.metadata["mtls_mode"] %q: want STRICT or PERMISSIVE`, out.MTLSMode))
	}
	if len(problems) > 0 {
		return out, fmt.Errorf("%w: node %q: %s", ErrNodeRefused, out.ID, strings.Join(problems, "; "))
	}
	return out, nil
}

// Class is the part of a node that translation depends on: nodes of the
// same class get the same resources.
func (n Node) Class() Node {
	n.ID = ""
	n.ServiceAccount = ""
	return n
}

// Key is a printable, unique name of n's class: the snapshot key under
// which every node of the class is served.
func (n Node) Key() string {
	c := n.Class()
	return fmt.Sprintf("class|%s|%s|%s|%s|%s|%s|%t|%s|%s|%s|%s|%d|%s", c.Namespace, c.Cluster, c.Network,
		c.Locality.Region, c.Locality.Zone, c.Locality.SubZone, c.Proxyless, c.OutboundIP, c.InboundIP, c.InboundPorts, c.MTLSMode, c.EastWestPort, c.Gateways) + captureKey(c) // capture.go
}

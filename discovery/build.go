package discovery

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust/policy"
)

// Labels and annotations Build reads.
const (
	LabelRegion  = "topology.kubernetes.io/region"
	LabelZone    = "topology.kubernetes.io/zone"
	LabelSubZone = "topology.causeway.dev/subzone"
	// AnnotationLocality ("region/zone/subzone") on a Pod or an
	// EndpointSlice gives endpoints a locality without Node objects (local
	// mode).
	AnnotationLocality = "causeway.dev/locality"
)

// Objects are the typed Kubernetes objects of one cluster.
type Objects struct {
	Namespaces     []*corev1.Namespace
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Nodes          []*corev1.Node
	Pods           []*corev1.Pod
	ServiceExports []*mcsv1alpha1.ServiceExport
	// AuthorizationPolicies are already validated (policy.ToModel
	// succeeds for each).
	AuthorizationPolicies []*policy.AuthorizationPolicy
	// Peers are federation links (folder mode), validated
	// (peerapi.Peer.Validate). Build does not use them: the control
	// plane's federation does (FolderOptions.OnPeers).
	Peers []*peerapi.Peer
}

// MTLSModeAnnotation on a Namespace sets its workloads' inbound mTLS mode:
// STRICT (the default) or PERMISSIVE.
const MTLSModeAnnotation = "causeway.dev/mtls-mode"

// BuildOptions name the cluster the objects come from.
type BuildOptions struct {
	Cluster     string
	Network     string
	TrustDomain string
}

// Build turns objects (already validated, see validate.go) into a canonical
// snapshot.
//
// For each endpoint of an EndpointSlice labelled
// kubernetes.io/service-name=<a Service of the same namespace>:
//   - Locality: the Node (endpoint nodeName, else the Pod's spec.nodeName)
//     labels topology.kubernetes.io/region, /zone and
//     topology.causeway.dev/subzone; else the Pod's causeway.dev/locality
//     annotation; else the EndpointSlice's; else the endpoint's zone hint.
//   - Identity: the Pod (targetRef kind Pod, else the Pod whose status.podIP
//     is the address) gives spiffe://<trust-domain>/ns/<ns>/sa/<sa>
//     (service account "default" when unset); empty without a Pod.
//   - Ready/Serving/Terminating: the EndpointSlice conditions with
//     Kubernetes' defaults (ready unset = true, serving unset = ready,
//     terminating unset = false).
//   - Cluster and Network: o.Cluster and o.Network. Weight: 1.
//
// FQDN EndpointSlices and slices of unknown Services are skipped; a Service
// without slices has no endpoints. A Service's ClusterIP is spec.clusterIP
// when it is an IP literal (not "None", not empty; see serviceVIP).
func Build(objs *Objects, o BuildOptions) *model.Snapshot {
	return BuildWith(objs, o, nil)
}

// BuildMemo lets BuildWith take over, from its last call, each service
// whose inputs are the same objects (the informer caches' pointers: a
// changed object is a new pointer) as then: its Service, its
// EndpointSlices, whether it is exported, and every Node and Pod (a Pod
// or Node change rebuilds every service, as they may touch any endpoint's
// locality or identity). A taken-over service shares its slices with the
// previous snapshot, so later stages can tell it did not change by
// identity. The zero value is ready; one goroutine at a time.
type BuildMemo struct {
	o        BuildOptions
	nodes    []*corev1.Node
	pods     []*corev1.Pod
	services map[[2]string]memoService
	// Reused and Built count the last call's services.
	Reused, Built int
}

type memoService struct {
	svc      *corev1.Service
	slices   []*discoveryv1.EndpointSlice
	exported bool
	built    model.Service
}

// BuildWith is Build, reusing what memo (nil: none) kept from its last
// call; the result is the same as Build's.
func BuildWith(objs *Objects, o BuildOptions, memo *BuildMemo) *model.Snapshot {
	s := &model.Snapshot{Cluster: o.Cluster, Network: o.Network, TrustDomain: o.TrustDomain}
	for _, ns := range objs.Namespaces {
		s.Namespaces = append(s.Namespaces, ns.Name)
		if strings.EqualFold(ns.Annotations[MTLSModeAnnotation], "PERMISSIVE") {
			s.PermissiveNamespaces = append(s.PermissiveNamespaces, ns.Name)
		}
	}
	exported := make(map[[2]string]bool, len(objs.ServiceExports))
	for _, e := range objs.ServiceExports {
		exported[[2]string{e.Namespace, e.Name}] = true
	}
	bySvc := make(map[[2]string][]*discoveryv1.EndpointSlice, len(objs.Services))
	for _, sl := range objs.EndpointSlices {
		if sl.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		key := [2]string{sl.Namespace, sl.Labels[discoveryv1.LabelServiceName]}
		bySvc[key] = append(bySvc[key], sl)
	}
	var prev map[[2]string]memoService
	if memo != nil {
		if memo.services != nil && memo.o == o && slices.Equal(memo.nodes, objs.Nodes) && slices.Equal(memo.pods, objs.Pods) {
			prev = memo.services
		}
		memo.o, memo.nodes, memo.pods = o, slices.Clone(objs.Nodes), slices.Clone(objs.Pods)
		memo.services = make(map[[2]string]memoService, len(objs.Services))
		memo.Reused, memo.Built = 0, 0
	}
	var ix *buildIndex // made when a service needs building
	if len(objs.Services) > 0 {
		s.Services = make([]model.Service, 0, len(objs.Services))
	}
	for _, svc := range objs.Services {
		key := [2]string{svc.Namespace, svc.Name}
		sls, exp := bySvc[key], exported[key]
		if m, ok := prev[key]; ok && m.svc == svc && m.exported == exp && slices.Equal(m.slices, sls) {
			s.Services = append(s.Services, m.built)
			memo.services[key] = m
			memo.Reused++
			continue
		}
		if ix == nil {
			ix = newBuildIndex(objs)
		}
		ms := buildService(svc, sls, exp, ix, o)
		s.Services = append(s.Services, ms)
		if memo != nil {
			memo.services[key] = memoService{svc: svc, slices: sls, exported: exp, built: ms}
			memo.Built++
		}
	}
	for _, p := range objs.AuthorizationPolicies {
		if mp, err := policy.ToModel(p); err == nil {
			s.Policies = append(s.Policies, mp)
		}
	}
	s.CanonicalizeAround()
	return s
}

// buildIndex finds an endpoint's Node and Pod.
type buildIndex struct {
	nodes    map[string]*corev1.Node
	pods     map[[2]string]*corev1.Pod
	podsByIP map[[2]string]*corev1.Pod
}

func newBuildIndex(objs *Objects) *buildIndex {
	ix := &buildIndex{
		nodes:    make(map[string]*corev1.Node, len(objs.Nodes)),
		pods:     make(map[[2]string]*corev1.Pod, len(objs.Pods)),
		podsByIP: make(map[[2]string]*corev1.Pod, len(objs.Pods)),
	}
	for _, n := range objs.Nodes {
		ix.nodes[n.Name] = n
	}
	for _, p := range objs.Pods {
		ix.pods[[2]string{p.Namespace, p.Name}] = p
		for _, ip := range p.Status.PodIPs {
			ix.podsByIP[[2]string{p.Namespace, ip.IP}] = p
		}
		if p.Status.PodIP != "" {
			ix.podsByIP[[2]string{p.Namespace, p.Status.PodIP}] = p
		}
	}
	return ix
}

// buildService builds one canonical service from its Service and its
// EndpointSlices (in order).
func buildService(svc *corev1.Service, sls []*discoveryv1.EndpointSlice, exported bool, ix *buildIndex, o BuildOptions) model.Service {
	ms := model.Service{Namespace: svc.Namespace, Name: svc.Name, Exported: exported, ClusterIP: serviceVIP(svc)}
	for _, p := range svc.Spec.Ports {
		proto := model.Protocol(p.Protocol)
		if proto == "" {
			proto = model.TCP
		}
		ms.Ports = append(ms.Ports, model.ServicePort{Name: p.Name, Port: uint32(p.Port), Protocol: proto, AppProtocol: deref(p.AppProtocol)})
	}
	for _, sl := range sls {
		var ports []model.EndpointPort
		for _, p := range sl.Ports {
			if p.Port == nil {
				continue
			}
			ports = append(ports, model.EndpointPort{Name: deref(p.Name), Port: uint32(*p.Port)})
		}
		for _, ep := range sl.Endpoints {
			var pod *corev1.Pod
			if r := ep.TargetRef; r != nil && r.Kind == "Pod" {
				ns := cmp.Or(r.Namespace, sl.Namespace)
				pod = ix.pods[[2]string{ns, r.Name}]
			}
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			serving := ready
			if ep.Conditions.Serving != nil {
				serving = *ep.Conditions.Serving
			}
			terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			for _, addr := range ep.Addresses {
				p := pod
				if p == nil {
					p = ix.podsByIP[[2]string{sl.Namespace, addr}]
				}
				me := model.Endpoint{
					Address: canonicalIP(addr), Ports: slices.Clone(ports),
					Cluster: o.Cluster, Network: o.Network,
					Locality: locality(ep, sl, p, ix.nodes),
					Ready:    ready, Serving: serving, Terminating: terminating, Weight: 1,
				}
				if p != nil {
					sa := cmp.Or(p.Spec.ServiceAccountName, "default")
					if o.TrustDomain != "" {
						me.Identity = model.SPIFFEID(o.TrustDomain, p.Namespace, sa)
					}
					me.Workload = "Pod " + p.Namespace + "/" + p.Name
				} else if r := ep.TargetRef; r != nil {
					me.Workload = r.Kind + " " + cmp.Or(r.Namespace, sl.Namespace) + "/" + r.Name
				}
				ms.Endpoints = append(ms.Endpoints, me)
			}
		}
	}
	ms.Canonicalize()
	// The same address and ports may appear in two slices of one service
	// (Kubernetes allows it during slice churn): keep one, preferring a
	// ready copy.
	ms.Endpoints = dedupEndpoints(ms.Endpoints)
	return ms
}

func dedupEndpoints(eps []model.Endpoint) []model.Endpoint {
	if len(eps) < 2 {
		return eps
	}
	out := eps[:1]
	for _, e := range eps[1:] {
		last := &out[len(out)-1]
		if e.Cluster == last.Cluster && e.Address == last.Address && slices.Equal(e.Ports, last.Ports) {
			if e.Ready && !last.Ready {
				*last = e
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

func locality(ep discoveryv1.Endpoint, sl *discoveryv1.EndpointSlice, pod *corev1.Pod, nodes map[string]*corev1.Node) model.Locality {
	nodeName := deref(ep.NodeName)
	if nodeName == "" && pod != nil {
		nodeName = pod.Spec.NodeName
	}
	if n := nodes[nodeName]; n != nil {
		l := model.Locality{Region: n.Labels[LabelRegion], Zone: n.Labels[LabelZone], SubZone: n.Labels[LabelSubZone]}
		if l != (model.Locality{}) {
			return l
		}
	}
	if pod != nil {
		if a, ok := pod.Annotations[AnnotationLocality]; ok {
			return ParseLocality(a)
		}
	}
	if a, ok := sl.Annotations[AnnotationLocality]; ok {
		return ParseLocality(a)
	}
	return model.Locality{Zone: deref(ep.Zone)}
}

// ParseLocality parses "region/zone/subzone" (trailing parts optional).
func ParseLocality(s string) model.Locality {
	parts := strings.SplitN(s, "/", 3)
	var l model.Locality
	l.Region = parts[0]
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.SubZone = parts[2]
	}
	return l
}

func canonicalIP(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

func deref[T any](p *T) T {
	if p == nil {
		var z T
		return z
	}
	return *p
}

// serviceVIP is a Service's spec.clusterIP in canonical form, or "" for a
// headless Service ("None") or one without an IP yet.
func serviceVIP(svc *corev1.Service) string {
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || ip.Zone() != "" {
		return ""
	}
	return ip.Unmap().String()
}

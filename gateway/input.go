package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/causewaymesh/causeway/internal/model"
)

// ControllerName is the GatewayClass spec.controllerName Causeway owns.
const ControllerName = "causeway.dev/gateway-controller"

// Input is everything the translation reads. Slices are read, never
// modified or retained; their order does not matter (the output is sorted).
// Objects are unique by kind, namespace and name, as in an apiserver
// (DecodeYAML refuses a file that defines one twice).
type Input struct {
	// ControllerName selects the GatewayClasses to own; "" means
	// ControllerName.
	ControllerName string
	// Now is the lastTransitionTime of every condition written. Callers
	// that update status keep the previous time of a condition whose
	// status did not change (meta.SetStatusCondition does).
	Now time.Time

	GatewayClasses []gatewayv1.GatewayClass
	Gateways       []gatewayv1.Gateway
	HTTPRoutes     []gatewayv1.HTTPRoute
	GRPCRoutes     []gatewayv1.GRPCRoute
	// TLSRoutes are gateway.networking.k8s.io/v1 (v1alpha2/v1alpha3
	// objects of the same shape convert field for field).
	TLSRoutes []gatewayv1.TLSRoute
	// ReferenceGrants are v1 (v1beta1.ReferenceGrant is the same type).
	ReferenceGrants []gatewayv1.ReferenceGrant
	Services        []corev1.Service
	ServiceImports  []mcsv1alpha1.ServiceImport
	// Namespaces are needed for allowedRoutes.namespaces.from: Selector
	// (labels only).
	Namespaces []corev1.Namespace
	// Secrets referenced by HTTPS listeners; metadata and type are read
	// and, when Data is not empty, tls.crt and tls.key must parse as a
	// certificate chain and key (else InvalidCertificateRef). A cache that
	// drops key material keeps Data nil for a good pair and non-empty
	// placeholders for a bad one (gateway/controller does).
	Secrets []corev1.Secret
}

// Output is the result of Translate.
type Output struct {
	// Routes, one table per attached parent, sorted by
	// model.CompareRouteTables.
	Routes []model.RouteTable
	// Statuses of the objects this controller owns, sorted by namespace
	// and name. A route appears when at least one of its parentRefs names
	// an owned Gateway or a mesh parent (Service, ServiceImport); its
	// Parents hold only those refs (controllerName = ours): merge them
	// with other controllers' entries when writing.
	GatewayClasses []GatewayClassStatus
	Gateways       []GatewayStatus
	HTTPRoutes     []RouteStatus
	GRPCRoutes     []RouteStatus
	TLSRoutes      []RouteStatus
}

// GatewayClassStatus is the status of one owned GatewayClass.
type GatewayClassStatus struct {
	Name   string
	Status gatewayv1.GatewayClassStatus
}

// GatewayStatus is the status of one owned Gateway (addresses are left
// to the controller, which knows where the ingress proxy listens).
type GatewayStatus struct {
	Namespace, Name string
	Status          gatewayv1.GatewayStatus
}

// RouteStatus is the status of one route, for this controller's parents.
type RouteStatus struct {
	Namespace, Name string
	Status          gatewayv1.RouteStatus
}

// DecodeYAML reads Kubernetes YAML (documents separated by "---") into an
// Input: GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute,
// ReferenceGrant (any gateway.networking.k8s.io version), v1 Service,
// Namespace, Secret, and multicluster.x-k8s.io ServiceImport. Documents are
// decoded strictly (unknown fields are errors); a missing
// metadata.namespace means "default" for namespaced kinds; other kinds
// (Deployments, ...) are skipped. Every problem is reported, each naming
// the document and object. The result has zero ControllerName and Now.
func DecodeYAML(data []byte) (Input, error) {
	var in Input
	var errs []error
	seen := map[string]int{} // object identity -> first document
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", doc, err))
			break
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		id, err := decodeDoc(raw, &in)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", doc, err))
			continue
		}
		if id == "" {
			continue
		}
		if first, dup := seen[id]; dup {
			// An apiserver stores one object per kind, namespace and
			// name; two would make the output depend on their order.
			errs = append(errs, fmt.Errorf("document %d: %s is already defined in document %d; remove or rename one of them", doc, id, first))
			continue
		}
		seen[id] = doc
	}
	return in, errors.Join(errs...)
}

// decodeDoc appends the object in raw to in and returns its identity
// ("Kind namespace/name"), or "" for a document it does not keep.
func decodeDoc(raw []byte, in *Input) (string, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name, Namespace string
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		return "", fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if head.Kind == "" && head.APIVersion == "" {
		return "", nil // comments only
	}
	group, _, _ := strings.Cut(head.APIVersion, "/")
	if !strings.Contains(head.APIVersion, "/") {
		group = ""
	}
	obj := head.Kind + " " + head.Metadata.Name
	strict := func(target any) error {
		if err := yaml.UnmarshalStrict(raw, target); err != nil {
			return fmt.Errorf("%s: does not decode as %s %s: %w", obj, head.APIVersion, head.Kind, err)
		}
		return nil
	}
	ident := func(m metav1.ObjectMeta) string {
		if m.Namespace == "" {
			return head.Kind + " " + m.Name
		}
		return head.Kind + " " + m.Namespace + "/" + m.Name
	}
	defNS := func(ns *string) {
		if *ns == "" {
			*ns = "default"
		}
	}
	switch {
	case group == gatewayv1.GroupName:
		switch head.Kind {
		case "GatewayClass":
			var o gatewayv1.GatewayClass
			if err := strict(&o); err != nil {
				return "", err
			}
			in.GatewayClasses = append(in.GatewayClasses, o)
			return ident(o.ObjectMeta), nil
		case "Gateway":
			var o gatewayv1.Gateway
			if err := strict(&o); err != nil {
				return "", err
			}
			defNS(&o.Namespace)
			in.Gateways = append(in.Gateways, o)
			return ident(o.ObjectMeta), nil
		case "HTTPRoute":
			var o gatewayv1.HTTPRoute
			if err := strict(&o); err != nil {
				return "", err
			}
			defNS(&o.Namespace)
			in.HTTPRoutes = append(in.HTTPRoutes, o)
			return ident(o.ObjectMeta), nil
		case "GRPCRoute":
			var o gatewayv1.GRPCRoute
			if err := strict(&o); err != nil {
				return "", err
			}
			defNS(&o.Namespace)
			in.GRPCRoutes = append(in.GRPCRoutes, o)
			return ident(o.ObjectMeta), nil
		case "TLSRoute":
			var o gatewayv1.TLSRoute
			if err := strict(&o); err != nil {
				return "", err
			}
			defNS(&o.Namespace)
			in.TLSRoutes = append(in.TLSRoutes, o)
			return ident(o.ObjectMeta), nil
		case "ReferenceGrant":
			var o gatewayv1.ReferenceGrant
			if err := strict(&o); err != nil {
				return "", err
			}
			defNS(&o.Namespace)
			in.ReferenceGrants = append(in.ReferenceGrants, o)
			return ident(o.ObjectMeta), nil
		}
	case group == mcsv1alpha1.GroupName && head.Kind == "ServiceImport":
		var o mcsv1alpha1.ServiceImport
		if err := strict(&o); err != nil {
			return "", err
		}
		defNS(&o.Namespace)
		in.ServiceImports = append(in.ServiceImports, o)
		return ident(o.ObjectMeta), nil
	case head.APIVersion == "v1":
		switch head.Kind {
		case "Service":
			var o corev1.Service
			if err := strict(&o); err != nil {
				return "", err
			}
			defNS(&o.Namespace)
			in.Services = append(in.Services, o)
			return ident(o.ObjectMeta), nil
		case "Namespace":
			var o corev1.Namespace
			if err := strict(&o); err != nil {
				return "", err
			}
			in.Namespaces = append(in.Namespaces, o)
			return ident(o.ObjectMeta), nil
		case "Secret":
			var o corev1.Secret
			if err := strict(&o); err != nil {
				return "", err
			}
			defNS(&o.Namespace)
			in.Secrets = append(in.Secrets, o)
			return ident(o.ObjectMeta), nil
		}
	}
	return "", nil
}

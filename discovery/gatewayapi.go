package discovery

import (
	"fmt"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	"sigs.k8s.io/yaml"
)

// CheckFile returns the problems the Folder finds in the manifest file
// name with contents data (none: the Folder applies it).
func CheckFile(name string, data []byte) []Problem {
	_, problems := decodeFile(name, data)
	return problems
}

// gatewayAPIObject returns, for a Gateway API kind (any
// gateway.networking.k8s.io version) or an MCS ServiceImport, an object to
// decode the document into, and whether the kind is namespaced. The Folder
// does not model them (controlplane.GatewayFolder reads them from the
// files the Folder accepted, FolderOptions.OnFiles) but checks that they
// decode, so that a bad one rejects its whole file.
func gatewayAPIObject(apiVersion, kind string) (target any, namespaced, ok bool) {
	group, _, _ := strings.Cut(apiVersion, "/")
	switch {
	case group == gatewayv1.GroupName && strings.Contains(apiVersion, "/"):
		switch kind {
		case "GatewayClass":
			return &gatewayv1.GatewayClass{}, false, true
		case "Gateway":
			return &gatewayv1.Gateway{}, true, true
		case "HTTPRoute":
			return &gatewayv1.HTTPRoute{}, true, true
		case "GRPCRoute":
			return &gatewayv1.GRPCRoute{}, true, true
		case "TLSRoute":
			return &gatewayv1.TLSRoute{}, true, true
		case "ReferenceGrant":
			return &gatewayv1.ReferenceGrant{}, true, true
		}
	case group == mcsv1alpha1.GroupName && kind == "ServiceImport":
		return &mcsv1alpha1.ServiceImport{}, true, true
	}
	return nil, false, false
}

// checkGatewayAPI decodes raw strictly as a Gateway API object or
// ServiceImport; it returns nil for other kinds.
func checkGatewayAPI(file string, doc int, raw []byte, apiVersion, kind, name, namespace string) []Problem {
	target, namespaced, ok := gatewayAPIObject(apiVersion, kind)
	if !ok {
		return nil
	}
	obj := kind + " " + name
	if namespaced {
		obj = kind + " " + namespace + "/" + name
	}
	if err := yaml.UnmarshalStrict(raw, target); err != nil {
		return []Problem{{File: file, Document: doc, Object: obj, Message: fmt.Sprintf("does not decode as %s %s: %v", apiVersion, kind, trimJSONNoise(err))}}
	}
	return nil
}

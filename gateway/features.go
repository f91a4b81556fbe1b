package gateway

import (
	"slices"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// gatewayFeatures are the Gateway API features Causeway's ingress path
// supports end to end: this translation produces them and the data plane's
// router (proxy/router, through proxy/xdsclient) executes them. Left out on
// purpose: TLSRoute (the data plane has no SNI routing on one listener
// yet), CORS, external auth, session persistence, listener isolation,
// static addresses, infrastructure, ListenerSets, destination port
// matching, h2c/websocket backend protocols.
var gatewayFeatures = []features.FeatureName{
	features.SupportGateway,
	features.SupportGatewayPort8080,
	features.SupportGRPCRoute,
	features.SupportGRPCRouteNamedRouteRule,
	features.SupportHTTPRoute,
	features.SupportHTTPRoute303RedirectStatusCode,
	features.SupportHTTPRoute307RedirectStatusCode,
	features.SupportHTTPRoute308RedirectStatusCode,
	features.SupportHTTPRouteBackendRequestHeaderModification,
	features.SupportHTTPRouteBackendTimeout,
	features.SupportHTTPRouteHostRewrite,
	features.SupportHTTPRouteMethodMatching,
	features.SupportHTTPRouteNamedRouteRule,
	features.SupportHTTPRouteParentRefPort,
	features.SupportHTTPRoutePathRedirect,
	features.SupportHTTPRoutePathRewrite,
	features.SupportHTTPRoutePortRedirect,
	features.SupportHTTPRouteQueryParamMatching,
	features.SupportHTTPRouteRequestMirror,
	features.SupportHTTPRouteRequestMultipleMirrors,
	features.SupportHTTPRouteRequestPercentageMirror,
	features.SupportHTTPRouteRequestTimeout,
	features.SupportHTTPRouteResponseHeaderModification,
	features.SupportHTTPRouteRetry,
	features.SupportHTTPRouteRetryBackendTimeout,
	features.SupportHTTPRouteRetryConnectionError,
	features.SupportHTTPRouteSchemeRedirect,
	features.SupportReferenceGrant,
	// TLSRoute: passthrough listeners on the ingress (GATEWAY-TLS core
	// passes, docs/conformance/gateway-tls-report.yaml).
	features.SupportTLSRoute,
}

// meshFeatures are the GAMMA features the translation supports. They are
// not written to GatewayClass status (mesh conformance reads them from the
// test flags); MeshConsumerRoute needs the xDS translation to pick
// consumer tables by the node's namespace.
var meshFeatures = []features.FeatureName{
	features.SupportMesh,
	features.SupportMeshHTTPRouteBackendRequestHeaderModification,
	features.SupportMeshHTTPRouteNamedRouteRule,
	features.SupportMeshHTTPRouteQueryParamMatching,
	features.SupportMeshHTTPRouteRedirectPath,
	features.SupportMeshHTTPRouteRedirectPort,
	features.SupportMeshHTTPRouteRewritePath,
	features.SupportMeshHTTPRouteSchemeRedirect,
}

// SupportedFeatures is the sorted status.supportedFeatures of an accepted
// GatewayClass.
func SupportedFeatures() []gatewayv1.SupportedFeature {
	out := make([]gatewayv1.SupportedFeature, len(gatewayFeatures))
	for i, f := range gatewayFeatures {
		out[i] = gatewayv1.SupportedFeature{Name: gatewayv1.FeatureName(f)}
	}
	slices.SortFunc(out, func(a, b gatewayv1.SupportedFeature) int { return compareStr(string(a.Name), string(b.Name)) })
	return out
}

// SupportedMeshFeatures is the sorted list of GAMMA features supported.
func SupportedMeshFeatures() []string {
	out := make([]string, len(meshFeatures))
	for i, f := range meshFeatures {
		out[i] = string(f)
	}
	slices.Sort(out)
	return out
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

package spire

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// ServerID is the SPIFFE ID a SPIRE server presents on its API:
// spiffe://<td>/spire/server.
func ServerID(td spiffeid.TrustDomain) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "spire", "server")
}

// Dial returns a gRPC client connection to the SPIRE server API at target
// (host:port). Causeway presents the X509-SVID of svid (nil: none, enough for
// Bundle.GetBundle only) and accepts only a server whose X509-SVID verifies
// against bundles and has ID serverID (see ServerID). The connection is lazy:
// the first RPC connects. Close it when done.
func Dial(target string, svid x509svid.Source, bundles x509bundle.Source, serverID spiffeid.ID, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	switch {
	case target == "":
		return nil, errors.New("spire: Dial: target is empty; pass the SPIRE server address as host:port")
	case bundles == nil:
		return nil, errors.New("spire: Dial: bundles is nil; pass the SPIRE trust domain's bundle to verify the server")
	case serverID.IsZero():
		return nil, errors.New("spire: Dial: serverID is empty; use spire.ServerID(trustDomain)")
	}
	auth := tlsconfig.AuthorizeID(serverID)
	tc := tlsconfig.TLSClientConfig(bundles, auth)
	if svid != nil {
		tc = tlsconfig.MTLSClientConfig(svid, bundles, auth)
	}
	cc, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("spire: Dial %s: %w", target, err)
	}
	return cc, nil
}

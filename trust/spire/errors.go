package spire

import (
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors, for errors.Is. Errors from a SPIRE RPC also keep the gRPC
// status in their chain, so status.Code(err) gives SPIRE's code.
var (
	// ErrUnavailable: the SPIRE server could not be reached (gRPC
	// Unavailable or DeadlineExceeded).
	ErrUnavailable = errors.New("SPIRE server unavailable")
	// ErrPermissionDenied: SPIRE refused the caller (gRPC PermissionDenied
	// or Unauthenticated).
	ErrPermissionDenied = errors.New("SPIRE server denied permission")
	// ErrMalformedCA: NewDownstreamX509CA answered with something that is not
	// a usable CA for the trust domain and key Causeway asked for.
	ErrMalformedCA = errors.New("malformed downstream CA from SPIRE")
	// ErrMalformedBundle: a bundle could not be converted between SPIRE's
	// types.Bundle and go-spiffe's spiffebundle.Bundle.
	ErrMalformedBundle = errors.New("malformed bundle")
	// ErrMalformedResponse: a SPIRE response broke the documented shape of
	// its RPC (for example a batch answer with the wrong number of results).
	ErrMalformedResponse = errors.New("malformed response from SPIRE")
)

// Fix hints, named by the RPC's authorization rule in the SPIRE API.
const (
	hintDownstream = "the SPIRE API requires the caller to present a downstream X509-SVID: register Causeway's SPIFFE ID with " +
		"`spire-server entry create -downstream -spiffeID <causeway id> ...` and dial with that SVID"
	hintAdmin = "the SPIRE API requires the caller to be local or to present an admin X509-SVID: register Causeway's SPIFFE ID with " +
		"`spire-server entry create -admin ...` and dial with that SVID"
	hintUnavailable = "check the SPIRE server address, that it is running, and that its server SVID verifies against the bundle Causeway dials with"
)

// rpcError wraps the error of a failed SPIRE RPC with a sentinel and a fix.
// The gRPC status stays in the chain.
func rpcError(rpc string, conn grpc.ClientConnInterface, hint string, err error) error {
	where := ""
	if t, ok := conn.(interface{ Target() string }); ok {
		where = " at " + t.Target()
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("spire: %s%s: %w: %w; %s", rpc, where, ErrUnavailable, err, hintUnavailable)
	case codes.PermissionDenied, codes.Unauthenticated:
		return fmt.Errorf("spire: %s%s: %w: %w; %s", rpc, where, ErrPermissionDenied, err, hint)
	default:
		return fmt.Errorf("spire: %s%s: %w", rpc, where, err)
	}
}

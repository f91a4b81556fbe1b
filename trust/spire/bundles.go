package spire

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxListPages bounds ListFederatedBundles against a server whose page
// tokens never end.
const maxListPages = 10000

// BundleFromProto converts SPIRE's types.Bundle into a spiffebundle.Bundle:
// X.509, JWT and WIT authorities, the refresh hint (seconds; 0 means no hint)
// and the sequence number (always set, as SPIRE always has one). SPIRE's
// tainted flags and JWT/WIT expiry times have no place in spiffebundle and are
// dropped; a tainted authority stays trusted, as it does in SPIRE until it is
// revoked. Errors wrap ErrMalformedBundle and name the trust domain and field.
func BundleFromProto(pb *types.Bundle) (*spiffebundle.Bundle, error) {
	if pb == nil {
		return nil, fmt.Errorf("%w: bundle is nil", ErrMalformedBundle)
	}
	td, err := spiffeid.TrustDomainFromString(pb.GetTrustDomain())
	if err != nil {
		return nil, fmt.Errorf("%w: trust_domain %q: %w", ErrMalformedBundle, pb.GetTrustDomain(), err)
	}
	b := spiffebundle.New(td)
	for i, xa := range pb.GetX509Authorities() {
		c, err := x509.ParseCertificate(xa.GetAsn1())
		if err != nil {
			return nil, fmt.Errorf("%w: bundle of trust domain %q: x509_authorities[%d] is not a DER X.509 certificate: %w", ErrMalformedBundle, td.Name(), i, err)
		}
		b.AddX509Authority(c)
	}
	jwt, err := keysFromProto(td, "jwt_authorities", pb.GetJwtAuthorities())
	if err != nil {
		return nil, err
	}
	b.SetJWTAuthorities(jwt)
	wit, err := keysFromProto(td, "wit_authorities", pb.GetWitAuthorities())
	if err != nil {
		return nil, err
	}
	b.SetWITAuthorities(wit)
	switch hint := pb.GetRefreshHint(); {
	case hint < 0:
		return nil, fmt.Errorf("%w: bundle of trust domain %q: refresh_hint is %d seconds; it must be 0 (no hint) or positive", ErrMalformedBundle, td.Name(), hint)
	case hint > math.MaxInt64/int64(time.Second):
		return nil, fmt.Errorf("%w: bundle of trust domain %q: refresh_hint of %d seconds overflows a duration", ErrMalformedBundle, td.Name(), hint)
	case hint > 0:
		b.SetRefreshHint(time.Duration(hint) * time.Second)
	}
	b.SetSequenceNumber(pb.GetSequenceNumber())
	return b, nil
}

// protoKey is what types.JWTKey and types.WITKey share.
type protoKey interface {
	GetPublicKey() []byte
	GetKeyId() string
}

func keysFromProto[K protoKey](td spiffeid.TrustDomain, field string, keys []K) (map[string]crypto.PublicKey, error) {
	out := make(map[string]crypto.PublicKey, len(keys))
	for i, k := range keys {
		id := k.GetKeyId()
		if id == "" {
			return nil, fmt.Errorf("%w: bundle of trust domain %q: %s[%d] has an empty key_id", ErrMalformedBundle, td.Name(), field, i)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("%w: bundle of trust domain %q: %s[%d] repeats key_id %q", ErrMalformedBundle, td.Name(), field, i, id)
		}
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		if err != nil {
			return nil, fmt.Errorf("%w: bundle of trust domain %q: %s[%d] (key_id %q) is not a PKIX public key: %w", ErrMalformedBundle, td.Name(), field, i, id, err)
		}
		out[id] = pub
	}
	return out, nil
}

// BundleToProto converts a spiffebundle.Bundle into SPIRE's types.Bundle.
// JWT and WIT authorities are sorted by key ID, so equal bundles give equal
// messages. A refresh hint is rounded up to whole seconds; an unset hint or
// sequence number is sent as 0. Nothing is marked tainted.
func BundleToProto(b *spiffebundle.Bundle) (*types.Bundle, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: bundle is nil", ErrMalformedBundle)
	}
	td := b.TrustDomain()
	if td.IsZero() {
		return nil, fmt.Errorf("%w: bundle has no trust domain", ErrMalformedBundle)
	}
	xas := b.X509Authorities()
	pb := &types.Bundle{TrustDomain: td.Name(), X509Authorities: make([]*types.X509Certificate, 0, len(xas))}
	for _, c := range xas {
		pb.X509Authorities = append(pb.X509Authorities, &types.X509Certificate{Asn1: c.Raw})
	}
	jwt, err := keysToProto(td, "JWT", b.JWTAuthorities())
	if err != nil {
		return nil, err
	}
	for _, k := range jwt {
		pb.JwtAuthorities = append(pb.JwtAuthorities, &types.JWTKey{KeyId: k.id, PublicKey: k.der})
	}
	wit, err := keysToProto(td, "WIT", b.WITAuthorities())
	if err != nil {
		return nil, err
	}
	for _, k := range wit {
		pb.WitAuthorities = append(pb.WitAuthorities, &types.WITKey{KeyId: k.id, PublicKey: k.der})
	}
	if hint, ok := b.RefreshHint(); ok {
		if hint < 0 {
			return nil, fmt.Errorf("%w: bundle of trust domain %q: refresh hint %v is negative", ErrMalformedBundle, td.Name(), hint)
		}
		pb.RefreshHint = int64((hint + time.Second - 1) / time.Second)
	}
	if seq, ok := b.SequenceNumber(); ok {
		pb.SequenceNumber = seq
	}
	return pb, nil
}

type derKey struct {
	id  string
	der []byte
}

func keysToProto(td spiffeid.TrustDomain, kind string, keys map[string]crypto.PublicKey) ([]derKey, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	out := make([]derKey, 0, len(keys))
	for id, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: bundle of trust domain %q: %s authority %q (%T) cannot be PKIX encoded: %w", ErrMalformedBundle, td.Name(), kind, id, k, err)
		}
		out = append(out, derKey{id: id, der: der})
	}
	slices.SortFunc(out, func(a, b derKey) int { return strings.Compare(a.id, b.id) })
	return out, nil
}

// BundleError is SPIRE's (or Causeway's) refusal of one bundle in a batch.
type BundleError struct {
	TrustDomain string     // the trust domain of the bundle, as sent
	Code        codes.Code // SPIRE's status code for it
	Message     string     // SPIRE's status message
	// Local is true when Causeway refused the bundle before sending it.
	Local bool
}

func (e *BundleError) Error() string {
	who := "SPIRE"
	if e.Local {
		who = "Causeway (not sent to SPIRE)"
	}
	msg := fmt.Sprintf("spire: federated bundle of trust domain %q refused by %s: %s: %s", e.TrustDomain, who, e.Code, e.Message)
	switch e.Code {
	case codes.PermissionDenied, codes.Unauthenticated:
		msg += "; " + hintAdmin
	case codes.InvalidArgument:
		msg += "; the trust domain must be a valid name other than SPIRE's own, and every authority must parse"
	}
	return msg
}

// GRPCStatus lets status.Code and status.FromError read the code.
func (e *BundleError) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// PushError reports the bundles of one SetFederatedBundles call that were
// not stored. The other bundles of the call were stored.
type PushError struct {
	Failed []*BundleError // in request order
	Total  int            // bundles in the call
}

func (e *PushError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "spire: Bundle.BatchSetFederatedBundle: %d of %d bundles not stored", len(e.Failed), e.Total)
	for _, f := range e.Failed {
		sb.WriteString("\n\t")
		sb.WriteString(f.Error())
	}
	return sb.String()
}

// Unwrap returns the per-bundle errors, for errors.As.
func (e *PushError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f
	}
	return out
}

// BundleClient syncs bundles with a SPIRE server through its Bundle API.
// It is stateless and safe for concurrent use.
type BundleClient struct {
	td   spiffeid.TrustDomain
	conn grpc.ClientConnInterface
	c    bundlev1.BundleClient
}

// NewBundleClient returns a client of the Bundle API of the SPIRE server of
// trust domain td reached through conn. Listing and pushing federated bundles
// need conn to present an admin X509-SVID.
func NewBundleClient(conn grpc.ClientConnInterface, td spiffeid.TrustDomain) (*BundleClient, error) {
	if conn == nil {
		return nil, errors.New("spire: NewBundleClient: conn is nil; pass a connection from spire.Dial")
	}
	if td.IsZero() {
		return nil, errors.New("spire: NewBundleClient: trust domain is empty; pass the SPIRE server's trust domain")
	}
	return &BundleClient{td: td, conn: conn, c: bundlev1.NewBundleClient(conn)}, nil
}

// GetBundle pulls SPIRE's own bundle (Bundle.GetBundle, which needs no
// authentication). It must be for the client's trust domain.
func (c *BundleClient) GetBundle(ctx context.Context) (*spiffebundle.Bundle, error) {
	const rpc = "Bundle.GetBundle"
	pb, err := c.c.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return nil, rpcError(rpc, c.conn, hintUnavailable, err)
	}
	b, err := BundleFromProto(pb)
	if err != nil {
		return nil, fmt.Errorf("spire: %s: %w", rpc, err)
	}
	if b.TrustDomain() != c.td {
		return nil, fmt.Errorf("spire: %s: %w: SPIRE returned the bundle of trust domain %q, Causeway expects %q; check which SPIRE server the connection reaches",
			rpc, ErrMalformedResponse, b.TrustDomain().Name(), c.td.Name())
	}
	return b, nil
}

// ListFederatedBundles pulls every federated bundle SPIRE holds (all pages of
// Bundle.ListFederatedBundles), sorted by trust domain. A bundle that does not
// convert does not hide the others: they are returned together with an error
// that names each bad one (errors.Is ErrMalformedBundle).
func (c *BundleClient) ListFederatedBundles(ctx context.Context) ([]*spiffebundle.Bundle, error) {
	const rpc = "Bundle.ListFederatedBundles"
	var (
		out  []*spiffebundle.Bundle
		bad  []error
		seen = map[string]bool{}
		tok  string
	)
	for page := 0; ; page++ {
		if page == maxListPages {
			return nil, fmt.Errorf("spire: %s: %w: more than %d pages; the server's page tokens do not end", rpc, ErrMalformedResponse, maxListPages)
		}
		resp, err := c.c.ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{PageToken: tok})
		if err != nil {
			return nil, rpcError(rpc, c.conn, hintAdmin, err)
		}
		for _, pb := range resp.GetBundles() {
			b, err := BundleFromProto(pb)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			if b.TrustDomain() == c.td || seen[b.TrustDomain().Name()] {
				continue
			}
			seen[b.TrustDomain().Name()] = true
			out = append(out, b)
		}
		next := resp.GetNextPageToken()
		if next == "" {
			break
		}
		if next == tok {
			return nil, fmt.Errorf("spire: %s: %w: next_page_token %q repeats the request's token", rpc, ErrMalformedResponse, next)
		}
		tok = next
	}
	slices.SortFunc(out, func(a, b *spiffebundle.Bundle) int {
		return strings.Compare(a.TrustDomain().Name(), b.TrustDomain().Name())
	})
	if len(bad) > 0 {
		return out, fmt.Errorf("spire: %s: %d bundles skipped: %w", rpc, len(bad), errors.Join(bad...))
	}
	return out, nil
}

// SetFederatedBundles pushes bundles Causeway learned from its peers into
// SPIRE with Bundle.BatchSetFederatedBundle. That RPC is documented as an
// upsert, so it stores a bundle whether SPIRE has one for the trust domain or
// not (BatchCreate would fail with AlreadyExists for known trust domains and
// BatchUpdate with NotFound for new ones). SPIRE's own trust domain and
// bundles that do not convert are refused before sending. It returns nil if
// every bundle was stored, a *PushError naming each refused bundle with its
// status otherwise, or an RPC error if the call itself failed (nothing stored).
func (c *BundleClient) SetFederatedBundles(ctx context.Context, bundles ...*spiffebundle.Bundle) error {
	const rpc = "Bundle.BatchSetFederatedBundle"
	type failure struct {
		at  int // index in bundles
		err *BundleError
	}
	var (
		send   = make([]*types.Bundle, 0, len(bundles))
		sentAt = make([]int, 0, len(bundles)) // index in bundles of send[i]
		failed []failure
		seen   = make(map[spiffeid.TrustDomain]int, len(bundles))
	)
	for i, b := range bundles {
		if b == nil {
			return fmt.Errorf("spire: SetFederatedBundles: bundles[%d] is nil", i)
		}
		td := b.TrustDomain()
		if j, dup := seen[td]; dup {
			return fmt.Errorf("spire: SetFederatedBundles: bundles[%d] and bundles[%d] are both for trust domain %q; push one bundle per trust domain", j, i, td.Name())
		}
		seen[td] = i
		if td == c.td {
			failed = append(failed, failure{i, &BundleError{TrustDomain: td.Name(), Code: codes.InvalidArgument, Local: true,
				Message: "this is SPIRE's own trust domain; only Bundle.AppendBundle changes it, a federated bundle for it is refused"}})
			continue
		}
		pb, err := BundleToProto(b)
		if err != nil {
			failed = append(failed, failure{i, &BundleError{TrustDomain: td.Name(), Code: codes.InvalidArgument, Local: true, Message: err.Error()}})
			continue
		}
		send = append(send, pb)
		sentAt = append(sentAt, i)
	}
	if len(send) > 0 {
		// Ask for the trust domain only: Causeway does not need the bundles back.
		resp, err := c.c.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: send, OutputMask: &types.BundleMask{}})
		if err != nil {
			return rpcError(rpc, c.conn, hintAdmin, err)
		}
		res := resp.GetResults()
		if len(res) != len(send) {
			return fmt.Errorf("spire: %s: %w: %d results for %d bundles; the RPC returns one result per bundle in order", rpc, ErrMalformedResponse, len(res), len(send))
		}
		for i, r := range res {
			if code := codes.Code(r.GetStatus().GetCode()); code != codes.OK {
				failed = append(failed, failure{sentAt[i], &BundleError{TrustDomain: send[i].GetTrustDomain(), Code: code, Message: r.GetStatus().GetMessage()}})
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	slices.SortFunc(failed, func(a, b failure) int { return a.at - b.at }) // request order
	pe := &PushError{Failed: make([]*BundleError, len(failed)), Total: len(bundles)}
	for i, f := range failed {
		pe.Failed[i] = f.err
	}
	return pe
}

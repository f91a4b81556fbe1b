package k8sauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// DefaultAudience is the token audience the issuer expects unless told
// otherwise. Workloads mount a projected service-account token with this
// audience.
const DefaultAudience = "causeway"

// serviceAccountPrefix is how the apiserver names service-account users.
const serviceAccountPrefix = "system:serviceaccount:"

// Options configures an Authenticator. The zero value is valid.
type Options struct {
	// Audience is the audience the token must carry; default
	// DefaultAudience.
	Audience string
}

// Authenticator checks projected service-account tokens with the
// TokenReview API (authentication.k8s.io/v1) and maps
// system:serviceaccount:<ns>:<sa> to spiffe://<td>/ns/<ns>/sa/<sa>. It is
// immutable and safe for concurrent use.
type Authenticator struct {
	reviews  authnv1client.TokenReviewInterface
	td       spiffeid.TrustDomain
	audience string
}

// New returns an Authenticator for trust domain td that reviews tokens
// through client, e.g. clientset.AuthenticationV1(). The identity behind
// client needs RBAC to create tokenreviews (the system:auth-delegator
// ClusterRole grants it).
func New(client authnv1client.TokenReviewsGetter, td spiffeid.TrustDomain, opts Options) (*Authenticator, error) {
	if client == nil {
		return nil, errors.New("k8sauth: New: client is nil; pass clientset.AuthenticationV1()")
	}
	if td.IsZero() {
		return nil, errors.New("k8sauth: New: trust domain is empty")
	}
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	return &Authenticator{reviews: client.TokenReviews(), td: td, audience: opts.Audience}, nil
}

// Audience is the audience tokens must carry.
func (a *Authenticator) Audience() string { return a.audience }

// Authenticate implements issuer.Authenticator. Tokens that the apiserver
// rejects, that lack the audience, or that belong to a user who is not a
// service account wrap issuer.ErrInvalidToken; a failed review call wraps
// issuer.ErrAuthenticatorUnavailable. No error contains the token.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (spiffeid.ID, error) {
	tr, err := a.reviews.Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: TokenReview at the Kubernetes apiserver failed: %w", issuer.ErrAuthenticatorUnavailable, err)
	}
	st := tr.Status
	if !st.Authenticated {
		why := st.Error
		if why == "" {
			why = "the apiserver did not authenticate it"
		}
		return spiffeid.ID{}, fmt.Errorf("%w: Kubernetes TokenReview for audience %q: %s", issuer.ErrInvalidToken, a.audience, why)
	}
	// A reviewer that ignores audiences would return none: insist on ours,
	// as the TokenReview API advises.
	if !slices.Contains(st.Audiences, a.audience) {
		return spiffeid.ID{}, fmt.Errorf("%w: the token is not valid for audience %q (the review returned audiences %q); mount a projected token with audience %q",
			issuer.ErrInvalidToken, a.audience, st.Audiences, a.audience)
	}
	ns, sa, err := parseServiceAccount(st.User.Username)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %w", issuer.ErrInvalidToken, err)
	}
	id, err := trust.WorkloadID(a.td, ns, sa)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %w", issuer.ErrInvalidToken, err)
	}
	return id, nil
}

// parseServiceAccount splits system:serviceaccount:<ns>:<sa>.
func parseServiceAccount(user string) (ns, sa string, err error) {
	rest, ok := strings.CutPrefix(user, serviceAccountPrefix)
	if ok {
		ns, sa, ok = strings.Cut(rest, ":")
	}
	if !ok || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return "", "", fmt.Errorf("the token authenticates user %q, which is not a service account (%s<namespace>:<name>)", user, serviceAccountPrefix)
	}
	return ns, sa, nil
}

package controlplane

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// PeerFromObject turns a Peer object into the peer config the `--peer`
// flag makes. origin names the object for messages ("Peer west
// (peers/west.yaml)"). The Peer is validated here (peerapi.Validate);
// nothing deeper re-checks it.
func PeerFromObject(p *peerapi.Peer, origin string) (FederationPeer, error) {
	if err := p.Validate(); err != nil {
		return FederationPeer{}, fmt.Errorf("%s: %w", origin, err)
	}
	s := &p.Spec
	td := spiffeid.RequireTrustDomainFromString(s.TrustDomain) // validated
	fp := FederationPeer{Cluster: s.Cluster, TrustDomain: td, NoExport: !s.Exports(), Origin: origin}
	if s.Imports() {
		fp.Address = s.Federation
	}
	if be := s.BundleEndpoint; be != nil {
		fp.BundleURL = be.URL
		if be.SPIFFEID != "" {
			fp.BundleEndpointID = spiffeid.RequireFromString(be.SPIFFEID)
		}
		if s.TrustBundle != "" && be.Profile != peerapi.ProfileHTTPSWeb {
			b, err := x509bundle.Parse(td, []byte(s.TrustBundle))
			if err != nil {
				return FederationPeer{}, fmt.Errorf("%s: %w", origin, &peerapi.FieldError{Field: "spec.trustBundle", Reason: err.Error()})
			}
			fp.Bootstrap = spiffebundle.FromX509Bundle(b)
		}
	}
	if f := s.Export; f != nil && s.Exports() {
		fp.Filter.Namespaces = slices.Clone(f.Namespaces)
		for _, n := range f.Services {
			fp.Filter.Names = append(fp.Filter.Names, federation.NamespacedName{Namespace: n.Namespace, Name: n.Name})
		}
	}
	return fp, nil
}

// PeerProblem is why a Peer object was not applied.
type PeerProblem struct {
	// Name is the Peer's metadata.name; Origin names it for messages.
	Name, Origin string
	Err          error
}

func (p PeerProblem) Error() string { return p.Err.Error() }

// CombinePeers is the peers of the --peer flags and of the Peer objects
// together. A Peer that does not validate, or names a cluster that a flag
// or another Peer already names (the error names both), is left out and
// reported; the others are kept, so one bad object never takes the rest of
// the federation down. Objects are taken in name order.
func CombinePeers(cluster string, own spiffeid.TrustDomain, flags []FederationPeer, objs []*peerapi.Peer, origin func(*peerapi.Peer) string) ([]FederationPeer, []PeerProblem) {
	out := slices.Clone(flags)
	by := map[string]string{}
	for _, p := range flags {
		by[p.Cluster] = p.origin()
	}
	objs = slices.Clone(objs)
	slices.SortFunc(objs, func(a, b *peerapi.Peer) int { return cmp.Compare(a.Name, b.Name) })
	var problems []PeerProblem
	for _, o := range objs {
		org := origin(o)
		fp, err := PeerFromObject(o, org)
		if err == nil {
			if first, dup := by[fp.Cluster]; dup {
				err = fmt.Errorf("%s: spec.cluster: %q is already linked by %s; keep one link per peer cluster (remove the flag or one of the objects)", org, fp.Cluster, first)
			}
		}
		if err == nil {
			// The Peer alone against the peers kept so far: the same checks
			// as NewFederation, so a bad one is refused here, not there.
			err = checkPeers(cluster, own, append(slices.Clone(out), fp))
			if err != nil {
				err = fmt.Errorf("%s: %w", org, err)
			}
		}
		if err != nil {
			problems = append(problems, PeerProblem{Name: o.Name, Origin: org, Err: err})
			continue
		}
		by[fp.Cluster] = org
		out = append(out, fp)
	}
	return out, problems
}

// PeerLinkStatus is the observed state of the link to one peer.
type PeerLinkStatus struct {
	Peer FederationPeer
	// Import is the import's state; nil if this cluster does not import
	// from the peer.
	Import *federation.PeerStatus
	// Bundle is the peer trust domain's bundle; nil when the peer shares
	// this trust domain.
	Bundle *bundles.Status
	// Exported is how many services this cluster exports to the peer
	// (after its filter); 0 if it may not import.
	Exported int
}

// PeerLinks is the state of every configured link, sorted by cluster.
func (f *Federation) PeerLinks() []PeerLinkStatus {
	ims := f.ImportStatus()
	bs := f.BundleStatus()
	local := f.local.Load()
	var out []PeerLinkStatus
	for _, p := range f.Peers() {
		ls := PeerLinkStatus{Peer: p}
		for i := range ims {
			if ims[i].Cluster == p.Cluster {
				ls.Import = &ims[i]
			}
		}
		for i := range bs {
			if bs[i].TrustDomain == p.TrustDomain {
				ls.Bundle = &bs[i]
			}
		}
		if !p.NoExport && local != nil {
			for i := range local.Services {
				sv := &local.Services[i]
				if sv.Exported && p.Filter.Admits(federation.NamespacedName{Namespace: sv.Namespace, Name: sv.Name}) {
					ls.Exported++
				}
			}
		}
		out = append(out, ls)
	}
	slices.SortFunc(out, func(a, b PeerLinkStatus) int { return cmp.Compare(a.Peer.Cluster, b.Peer.Cluster) })
	return out
}

// PeerObjectStatus is the status the control plane writes on a Peer
// object: ls is its link's state (nil when the Peer was not applied, then
// problem says why). Conditions keep their LastTransitionTime from old
// while their status does not change.
func PeerObjectStatus(old *peerapi.PeerStatus, generation int64, ls *PeerLinkStatus, problem error, now time.Time) peerapi.PeerStatus {
	st := peerapi.PeerStatus{ObservedGeneration: generation}
	cond := func(t string, s metav1.ConditionStatus, reason, msg string) {
		c := metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: generation, LastTransitionTime: metav1.NewTime(now)}
		if old != nil {
			for _, o := range old.Conditions {
				if o.Type == t && o.Status == s {
					c.LastTransitionTime = o.LastTransitionTime
				}
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	if ls == nil {
		msg := "not applied"
		if problem != nil {
			msg = problem.Error()
		}
		reason := "Invalid"
		var fe *peerapi.FieldError
		if problem != nil && !errors.As(problem, &fe) {
			reason = "Conflict"
		}
		cond(peerapi.ConditionAccepted, metav1.ConditionFalse, reason, truncate(msg))
		st.LastError = truncate(msg)
		return st
	}
	cond(peerapi.ConditionAccepted, metav1.ConditionTrue, "Applied", "the link is configured")
	var lastErr error
	switch im := ls.Import; {
	case im == nil:
		cond(peerapi.ConditionConnected, metav1.ConditionUnknown, "ExportOnly", "this cluster does not import from the peer (direction Export)")
	case im.Connected:
		cond(peerapi.ConditionConnected, metav1.ConditionTrue, "Synced", fmt.Sprintf("importing from %s", im.Address))
	default:
		msg := fmt.Sprintf("connecting to %s", im.Address)
		if im.LastError != nil {
			msg += ": " + im.LastError.Error()
		}
		cond(peerapi.ConditionConnected, metav1.ConditionFalse, "Disconnected", truncate(msg))
	}
	if im := ls.Import; im != nil {
		switch {
		case im.Stale:
			cond(peerapi.ConditionStale, metav1.ConditionTrue, "Partitioned", "last-known-good imports since "+im.StaleSince.UTC().Format(time.RFC3339))
		case im.Withdrawn:
			cond(peerapi.ConditionStale, metav1.ConditionFalse, "Withdrawn", "the staleness window ended; the peer's imports were withdrawn")
		default:
			cond(peerapi.ConditionStale, metav1.ConditionFalse, "Fresh", "")
		}
		if !im.LastSync.IsZero() {
			t := metav1.NewTime(im.LastSync)
			st.LastSync = &t
		}
		st.ImportedServices, st.ImportedEndpoints = int32(im.Services), int32(im.Endpoints)
		lastErr = im.LastError
	}
	switch b := ls.Bundle; {
	case b == nil:
		cond(peerapi.ConditionBundleHealthy, metav1.ConditionTrue, "SameTrustDomain", "the peer shares this cluster's trust domain")
	case b.Healthy:
		cond(peerapi.ConditionBundleHealthy, metav1.ConditionTrue, "Fresh", "expires "+b.Expiry.UTC().Format(time.RFC3339))
	default:
		msg := "not fetched yet"
		if b.LastError != nil {
			msg = b.LastError.Error()
		}
		cond(peerapi.ConditionBundleHealthy, metav1.ConditionFalse, "FetchFailed", truncate(msg))
	}
	if b := ls.Bundle; b != nil {
		if b.HasSequence {
			st.BundleSequence = int64(b.Sequence)
		}
		if lastErr == nil {
			lastErr = b.LastError
		}
	}
	st.ExportedServices = int32(ls.Exported)
	if lastErr != nil {
		st.LastError = truncate(lastErr.Error())
	}
	return st
}

func truncate(s string) string {
	if len(s) > 1024 {
		return s[:1021] + "..."
	}
	return s
}

package discovery

import (
	"cmp"
	"errors"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/causewaymesh/causeway/federation/peerapi"
)

// validatePeer maps peerapi.Validate's field errors to FieldProblems.
func validatePeer(p *peerapi.Peer) []FieldProblem {
	var out []FieldProblem
	for _, e := range unjoin(p.Validate()) {
		if e == nil {
			continue
		}
		var fe *peerapi.FieldError
		if errors.As(e, &fe) {
			out = append(out, FieldProblem{Field: fe.Field, Reason: fe.Reason})
			continue
		}
		out = append(out, FieldProblem{Field: "spec", Reason: e.Error()})
	}
	return out
}

// setPeers hands the folder's Peers to OnPeers when they changed (always
// on the first scan).
func (f *Folder) setPeers(peers []*peerapi.Peer) {
	peers = slices.Clone(peers)
	if peers == nil {
		peers = []*peerapi.Peer{}
	}
	slices.SortFunc(peers, func(a, b *peerapi.Peer) int { return cmp.Compare(a.Name, b.Name) })
	if f.peers != nil && equality.Semantic.DeepEqual(f.peers, peers) {
		return
	}
	f.peers = peers
	if f.o.OnPeers != nil {
		f.o.OnPeers(slices.Clone(peers))
	}
}

package federation

import (
	"errors"
	"fmt"
)

// Reason is why a peer or a message was refused; it is the reason label of
// the refusal metrics.
type Reason string

// Refusal reasons.
const (
	// ReasonWrongTrustDomain: the peer's SPIFFE ID is not in a configured
	// peer trust domain (or not in the one configured for that peer).
	ReasonWrongTrustDomain Reason = "wrong_trust_domain"
	// ReasonUnknownPeer: right trust domain, but the ID is not the control
	// plane's or the cluster name is not a configured peer.
	ReasonUnknownPeer Reason = "unknown_peer"
	// ReasonSequence: a sequence went backwards or was replayed.
	ReasonSequence Reason = "sequence"
	// ReasonOversized: a message exceeded the maximum size.
	ReasonOversized Reason = "oversized"
	// ReasonMalformed: a message does not follow the protocol or holds an
	// invalid field (for example an endpoint with a bad address).
	ReasonMalformed Reason = "malformed"
	// ReasonRefusedByPeer: the peer refused us (its message says why).
	ReasonRefusedByPeer Reason = "refused_by_peer"
)

// Sentinel errors, one per Reason, for errors.Is.
var (
	ErrWrongTrustDomain = errors.New("peer is not in a configured peer trust domain")
	ErrUnknownPeer      = errors.New("peer is not a configured federation peer")
	ErrSequence         = errors.New("sequence went backwards or was replayed")
	ErrOversized        = errors.New("message exceeds the maximum size")
	ErrMalformed        = errors.New("malformed message")
	ErrRefusedByPeer    = errors.New("refused by the peer")
)

func (r Reason) sentinel() error {
	switch r {
	case ReasonWrongTrustDomain:
		return ErrWrongTrustDomain
	case ReasonUnknownPeer:
		return ErrUnknownPeer
	case ReasonSequence:
		return ErrSequence
	case ReasonOversized:
		return ErrOversized
	case ReasonRefusedByPeer:
		return ErrRefusedByPeer
	default:
		return ErrMalformed
	}
}

// RefusedError is a refusal of a peer or of one of its messages. It
// matches the sentinel of its Reason with errors.Is.
type RefusedError struct {
	Peer   string // the peer's cluster name, or its SPIFFE ID when unknown
	Reason Reason
	Detail string // what was wrong and how to fix it
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("federation: peer %s refused (%s): %s", e.Peer, e.Reason, e.Detail)
}

// Is matches the sentinel error of e.Reason.
func (e *RefusedError) Is(target error) bool { return target == e.Reason.sentinel() }

func refused(peer string, r Reason, format string, a ...any) *RefusedError {
	return &RefusedError{Peer: peer, Reason: r, Detail: fmt.Sprintf(format, a...)}
}

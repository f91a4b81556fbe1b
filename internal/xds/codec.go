package xds

import (
	"fmt"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// adsCodec is the ADS server's gRPC codec: protobuf (grpc-go's own codec
// does every message), except a delta push that many streams send alike,
// which is encoded once (sharedPush.body) and sent to each stream as those
// shared bytes followed by the stream's own nonce field.
//
// Protobuf allows a message's fields in any order, so body (every field
// of the DeltaDiscoveryResponse but the nonce) followed by field 5 (the
// nonce) is the response a proto.Marshal would give, fields reordered.
type adsCodec struct {
	proto encoding.CodecV2
}

func newADSCodec() adsCodec { return adsCodec{proto: encoding.GetCodecV2(protoenc.Name)} }

func (c adsCodec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encodedDelta); ok {
		// SliceBuffers are never freed or written by gRPC: body stays shared.
		e.bufs = [2]mem.Buffer{e.shared.bodyBuf, mem.SliceBuffer(e.nonce)}
		return e.bufs[:], nil
	}
	return c.proto.Marshal(v)
}

func (c adsCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Name is protobuf's: the codec is protobuf on the wire.
func (c adsCodec) Name() string { return c.proto.Name() }

// sharedPush is the response every stream of a type gets after a publish
// when it was up to date with the state before it and subscribes to the
// same names: computed and encoded once per (state, subscription).
type sharedPush struct {
	resp    *discoverygrpc.DeltaDiscoveryResponse // without nonce; read-only; nil: nothing to send
	body    []byte                                // resp encoded (deterministic), read-only
	bodyBuf mem.Buffer                            // body as a gRPC buffer, boxed once
}

// pushKey names a sharedPush within its typeState: the subscription (an
// interned subSet, so equal sets are one pointer) and wildcard-ness.
type pushKey struct {
	sub      *subSet
	wildcard bool
}

func newSharedPush(resp *discoverygrpc.DeltaDiscoveryResponse) (*sharedPush, error) {
	if resp == nil {
		return &sharedPush{}, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("delta response %s version %s: marshal: %w", resp.GetTypeUrl(), resp.GetSystemVersionInfo(), err)
	}
	return &sharedPush{resp: resp, body: b, bodyBuf: mem.SliceBuffer(b)}, nil
}

// encodedDelta is one stream's send of a sharedPush: the shared body and
// the stream's nonce as field 5 (DeltaDiscoveryResponse.nonce).
type encodedDelta struct {
	shared *sharedPush
	nonce  []byte // points into buf
	buf    [24]byte
	bufs   [2]mem.Buffer // what Marshal returns (no allocation for the slice)
}

// newEncodedDelta is sp for one stream: nonce (a decimal counter, so
// shorter than 22 bytes) as field 5, wire type 2.
func newEncodedDelta(sp *sharedPush, nonce string) *encodedDelta {
	e := &encodedDelta{shared: sp}
	b := protowire.AppendTag(e.buf[:0], 5, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(nonce)))
	e.nonce = append(b, nonce...)
	return e
}

// withNonce is a copy of resp's shell (the resources shared) carrying
// nonce, for callbacks that look at the responses sent.
func withNonce(resp *discoverygrpc.DeltaDiscoveryResponse, nonce string) *discoverygrpc.DeltaDiscoveryResponse {
	return &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: resp.GetSystemVersionInfo(), Resources: resp.GetResources(),
		TypeUrl: resp.GetTypeUrl(), RemovedResources: resp.GetRemovedResources(), Nonce: nonce}
}

// wantsResponses reports whether cb looks at the delta responses sent
// (go-control-plane's CallbackFuncs without a StreamDeltaResponseFunc
// does not, so no per-stream copy is made for it).
func wantsResponses(cb serverv3.Callbacks) bool {
	switch f := cb.(type) {
	case nil:
		return false
	case serverv3.CallbackFuncs:
		return f.StreamDeltaResponseFunc != nil
	case *serverv3.CallbackFuncs:
		return f != nil && f.StreamDeltaResponseFunc != nil
	}
	return true
}

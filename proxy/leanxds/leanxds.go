package leanxds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// Prefix is put before an Envoy proto package to name its lean copy.
const Prefix = "causeway.lean."

const urlPrefix = "type.googleapis.com/"

// EnvoyName is the Envoy name of the lean message m (m's own name if it is
// not a lean message, such as a well-known type).
func EnvoyName(m proto.Message) protoreflect.FullName {
	return protoreflect.FullName(strings.TrimPrefix(string(m.ProtoReflect().Descriptor().FullName()), Prefix))
}

// TypeURL is the type URL an xDS server puts on m's Envoy message.
func TypeURL(m proto.Message) string { return urlPrefix + string(EnvoyName(m)) }

// Is reports whether a holds m's Envoy message.
func Is(a *anypb.Any, m proto.Message) bool {
	url := a.GetTypeUrl()
	name := url[strings.LastIndexByte(url, '/')+1:]
	return protoreflect.FullName(name) == EnvoyName(m)
}

// UnmarshalAny decodes a into m if a holds m's Envoy message.
func UnmarshalAny(a *anypb.Any, m proto.Message) error {
	if !Is(a, m) {
		return fmt.Errorf("holds %q, not %s", a.GetTypeUrl(), EnvoyName(m))
	}
	return proto.Unmarshal(a.GetValue(), m)
}

// Resolver resolves Envoy type URLs and names to the lean messages, and the
// others (well-known types) as the global registry does, for protojson's
// Any fields.
var Resolver interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
} = resolver{}

type resolver struct{}

func (resolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if t, err := protoregistry.GlobalTypes.FindMessageByName(Prefix + name); err == nil {
		return t, nil
	}
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

func (r resolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	return r.FindMessageByName(protoreflect.FullName(url[strings.LastIndexByte(url, '/')+1:]))
}

func (resolver) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(name)
}

func (resolver) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, n)
}

// As returns m as the lean message L: m itself if it is one, or else m
// decoded again from its wire form. m may be any Go type of L's Envoy
// message, such as go-control-plane's (the control plane's tests check
// their output with the sidecar's translation this way). A nil m gives a
// nil L.
func As[L proto.Message](m proto.Message) (L, error) {
	if l, ok := m.(L); ok || m == nil {
		return l, nil
	}
	var zero L
	l := zero.ProtoReflect().Type().New().Interface().(L)
	if EnvoyName(m) != EnvoyName(l) {
		return zero, fmt.Errorf("got a %s, want a %s", EnvoyName(m), EnvoyName(l))
	}
	b, err := proto.Marshal(m)
	if err == nil {
		err = proto.Unmarshal(b, l)
	}
	if err != nil {
		return zero, fmt.Errorf("%s: %w", EnvoyName(m), err)
	}
	return l, nil
}

// UnmarshalJSON decodes the protobuf JSON b into the lean message m, as
// protojson would decode it into Envoy's own message: unknown field names
// are errors. "@type" names resolve to the lean messages, and the value of
// a field the lean copy holds as Unread only records that the field is set.
func UnmarshalJSON(b []byte, m proto.Message) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return err
	}
	v = blankUnread(v, m.ProtoReflect().Descriptor())
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{Resolver: Resolver}.Unmarshal(b, m)
}

// unreadName is the name of Unread (hack/leanxds declares it).
const unreadName protoreflect.FullName = Prefix + "Unread"

// blankUnread returns the JSON value v of message md with the value of each
// Unread field replaced by an empty one that is still set ({} or [{}]).
// What is not a JSON object of a known message is left for protojson to
// judge.
func blankUnread(v any, md protoreflect.MessageDescriptor) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if md.FullName() == "google.protobuf.Any" {
		url, _ := obj["@type"].(string)
		t, err := Resolver.FindMessageByURL(url)
		if err != nil || strings.HasPrefix(string(t.Descriptor().FullName()), "google.protobuf.") {
			return v // protojson reports it, or a well-known type in "value"
		}
		md = t.Descriptor()
	} else if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return v
	}
	for k, val := range obj {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByTextName(k)
		}
		if fd == nil || fd.Message() == nil || val == nil {
			continue
		}
		switch {
		case fd.Message().FullName() == unreadName:
			switch val := val.(type) {
			case []any: // a list
				obj[k] = blankList(len(val))
			case map[string]any:
				if fd.IsList() { // a map
					obj[k] = blankList(len(val))
				} else {
					obj[k] = map[string]any{}
				}
			default: // a message with a JSON form of its own, such as a Duration
				if !fd.IsList() {
					obj[k] = map[string]any{}
				}
			}
		case fd.IsMap():
			if m, ok := val.(map[string]any); ok && fd.MapValue().Message() != nil {
				for mk, mv := range m {
					m[mk] = blankUnread(mv, fd.MapValue().Message())
				}
			}
		case fd.IsList():
			if l, ok := val.([]any); ok {
				for i := range l {
					l[i] = blankUnread(l[i], fd.Message())
				}
			}
		default:
			obj[k] = blankUnread(val, fd.Message())
		}
	}
	return obj
}

// blankList is the JSON of n Unread messages, as many as protojson needs
// to see a repeated field set or not: at most one.
func blankList(n int) []any {
	if n == 0 {
		return []any{}
	}
	return []any{map[string]any{}}
}

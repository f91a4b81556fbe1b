package leanxds_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/causewaymesh/causeway/proxy/leanxds"
	leanbootstrap "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/bootstrap/v3"
	leancluster "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/cluster/v3"
	leanlistener "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/listener/v3"
	leanhcm "github.com/causewaymesh/causeway/proxy/leanxds/envoy/extensions/filters/network/http_connection_manager/v3"
)

// pairs returns every lean message type with go-control-plane's type of
// the same Envoy message.
func pairs(t *testing.T) map[protoreflect.FullName][2]protoreflect.MessageType {
	out := map[protoreflect.FullName][2]protoreflect.MessageType{}
	protoregistry.GlobalTypes.RangeMessages(func(lt protoreflect.MessageType) bool {
		name := lt.Descriptor().FullName()
		if !strings.HasPrefix(string(name), leanxds.Prefix+"envoy.") {
			return true
		}
		envoy := protoreflect.FullName(strings.TrimPrefix(string(name), leanxds.Prefix))
		et, err := protoregistry.GlobalTypes.FindMessageByName(envoy)
		if err != nil {
			t.Errorf("%s: no Envoy message %s: %v", name, envoy, err)
			return true
		}
		out[envoy] = [2]protoreflect.MessageType{lt, et}
		return true
	})
	if len(out) < 50 {
		t.Fatalf("only %d lean messages found", len(out))
	}
	return out
}

// TestSameFields checks that each lean message declares every field of
// Envoy's, with the same number, name, JSON name and cardinality, and the
// same type or Unread.
func TestSameFields(t *testing.T) {
	for name, p := range pairs(t) {
		lf, ef := p[0].Descriptor().Fields(), p[1].Descriptor().Fields()
		if lf.Len() != ef.Len() {
			t.Errorf("%s: %d fields, Envoy has %d", name, lf.Len(), ef.Len())
			continue
		}
		for i := range ef.Len() {
			e := ef.Get(i)
			l := lf.ByNumber(e.Number())
			if l == nil || l.Name() != e.Name() || l.JSONName() != e.JSONName() || l.IsList() != e.IsList() && !e.IsMap() {
				t.Errorf("%s: field %d (%s) differs: lean %v", name, e.Number(), e.Name(), l)
				continue
			}
			unread := l.Message() != nil && l.Message().FullName() == leanxds.Prefix+"Unread"
			if !unread && (l.Kind() != e.Kind() || l.IsMap() != e.IsMap()) {
				t.Errorf("%s.%s: kind %v, Envoy %v", name, e.Name(), l.Kind(), e.Kind())
			}
			if unread && e.Message() == nil {
				t.Errorf("%s.%s: Unread, but Envoy's is a %v", name, e.Name(), e.Kind())
			}
		}
	}
}

// TestWireCompatible encodes randomly filled Envoy messages, decodes them
// as lean messages, encodes those and decodes them as Envoy messages
// again: nothing may be lost or changed, Unread fields included.
func TestWireCompatible(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for name, p := range pairs(t) {
		for i := range 20 {
			orig := p[1].New()
			fill(r, orig, 4)
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(orig.Interface())
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			lean := p[0].New().Interface()
			if err := proto.Unmarshal(b, lean); err != nil {
				t.Fatalf("%s #%d: lean decode: %v", name, i, err)
			}
			lb, err := proto.Marshal(lean)
			if err != nil {
				t.Fatalf("%s #%d: lean encode: %v", name, i, err)
			}
			back := p[1].New().Interface()
			if err := proto.Unmarshal(lb, back); err != nil {
				t.Fatalf("%s #%d: decode: %v", name, i, err)
			}
			if !proto.Equal(orig.Interface(), back) {
				t.Fatalf("%s #%d: changed by the lean copy:\n%v\n%v", name, i, orig.Interface(), back)
			}
		}
	}
}

// fill sets random values in m's fields, depth messages deep (one field
// of each oneof).
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil && m.WhichOneof(o) != nil || r.IntN(3) == 0 {
			continue
		}
		if fd.Message() != nil && depth == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range 1 + r.IntN(2) {
				v := mp.NewValue()
				if fd.MapValue().Message() != nil {
					fill(r, v.Message(), depth-1)
				} else {
					v = value(r, fd.MapValue(), nil)
				}
				mp.Set(value(r, fd.MapKey(), nil).MapKey(), v)
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range 1 + r.IntN(2) {
				if fd.Message() != nil {
					v := l.NewElement()
					fill(r, v.Message(), depth-1)
					l.Append(v)
				} else {
					l.Append(value(r, fd, nil))
				}
			}
		case fd.Message() != nil:
			fill(r, m.Mutable(fd).Message(), depth-1)
		default:
			m.Set(fd, value(r, fd, m))
		}
	}
}

func value(r *rand.Rand, fd protoreflect.FieldDescriptor, _ protoreflect.Message) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vs := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vs.Get(r.IntN(vs.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(r.Uint32()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(r.Uint64()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(1 + r.Uint32N(1<<31))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1 + r.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(r.Float32() + 1)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.Float64() + 1)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString([]string{"a", "web", "πλ", "x.y"}[r.IntN(4)])
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{1, byte(r.Uint32())})
	}
	panic("kind " + fd.Kind().String())
}

// TestUnmarshalJSON checks the bootstrap's JSON decoding: a field the
// sidecar does not read stays visibly set, "@type" resolves to the lean
// messages, and an unknown field name is still an error.
func TestUnmarshalJSON(t *testing.T) {
	js := `{
	  "node": {"id": "n1"},
	  "dynamic_resources": {"ads_config": {"api_type": "GRPC"}, "cds_config": {"ads": {}}, "lds_config": {"ads": {}, "resource_api_version": "V3"}},
	  "static_resources": {"listeners": [{"name": "l", "drain_type": "MODIFY_ONLY", "per_connection_buffer_limit_bytes": 1024,
	    "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
	      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	      "stat_prefix": "x", "request_headers_timeout": "5s", "drain_timeout": "5s", "tracing": {"random_sampling": {"value": 10}}}}]}]}],
	    "clusters": [{"name": "c", "cleanup_interval": "2s", "lb_subset_config": {"subset_selectors": [{"keys": ["a"]}]}}]}
	}`
	var b leanbootstrap.Bootstrap
	if err := leanxds.UnmarshalJSON([]byte(js), &b); err != nil {
		t.Fatal(err)
	}
	if b.GetNode().GetId() != "n1" || b.GetDynamicResources().GetCdsConfig() == nil || b.GetDynamicResources().GetLdsConfig() == nil {
		t.Errorf("node or dynamic resources lost: %v", &b)
	}
	l := b.GetStaticResources().GetListeners()[0]
	if l.GetDrainType() != leanlistener.Listener_MODIFY_ONLY || l.GetPerConnectionBufferLimitBytes() == nil {
		t.Errorf("listener fields lost: %v", l)
	}
	var h leanhcm.HttpConnectionManager
	if err := leanxds.UnmarshalAny(l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig(), &h); err != nil {
		t.Fatal(err)
	}
	if h.GetStatPrefix() != "x" || h.GetRequestHeadersTimeout().AsDuration().Seconds() != 5 || h.GetDrainTimeout() == nil || h.GetTracing() == nil {
		t.Errorf("typed_config lost fields: %v", &h)
	}
	c := b.GetStaticResources().GetClusters()[0]
	if c.GetCleanupInterval() == nil || c.GetLbSubsetConfig() == nil {
		t.Errorf("unread cluster fields are not set: %v", c)
	}

	for _, bad := range []string{
		`{"node": {"idd": "n1"}}`,
		`{"static_resources": {"listeners": [{"nam": "l"}]}}`,
		`{"static_resources": {"listeners": [{"filter_chains": [{"filters": [{"typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", "stat_prefx": "x"}}]}]}]}}`,
		`{"static_resources": {"clusters": [{"name": "c", "cleanup_interval": "2s"}]}, "stats_flush": 3}`,
	} {
		if err := leanxds.UnmarshalJSON([]byte(bad), &leanbootstrap.Bootstrap{}); err == nil || !strings.Contains(err.Error(), "unknown field") {
			t.Errorf("%s: error %v, want an unknown field", bad, err)
		}
	}
}

// TestAsAndAny checks the conversions between go-control-plane's messages
// and the lean ones.
func TestAsAndAny(t *testing.T) {
	c := &clusterv3.Cluster{Name: "web", LbPolicy: clusterv3.Cluster_MAGLEV}
	l, err := leanxds.As[*leancluster.Cluster](c)
	if err != nil || l.GetName() != "web" || l.GetLbPolicy() != leancluster.Cluster_MAGLEV {
		t.Fatalf("As = %v, %v", l, err)
	}
	if same, _ := leanxds.As[*leancluster.Cluster](l); same != l {
		t.Error("As copied a lean message")
	}
	if _, err := leanxds.As[*leancluster.Cluster](&hcmv3.HttpConnectionManager{}); err == nil {
		t.Error("As decoded an HttpConnectionManager as a Cluster")
	}
	a, err := anypb.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != leanxds.TypeURL(l) || !leanxds.Is(a, l) || leanxds.Is(a, &leanhcm.HttpConnectionManager{}) {
		t.Errorf("type URL %s, lean %s", a.GetTypeUrl(), leanxds.TypeURL(l))
	}
	var got leancluster.Cluster
	if err := leanxds.UnmarshalAny(a, &got); err != nil || got.GetName() != "web" {
		t.Errorf("UnmarshalAny = %v, %v", &got, err)
	}
	if err := leanxds.UnmarshalAny(a, &leanhcm.HttpConnectionManager{}); err == nil {
		t.Error("UnmarshalAny decoded a Cluster as an HttpConnectionManager")
	}
}

// FuzzUnmarshalJSON feeds the bootstrap's JSON decoding arbitrary input:
// it must not panic, and what it accepts must encode and decode again to
// the same message.
func FuzzUnmarshalJSON(f *testing.F) {
	for _, s := range []string{
		`{"node": {"id": "n"}, "static_resources": {"clusters": [{"name": "c", "cleanup_interval": "2s", "lb_subset_config": {}}]}}`,
		`{"static_resources": {"listeners": [{"filter_chains": [{"filters": [{"typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", "stat_prefix": "x", "tracing": {}}}]}]}]}}`,
		`{"dynamic_resources": {"ads_config": {"api_type": "GRPC"}, "cds_config": {"ads": {}}}}`,
		`{"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}, "access_log": [{}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m leanbootstrap.Bootstrap
		if leanxds.UnmarshalJSON(b, &m) != nil {
			return
		}
		js, err := protojson.MarshalOptions{Resolver: leanxds.Resolver}.Marshal(&m)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", b, err)
		}
		var again leanbootstrap.Bootstrap
		if err := leanxds.UnmarshalJSON(js, &again); err != nil {
			t.Fatalf("accepted %q but not its own encoding %s: %v", b, js, err)
		}
		if !proto.Equal(&m, &again) {
			t.Fatalf("%q: decoding its own encoding changed it:\n%v\n%v", b, &m, &again)
		}
	})
}

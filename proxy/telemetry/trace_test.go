package telemetry

import (
	"net/http"
	"regexp"
	"testing"
)

// seqRand returns the given values in turn, then repeats the last one.
func seqRand(vals ...uint64) func() uint64 {
	i := 0
	return func() uint64 {
		v := vals[min(i, len(vals)-1)]
		i++
		return v
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRequestID(t *testing.T) {
	tests := []struct {
		name     string
		in       http.Header
		generate bool
		want     string // "" with generate: a fresh UUIDv4
	}{
		{"kept when present", http.Header{"X-Request-Id": {"abc"}}, true, "abc"},
		{"kept even without generation", http.Header{"X-Request-Id": {"abc"}}, false, "abc"},
		{"absent, generated", http.Header{}, true, ""},
		{"empty, generated", http.Header{"X-Request-Id": {""}}, true, ""},
		{"absent, not generated", http.Header{}, false, "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, _ := PrepareRequestHeaders(tc.in, tc.generate, seqRand(0x0123456789abcdef, 0xfedcba9876543210, 7))
			switch tc.want {
			case "":
				if !uuidV4.MatchString(id) {
					t.Errorf("id %q is not a UUIDv4", id)
				}
				if id != "01234567-89ab-4def-bedc-ba9876543210" {
					t.Errorf("id %q not derived from rnd as expected", id)
				}
				if got := tc.in.Get("x-request-id"); got != id {
					t.Errorf("header x-request-id = %q, want %q", got, id)
				}
			case "-":
				if id != "" || tc.in.Get("x-request-id") != "" {
					t.Errorf("id = %q, header %q; want none", id, tc.in.Get("x-request-id"))
				}
			default:
				if id != tc.want {
					t.Errorf("id = %q, want %q", id, tc.want)
				}
			}
		})
	}
}

func TestTraceHeaders(t *testing.T) {
	// rnd yields 0x00f067aa0ba902b8 first; new traces take two draws for
	// the trace id and one for the span id.
	const (
		span     = "00000000000000aa"
		newTrace = "00000000000000aa00000000000000bb"
		newSpan  = "00000000000000cc"
	)
	tests := []struct {
		name       string
		in         http.Header
		rnd        []uint64
		wantTP     string
		wantState  []string // nil: tracestate absent
		wantHeader map[string]string
	}{
		{
			name:      "W3C example, sampled: trace and flags kept, new parent-id",
			in:        http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "Tracestate": {"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}},
			rnd:       []uint64{0xaa},
			wantTP:    "00-4bf92f3577b34da6a3ce929d0e0e4736-" + span + "-01",
			wantState: []string{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		},
		{
			name:   "W3C example, not sampled",
			in:     http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}},
			rnd:    []uint64{0xaa},
			wantTP: "00-4bf92f3577b34da6a3ce929d0e0e4736-" + span + "-00",
		},
		{
			name:      "W3C tracestate example kept verbatim, several lines",
			in:        http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "Tracestate": {"congo=ucfJifl5GOE", "rojo=00f067aa0ba902b7"}},
			rnd:       []uint64{0xaa},
			wantTP:    "00-0af7651916cd43dd8448eb211c80319c-" + span + "-01",
			wantState: []string{"congo=ucfJifl5GOE", "rojo=00f067aa0ba902b7"},
		},
		{
			name:   "unknown flags kept on version 00",
			in:     http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"}},
			rnd:    []uint64{0xaa},
			wantTP: "00-0af7651916cd43dd8448eb211c80319c-" + span + "-03",
		},
		{
			name:   "higher version with extra fields: parsed, downgraded to 00, sampled bit only",
			in:     http.Header{"Traceparent": {"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-whatever"}},
			rnd:    []uint64{0xaa},
			wantTP: "00-0af7651916cd43dd8448eb211c80319c-" + span + "-01",
		},
		{
			name:   "higher version, exactly 55 chars",
			in:     http.Header{"Traceparent": {"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}},
			rnd:    []uint64{0xaa},
			wantTP: "00-0af7651916cd43dd8448eb211c80319c-" + span + "-00",
		},
		{
			name:   "no headers: new sampled trace",
			in:     http.Header{},
			rnd:    []uint64{0xaa, 0xbb, 0xcc},
			wantTP: "00-" + newTrace + "-" + newSpan + "-01",
		},
		{
			name:   "zero span from rnd is redrawn",
			in:     http.Header{},
			rnd:    []uint64{0xaa, 0xbb, 0, 0xcc},
			wantTP: "00-" + newTrace + "-" + newSpan + "-01",
		},
		{
			name:   "tracestate without traceparent is discarded",
			in:     http.Header{"Tracestate": {"rojo=1"}},
			rnd:    []uint64{0xaa, 0xbb, 0xcc},
			wantTP: "00-" + newTrace + "-" + newSpan + "-01",
		},
		{
			name:       "B3 multi headers: kept, traceparent derived",
			in:         http.Header{"X-B3-Traceid": {"80f198ee56343ba864fe8b2a57d3eff7"}, "X-B3-Spanid": {"e457b5a2e4d86bd1"}, "X-B3-Sampled": {"1"}},
			rnd:        []uint64{0xaa},
			wantTP:     "00-80f198ee56343ba864fe8b2a57d3eff7-" + span + "-01",
			wantHeader: map[string]string{"X-B3-Traceid": "80f198ee56343ba864fe8b2a57d3eff7", "X-B3-Spanid": "e457b5a2e4d86bd1", "X-B3-Sampled": "1"},
		},
		{
			name:       "B3 64-bit trace id, not sampled",
			in:         http.Header{"X-B3-Traceid": {"64fe8b2a57d3eff7"}, "X-B3-Spanid": {"e457b5a2e4d86bd1"}, "X-B3-Sampled": {"0"}},
			rnd:        []uint64{0xaa},
			wantTP:     "00-000000000000000064fe8b2a57d3eff7-" + span + "-00",
			wantHeader: map[string]string{"X-B3-Traceid": "64fe8b2a57d3eff7"},
		},
		{
			name:   "B3 debug flag means sampled",
			in:     http.Header{"X-B3-Traceid": {"64fe8b2a57d3eff7"}, "X-B3-Spanid": {"e457b5a2e4d86bd1"}, "X-B3-Flags": {"1"}},
			rnd:    []uint64{0xaa},
			wantTP: "00-000000000000000064fe8b2a57d3eff7-" + span + "-01",
		},
		{
			name:       "B3 single header",
			in:         http.Header{"B3": {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"}},
			rnd:        []uint64{0xaa},
			wantTP:     "00-80f198ee56343ba864fe8b2a57d3eff7-" + span + "-01",
			wantHeader: map[string]string{"B3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"},
		},
		{
			name:   "B3 single header, deny sampling",
			in:     http.Header{"B3": {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"}},
			rnd:    []uint64{0xaa},
			wantTP: "00-80f198ee56343ba864fe8b2a57d3eff7-" + span + "-00",
		},
		{
			name:       "B3 sampling decision only: new trace honours it",
			in:         http.Header{"B3": {"0"}},
			rnd:        []uint64{0xaa, 0xbb, 0xcc},
			wantTP:     "00-" + newTrace + "-" + newSpan + "-00",
			wantHeader: map[string]string{"B3": "0"},
		},
		{
			name:       "invalid B3 kept but not used",
			in:         http.Header{"X-B3-Traceid": {"XYZ"}, "X-B3-Spanid": {"e457b5a2e4d86bd1"}},
			rnd:        []uint64{0xaa, 0xbb, 0xcc},
			wantTP:     "00-" + newTrace + "-" + newSpan + "-01",
			wantHeader: map[string]string{"X-B3-Traceid": "XYZ"},
		},
		{
			name:   "valid traceparent wins over B3",
			in:     http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "X-B3-Traceid": {"80f198ee56343ba864fe8b2a57d3eff7"}, "X-B3-Spanid": {"e457b5a2e4d86bd1"}},
			rnd:    []uint64{0xaa},
			wantTP: "00-4bf92f3577b34da6a3ce929d0e0e4736-" + span + "-01",
		},
		{
			name:   "invalid traceparent with valid B3: derived from B3",
			in:     http.Header{"Traceparent": {"garbage"}, "X-B3-Traceid": {"80f198ee56343ba864fe8b2a57d3eff7"}, "X-B3-Spanid": {"e457b5a2e4d86bd1"}},
			rnd:    []uint64{0xaa},
			wantTP: "00-80f198ee56343ba864fe8b2a57d3eff7-" + span + "-01",
		},
	}
	invalid := []string{
		"",
		"garbage",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",             // short
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",      // version 00 must be 55 chars
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",            // version ff is invalid
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",            // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",            // zero parent id
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",            // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",            // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",            // bad flags
		"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",            // bad version
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",            // bad separators
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what",       // higher version, no dash after flags
		"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",            // misplaced dash
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x00",        // trailing NUL
		"00-4bf92f3577b34da6a3ce929d0e0e4736\xff00f067aa0ba902b7-01abcdefgh", // junk
	}
	for _, v := range invalid {
		tests = append(tests, struct {
			name       string
			in         http.Header
			rnd        []uint64
			wantTP     string
			wantState  []string
			wantHeader map[string]string
		}{
			name:   "invalid traceparent " + v + ": dropped, new trace",
			in:     http.Header{"Traceparent": {v}, "Tracestate": {"rojo=1"}},
			rnd:    []uint64{0xaa, 0xbb, 0xcc},
			wantTP: "00-" + newTrace + "-" + newSpan + "-01",
		})
	}
	tests = append(tests, struct {
		name       string
		in         http.Header
		rnd        []uint64
		wantTP     string
		wantState  []string
		wantHeader map[string]string
	}{
		name:   "two traceparent headers: invalid",
		in:     http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		rnd:    []uint64{0xaa, 0xbb, 0xcc},
		wantTP: "00-" + newTrace + "-" + newSpan + "-01",
	})

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, traceID := PrepareRequestHeaders(tc.in, false, seqRand(tc.rnd...))
			if got := tc.in["Traceparent"]; len(got) != 1 || got[0] != tc.wantTP {
				t.Errorf("traceparent = %q, want [%q]", got, tc.wantTP)
			}
			if traceID != tc.wantTP[3:35] {
				t.Errorf("returned trace id %q, want %q", traceID, tc.wantTP[3:35])
			}
			got := tc.in["Tracestate"]
			if len(got) != len(tc.wantState) {
				t.Errorf("tracestate = %q, want %q", got, tc.wantState)
			} else {
				for i := range got {
					if got[i] != tc.wantState[i] {
						t.Errorf("tracestate = %q, want %q", got, tc.wantState)
					}
				}
			}
			for k, v := range tc.wantHeader {
				if g := tc.in.Get(k); g != v {
					t.Errorf("%s = %q, want %q (untouched)", k, g, v)
				}
			}
		})
	}
}

func TestTraceHeadersRealRandom(t *testing.T) {
	h := http.Header{}
	id, trace := PrepareRequestHeaders(h, true, nil)
	if !uuidV4.MatchString(id) {
		t.Errorf("request id %q is not a UUIDv4", id)
	}
	if _, _, ok := parseTraceparent(h.Get("traceparent")); !ok {
		t.Errorf("generated traceparent %q does not parse", h.Get("traceparent"))
	}
	if len(trace) != 32 {
		t.Errorf("trace id %q", trace)
	}
}

func BenchmarkPrepareRequestHeadersContinue(b *testing.B) {
	rnd := seqRand(0x1234)
	h := http.Header{
		"X-Request-Id": {"7f1c6a2e-1b1d-4c1e-9a55-2d3c4b5a6978"},
		"Traceparent":  {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
	b.ReportAllocs()
	for b.Loop() {
		PrepareRequestHeaders(h, true, rnd)
	}
}

func BenchmarkPrepareRequestHeadersNew(b *testing.B) {
	rnd := seqRand(0x1234)
	b.ReportAllocs()
	for b.Loop() {
		h := http.Header{}
		PrepareRequestHeaders(h, true, rnd)
	}
}

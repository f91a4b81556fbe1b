package telemetry

import (
	"math/rand/v2"
	"net/http"
	"strings"
)

// Canonical header keys (http.CanonicalHeaderKey of the wire names), used
// to index http.Header directly.
const (
	HeaderRequestID   = "X-Request-Id"
	HeaderTraceparent = "Traceparent"
	HeaderTracestate  = "Tracestate"
	HeaderB3          = "B3"
	HeaderB3TraceID   = "X-B3-Traceid"
	HeaderB3SpanID    = "X-B3-Spanid"
	HeaderB3Sampled   = "X-B3-Sampled"
	HeaderB3Flags     = "X-B3-Flags"
)

// traceparentLen is the length of a version-00 traceparent:
// 2 (version) + 1 + 32 (trace-id) + 1 + 16 (parent-id) + 1 + 2 (flags).
const traceparentLen = 55

const flagSampled = 0x01

// PrepareRequestHeaders updates the request-id and trace-context headers of
// a request the proxy forwards, and returns the request id (empty if there
// is none and generateID is false) and the 32-hex trace id of the outgoing
// traceparent (never empty). rnd supplies random bits (nil: math/rand/v2).
//
//   - x-request-id: kept when present and non-empty; otherwise, if
//     generateID, set to a new UUIDv4-formatted id drawn from rnd.
//   - traceparent present and valid (W3C Trace Context, any version but
//     ff; unknown higher versions parsed as the spec says): the trace id
//     is kept, the parent-id is replaced by a new span id (the proxy is a
//     hop), the flags are kept (only the sampled bit for versions above
//     00), and the header is rewritten as version 00. tracestate is left
//     untouched.
//   - traceparent absent or invalid (an invalid one is dropped): if B3
//     headers (single "b3", or x-b3-traceid/x-b3-spanid/x-b3-sampled/
//     x-b3-flags) carry a valid trace id, they are left untouched and a
//     traceparent is derived from them: the B3 trace id (64-bit ids
//     left-padded with zeros), a new span id, sampled unless B3 says "0".
//     Otherwise a new trace starts: new trace id, new span id, flags 01
//     (00 when B3 carries only a "0" sampling decision).
//     In both cases any tracestate is removed, as the spec requires for a
//     tracestate received without a valid traceparent.
func PrepareRequestHeaders(h http.Header, generateID bool, rnd func() uint64) (requestID, traceID string) {
	if rnd == nil {
		rnd = rand.Uint64
	}
	// The new values are written side by side into buf and become one
	// string, and the header slices they need share one array: two
	// allocations for a request that gets both, instead of four.
	var buf [uuidLen + traceparentLen]byte
	n := 0
	if v := h[HeaderRequestID]; len(v) > 0 && v[0] != "" {
		requestID = v[0]
	} else if generateID {
		putUUID((*[uuidLen]byte)(buf[:uuidLen]), rnd)
		n = uuidLen
	}

	var (
		trace [32]byte // a traceID (the result's name hides the type here)
		flags byte
		ok    bool
	)
	if v := h[HeaderTraceparent]; len(v) == 1 {
		trace, flags, ok = parseTraceparent(v[0])
	}
	if !ok {
		// No usable traceparent: the trace state it would belong to goes too.
		delete(h, HeaderTraceparent)
		delete(h, HeaderTracestate)
		if trace, flags, ok = b3Context(h); !ok {
			trace = newTraceID(rnd)
		}
	}
	putTraceparent((*[traceparentLen]byte)(buf[n:n+traceparentLen]), trace, flags, rnd)

	vals := string(buf[:n+traceparentLen])
	tp := vals[n:]
	var spare []string
	if n > 0 {
		requestID = vals[:n]
		spare = setHeader(h, HeaderRequestID, requestID, spare, 2)
	}
	setHeader(h, HeaderTraceparent, tp, spare, 1)
	return requestID, tp[3:35]
}

// setHeader replaces h[key] with the single value v, reusing the slice if
// it already holds one value, else taking one slot of spare (made for
// want more values when it is empty). It returns what is left of spare.
func setHeader(h http.Header, key, v string, spare []string, want int) []string {
	if s := h[key]; len(s) == 1 {
		s[0] = v
		return spare
	}
	if len(spare) == 0 {
		spare = make([]string, want)
	}
	spare[0] = v
	h[key] = spare[:1:1]
	return spare[1:]
}

// traceID is 32 lower-case hex digits.
type traceID [32]byte

// parseTraceparent validates v as a W3C traceparent and returns its trace
// id and the flags to propagate.
func parseTraceparent(v string) (id traceID, flags byte, ok bool) {
	if len(v) < traceparentLen {
		return id, 0, false
	}
	ver, ok := hexByte(v[0], v[1])
	if !ok || ver == 0xff {
		return id, 0, false
	}
	if ver == 0 && len(v) != traceparentLen {
		return id, 0, false
	}
	if len(v) > traceparentLen && v[traceparentLen] != '-' {
		return id, 0, false
	}
	if v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return id, 0, false
	}
	if !lowerHex(v[3:35]) || allZero(v[3:35]) || !lowerHex(v[36:52]) || allZero(v[36:52]) {
		return id, 0, false
	}
	flags, ok = hexByte(v[53], v[54])
	if !ok {
		return id, 0, false
	}
	if ver != 0 {
		flags &= flagSampled
	}
	copy(id[:], v[3:35])
	return id, flags, true
}

// b3Context reads B3 headers. ok reports a valid trace id; flags is the
// sampling decision (sampled unless B3 says "0"/"false"), also when only a
// decision is present.
func b3Context(h http.Header) (id traceID, flags byte, ok bool) {
	flags = flagSampled
	if v := h[HeaderB3]; len(v) > 0 && v[0] != "" {
		s := v[0]
		switch s {
		case "0":
			return id, 0, false
		case "1", "d":
			return id, flags, false
		}
		// {trace}-{span}[-{sampling}[-{parent}]]
		dash := strings.IndexByte(s, '-')
		if dash < 0 {
			return id, flags, false
		}
		id, ok = padTraceID(s[:dash])
		rest := s[dash+1:]
		span := rest
		if d := strings.IndexByte(rest, '-'); d >= 0 {
			span = rest[:d]
			sampling := rest[d+1:]
			if d2 := strings.IndexByte(sampling, '-'); d2 >= 0 {
				sampling = sampling[:d2]
			}
			if sampling == "0" {
				flags = 0
			}
		}
		if len(span) != 16 || !lowerHex(span) || allZero(span) {
			ok = false
		}
		return id, flags, ok
	}
	if v := h[HeaderB3Sampled]; len(v) > 0 && (v[0] == "0" || v[0] == "false") {
		flags = 0
	}
	if v := h[HeaderB3Flags]; len(v) > 0 && v[0] == "1" {
		flags = flagSampled // debug implies sampled
	}
	tv, sv := h[HeaderB3TraceID], h[HeaderB3SpanID]
	if len(tv) == 0 || len(sv) == 0 {
		return id, flags, false
	}
	id, ok = padTraceID(tv[0])
	if len(sv[0]) != 16 || !lowerHex(sv[0]) || allZero(sv[0]) {
		ok = false
	}
	return id, flags, ok
}

// padTraceID accepts a 16- or 32-digit lower-case hex B3 trace id, not all
// zeros, and returns it as 32 digits.
func padTraceID(s string) (id traceID, ok bool) {
	if (len(s) != 16 && len(s) != 32) || !lowerHex(s) || allZero(s) {
		return id, false
	}
	for i := range 32 - len(s) {
		id[i] = '0'
	}
	copy(id[32-len(s):], s)
	return id, true
}

// putTraceparent formats a version-00 traceparent with a new span id into b.
func putTraceparent(b *[traceparentLen]byte, id traceID, flags byte, rnd func() uint64) {
	b[0], b[1], b[2] = '0', '0', '-'
	copy(b[3:35], id[:])
	b[35] = '-'
	putHex64(b[36:52], nonZero(rnd))
	b[52] = '-'
	b[53], b[54] = hexDigits[flags>>4], hexDigits[flags&0xf]
}

func newTraceID(rnd func() uint64) (id traceID) {
	hi, lo := rnd(), rnd()
	if hi == 0 && lo == 0 {
		lo = nonZero(rnd)
	}
	putHex64(id[:16], hi)
	putHex64(id[16:], lo)
	return id
}

// uuidLen is the length of a formatted UUID.
const uuidLen = 36

// putUUID formats a random UUID in version-4 format into out.
func putUUID(out *[uuidLen]byte, rnd func() uint64) {
	var raw [16]byte
	hi, lo := rnd(), rnd()
	for i := range 8 {
		raw[i] = byte(hi >> (56 - 8*i))
		raw[8+i] = byte(lo >> (56 - 8*i))
	}
	raw[6] = raw[6]&0x0f | 0x40 // version 4
	raw[8] = raw[8]&0x3f | 0x80 // RFC 4122 variant
	j := 0
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexDigits[c>>4], hexDigits[c&0xf]
		j += 2
	}
}

// nonZero draws from rnd until it returns a non-zero value (all-zero ids
// are invalid); a source stuck at zero yields 1.
func nonZero(rnd func() uint64) uint64 {
	for range 4 {
		if v := rnd(); v != 0 {
			return v
		}
	}
	return 1
}

func putHex64(dst []byte, v uint64) {
	for i := 15; i >= 0; i-- {
		dst[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexVal(hi)
	l, ok2 := hexVal(lo)
	return h<<4 | l, ok1 && ok2
}

// hexVal decodes one lower-case hex digit; the spec forbids upper case.
func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if _, ok := hexVal(s[i]); !ok {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

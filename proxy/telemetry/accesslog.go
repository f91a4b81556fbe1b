package telemetry

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// ResponseFlags is a set of Envoy-style response flags: short codes that
// say why a request ended the way it did. The access log prints them
// comma-separated in the order of the constants below, or "-" when none is
// set (as Envoy's %RESPONSE_FLAGS%).
type ResponseFlags uint32

// The response flags. The codes are Envoy's, so existing dashboards and
// habits carry over.
const (
	FlagNoHealthyUpstream       ResponseFlags = 1 << iota // UH: no healthy endpoint in any priority level
	FlagUpstreamRequestTimeout                            // UT: route or per-try timeout expired
	FlagLocalReset                                        // LR: the proxy reset the stream itself
	FlagUpstreamRemoteReset                               // UR: the upstream reset the stream
	FlagUpstreamConnectFailure                            // UF: could not connect to the upstream
	FlagUpstreamConnTermination                           // UC: the upstream closed the connection mid-request
	FlagUpstreamOverflow                                  // UO: a circuit-breaker limit refused the request
	FlagNoRoute                                           // NR: no route (or no virtual host) matched
	FlagDelayInjected                                     // DI: a fault policy delayed the request
	FlagFaultInjected                                     // FI: a fault policy aborted the request
	FlagRateLimited                                       // RL: refused by a rate limit (reserved: no limiter yet)
	FlagUnauthorized                                      // UAEX: refused by authorization policy; reason says why
	FlagDownstreamDisconnect                              // DC: the downstream went away before the response ended
	FlagRetryLimitExceeded                                // URX: retries (or the retry budget) exhausted
	FlagStreamIdleTimeout                                 // SI: idle timeout on the stream
	FlagInvalidHeaders                                    // IH: request headers refused (too large, malformed)
	FlagDownstreamProtocolError                           // DPE: the downstream spoke broken HTTP
	FlagUpstreamProtocolError                             // UPE: the upstream spoke broken HTTP
	FlagNoCluster                                         // NC: the route names a cluster the proxy does not have
	FlagDurationTimeout                                   // DT: max connection or stream duration reached

	flagEnd
)

var flagCodes = [...]string{
	"UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL",
	"UAEX", "DC", "URX", "SI", "IH", "DPE", "UPE", "NC", "DT",
}

// FlagCodes returns every response flag with its short code, in print
// order.
func FlagCodes() map[ResponseFlags]string {
	out := make(map[ResponseFlags]string, len(flagCodes))
	for i, c := range flagCodes {
		out[1<<i] = c
	}
	return out
}

// AppendText appends f as comma-separated short codes, or "-" if empty.
// Bits with no code are ignored.
func (f ResponseFlags) AppendText(b []byte) []byte {
	first := true
	for i, c := range flagCodes {
		if f&(1<<i) == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		b = append(b, c...)
		first = false
	}
	if first {
		b = append(b, '-')
	}
	return b
}

func (f ResponseFlags) String() string { return string(f.AppendText(nil)) }

// LogEntry is one access-log line. Zero values are written as empty
// strings or zeros, never omitted, so every line has every field.
type LogEntry struct {
	StartTime           time.Time // written in UTC, RFC 3339 with nanoseconds
	Method              string
	Authority           string
	Path                string
	Protocol            string // HTTP/1.1, HTTP/2, or tcp
	ResponseCode        int
	ResponseFlags       ResponseFlags
	BytesReceived       int64 // request body bytes from the downstream
	BytesSent           int64 // response body bytes to the downstream
	Duration            time.Duration
	UpstreamHost        string // host:port of the endpoint that answered
	UpstreamCluster     string
	UpstreamLocality    string
	RequestID           string // x-request-id
	TraceID             string // trace id of the outgoing traceparent
	SourceIdentity      string // SPIFFE ID of the caller, if known
	DestinationIdentity string // SPIFFE ID of the callee, if known
	UserAgent           string
	Retries             int
	Reason              string // free text, e.g. why authorization denied
}

// AccessLog writes one JSON object per line to a writer. It is safe for
// concurrent use: each line is built in a pooled buffer without locks and
// handed to the writer in a single Write under a mutex, so lines never
// interleave even on writers that are not safe for concurrent use.
type AccessLog struct {
	w      io.Writer
	mu     sync.Mutex
	pool   sync.Pool // *[]byte
	errors atomic.Uint64
}

// NewAccessLog returns an access log writing to w.
func NewAccessLog(w io.Writer) *AccessLog {
	a := &AccessLog{w: w}
	a.pool.New = func() any {
		b := make([]byte, 0, 1024)
		return &b
	}
	return a
}

// maxPooled bounds the buffers kept for reuse, so one huge line does not
// pin its buffer forever.
const maxPooled = 64 << 10

// Log writes e as one line. A failed or short write is counted (see
// WriteErrors) and the line is lost; logging never blocks the request on
// an error.
func (a *AccessLog) Log(e *LogEntry) {
	bp := a.pool.Get().(*[]byte)
	b := AppendEntry((*bp)[:0], e)
	b = append(b, '\n')
	a.mu.Lock()
	n, err := a.w.Write(b)
	a.mu.Unlock()
	if err != nil || n != len(b) {
		a.errors.Add(1)
	}
	if cap(b) <= maxPooled {
		*bp = b
		a.pool.Put(bp)
	}
}

// WriteErrors reports how many lines were lost to write errors.
func (a *AccessLog) WriteErrors() uint64 { return a.errors.Load() }

// AppendEntry appends e as a JSON object (without a newline) to b.
func AppendEntry(b []byte, e *LogEntry) []byte {
	b = append(b, `{"start_time":"`...)
	b = e.StartTime.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","method":`...)
	b = AppendJSONString(b, e.Method)
	b = append(b, `,"authority":`...)
	b = AppendJSONString(b, e.Authority)
	b = append(b, `,"path":`...)
	b = AppendJSONString(b, e.Path)
	b = append(b, `,"protocol":`...)
	b = AppendJSONString(b, e.Protocol)
	b = append(b, `,"response_code":`...)
	b = strconv.AppendInt(b, int64(e.ResponseCode), 10)
	b = append(b, `,"response_flags":"`...)
	b = e.ResponseFlags.AppendText(b)
	b = append(b, `","bytes_received":`...)
	b = strconv.AppendInt(b, e.BytesReceived, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, e.BytesSent, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.Duration)/float64(time.Millisecond), 'f', 3, 64)
	b = append(b, `,"upstream_host":`...)
	b = AppendJSONString(b, e.UpstreamHost)
	b = append(b, `,"upstream_cluster":`...)
	b = AppendJSONString(b, e.UpstreamCluster)
	b = append(b, `,"upstream_locality":`...)
	b = AppendJSONString(b, e.UpstreamLocality)
	b = append(b, `,"x_request_id":`...)
	b = AppendJSONString(b, e.RequestID)
	b = append(b, `,"trace_id":`...)
	b = AppendJSONString(b, e.TraceID)
	b = append(b, `,"source_identity":`...)
	b = AppendJSONString(b, e.SourceIdentity)
	b = append(b, `,"destination_identity":`...)
	b = AppendJSONString(b, e.DestinationIdentity)
	b = append(b, `,"user_agent":`...)
	b = AppendJSONString(b, e.UserAgent)
	b = append(b, `,"retries":`...)
	b = strconv.AppendInt(b, int64(e.Retries), 10)
	b = append(b, `,"reason":`...)
	b = AppendJSONString(b, e.Reason)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a quoted JSON string, escaped exactly as
// encoding/json does with HTML escaping off: \" \\ \b \f \n \r \t, other
// control bytes as \u00XX, U+2028 and U+2029 as \u2028 and \u2029, and each
// byte of invalid UTF-8 as \ufffd.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip 8 plain ASCII bytes at a time.
		for i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plain8 reports whether the 8 bytes of s (len(s) == 8) are all ASCII that
// JSON strings carry verbatim: no byte >= 0x80, < 0x20, '"' or '\\'.
func plain8(s string) bool {
	_ = s[7]
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	// A byte b is flagged by (b - k) & ^b & 0x80 when b < k (for b < 0x80);
	// equality tests use b ^ c < 1.
	bad := x & msb // non-ASCII
	bad |= (x - lsb*0x20) & ^x & msb
	q := x ^ (lsb * '"')
	bad |= (q - lsb) & ^q & msb
	bs := x ^ (lsb * '\\')
	bad |= (bs - lsb) & ^bs & msb
	return bad == 0
}

package telemetry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// hostile strings: quotes, backslashes, every control byte, HTML
// characters, line and paragraph separators, and invalid UTF-8.
var hostile = []string{
	"",
	"plain",
	`quote " and backslash \ and slash /`,
	"controls \x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f end",
	"<script>alert('x')&amp;</script>",
	"line\u2028para\u2029sep",
	"invalid \xff\xfe utf8 \xc3 truncated \xe2\x82",
	"overlong \xc0\xaf and surrogate \xed\xa0\x80",
	"emoji 🚀 and ünïcödé and 中文",
	`{"injected":"field"}`,
	"\"\n{\"response_code\":999}",
}

func jsonEncoding(t testing.TB, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range hostile {
		if got, want := AppendJSONString(nil, s), jsonEncoding(t, s); !bytes.Equal(got, want) {
			t.Errorf("AppendJSONString(%q) = %s, encoding/json gives %s", s, got, want)
		}
	}
	// Every single byte.
	for c := range 256 {
		s := string([]byte{'a', byte(c), 'z'})
		if got, want := AppendJSONString(nil, s), jsonEncoding(t, s); !bytes.Equal(got, want) {
			t.Errorf("byte %#x: got %s, encoding/json gives %s", c, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := AppendJSONString(nil, s), jsonEncoding(t, s); !bytes.Equal(got, want) {
			t.Errorf("AppendJSONString(%q) = %s, encoding/json gives %s", s, got, want)
		}
	})
}

// wireEntry is the decoded form of one access-log line.
type wireEntry struct {
	StartTime           string  `json:"start_time"`
	Method              string  `json:"method"`
	Authority           string  `json:"authority"`
	Path                string  `json:"path"`
	Protocol            string  `json:"protocol"`
	ResponseCode        int     `json:"response_code"`
	ResponseFlags       string  `json:"response_flags"`
	BytesReceived       int64   `json:"bytes_received"`
	BytesSent           int64   `json:"bytes_sent"`
	DurationMS          float64 `json:"duration_ms"`
	UpstreamHost        string  `json:"upstream_host"`
	UpstreamCluster     string  `json:"upstream_cluster"`
	UpstreamLocality    string  `json:"upstream_locality"`
	RequestID           string  `json:"x_request_id"`
	TraceID             string  `json:"trace_id"`
	SourceIdentity      string  `json:"source_identity"`
	DestinationIdentity string  `json:"destination_identity"`
	UserAgent           string  `json:"user_agent"`
	Retries             int     `json:"retries"`
	Reason              string  `json:"reason"`
}

// decodedString is what encoding/json yields for s after a round trip:
// each invalid byte becomes U+FFFD.
func decodedString(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

func TestAccessLogRoundTrip(t *testing.T) {
	start := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))
	for i, s := range hostile {
		e := &LogEntry{
			StartTime: start, Method: s, Authority: s + "a", Path: "/p" + s, Protocol: "HTTP/2",
			ResponseCode: 503, ResponseFlags: FlagUpstreamConnectFailure | FlagRetryLimitExceeded,
			BytesReceived: 12345678901, BytesSent: 42, Duration: 1234567 * time.Nanosecond,
			UpstreamHost: "10.0.0.1:8080", UpstreamCluster: s + "c", UpstreamLocality: "r/z/s",
			RequestID: s + "id", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			SourceIdentity: "spiffe://east/ns/shop/sa/frontend", DestinationIdentity: s,
			UserAgent: s + "ua", Retries: 2, Reason: s + "reason",
		}
		var buf bytes.Buffer
		NewAccessLog(&buf).Log(e)
		line := buf.Bytes()
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("hostile[%d]: output is not exactly one line: %q", i, line)
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var got wireEntry
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("hostile[%d]: decoding %s: %v", i, line, err)
		}
		d := decodedString
		want := wireEntry{
			StartTime: "2026-03-04T04:06:07.123456789Z", Method: d(s), Authority: d(s + "a"), Path: d("/p" + s), Protocol: "HTTP/2",
			ResponseCode: 503, ResponseFlags: "UF,URX", BytesReceived: 12345678901, BytesSent: 42, DurationMS: 1.235,
			UpstreamHost: "10.0.0.1:8080", UpstreamCluster: d(s + "c"), UpstreamLocality: "r/z/s",
			RequestID: d(s + "id"), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			SourceIdentity: "spiffe://east/ns/shop/sa/frontend", DestinationIdentity: d(s),
			UserAgent: d(s + "ua"), Retries: 2, Reason: d(s + "reason"),
		}
		if got != want {
			t.Errorf("hostile[%d]: round trip\n got %+v\nwant %+v", i, got, want)
		}
		if _, err := time.Parse(time.RFC3339Nano, got.StartTime); err != nil {
			t.Errorf("start_time %q is not RFC 3339: %v", got.StartTime, err)
		}
		// Every field is present, in a fixed order.
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			t.Fatal(err)
		}
		if len(raw) != 20 {
			t.Errorf("line has %d fields, want 20: %s", len(raw), line)
		}
	}
}

func TestResponseFlagsText(t *testing.T) {
	tests := []struct {
		f    ResponseFlags
		want string
	}{
		{0, "-"},
		{FlagNoRoute, "NR"},
		{FlagUpstreamOverflow | FlagNoHealthyUpstream, "UH,UO"},
		{FlagDelayInjected | FlagFaultInjected, "DI,FI"},
		{FlagUnauthorized, "UAEX"},
		{FlagDownstreamDisconnect | FlagUpstreamRequestTimeout | FlagRetryLimitExceeded, "UT,DC,URX"},
		{flagEnd, "-"}, // unknown bits are ignored
	}
	for _, tc := range tests {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("ResponseFlags(%#x) = %q, want %q", uint32(tc.f), got, tc.want)
		}
	}
	if flagEnd != 1<<len(flagCodes) {
		t.Errorf("%d flag constants but %d codes", bitsOf(flagEnd-1), len(flagCodes))
	}
	if len(FlagCodes()) != len(flagCodes) {
		t.Error("FlagCodes is incomplete")
	}
}

func bitsOf(f ResponseFlags) int {
	n := 0
	for ; f != 0; f &= f - 1 {
		n++
	}
	return n
}

// unsafeWriter is a writer that is not safe for concurrent use and fails
// the test if two Writes overlap.
type unsafeWriter struct {
	t      *testing.T
	mu     sync.Mutex
	inside bool
	buf    bytes.Buffer
	writes int
}

func (w *unsafeWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.inside {
		w.t.Error("concurrent Write")
	}
	w.inside = true
	w.mu.Unlock()
	n, err := w.buf.Write(p)
	w.mu.Lock()
	w.inside = false
	w.writes++
	w.mu.Unlock()
	return n, err
}

func TestAccessLogConcurrent(t *testing.T) {
	w := &unsafeWriter{t: t}
	a := NewAccessLog(w)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				a.Log(&LogEntry{Path: fmt.Sprintf("/w%d/%d/%s", g, i, strings.Repeat("x", i)), ResponseCode: 200})
			}
		}()
	}
	wg.Wait()
	if w.writes != workers*each {
		t.Errorf("%d writes for %d lines, want one write per line", w.writes, workers*each)
	}
	sc := bufio.NewScanner(&w.buf)
	seen := map[string]bool{}
	for sc.Scan() {
		var e wireEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		seen[e.Path] = true
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct lines, want %d", len(seen), workers*each)
	}
}

type failWriter struct{ short bool }

func (f failWriter) Write(p []byte) (int, error) {
	if f.short {
		return len(p) / 2, nil
	}
	return 0, errors.New("disk full")
}

func TestAccessLogWriteErrors(t *testing.T) {
	for _, w := range []io.Writer{failWriter{}, failWriter{short: true}} {
		a := NewAccessLog(w)
		a.Log(&LogEntry{})
		a.Log(&LogEntry{})
		if got := a.WriteErrors(); got != 2 {
			t.Errorf("%T%+v: WriteErrors = %d, want 2", w, w, got)
		}
	}
}

func TestAccessLogNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	a := NewAccessLog(io.Discard)
	e := benchEntry()
	a.Log(e)
	// sync.Pool may drop its contents at a GC; allow for a rare refill.
	if n := testing.AllocsPerRun(1000, func() { a.Log(e) }); n > 0.01 {
		t.Errorf("Log allocates %v times per line, want 0", n)
	}
}

func benchEntry() *LogEntry {
	return &LogEntry{
		StartTime: time.Now(), Method: "GET", Authority: "checkout.pay.svc.clusterset.local:8080",
		Path: "/api/v1/cart?id=42&q=\"x\"", Protocol: "HTTP/1.1", ResponseCode: 200,
		ResponseFlags: FlagUpstreamConnectFailure, BytesReceived: 123, BytesSent: 4567,
		Duration: 1500 * time.Microsecond, UpstreamHost: "10.1.2.3:8080",
		UpstreamCluster: "outbound|8080||checkout.pay.svc.clusterset.local", UpstreamLocality: "us-west1/us-west1-a/",
		RequestID: "7f1c6a2e-1b1d-4c1e-9a55-2d3c4b5a6978", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		SourceIdentity: "spiffe://east.example/ns/shop/sa/frontend", DestinationIdentity: "spiffe://west.example/ns/pay/sa/checkout",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", Retries: 1,
	}
}

func BenchmarkAccessLog(b *testing.B) {
	a := NewAccessLog(io.Discard)
	e := benchEntry()
	b.ReportAllocs()
	for b.Loop() {
		a.Log(e)
	}
}

func BenchmarkAccessLogParallel(b *testing.B) {
	a := NewAccessLog(io.Discard)
	e := benchEntry()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Log(e)
		}
	})
}

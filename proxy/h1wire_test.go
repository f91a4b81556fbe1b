package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The fast paths of h1wire.go are checked against net/http's codec: for
// every input a fast path accepts, the result must equal net/http's; when
// it declines it must leave the reader as it was.

type wireCtxKey struct{}

// diffReadRequest runs readRequestFast and http.ReadRequest on raw and
// returns whether the fast path took it and what differs ("" if nothing).
func diffReadRequest(raw string) (fast bool, diff string) {
	ctx := context.WithValue(context.Background(), wireCtxKey{}, raw)
	nbr := bufio.NewReaderSize(strings.NewReader(raw), h1ReadBufSize)
	nbr.Peek(1)
	want, werr := http.ReadRequest(nbr)

	fbr := bufio.NewReaderSize(strings.NewReader(raw), h1ReadBufSize)
	fbr.Peek(1)
	before := fbr.Buffered()
	got, ok := readRequestFast(ctx, fbr)
	if !ok {
		if fbr.Buffered() != before {
			return false, "declined after consuming bytes"
		}
		if rest, _ := io.ReadAll(fbr); string(rest) != raw {
			return false, "declined but the reader changed"
		}
		return false, ""
	}
	if werr != nil {
		return true, fmt.Sprintf("fast path accepted what net/http rejects (%v)", werr)
	}
	want = want.WithContext(ctx)
	if d := diffBodies(fbr, got.Body, got.ContentLength, want.Body); d != "" {
		return true, d
	}
	got.Body, want.Body = nil, nil
	if !reflect.DeepEqual(got, want) {
		return true, fmt.Sprintf("requests differ:\nfast     %#v\nnet/http %#v\nURL %#v vs %#v", *got, *want, *got.URL, *want.URL)
	}
	return true, diffRest(fbr, nbr)
}

func TestReadRequestFastMatchesNetHTTP(t *testing.T) {
	big := strings.Repeat("x", 5000)
	tests := []struct {
		name string
		raw  string
		fast bool
	}{
		{"simple GET", "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", true},
		{"no headers", "GET /x HTTP/1.1\r\n\r\n", true},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", true},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
		{"close", "GET / HTTP/1.1\r\nConnection: keep-alive, CLOSE\r\n\r\n", true},
		{"close token inside another", "GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true},
		{"query", "GET /p/q?a=b&c=d%20e HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"force query", "GET /p? HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"two question marks", "GET /p?? HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"question mark in query", "GET /p?a?b HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"root query", "GET /?x HTTP/1.1\r\n\r\n", true},
		{"escaped path", "GET /a%20b/%2F?q HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"path needing RawPath", "GET /a!b*(c)'[d] HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"bad escape", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"lower-case keys", "GET / HTTP/1.1\r\nhost: a\r\ncontent-type: text/plain\r\nx-b3-traceid: 1\r\n\r\n", true},
		{"odd-case keys", "GET / HTTP/1.1\r\nhOsT: a\r\ncOnTeNt-TyPe: x\r\nX--Y: z\r\n\r\n", true},
		{"repeated header", "GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nX: 1\r\naccept: b\r\nAccept: c\r\n\r\n", true},
		{"whitespace around values", "GET / HTTP/1.1\r\nHost:a\r\nX:  \t v w \t \r\nY:\r\nZ: \r\n\r\n", true},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \xff\r\n\r\n", true},
		{"token bytes in key", "GET / HTTP/1.1\r\nX-!#$%&'*+.^_`|~: v\r\n\r\n", true},
		{"pragma no-cache", "GET / HTTP/1.1\r\nPragma: no-cache\r\n\r\n", true},
		{"pragma with cache-control", "GET / HTTP/1.1\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\n\r\n", true},
		{"lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"extension method", "PURGE / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"POST with body", "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n", true},
		{"body with leading zeros", "POST / HTTP/1.1\r\nContent-Length: 005\r\n\r\nhello", true},
		{"spaces around length", "POST / HTTP/1.1\r\nContent-Length:  5 \t\r\n\r\nhello", true},
		{"zero length", "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n", true},
		{"short body", "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello", true},
		{"GET with body", "GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", true},
		{"expect", "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", true},
		{"trailer without chunking", "POST / HTTP/1.1\r\nTrailer: X\r\nContent-Length: 1\r\n\r\na", true},
		{"no host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", true},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", true},

		// Smuggling and header injection attempts: declined (net/http
		// rejects or normalises them).
		{"two lengths in one", "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!", false},
		{"two length headers", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", false},
		{"two equal length headers", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", false},
		{"plus length", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", false},
		{"negative length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", false},
		{"empty length", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", false},
		{"hex length", "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello", false},
		{"huge length", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", false},
		{"chunked and length", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", false},
		{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false},
		{"odd transfer-encoding", "POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n", false},
		{"TE on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", false},
		{"space in key", "GET / HTTP/1.1\r\nBad Key: v\r\n\r\n", false},
		{"space before colon", "GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello", false},
		{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", false},
		{"bare LF endings", "GET / HTTP/1.1\nHost: a\n\n", false},
		{"bare LF in header", "GET / HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\r\nhello", false},
		{"bare LF ending the head", "GET / HTTP/1.1\r\nX: a\n\r\nContent-Length: 5\r\n\r\n", false},
		{"bare CR in value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", false},
		{"bare CR in request line", "GET /a\rb HTTP/1.1\r\n\r\n", false},
		{"NUL in value", "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", false},
		{"DEL in value", "GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", false},
		{"control in key", "GET / HTTP/1.1\r\nX\x01: a\r\n\r\n", false},
		{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", false},
		{"obs-fold of length", "POST / HTTP/1.1\r\nContent-Length:\r\n 5\r\n\r\nhello", false},
		{"leading space first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", false},
		{"duplicate host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
		{"duplicate host other case", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", false},
		{"absolute-form", "GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"authority-looking path", "GET //evil.example/x HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", false},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", false},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", false},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", false},
		{"version with trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", false},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", false},
		{"empty key", "GET / HTTP/1.1\r\n: a\r\n\r\n", false},
		{"incomplete head", "GET / HTTP/1.1\r\nHost: a\r\n", false},
		{"head larger than the buffer", "GET / HTTP/1.1\r\nX: " + big + "\r\n\r\n", false},
		{"h2 preface", h2Preface, false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fast, diff := diffReadRequest(tt.raw)
			if diff != "" {
				t.Fatal(diff)
			}
			if fast != tt.fast {
				t.Fatalf("fast path took it: %v, want %v", fast, tt.fast)
			}
		})
	}
}

// diffReadResponse runs readResponseFast and http.ReadResponse on raw, as
// the response to a request of method.
func diffReadResponse(raw, method string) (fast bool, diff string) {
	req := &http.Request{Method: method, URL: &url.URL{Path: "/"}}
	nbr := bufio.NewReaderSize(strings.NewReader(raw), 16<<10)
	want, werr := http.ReadResponse(nbr, req)

	fbr := bufio.NewReaderSize(strings.NewReader(raw), 16<<10)
	w, ok, gerr := readResponseFast(fbr, req)
	if !ok {
		if rest, _ := io.ReadAll(fbr); string(rest) != raw {
			return false, "declined but the reader changed"
		}
		return false, ""
	}
	if w == nil {
		if gerr == nil || werr == nil || gerr.Error() != werr.Error() {
			return true, fmt.Sprintf("errors: fast %v, net/http %v", gerr, werr)
		}
		return true, ""
	}
	if gerr != nil || werr != nil {
		return true, fmt.Sprintf("fast path accepted (%v) what net/http rejects (%v)", gerr, werr)
	}
	got := &w.Response
	if d := diffBodies(fbr, got.Body, got.ContentLength, want.Body); d != "" {
		return true, d
	}
	got.Body, want.Body = nil, nil
	if !reflect.DeepEqual(got, want) {
		return true, fmt.Sprintf("responses differ:\nfast     %#v\nnet/http %#v", *got, *want)
	}
	return true, diffRest(fbr, nbr)
}

// diffBodies reads a fast path's body (nil: the caller's Content-Length
// body over fbr) and net/http's to the end and says how they differ ("" if
// they do not).
func diffBodies(fbr *bufio.Reader, got io.ReadCloser, length int64, want io.ReadCloser) string {
	if got == nil {
		if length <= 0 {
			return "nil body without a length"
		}
		got = &clBody{br: fbr, remain: length}
	}
	if (got == http.NoBody) != (want == http.NoBody) {
		return fmt.Sprintf("body NoBody: fast %v, net/http %v", got == http.NoBody, want == http.NoBody)
	}
	gb, gerr := io.ReadAll(got)
	wb, werr := io.ReadAll(want)
	if !bytes.Equal(gb, wb) || !errors.Is(gerr, werr) && fmt.Sprint(gerr) != fmt.Sprint(werr) {
		return fmt.Sprintf("body: fast %q %v, net/http %q %v", gb, gerr, wb, werr)
	}
	// After the end (or an early one), the body keeps saying io.EOF.
	if n, err := got.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		return fmt.Sprintf("read past the end: %d %v", n, err)
	}
	return ""
}

// diffRest says how what is left in the two readers after the message
// differs ("" if it does not).
func diffRest(fbr, nbr *bufio.Reader) string {
	gr, _ := io.ReadAll(fbr)
	wr, _ := io.ReadAll(nbr)
	if !bytes.Equal(gr, wr) {
		return fmt.Sprintf("rest after the message: fast %q, net/http %q", gr, wr)
	}
	return ""
}

func TestReadResponseFastMatchesNetHTTP(t *testing.T) {
	big := strings.Repeat("x", 17<<10)
	tests := []struct {
		name   string
		raw    string
		method string
		fast   bool
	}{
		{"200 with body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", "GET", true},
		{"empty body", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n", "GET", true},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\na", "GET", true},
		{"empty reason", "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\na", "GET", true},
		{"odd reason", "HTTP/1.1 404 Not  Found here \r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"unknown code", "HTTP/1.1 599 Weird\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"lower-case keys", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nok", "GET", true},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\na", "GET", true},
		{"connection close among others", "HTTP/1.1 200 OK\r\nConnection: upgrade,  close \r\nContent-Length: 1\r\n\r\na", "GET", true},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na", "GET", true},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na", "GET", true},
		{"HTTP/1.0 close", "HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na", "GET", true},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", "GET", true},
		{"204 with length", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "GET", true},
		{"304 with length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", "GET", true},
		{"HEAD with length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "HEAD", true},
		{"HEAD without length", "HTTP/1.1 200 OK\r\n\r\n", "HEAD", true},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", "GET", true},
		{"pragma", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"trailer without chunking", "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"empty input", "", "GET", true}, // the read error, as net/http reports it

		{"no length", "HTTP/1.1 200 OK\r\n\r\nuntil close", "GET", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET", false},
		{"chunked and length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", "GET", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "GET", false},
		{"list length", "HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\na", "GET", false},
		{"100 continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "GET", false},
		{"code 099", "HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"four-digit code", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"tab after code", "HTTP/1.1 200\tOK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"signed code", "HTTP/1.1 +20 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"two spaces", "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"obs-text reason", "HTTP/1.1 200 \xffK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/2", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.2", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", "GET", false},
		{"CR in value", "HTTP/1.1 200 OK\r\nX: a\rSet-Cookie: x\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"NUL in value", "HTTP/1.1 200 OK\r\nX: \x00\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"space in key", "HTTP/1.1 200 OK\r\nContent Length: 0\r\n\r\n", "GET", false},
		{"incomplete", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", "GET", false},
		{"head larger than the buffer", "HTTP/1.1 200 OK\r\nX: " + big + "\r\nContent-Length: 0\r\n\r\n", "GET", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fast, diff := diffReadResponse(tt.raw, tt.method)
			if diff != "" {
				t.Fatal(diff)
			}
			if fast != tt.fast {
				t.Fatalf("fast path took it: %v, want %v", fast, tt.fast)
			}
		})
	}
}

// diffWriteRequest writes the request mk makes with writeRequestFast and
// with Request.Write (a fresh one each) and compares the bytes and errors.
func diffWriteRequest(mk func() *http.Request) (fast bool, diff string) {
	var want bytes.Buffer
	wbw := bufio.NewWriter(&want)
	werr := mk().Write(wbw)
	wbw.Flush()

	var got bytes.Buffer
	gbw := bufio.NewWriterSize(&got, 64)
	handled, gerr := writeRequestFast(gbw, mk())
	gbw.Flush()
	if !handled {
		if got.Len() != 0 {
			return false, fmt.Sprintf("declined after writing %q", got.String())
		}
		return false, ""
	}
	if fmt.Sprint(gerr) != fmt.Sprint(werr) {
		return true, fmt.Sprintf("errors: fast %v, net/http %v", gerr, werr)
	}
	if gerr == nil && got.String() != want.String() {
		return true, fmt.Sprintf("output:\nfast     %q\nnet/http %q", got.String(), want.String())
	}
	return true, ""
}

// closeCounter is a body that counts its Close calls.
type closeCounter struct {
	io.Reader
	closed *int
}

func (c closeCounter) Close() error { *c.closed++; return nil }

func TestWriteRequestFastMatchesNetHTTP(t *testing.T) {
	base := func(mod func(r *http.Request)) func() *http.Request {
		return func() *http.Request {
			r := &http.Request{
				Method: "GET",
				URL:    &url.URL{Scheme: "http", Host: "10.0.0.1:8080", Path: "/api/v1"},
				Header: http.Header{"Accept": {"*/*"}, "X-Request-Id": {"abc"}},
				Host:   "svc.example",
			}
			if mod != nil {
				mod(r)
			}
			return r
		}
	}
	withBody := func(method, body string, cl int64) func(r *http.Request) {
		return func(r *http.Request) {
			r.Method = method
			r.Body = io.NopCloser(strings.NewReader(body))
			r.ContentLength = cl
		}
	}
	many := http.Header{}
	for i := range 40 {
		many[fmt.Sprintf("X-H%d", i)] = []string{"v"}
	}
	tests := []struct {
		name string
		mk   func() *http.Request
		fast bool
	}{
		{"GET", base(nil), true},
		{"empty method", base(func(r *http.Request) { r.Method = "" }), true},
		{"query", base(func(r *http.Request) { r.URL.RawQuery = "a=b&c" }), true},
		{"force query", base(func(r *http.Request) { r.URL.ForceQuery = true }), true},
		{"empty path", base(func(r *http.Request) { r.URL.Path = "" }), true},
		{"raw path", base(func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/a/b c", "/a%2Fb%20c" }), true},
		{"escaped path", base(func(r *http.Request) { r.URL.Path = "/a b/é" }), true},
		{"host from URL", base(func(r *http.Request) { r.Host = "" }), true},
		{"invalid host", base(func(r *http.Request) { r.Host = "a b\r\nX-Evil: 1" }), true},
		{"IPv6 host", base(func(r *http.Request) { r.Host = "[::1]:80" }), true},
		{"IPv6 zone", base(func(r *http.Request) { r.Host = "[fe80::1%25eth0]:80" }), false},
		{"non-ASCII host", base(func(r *http.Request) { r.Host = "bücher.example" }), false},
		{"user agent", base(func(r *http.Request) { r.Header["User-Agent"] = []string{" curl/8 \r\n", "second"} }), true},
		{"empty user agent", base(func(r *http.Request) { r.Header["User-Agent"] = []string{""} }), true},
		{"no user agent values", base(func(r *http.Request) { r.Header["User-Agent"] = []string{} }), true},
		{"lower-case user agent", base(func(r *http.Request) { r.Header["user-agent"] = []string{"x"} }), true},
		{"header injection in value", base(func(r *http.Request) { r.Header["X-A"] = []string{"a\r\nX-Evil: 1", "\tb\n"} }), true},
		{"invalid header name", base(func(r *http.Request) { r.Header["Bad Name"] = []string{"v"}; r.Header["X\r\nEvil"] = []string{"v"} }), true},
		{"excluded headers", base(func(r *http.Request) {
			r.Header["Host"] = []string{"other"}
			r.Header["Content-Length"] = []string{"99"}
			r.Header["Transfer-Encoding"] = []string{"chunked"}
			r.Header["Trailer"] = []string{"X"}
		}), true},
		{"many values", base(func(r *http.Request) { r.Header["Set-Cookie"] = []string{"a", "b", "c"}; r.Header["Empty"] = nil }), true},
		{"nil header", base(func(r *http.Request) { r.Header = nil }), true},
		{"close", base(func(r *http.Request) { r.Close = true }), true},
		{"close with connection header", base(func(r *http.Request) { r.Close = true; r.Header["Connection"] = []string{"close"} }), false},
		{"POST body", base(withBody("POST", "hello", 5)), true},
		{"PUT empty", base(func(r *http.Request) { r.Method = "PUT" }), true},
		{"PATCH NoBody", base(func(r *http.Request) { r.Method = "PATCH"; r.Body = http.NoBody }), true},
		{"DELETE empty", base(func(r *http.Request) { r.Method = "DELETE" }), true},
		{"GET with body", base(withBody("GET", "abc", 3)), true},
		{"body longer than length", base(withBody("POST", "hello!", 5)), true},
		{"body shorter than length", base(withBody("POST", "hell", 5)), true},
		{"large body", base(withBody("POST", strings.Repeat("z", 10000), 10000)), true},
		{"unknown length", base(withBody("POST", "hello", -1)), false},
		{"body with zero length", base(withBody("POST", "hello", 0)), false},
		{"length without body", base(func(r *http.Request) { r.ContentLength = 3 }), false},
		{"chunked", base(func(r *http.Request) { withBody("POST", "x", 1)(r); r.TransferEncoding = []string{"chunked"} }), false},
		{"trailer", base(func(r *http.Request) { withBody("POST", "x", 1)(r); r.Trailer = http.Header{"X": nil} }), false},
		{"CONNECT", base(func(r *http.Request) { r.Method = "CONNECT" }), false},
		{"method with space", base(func(r *http.Request) { r.Method = "GET / HTTP/1.1\r\nX:" }), false},
		{"control in path (escaped)", base(func(r *http.Request) { r.URL.RawPath = "/a\nb"; r.URL.Path = "/a\nb" }), true},
		{"control in query", base(func(r *http.Request) { r.URL.RawQuery = "a\r\nb" }), false},
		{"opaque", base(func(r *http.Request) { r.URL.Opaque = "/x" }), false},
		{"too many headers to sort", base(func(r *http.Request) { r.Header = many }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fast, diff := diffWriteRequest(tt.mk)
			if diff != "" {
				t.Fatal(diff)
			}
			if fast != tt.fast {
				t.Fatalf("fast path took it: %v, want %v", fast, tt.fast)
			}
		})
	}
}

// TestWriteRequestFastClosesBody: like Request.Write, the body is closed
// once the request is written, and left alone when the fast path declines.
func TestWriteRequestFastClosesBody(t *testing.T) {
	for _, cl := range []int64{5, -1} {
		closed := 0
		r := &http.Request{Method: "POST", URL: &url.URL{Path: "/"}, Host: "a", ContentLength: cl,
			Body: closeCounter{strings.NewReader("hello"), &closed}}
		handled, err := writeRequestFast(bufio.NewWriter(io.Discard), r)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 0}[handled]; closed != want {
			t.Errorf("length %d: handled %v, body closed %d times, want %d", cl, handled, closed, want)
		}
	}
}

// TestClBodyEOF: the end is reported with the last bytes, and every read
// after the end (or after an early end) says io.EOF, as net/http's body.
func TestClBodyEOF(t *testing.T) {
	tests := []struct {
		name  string
		input string
		n     int64
		reads []string // "data|err"
	}{
		{"exact", "hello", 5, []string{"hello|EOF", "|EOF"}},
		{"more buffered", "hello world", 5, []string{"hello|EOF", "|EOF"}},
		{"short", "hel", 5, []string{"hel|<nil>", "|unexpected EOF", "|EOF"}},
		{"zero", "abc", 0, []string{"|EOF"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &clBody{br: bufio.NewReader(strings.NewReader(tt.input)), remain: tt.n}
			for i, want := range tt.reads {
				p := make([]byte, 64)
				n, err := b.Read(p)
				e := "<nil>"
				if err != nil {
					e = err.Error()
				}
				if got := string(p[:n]) + "|" + e; got != want {
					t.Fatalf("read %d: %q, want %q", i, got, want)
				}
			}
		})
	}
}

// The micro-benchmarks compare the fast paths with net/http's codec on a
// typical sidecar message.

const (
	benchWireRequest  = "GET /api/v1/items?id=7 HTTP/1.1\r\nHost: svc.ns.svc.cluster.local:8080\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\nx-request-id: 0f1e2d3c\r\nAccept-Encoding: gzip\r\n\r\n"
	benchWireResponse = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDate: Mon, 23 Nov 2026 18:00:00 GMT\r\nServer: envoy\r\n\r\n{}"
)

func benchReader(b *testing.B, raw string, read func(br *bufio.Reader)) {
	r := strings.NewReader(raw)
	br := bufio.NewReaderSize(r, 4096)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(raw)
		br.Reset(r)
		br.Peek(1)
		read(br)
	}
}

func BenchmarkReadRequest(b *testing.B) {
	ctx := context.Background()
	b.Run("fast", func(b *testing.B) {
		benchReader(b, benchWireRequest, func(br *bufio.Reader) {
			if _, ok := readRequestFast(ctx, br); !ok {
				b.Fatal("declined")
			}
		})
	})
	b.Run("net-http", func(b *testing.B) {
		benchReader(b, benchWireRequest, func(br *bufio.Reader) {
			req, err := http.ReadRequest(br)
			if err != nil {
				b.Fatal(err)
			}
			if req.WithContext(ctx) == nil {
				b.Fatal("no request")
			}
		})
	})
}

func BenchmarkReadResponse(b *testing.B) {
	req := &http.Request{Method: "GET"}
	b.Run("fast", func(b *testing.B) {
		benchReader(b, benchWireResponse, func(br *bufio.Reader) {
			if _, ok, err := readResponseFast(br, req); !ok || err != nil {
				b.Fatal("declined", err)
			}
		})
	})
	b.Run("net-http", func(b *testing.B) {
		benchReader(b, benchWireResponse, func(br *bufio.Reader) {
			if _, err := http.ReadResponse(br, req); err != nil {
				b.Fatal(err)
			}
		})
	})
}

func BenchmarkWriteRequest(b *testing.B) {
	req := &http.Request{
		Method: "GET",
		URL:    &url.URL{Scheme: "http", Host: "10.0.0.1:8080", Path: "/api/v1/items", RawQuery: "id=7"},
		Header: http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8.5"}, "X-Request-Id": {"0f1e2d3c"},
			"Accept-Encoding": {"gzip"}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		Host: "svc.ns.svc.cluster.local:8080",
	}
	bw := bufio.NewWriter(io.Discard)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := writeRequestFast(bw, req); !ok || err != nil {
				b.Fatal("declined", err)
			}
			bw.Flush()
		}
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := req.Write(bw); err != nil {
				b.Fatal(err)
			}
			bw.Flush()
		}
	})
}

// TestH1HeaderLimitBelowReadBuffer: with a head limit smaller than the read
// buffer, a head that arrives whole is parsed by the fast path, and the
// limit still holds to the byte.
func TestH1HeaderLimitBelowReadBuffer(t *testing.T) {
	const limit = 1024
	br := bufio.NewReaderSize(strings.NewReader(headOfSize(limit+1)), h1ReadBufSize)
	br.Peek(1)
	if _, ok := readRequestFast(context.Background(), br); !ok {
		t.Fatal("the fast path declines a head just over the limit: the test would check nothing")
	}
	checkHeaderLimit(t, limit)
}

// TestH1PoolFastPathBodies: responses read by the fast path keep the
// pool's contract: a body read to its end returns the connection, a body
// cut short fails with io.ErrUnexpectedEOF and the connection is dropped,
// bodiless responses release at once. The upstream sees requests written
// by the fast writer.
func TestH1PoolFastPathBodies(t *testing.T) {
	lis, err := net.Listen("tcp", "127.61.0.1:18081")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	seen := make(chan *http.Request, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	defer func() {
		lis.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(r.Body)
					r.Body = io.NopCloser(bytes.NewReader(body))
					seen <- r
					switch r.URL.Path {
					case "/hello":
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
					case "/head":
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
					case "/204":
						io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
					case "/echo":
						fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
					case "/short":
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
						return
					}
				}
			})
		}
	})

	p := newH1Pool(plainDial)
	defer p.CloseIdleConnections(true)
	addr := lis.Addr().String()
	idle := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle[addr])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	do := func(req *http.Request) (*http.Response, *http.Request) {
		t.Helper()
		resp, err := p.RoundTrip(ctx, req, addr)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-seen:
			return resp, r
		case <-ctx.Done():
			t.Fatal("the upstream saw no request")
		}
		return nil, nil
	}

	for i := range 2 {
		resp, _ := do(h1req("GET", addr, "/hello"))
		if got := readAll(t, resp); got != "hello" || idle() != 1 {
			t.Fatalf("GET %d: body %q, %d idle connections, want hello and 1", i, got, idle())
		}
	}
	resp, _ := do(h1req("HEAD", addr, "/head"))
	if resp.Body != http.NoBody || resp.ContentLength != 100 || idle() != 1 {
		t.Fatalf("HEAD: body %T, length %d, %d idle, want NoBody, 100, 1", resp.Body, resp.ContentLength, idle())
	}
	resp, _ = do(h1req("GET", addr, "/204"))
	if resp.StatusCode != 204 || resp.Body != http.NoBody || idle() != 1 {
		t.Fatalf("204: %d %T, %d idle", resp.StatusCode, resp.Body, idle())
	}
	post := h1req("POST", addr, "/echo")
	post.Header = http.Header{"X-A": {"1"}}
	post.Body = io.NopCloser(strings.NewReader("payload"))
	post.ContentLength = 7
	post.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("payload")), nil }
	resp, r := do(post)
	if got := readAll(t, resp); got != "payload" || r.ContentLength != 7 || r.Header.Get("X-A") != "1" ||
		r.UserAgent() != "Go-http-client/1.1" || r.Host != "svc" {
		t.Fatalf("POST: echoed %q; upstream saw length %d, header %v, host %q", got, r.ContentLength, r.Header, r.Host)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for keep-alive requests, want 1", n)
	}
	resp, _ = do(h1req("GET", addr, "/short"))
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("body cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	if idle() != 0 {
		t.Fatal("the connection of a body cut short went back to the pool")
	}
}

// TestWireRandomHeads builds many heads from pieces, valid and hostile,
// and checks both readers against net/http on each: random bytes rarely
// reach the accepting paths, these mostly do.
func TestWireRandomHeads(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// pick mostly takes one of the first good pieces, which the fast
	// paths accept, and sometimes any.
	pick := func(s []string, good int) string {
		if rng.IntN(5) != 0 {
			return s[rng.IntN(good)]
		}
		return s[rng.IntN(len(s))]
	}
	methods := []string{"GET", "POST", "HEAD", "PUT", "get", "X-Y", "G T", ""}
	targets := []string{"/", "/a/b", "/a?b=c", "/a?", "/?", "/a%20b", "/a%2", "/a!b", "//x", "http://h/", "*", "/a#b", "/\xc3\xa9", "/a?b?c"}
	versions := []string{"HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 "}
	codes := []string{"200 OK", "200", "200 ", "204 No Content", "304 Not Modified", "404 Not Found", "100 Continue", "101 Upgrade", "2000", "099 X", "500\tX"}
	keys := []string{"Host", "host", "Content-Length", "content-length", "Transfer-Encoding", "Connection", "Pragma", "Cache-Control",
		"X-A", "x-a", "Set-Cookie", "Expect", "Trailer", "Bad Key", "X\x00", ""}
	values := []string{"", "a", " a ", "\ta\t", "0", "5", "05", "+5", "5, 5", "-1", "close", "keep-alive", "Keep-Alive, close", "no-cache",
		"chunked", "a\rb", "a\x00b", "caf\xc3\xa9", "a\x7f", "100-continue", "12345678901234567890"}
	seps := []string{"\r\n", "\n", "\r\n ", "\r", "\r\n\t"}
	var accepted [2]int // requests, responses
	for i := 0; i < 30000; i++ {
		var b strings.Builder
		response := i%2 == 1
		if response {
			b.WriteString(pick(versions, 2) + " " + pick(codes, 6))
		} else {
			b.WriteString(pick(methods, 6) + " " + pick(targets, 8) + " " + pick(versions, 2))
		}
		for range rng.IntN(8) {
			b.WriteString(pick(seps, 1) + pick(keys, 13) + ":" + pick(values, 16))
		}
		b.WriteString(pick(seps, 1) + "\r\n" + strings.Repeat("hello", rng.IntN(3)))
		raw := b.String()
		var (
			fast bool
			diff string
		)
		if response {
			method := "GET"
			if rng.IntN(4) == 0 {
				method = "HEAD"
			}
			fast, diff = diffReadResponse(raw, method)
		} else {
			fast, diff = diffReadRequest(raw)
		}
		if diff != "" {
			t.Fatalf("%q: %s", raw, diff)
		}
		if fast {
			accepted[i%2]++
		}
	}
	t.Logf("the fast paths took %d of 15000 requests and %d of 15000 responses", accepted[0], accepted[1])
	if accepted[0] < 500 || accepted[1] < 500 {
		t.Fatalf("the fast paths took %d requests and %d responses: the pieces rarely reach them", accepted[0], accepted[1])
	}
}

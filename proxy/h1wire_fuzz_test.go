package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Differential fuzz targets for the fast paths of h1wire.go: whatever the
// input, a fast path either declines (leaving the reader untouched) or
// produces exactly net/http's result, and never accepts what net/http
// rejects.

var wireRequestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
	"GET /api/v1/items?id=7&x=%20 HTTP/1.1\r\nHost: svc.ns.svc.cluster.local:8080\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\nx-request-id: 0f1e\r\n\r\n",
	"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET /p? HTTP/1.1\r\nPragma: no-cache\r\nConnection: close\r\n\r\n",
	"PUT /a%2Fb HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET http://x/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
}

func FuzzReadRequestFast(f *testing.F) {
	for _, s := range wireRequestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if _, diff := diffReadRequest(string(raw)); diff != "" {
			t.Fatalf("%q: %s", raw, diff)
		}
	})
}

func FuzzReadResponseFast(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nDate: Mon, 23 Nov 2026 18:00:00 GMT\r\n\r\nhello",
		"HTTP/1.1 204 No Content\r\nServer: envoy\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nEtag: \"x\"\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\nx-causeway-flags: UF\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nSet-Cookie: a\r\n\tb\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		if _, diff := diffReadResponse(string(raw), method); diff != "" {
			t.Fatalf("%q (%s): %s", raw, method, diff)
		}
	})
}

// FuzzWriteRequestFast builds a request from the inputs (header pairs are
// NUL-separated key, value, key, value...) and checks that the fast writer
// writes byte for byte what Request.Write writes, with the same error, and
// so parses back the same.
func FuzzWriteRequestFast(f *testing.F) {
	f.Add("GET", "svc.example:80", "/api/v1", "", "a=b", "Accept\x00*/*\x00X-Request-Id\x00abc", "", int8(0), false, true)
	f.Add("POST", "10.0.0.1", "/a b", "/a%20b", "", "user-agent\x00x\x00User-Agent\x00 y\r\n", "hello", int8(0), true, false)
	f.Add("PUT", "[::1]:80", "", "", "", "X-A\x00a\r\nX-Evil: 1\x00Bad Name\x00v", "", int8(0), false, false)
	f.Add("DELETE", "a b", "/é", "", "q\r\n", "Connection\x00close", "abc", int8(-1), true, false)
	f.Fuzz(func(t *testing.T, method, host, path, rawPath, query, hdr, body string, delta int8, closing, nilBody bool) {
		mk := func() *http.Request {
			r := &http.Request{
				Method: method,
				URL:    &url.URL{Scheme: "http", Host: "10.1.2.3:8080", Path: path, RawPath: rawPath, RawQuery: query},
				Header: http.Header{},
				Host:   host,
				Close:  closing,
			}
			kv := strings.Split(hdr, "\x00")
			for i := 0; i+1 < len(kv); i += 2 {
				r.Header[kv[i]] = append(r.Header[kv[i]], kv[i+1])
			}
			if !nilBody {
				r.Body = io.NopCloser(strings.NewReader(body))
				r.ContentLength = int64(len(body)) + int64(delta)
			}
			return r
		}
		handled, diff := diffWriteRequest(mk)
		if diff != "" {
			t.Fatal(diff)
		}
		if !handled {
			return
		}
		// Equal bytes parse back equal; check that the fast output is
		// what net/http's reader makes of Request.Write's.
		var a, b bytes.Buffer
		mk().Write(&a)
		bw := bufio.NewWriter(&b)
		if _, err := writeRequestFast(bw, mk()); err != nil {
			return
		}
		bw.Flush()
		ra, erra := http.ReadRequest(bufio.NewReader(&a))
		rb, errb := http.ReadRequest(bufio.NewReader(&b))
		if (erra == nil) != (errb == nil) {
			t.Fatalf("parse back: %v vs %v", erra, errb)
		}
		if erra == nil && (ra.Method != rb.Method || ra.RequestURI != rb.RequestURI || ra.Host != rb.Host || ra.ContentLength != rb.ContentLength) {
			t.Fatalf("parse back differs: %+v vs %+v", ra, rb)
		}
	})
}

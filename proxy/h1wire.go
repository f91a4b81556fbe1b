package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// HTTP/1.1 wire fast paths.
//
// net/http's codec (http.ReadRequest, http.ReadResponse, Request.Write) is
// general: it handles obs-fold, chunked framing, trailers, absolute-form
// targets and lenient line endings, and it pays for that on every message
// (a textproto reader, one string per header key and value, a transfer
// reader or writer, fmt for the request line, a header sort with a pooled
// sorter). The functions here handle the common, simple messages with few
// allocations and decline everything else, in which case the caller uses
// net/http's codec on the same, unconsumed bytes.
//
// The contract, which the differential tests and fuzz targets of
// h1wire_test.go and h1wire_fuzz_test.go check: a fast path accepts a
// strict subset of what net/http accepts, and for every input it accepts
// its result equals net/http's (fields, header map, body framing). It
// declines, without consuming a byte, on anything else: a head not whole in
// the bufio buffer, a line not ended by CRLF, a bare CR or LF, obs-fold, a
// byte net/http would reject or normalise, Transfer-Encoding, more than one
// Content-Length or a Content-Length that is not plain digits, versions
// other than HTTP/1.0 and 1.1, 1xx responses, request targets that are not
// origin-form. Request smuggling through the fast path is therefore no
// easier than through net/http: the body framing it accepts is a single
// plain Content-Length or none.

// wireHead is the shape of a message head found by scanWireHead.
type wireHead struct {
	first int // length of the first line, without CRLF
	lines int // header lines
	n     int // bytes of the head, through the blank line
}

// scanWireHead checks the head at the start of buf, which must hold it
// whole. It reports false for anything outside the subset the fast paths
// accept (see above); the first line is only checked for bytes that are
// not visible ASCII or a space (the callers parse it).
func scanWireHead(buf []byte) (wireHead, bool) {
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return wireHead{}, false
	}
	head := buf[:end+2] // every line with its CRLF
	first := bytes.Index(head, []byte("\r\n"))
	for _, b := range head[:first] {
		if b < ' ' || b > '~' {
			return wireHead{}, false
		}
	}
	lines := 0
	for rest := head[first+2:]; len(rest) > 0; lines++ {
		i := bytes.Index(rest, []byte("\r\n"))
		line := rest[:i]
		rest = rest[i+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return wireHead{}, false // no key, or obs-fold (a leading space is not a token byte)
		}
		for _, b := range line[:colon] {
			if !isTchar(b) {
				return wireHead{}, false
			}
		}
		for _, b := range line[colon+1:] {
			if !validFieldValueByte(b) {
				return wireHead{}, false
			}
		}
	}
	return wireHead{first: first, lines: lines, n: end + 4}, true
}

// build returns the first line and fills h (made if nil) with the header
// of the head at the start of buf that scanWireHead accepted. Keys and
// values are substrings of one copy of the head; the first values of all
// keys share one backing array, vals if it is long enough.
func (wh wireHead) build(buf []byte, h http.Header, vals []string) (line string, _ http.Header) {
	cp := make([]byte, wh.n-2)
	copy(cp, buf)
	// Keys are canonicalised in the copy before it is seen as a string,
	// which is never written again.
	for off := wh.first + 2; off < len(cp); {
		i := bytes.Index(cp[off:], []byte("\r\n"))
		canonicalizeKey(cp[off : off+bytes.IndexByte(cp[off:off+i], ':')])
		off += i + 2
	}
	s := unsafe.String(unsafe.SliceData(cp), len(cp))
	if h == nil {
		h = make(http.Header, wh.lines)
	}
	if len(vals) < wh.lines {
		vals = make([]string, wh.lines)
	}
	for off := wh.first + 2; off < len(s); {
		i := strings.Index(s[off:], "\r\n")
		colon := strings.IndexByte(s[off:off+i], ':')
		key := s[off : off+colon]
		v := trimOWS(s[off+colon+1 : off+i])
		if vv, ok := h[key]; ok {
			h[key] = append(vv, v)
		} else {
			vals[0] = v
			h[key] = vals[:1:1]
			vals = vals[1:]
		}
		off += i + 2
	}
	// RFC 7234 §5.4, as net/http does.
	if hp, ok := h["Pragma"]; ok && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	return s[:wh.first], h
}

// isTchar is isTokenByte as a bit test (textproto's validHeaderFieldByte).
func isTchar(c byte) bool {
	const mask = 0 |
		(1<<(10)-1)<<'0' |
		(1<<(26)-1)<<'a' |
		(1<<(26)-1)<<'A' |
		1<<'!' | 1<<'#' | 1<<'$' | 1<<'%' | 1<<'&' | 1<<'\'' | 1<<'*' | 1<<'+' |
		1<<'-' | 1<<'.' | 1<<'^' | 1<<'_' | 1<<'`' | 1<<'|' | 1<<'~'
	return ((uint64(1)<<c)&(mask&(1<<64-1)) |
		(uint64(1)<<(c-64))&(mask>>64)) != 0
}

// validFieldValueByte reports the bytes textproto accepts in a field
// value: visible ASCII, space, tab and obs-text.
func validFieldValueByte(b byte) bool {
	return b >= ' ' && b != 0x7f || b == '\t'
}

// canonicalizeKey is textproto.CanonicalMIMEHeaderKey in place, for a key
// of token bytes.
func canonicalizeKey(k []byte) {
	upper := true
	for i, c := range k {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		k[i] = c
		upper = c == '-'
	}
}

// trimOWS trims spaces and tabs, as textproto does around a value.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// wireVersion parses the two versions the fast paths accept.
func wireVersion(p string) (minor int, ok bool) {
	switch p {
	case "HTTP/1.1":
		return 1, true
	case "HTTP/1.0":
		return 0, true
	}
	return 0, false
}

// wireContentLength is the body length the header declares: -1 without
// Content-Length; ok false for anything but one value of plain digits
// (net/http accepts a few more forms, or rejects them: the caller
// declines).
func wireContentLength(h http.Header) (n int64, ok bool) {
	cl, has := h["Content-Length"]
	if !has {
		return -1, true
	}
	if len(cl) != 1 || len(cl[0]) == 0 || len(cl[0]) > 18 {
		return 0, false
	}
	for i := 0; i < len(cl[0]); i++ {
		c := cl[0][i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// headerHasToken is httpguts.HeaderValuesContainsToken: a comma-separated
// element of a value equals token, ASCII case-insensitively, once spaces
// and tabs around it are trimmed.
func headerHasToken(vv []string, token string) bool {
	for _, v := range vv {
		for {
			e, rest, more := cutByte(v, ',')
			if asciiEqualFold(trimOWS(e), token) {
				return true
			}
			if !more {
				break
			}
			v = rest
		}
	}
	return false
}

func cutByte(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// asciiEqualFold compares ASCII case-insensitively; any other byte must
// match exactly (httpguts' tokenEqual refuses non-ASCII: the token is
// ASCII, so an exact match of a non-ASCII byte cannot happen).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// wireShouldClose is net/http's shouldClose for HTTP/1.x: whether the
// connection ends after this message.
func wireShouldClose(minor int, h http.Header) bool {
	conn := h["Connection"]
	hasClose := headerHasToken(conn, "close")
	if minor == 0 {
		return hasClose || !headerHasToken(conn, "keep-alive")
	}
	return hasClose
}

// readResponseFast reads the response to req from br when its head is
// whole in br's buffer and within the subset described above; ok false
// means nothing was consumed and http.ReadResponse must read it. It may
// fill an empty buffer first: a read error then is returned as
// http.ReadResponse returns it (ok true, w nil).
//
// The response body is not set when there is one (ContentLength > 0 and
// Body nil): the caller reads ContentLength bytes of br, with w.body.
// Otherwise Body is http.NoBody.
func readResponseFast(br *bufio.Reader, req *http.Request) (w *wireResponse, ok bool, err error) {
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, true, err
		}
	}
	buf, _ := br.Peek(br.Buffered())
	// "HTTP/1.x NNN" then the end of the line or a space and the reason.
	if len(buf) < 12 || buf[8] != ' ' {
		return nil, false, nil
	}
	minor, vok := wireVersion(string(buf[:8]))
	if !vok {
		return nil, false, nil
	}
	c0, c1, c2 := buf[9], buf[10], buf[11]
	if c0 < '2' || c0 > '9' || c1 < '0' || c1 > '9' || c2 < '0' || c2 > '9' {
		return nil, false, nil // 1xx (informational) and non-digits decline
	}
	wh, hok := scanWireHead(buf)
	if !hok || wh.first > 12 && buf[12] != ' ' {
		return nil, false, nil
	}
	w = new(wireResponse)
	line, h := wh.build(buf, nil, w.vals[:])
	if _, te := h["Transfer-Encoding"]; te {
		return nil, false, nil
	}
	cl, clok := wireContentLength(h)
	if !clok {
		return nil, false, nil
	}
	code := int(c0-'0')*100 + int(c1-'0')*10 + int(c2-'0')
	closing := wireShouldClose(minor, h)
	if closing && minor == 1 {
		delete(h, "Connection") // net/http's shouldClose does, for HTTP/1.1 responses
	}
	resp := &w.Response
	*resp = http.Response{
		Status:     line[9:],
		StatusCode: code,
		Proto:      line[:8],
		ProtoMajor: 1,
		ProtoMinor: minor,
		Header:     h,
		Close:      closing,
		Request:    req,
		Body:       http.NoBody,
	}
	switch {
	case req != nil && req.Method == http.MethodHead:
		resp.ContentLength = cl
	case code == http.StatusNoContent || code == http.StatusNotModified:
	case cl < 0:
		return nil, false, nil // delimited by the end of the connection
	case cl > 0:
		resp.ContentLength = cl
		resp.Body = nil
	}
	br.Discard(wh.n)
	return w, true, nil
}

// wireResponse is a response read by readResponseFast, in one allocation
// with what goes with it: the pool's body wrapper (h1client.go), unused
// when the response has no body, and the backing array of a small
// header's values.
type wireResponse struct {
	http.Response
	body h1Body
	vals [6]string
}

// readRequestFast reads the next request from br when its head is whole in
// br's buffer and within the subset described above; ok false means
// nothing was consumed and http.ReadRequest must read it. The request
// equals what http.ReadRequest followed by WithContext(ctx) returns, made
// with ctx from the start (one Request, not two).
//
// The request body is not set when there is one (ContentLength > 0 and
// Body nil): the caller reads ContentLength bytes of br (clBody).
// Otherwise Body is http.NoBody. It never reads from br's source.
func readRequestFast(ctx context.Context, br *bufio.Reader) (*http.Request, bool) {
	buf, _ := br.Peek(br.Buffered())
	// "METHOD /target HTTP/1.x": method and target are checked here, the
	// rest of the head by scanWireHead.
	sp1 := bytes.IndexByte(buf, ' ')
	if sp1 <= 0 {
		return nil, false
	}
	for _, b := range buf[:sp1] {
		if !isTchar(b) {
			return nil, false
		}
	}
	if len(buf) < sp1+2 || buf[sp1+1] != '/' || len(buf) > sp1+2 && buf[sp1+2] == '/' {
		return nil, false // not origin-form, or "//", which url.Parse reads as an authority
	}
	sp2 := sp1 + 1
	for ; sp2 < len(buf) && buf[sp2] != ' '; sp2++ {
		if b := buf[sp2]; b <= ' ' || b > '~' || b == '#' {
			return nil, false
		}
	}
	if len(buf) < sp2+11 || buf[sp2+9] != '\r' || buf[sp2+10] != '\n' {
		return nil, false
	}
	minor, vok := wireVersion(string(buf[sp2+1 : sp2+9]))
	if !vok {
		return nil, false
	}
	wh, hok := scanWireHead(buf)
	if !hok {
		return nil, false
	}
	// NewRequestWithContext is the one way to give a new Request its
	// context; its URL is refilled below, and its header map, made
	// without a size hint, is filled unless it would have to grow.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "", nil)
	if err != nil {
		return nil, false
	}
	h := req.Header
	if wh.lines > 8 {
		h = nil
	}
	line, h := wh.build(buf, h, nil)
	if _, te := h["Transfer-Encoding"]; te {
		return nil, false
	}
	cl, clok := wireContentLength(h)
	if !clok {
		return nil, false
	}
	hosts := h["Host"]
	if len(hosts) > 1 {
		return nil, false // net/http: "too many Host headers"
	}
	target := line[sp1+1 : sp2]
	req.Method = line[:sp1]
	if !setRequestURL(req.URL, target) {
		return nil, false
	}
	req.Proto = line[sp2+1:]
	req.ProtoMinor = minor
	req.Header = h
	req.RequestURI = target
	if len(hosts) == 1 {
		req.Host = hosts[0]
		delete(h, "Host")
	}
	req.Close = wireShouldClose(minor, h)
	req.Body = http.NoBody
	if cl > 0 {
		req.ContentLength = cl
		req.Body = nil
	}
	br.Discard(wh.n)
	return req, true
}

// setRequestURL sets u to url.ParseRequestURI(target) for an origin-form
// target without '#', '//' prefix, controls or non-ASCII bytes.
func setRequestURL(u *url.URL, target string) bool {
	path, query, hasQuery := cutByte(target, '?')
	for i := 0; i < len(path); i++ {
		if !plainPathByte(path[i]) {
			// Escapes and bytes url would escape: its own parser.
			pu, err := url.ParseRequestURI(target)
			if err != nil {
				return false
			}
			*u = *pu
			return true
		}
	}
	*u = url.URL{Path: path}
	if hasQuery {
		// A lone '?' at the end is ForceQuery, as url parses it.
		if query == "" {
			u.ForceQuery = true
		} else {
			u.RawQuery = query
		}
	}
	return true
}

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

// plainPathByte reports the bytes that url leaves as they are in a path
// (no RawPath needed).
func plainPathByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
		return true
	}
	return false
}

// clBody reads a body of known length from its connection's reader, with
// the semantics of net/http's body for a Content-Length: io.EOF with the
// last bytes or after them, io.ErrUnexpectedEOF if the connection ends
// first, and io.EOF for every read after the end (or after an early end).
// It lives inside the body wrappers (h1Body, h1ReqBody) so that it costs
// no allocation of its own.
type clBody struct {
	br     *bufio.Reader
	remain int64
	eof    bool
}

func (b *clBody) Read(p []byte) (int, error) {
	if b.eof || b.remain <= 0 {
		b.eof = true
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.br.Read(p)
	b.remain -= int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
		if b.remain > 0 {
			err = io.ErrUnexpectedEOF
		}
	case err == nil && n > 0 && b.remain == 0:
		b.eof = true
		err = io.EOF
	}
	return n, err
}

func (b *clBody) Close() error { return nil }

// writeRequestFast writes req to bw as req.Write would, for the requests
// the pool sends: no body, or a body of known length; no Transfer-Encoding,
// trailers, CONNECT, client trace or opaque URL. handled false means
// nothing was written and req.Write must write it. Like req.Write it
// closes the body once handled.
//
// The output is byte for byte req.Write's, header order included, for up
// to maxSortedHeaders header keys; a request with more falls back.
func writeRequestFast(bw *bufio.Writer, req *http.Request) (handled bool, err error) {
	u := req.URL
	if u == nil || u.Opaque != "" || len(req.TransferEncoding) != 0 || len(req.Trailer) != 0 ||
		req.Method == http.MethodConnect || len(req.Header) > maxSortedHeaders {
		return false, nil
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validHeaderName(method) {
		return false, nil // req.Write writes any method as it is
	}
	body := req.Body
	cl := req.ContentLength
	switch {
	case body == nil || body == http.NoBody:
		if cl != 0 && body == nil {
			return false, nil // req.Write's error
		}
		body, cl = nil, 0
	case cl <= 0:
		return false, nil // unknown length: req.Write probes or chunks
	}
	if req.Close {
		if _, ok := req.Header["Connection"]; ok {
			return false, nil
		}
	}
	host := req.Host
	if host == "" {
		host = u.Host
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return false, nil // punycode
		}
	}
	if !validHost(host) {
		host = "" // req.Write sends an empty Host rather than an invalid one
	} else if len(host) > 0 && host[0] == '[' && containsByte(host, '%') {
		return false, nil // a zone to remove
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	withQuery := u.ForceQuery || u.RawQuery != ""
	if hasCTL(path) || withQuery && hasCTL(u.RawQuery) {
		return false, nil // req.Write's error
	}
	if httptrace.ContextClientTrace(req.Context()) != nil {
		return false, nil
	}

	defer func() {
		if body != nil {
			if cerr := body.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if withQuery {
		bw.WriteByte('?')
		bw.WriteString(u.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua, ok := req.Header["User-Agent"]; !ok {
		bw.WriteString("User-Agent: Go-http-client/1.1\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		writeHeaderLine(bw, "User-Agent", ua[0])
	}
	if req.Close {
		bw.WriteString("Connection: close\r\n")
	}
	// net/http's shouldSendContentLength, without Transfer-Encoding.
	if cl > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		var num [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], cl, 10))
		bw.WriteString("\r\n")
	}
	// Sorted by key, as net/http writes them.
	var arr [maxSortedHeaders]string
	keys := arr[:0]
	for k := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		writeHeaderLines(bw, k, req.Header[k])
	}
	if _, err := bw.WriteString("\r\n"); err != nil {
		return true, err
	}
	if body == nil {
		return true, nil
	}
	return true, copyBody(bw, body, cl)
}

// maxSortedHeaders bounds the header keys writeRequestFast sorts on the
// stack.
const maxSortedHeaders = 32

// copyBody copies the cl bytes of body into bw and checks that body has
// no more, as req.Write does (with its error). The bytes read past cl go
// to bw's spare buffer and are not written.
func copyBody(bw *bufio.Writer, body io.Reader, cl int64) error {
	var n, extra int64
	for {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		buf := bw.AvailableBuffer()[:bw.Available()]
		if rem := cl - n; rem > 0 && int64(len(buf)) > rem {
			buf = buf[:rem]
		}
		m, err := body.Read(buf)
		if n < cl {
			bw.Write(buf[:m])
			n += int64(m)
		} else {
			extra += int64(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if n+extra != cl {
		return fmt.Errorf("http: ContentLength=%d with Body length %d", cl, n+extra)
	}
	return nil
}

func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

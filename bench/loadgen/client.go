package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// doer sends one request and reads the whole response. A worker owns one
// doer; doers are not safe for concurrent use.
type doer interface {
	do(deadline time.Time) error
	close()
}

// errStatus is returned for a response that is not 2xx.
var errStatus = errors.New("non-2xx response")

// rawClient is a minimal HTTP/1.1 client on one keep-alive net.Conn: it
// writes a fixed GET and parses just enough of the response (status line,
// Content-Length, chunked encoding, Connection: close) to find its end. It
// allocates nothing per request once connected, so the load generator costs
// as little CPU as possible next to the proxy it measures.
type rawClient struct {
	addr string
	req  []byte
	conn net.Conn
	br   *bufio.Reader
}

func newRawClient(addr, host, path string) *rawClient {
	req := fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: causeway-bench\r\n\r\n", path, host)
	return &rawClient{addr: addr, req: req}
}

func (c *rawClient) dial(deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", c.addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c.conn = conn
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

func (c *rawClient) do(deadline time.Time) error {
	if c.conn == nil {
		if err := c.dial(deadline); err != nil {
			return err
		}
	}
	_ = c.conn.SetDeadline(deadline)
	keep, err := c.roundTrip() // keep is false after any I/O or parse error
	if !keep {
		c.close()
	}
	return err
}

func (c *rawClient) roundTrip() (keepAlive bool, err error) {
	if _, err := c.conn.Write(c.req); err != nil {
		return false, fmt.Errorf("write request to %s: %w", c.addr, err)
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return false, fmt.Errorf("read status line from %s: %w", c.addr, err)
	}
	status, err := parseStatusLine(line)
	if err != nil {
		return false, fmt.Errorf("from %s: %w", c.addr, err)
	}
	keepAlive = true
	clen := int64(-1)
	chunked := false
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return false, fmt.Errorf("read header from %s: %w", c.addr, err)
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return false, fmt.Errorf("from %s: header line %q has no ':'", c.addr, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := parseUint(value)
			if err != nil {
				return false, fmt.Errorf("from %s: content-length %q: %w", c.addr, value, err)
			}
			clen = n
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			if asciiEqualFold(value, "close") {
				keepAlive = false
			}
		}
	}
	switch {
	case chunked:
		if err := c.discardChunked(); err != nil {
			return false, err
		}
	case clen >= 0:
		if _, err := c.br.Discard(int(clen)); err != nil {
			return false, fmt.Errorf("read %d-byte body from %s: %w", clen, c.addr, err)
		}
	default:
		// Body delimited by close.
		if _, err := io.Copy(io.Discard, c.br); err != nil {
			return false, fmt.Errorf("read body to EOF from %s: %w", c.addr, err)
		}
		keepAlive = false
	}
	if status < 200 || status > 299 {
		return keepAlive, fmt.Errorf("%w: %d from %s", errStatus, status, c.addr)
	}
	return keepAlive, nil
}

func (c *rawClient) discardChunked() error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read chunk size from %s: %w", c.addr, err)
		}
		line = trimCRLF(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil {
			return fmt.Errorf("chunk size %q from %s: %w", line, c.addr, err)
		}
		if n == 0 {
			break
		}
		if _, err := c.br.Discard(int(n) + 2); err != nil {
			return fmt.Errorf("read chunk from %s: %w", c.addr, err)
		}
	}
	for { // trailers up to the empty line
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read trailer from %s: %w", c.addr, err)
		}
		if len(trimCRLF(line)) == 0 {
			return nil
		}
	}
}

func parseStatusLine(line []byte) (int, error) {
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, fmt.Errorf("malformed status line %q", line)
	}
	n, err := parseUint(line[9:12])
	if err != nil {
		return 0, fmt.Errorf("status code in %q: %w", line, err)
	}
	return int(n), nil
}

func parseUint(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 18 {
		return 0, errors.New("not a decimal number of 1 to 18 digits")
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errors.New("not a decimal number")
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// asciiEqualFold reports whether b equals the lower-case ASCII string s,
// ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// stdClient sends requests with net/http on a Transport of its own that
// keeps exactly one connection, so it is comparable to rawClient.
type stdClient struct {
	tr  *http.Transport
	req *http.Request
}

func newStdClient(addr, host, path string) (*stdClient, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for -addr %s: %w", addr, err)
	}
	req.Host = host
	req.Header.Set("User-Agent", "causeway-bench")
	tr := &http.Transport{
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &stdClient{tr: tr, req: req}, nil
}

func (c *stdClient) do(deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	resp, err := c.tr.RoundTrip(c.req.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("GET %s: %w", c.req.URL, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read body of GET %s: %w", c.req.URL, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %d from GET %s", errStatus, resp.StatusCode, c.req.URL)
	}
	return nil
}

func (c *stdClient) close() { c.tr.CloseIdleConnections() }

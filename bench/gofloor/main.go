// Command gofloor is the "Go floor" row of the data-plane benchmark: the
// least an HTTP/1.1 keep-alive proxy written in Go can do, run with the
// Causeway sidecar's runtime tuning (proxy/runner: sysmon, GC target,
// adaptive GOMAXPROCS) and none of its request work. Between it and nginx
// is what Go's runtime and network poller cost; between Causeway and it is
// what Causeway's own per-request work costs (parsing, routing, load
// balancing, headers, metrics, timeouts).
//
// It forwards each request head verbatim over a pooled upstream
// connection and copies back a response framed by Content-Length. It
// takes only what the benchmark sends (requests without a body) and
// answers anything else with 501 and a close: it is a yardstick, not a
// proxy. It listens on loopback only unless told otherwise.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/causewaymesh/causeway/proxy/runner"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18089", "host:port to listen on")
	upstream := flag.String("upstream", "127.0.0.1:18080", "host:port of the HTTP/1.1 upstream")
	rc := runner.DefaultRuntimeConfig("sidecar")
	rc.Flags(flag.CommandLine)
	flag.Parse()
	if err := rc.Apply(); err != nil {
		fmt.Fprintln(os.Stderr, "gofloor:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gofloor:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; ln.Close() }()
	p := &proxy{upstream: *upstream, idle: make(chan *upConn, 256)}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

type proxy struct {
	upstream string
	idle     chan *upConn
}

type upConn struct {
	c  net.Conn
	br *bufio.Reader
}

var (
	errBody    = errors.New("request has a body")
	errFraming = errors.New("response is not framed by Content-Length")
	notHandled = []byte("HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	headerCL   = []byte("content-length:")
	headerTE   = []byte("transfer-encoding:")
)

const maxHeadSize = 16 << 10

func (p *proxy) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	var head, resp []byte
	for {
		var err error
		head, _, err = readHead(br, head[:0])
		if err != nil {
			if errors.Is(err, errBody) {
				c.Write(notHandled)
			}
			return
		}
		u, err := p.get()
		if err != nil {
			return
		}
		resp, err = u.roundTrip(head, resp[:0])
		if err != nil {
			u.c.Close()
			return
		}
		p.put(u)
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

func (p *proxy) get() (*upConn, error) {
	select {
	case u := <-p.idle:
		return u, nil
	default:
	}
	c, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return nil, err
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

func (p *proxy) put(u *upConn) {
	select {
	case p.idle <- u:
	default:
		u.c.Close()
	}
}

// roundTrip writes a request head and appends the whole response to out.
func (u *upConn) roundTrip(head, out []byte) ([]byte, error) {
	if _, err := u.c.Write(head); err != nil {
		return out, err
	}
	out, n, err := readHead(u.br, out)
	if err != nil {
		if errors.Is(err, errBody) {
			err = errFraming
		}
		return out, err
	}
	if n < 0 {
		return out, errFraming
	}
	for n > 0 {
		b, err := u.br.Peek(min(n, max(u.br.Buffered(), 1)))
		if err != nil {
			return out, err
		}
		out = append(out, b...)
		u.br.Discard(len(b))
		n -= len(b)
	}
	return out, nil
}

// readHead appends a message head to buf and returns its Content-Length
// (-1 if it has none). A head with a body it cannot frame, or a request
// with a body, is errBody.
func readHead(br *bufio.Reader, buf []byte) ([]byte, int, error) {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return buf, 0, err
		}
		buf = append(buf, line...)
		if len(buf) > maxHeadSize {
			return buf, 0, errBody
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > len(headerTE) && bytes.EqualFold(line[:len(headerTE)], headerTE) {
			return buf, 0, errBody
		}
		if len(line) > len(headerCL) && bytes.EqualFold(line[:len(headerCL)], headerCL) {
			v, err := strconv.Atoi(string(bytes.TrimSpace(line[len(headerCL):])))
			if err != nil || v < 0 {
				return buf, 0, errBody
			}
			n = v
		}
	}
	if n > 0 && isRequest(buf) {
		return buf, 0, errBody
	}
	return buf, n, nil
}

func isRequest(head []byte) bool { return !bytes.HasPrefix(head, []byte("HTTP/")) }

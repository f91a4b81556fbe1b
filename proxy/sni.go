package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
)

// routeSNI serves a connection of a TLS passthrough listener: it reads the
// ClientHello (without answering it), picks the chain by server name and
// proxies the untouched bytes, ClientHello included, to that chain's
// cluster. The proxy never sees plaintext. It runs off the accept loop and
// is tracked like a sniffing connection, so a stopping listener closes it.
func (ln *listener) routeSNI(l *config.Listener, c net.Conn) {
	sc, ok := ln.trackPending(c)
	if !ok {
		return
	}
	go func() {
		defer ln.wg.Done()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		name, hello, err := readClientHello(c)
		c.SetReadDeadline(time.Time{})
		stopping := ln.untrackPending(sc)
		chain := pickSNIChain(l.SNI, name)
		if err != nil || stopping || chain == nil {
			if err == nil && chain == nil && !stopping {
				ln.p.log.Debug("TLS passthrough: no chain for the server name", "listener", l.Name, "sni", name)
			}
			c.Close()
			return
		}
		one := *l
		one.SNI, one.TCP = nil, chain.TCP
		ln.serveConn(&one, &prefixConn{Conn: c, prefix: hello})
	}()
}

// errHelloRead stops the handshake once the ClientHello is read.
var errHelloRead = errors.New("client hello read")

// readClientHello reads a TLS ClientHello from c and returns its server
// name and every byte read, for replay upstream. Nothing is written to c.
func readClientHello(c net.Conn) (string, []byte, error) {
	var seen bytes.Buffer
	var name string
	got := false
	err := tls.Server(readOnlyConn{Conn: c, r: io.TeeReader(c, &seen)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			name, got = h.ServerName, true
			return nil, errHelloRead
		},
	}).Handshake()
	if !got {
		return "", nil, err
	}
	return name, seen.Bytes(), nil
}

// readOnlyConn lets crypto/tls read a ClientHello but never write: the
// alert it would send on abort must not reach the client, whose handshake
// continues with the upstream.
type readOnlyConn struct {
	net.Conn
	r io.Reader
}

func (c readOnlyConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c readOnlyConn) Write(p []byte) (int, error) { return 0, io.ErrClosedPipe }

// pickSNIChain: exact name, then the longest matching "*.suffix", then the
// chain without names.
func pickSNIChain(chains []*config.SNIChain, name string) *config.SNIChain {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	var wild, def *config.SNIChain
	wildLen := -1
	for _, ch := range chains {
		if len(ch.ServerNames) == 0 {
			def = ch
			continue
		}
		for _, n := range ch.ServerNames {
			n = strings.ToLower(n)
			if n == name {
				return ch
			}
			if suffix, ok := strings.CutPrefix(n, "*"); ok && strings.HasSuffix(name, suffix) && len(name) > len(suffix) && len(suffix) > wildLen {
				wild, wildLen = ch, len(suffix)
			}
		}
	}
	if wild != nil {
		return wild
	}
	return def
}

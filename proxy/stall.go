package proxy

import (
	"net"
	"time"
)

// Write stalls. A downstream client that stops reading while its response
// is written fills the socket's buffers, and the write blocks: with no
// deadline it would hold the request's goroutine and upstream connection
// until the proxy drains (a "slow read" attack holds them all).
//
// stallGuard bounds that with the connection's write deadline, without a
// deadline change per write: runtime timers are what deadline.go avoids on
// the request path. A write re-arms the deadline (timeout from now) only
// when more than half the timeout has passed since it was last armed, so a
// busy connection moves its deadline about twice per timeout, and a write
// that makes no progress fails after between half the timeout and all of
// it. The connection is then closed by its server.

// stallGuard is the write side of one downstream connection. Its methods
// are called by the connection's one writer of the moment (the HTTP/1.1
// handler, or whoever holds the HTTP/2 write lock).
type stallGuard struct {
	conn    net.Conn
	timeout time.Duration // 0: not bounded
	armedAt time.Time     // zero: the deadline is not set by the guard
}

// Write arms the deadline if due, then writes to the connection.
func (g *stallGuard) Write(p []byte) (int, error) {
	if g.timeout > 0 {
		if now := time.Now(); g.armedAt.IsZero() || now.Sub(g.armedAt) > g.timeout/2 {
			g.armedAt = now
			g.conn.SetWriteDeadline(now.Add(g.timeout))
		}
	}
	return g.conn.Write(p)
}

// fix sets the write deadline to t and stops the guard from moving it:
// for the last writes of a connection that closes (an error reply, a
// GOAWAY), which have their own, shorter bound.
func (g *stallGuard) fix(t time.Time) {
	g.timeout = 0
	g.conn.SetWriteDeadline(t)
}

// forget records that someone else cleared or set the write deadline, so
// that the next write arms it again.
func (g *stallGuard) forget() { g.armedAt = time.Time{} }

package h2grpc

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// DefaultMaxRecvMsgSize is the largest message a ClientConn accepts unless
// Options say otherwise. It is larger than grpc-go's 4 MiB: an xDS
// response for a large mesh can exceed that.
const DefaultMaxRecvMsgSize = 64 << 20

// Options configure a ClientConn.
type Options struct {
	// TLS is the client's TLS configuration; "h2" is added to its
	// NextProtos. nil speaks HTTP/2 in plaintext (h2c with prior
	// knowledge), as grpc-go's insecure credentials do.
	TLS *tls.Config
	// Window is the HTTP/2 flow-control window for received data, per
	// connection and per stream, in bytes. 0 keeps net/http's defaults.
	// net/http never resizes it (no BDP pings).
	Window int
	// MaxRecvMsgSize is the largest message accepted; 0 means
	// DefaultMaxRecvMsgSize.
	MaxRecvMsgSize int
	// DialTimeout bounds each TCP connect; 0 means 10 s.
	DialTimeout time.Duration
}

// ClientConn calls one gRPC server. It implements
// grpc.ClientConnInterface.
type ClientConn struct {
	base    string // "http://host:port" or "https://host:port"
	tr      *http.Transport
	client  *http.Client
	maxRecv int
}

var _ grpc.ClientConnInterface = (*ClientConn)(nil)

// Dial checks target ("host:port", or grpc-go's "dns:///host:port") and
// returns a ClientConn for it. No connection is made until the first call.
func Dial(target string, o Options) (*ClientConn, error) {
	hostPort := strings.TrimPrefix(target, "dns:///")
	if _, _, err := net.SplitHostPort(hostPort); err != nil {
		return nil, fmt.Errorf("h2grpc: target %q: %w; use host:port", target, err)
	}
	if o.MaxRecvMsgSize <= 0 {
		o.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	var protos http.Protocols
	scheme := "http"
	var tc *tls.Config
	if o.TLS != nil {
		scheme = "https"
		protos.SetHTTP2(true)
		tc = o.TLS.Clone()
		tc.NextProtos = []string{"h2"}
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	h2 := &http.HTTP2Config{}
	if o.Window > 0 {
		h2.MaxReceiveBufferPerConnection = o.Window
		h2.MaxReceiveBufferPerStream = o.Window
	}
	tr := &http.Transport{
		DialContext:     (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig: tc,
		Protocols:       &protos,
		HTTP2:           h2,
	}
	return &ClientConn{
		base:    scheme + "://" + hostPort,
		tr:      tr,
		client:  &http.Client{Transport: tr},
		maxRecv: o.MaxRecvMsgSize,
	}, nil
}

// Close closes the idle connections. Calls in flight end with their
// contexts, as they would with grpc-go's Close.
func (c *ClientConn) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// Invoke makes a unary call.
func (c *ClientConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := checkOptions(method, opts); err != nil {
		return err
	}
	s, err := c.Stream(ctx, method)
	if err != nil {
		return err
	}
	if err := s.SendMsg(args); err != nil && err != io.EOF {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	if err := s.RecvMsg(reply); err != nil {
		if err == io.EOF {
			return status.Errorf(codes.Internal, "h2grpc: %s: the server sent no response message", method)
		}
		return err
	}
	// The status comes after the message.
	if err := s.RecvMsg(reply); err != io.EOF {
		if err == nil {
			return status.Errorf(codes.Internal, "h2grpc: %s: more than one response to a unary call", method)
		}
		return err
	}
	return nil
}

// NewStream starts a call, as Stream does, for generated streaming
// clients.
func (c *ClientConn) NewStream(ctx context.Context, _ *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if err := checkOptions(method, opts); err != nil {
		return nil, err
	}
	return c.Stream(ctx, method)
}

// checkOptions refuses call options, but for generated code's
// grpc.StaticMethod marker, which asks for nothing.
func checkOptions(method string, opts []grpc.CallOption) error {
	for _, o := range opts {
		if _, ok := o.(grpc.StaticMethodCallOption); !ok {
			return status.Errorf(codes.Unimplemented, "h2grpc: %s: call option %T is not supported", method, o)
		}
	}
	return nil
}

// Stream starts a call. The request goes out (and the connection is made)
// at once; the response is awaited by the first RecvMsg or Header. The
// caller must end the call: read until RecvMsg returns an error, or cancel
// ctx.
func (c *ClientConn) Stream(ctx context.Context, method string) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+method, pr)
	if err != nil {
		cancel()
		return nil, status.Errorf(codes.Internal, "h2grpc: %s: %v", method, err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", "causeway-h2grpc")
	if d, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", encodeTimeout(time.Until(d)))
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	for k, vs := range md {
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			req.Header.Add(k, v)
		}
	}
	s := &Stream{ctx: ctx, cancel: cancel, method: method, pw: pw, respC: make(chan response, 1), maxRecv: c.maxRecv}
	go func() {
		resp, err := c.client.Do(req)
		s.respC <- response{resp, err}
	}()
	context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	return s, nil
}

type response struct {
	resp *http.Response
	err  error
}

// Stream is one call; it implements grpc.ClientStream. Only the receiving
// side (RecvMsg, Header, Trailer) touches resp and done; SendMsg only
// writes to the pipe.
type Stream struct {
	ctx     context.Context
	cancel  context.CancelFunc
	method  string
	pw      *io.PipeWriter
	respC   chan response
	resp    *http.Response
	got     bool  // respC was read
	done    error // set once the call is over: io.EOF or its status error
	maxRecv int
	hdr     [5]byte
}

func (s *Stream) Context() context.Context { return s.ctx }

func (s *Stream) SendMsg(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "h2grpc: %s: %T is not a proto.Message", s.method, m)
	}
	b, err := proto.Marshal(pm)
	if err != nil {
		return status.Errorf(codes.Internal, "h2grpc: %s: marshal: %v", s.method, err)
	}
	frame := make([]byte, 5+len(b))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(b)))
	copy(frame[5:], b)
	if _, err := s.pw.Write(frame); err != nil {
		// The call is over; as in grpc-go, RecvMsg tells why.
		return io.EOF
	}
	return nil
}

func (s *Stream) CloseSend() error { return s.pw.Close() }

// Header waits for the response headers.
func (s *Stream) Header() (metadata.MD, error) {
	if err := s.await(); err != nil {
		if err == io.EOF {
			err = nil
		}
		if s.resp == nil {
			return nil, err
		}
	}
	return toMD(s.resp.Header), nil
}

// Trailer returns the trailers once RecvMsg has returned an error.
func (s *Stream) Trailer() metadata.MD {
	if s.resp == nil || s.done == nil {
		return nil
	}
	return toMD(s.resp.Trailer)
}

// await waits for the response headers and checks them. It returns the
// call's end (io.EOF or a status) if the headers already carry it.
func (s *Stream) await() error {
	if s.done != nil {
		return s.done
	}
	if s.resp != nil {
		return nil
	}
	var r response
	select {
	case r = <-s.respC:
		s.got = true
	case <-s.ctx.Done():
		return s.finish(ctxStatus(s.ctx.Err(), s.method))
	}
	if r.err != nil {
		if err := s.ctxEnded(); err != nil {
			return s.finish(ctxStatus(err, s.method))
		}
		return s.finish(status.Errorf(codes.Unavailable, "h2grpc: %s: %v", s.method, r.err))
	}
	s.resp = r.resp
	if st := s.resp.Header.Get("Grpc-Status"); st != "" { // trailers-only
		return s.finish(statusFrom(s.resp.Header, s.method))
	}
	if s.resp.StatusCode != http.StatusOK {
		return s.finish(status.Errorf(httpCode(s.resp.StatusCode), "h2grpc: %s: HTTP status %d", s.method, s.resp.StatusCode))
	}
	if ct := s.resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return s.finish(status.Errorf(codes.Unknown, "h2grpc: %s: content-type %q is not gRPC", s.method, ct))
	}
	return nil
}

// finish records the call's end and releases it.
func (s *Stream) finish(err error) error {
	s.done = err
	s.cancel()
	s.pw.CloseWithError(io.EOF) // SendMsg from now on returns io.EOF
	if s.resp != nil {
		s.resp.Body.Close()
	} else if !s.got { // Do returns soon, the request's context being done
		go func() {
			if r := <-s.respC; r.resp != nil {
				r.resp.Body.Close()
			}
		}()
	}
	return err
}

// RecvMsg reads the next message into m. At the end of a call that
// succeeded it returns io.EOF; otherwise the call's status.
func (s *Stream) RecvMsg(m any) error {
	if err := s.await(); err != nil {
		return err
	}
	if _, err := io.ReadFull(s.resp.Body, s.hdr[:]); err != nil {
		if err == io.EOF { // the server ended the stream: the status is in the trailers
			return s.finish(statusFrom(s.resp.Trailer, s.method))
		}
		return s.finish(s.bodyError(err))
	}
	if s.hdr[0] != 0 {
		return s.finish(status.Errorf(codes.Internal, "h2grpc: %s: compressed message, but no compression was offered", s.method))
	}
	n := binary.BigEndian.Uint32(s.hdr[1:])
	if int64(n) > int64(s.maxRecv) {
		return s.finish(status.Errorf(codes.ResourceExhausted, "h2grpc: %s: received message larger than max (%d vs. %d)", s.method, n, s.maxRecv))
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.resp.Body, b); err != nil {
		return s.finish(s.bodyError(err))
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return s.finish(status.Errorf(codes.Internal, "h2grpc: %s: %T is not a proto.Message", s.method, m))
	}
	if err := proto.Unmarshal(b, pm); err != nil {
		return s.finish(status.Errorf(codes.Internal, "h2grpc: %s: unmarshal: %v", s.method, err))
	}
	return nil
}

// ctxEnded is the call context's error, or DeadlineExceeded once its
// deadline has passed even if its timer has not run yet: a server that
// honours grpc-timeout resets the stream at about the deadline, and under
// load its RST_STREAM can arrive before the context's own timer fires
// (grpc-go's client makes the same check).
func (s *Stream) ctxEnded() error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if d, ok := s.ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func (s *Stream) bodyError(err error) error {
	if cerr := s.ctxEnded(); cerr != nil {
		return ctxStatus(cerr, s.method)
	}
	if err == io.ErrUnexpectedEOF {
		return status.Errorf(codes.Internal, "h2grpc: %s: the stream ended inside a message", s.method)
	}
	return status.Errorf(codes.Unavailable, "h2grpc: %s: %v", s.method, err)
}

// statusFrom reads grpc-status and grpc-message: io.EOF for OK.
func statusFrom(h http.Header, method string) error {
	v := h.Get("Grpc-Status")
	if v == "" {
		return status.Errorf(codes.Unknown, "h2grpc: %s: the server ended the stream without a grpc-status", method)
	}
	code, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return status.Errorf(codes.Unknown, "h2grpc: %s: grpc-status %q", method, v)
	}
	if code == 0 {
		return io.EOF
	}
	msg, err := url.PathUnescape(h.Get("Grpc-Message"))
	if err != nil {
		msg = h.Get("Grpc-Message")
	}
	return status.Error(codes.Code(code), msg)
}

func ctxStatus(err error, method string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Errorf(codes.DeadlineExceeded, "h2grpc: %s: %v", method, err)
	}
	return status.Errorf(codes.Canceled, "h2grpc: %s: %v", method, err)
}

// httpCode maps an HTTP status without a grpc-status, as the gRPC spec
// says (doc/http-grpc-status-mapping.md).
func httpCode(c int) codes.Code {
	switch c {
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}

// encodeTimeout formats d as a grpc-timeout value: at most 8 digits and a
// unit.
func encodeTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"n", time.Nanosecond}, {"u", time.Microsecond}, {"m", time.Millisecond}, {"S", time.Second}, {"M", time.Minute}} {
		if v := (d + u.d - 1) / u.d; v < 1e8 {
			return strconv.FormatInt(int64(v), 10) + u.unit
		}
	}
	return strconv.FormatInt(int64(min((d+time.Hour-1)/time.Hour, 1e8-1)), 10) + "H"
}

func toMD(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, vs := range h {
		k = strings.ToLower(k)
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "=")); err == nil {
					v = string(b)
				}
			}
			md[k] = append(md[k], v)
		}
	}
	return md
}

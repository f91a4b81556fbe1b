package h2grpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo is a grpc-go service with one bidirectional method: it answers
// each StringValue with its value and the caller's "x-who" metadata, and
// ends with the status that a "fail:<code>" message asks for. "big:<n>"
// answers n bytes; "wait" blocks until the call's context ends.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Chat", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			md, _ := metadata.FromIncomingContext(ss.Context())
			for {
				in := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(in); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				v := in.GetValue()
				switch {
				case strings.HasPrefix(v, "fail:"):
					return status.Error(codes.PermissionDenied, "refused: "+strings.TrimPrefix(v, "fail:"))
				case strings.HasPrefix(v, "big:"):
					v = strings.Repeat("x", 6<<20)
				case v == "wait":
					<-ss.Context().Done()
					return ss.Context().Err()
				}
				if err := ss.SendMsg(wrapperspb.String(v + "/" + strings.Join(md.Get("x-who"), ","))); err != nil {
					return err
				}
			}
		},
	}},
}

const chat = "/test.Echo/Chat"

// serve starts a grpc-go server with the echo and health services on a
// loopback port; creds nil is plaintext.
func serve(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&echoDesc, nil)
	h := health.NewServer()
	h.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, h)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, o Options) *ClientConn {
	t.Helper()
	c, err := Dial(addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestUnaryThroughGeneratedClient runs grpc-go's generated health client
// on a ClientConn: the answer, a status error, and a deadline.
func TestUnaryThroughGeneratedClient(t *testing.T) {
	c := dial(t, serve(t, nil), Options{})
	hc := healthpb.NewHealthClient(c)
	resp, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "up"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check(up) = %v, %v", resp, err)
	}
	if _, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check(nope) = %v, want NotFound", err)
	}
	if _, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); status.Code(err) != codes.Unimplemented {
		t.Errorf("a call option: %v, want Unimplemented", err)
	}
	// An unknown method: grpc-go answers trailers-only with Unimplemented.
	err = c.Invoke(ctxT(t), "/test.Nope/Call", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v, want Unimplemented", err)
	}
}

// TestStream exchanges messages on one stream, with metadata, then ends
// it from each side.
func TestStream(t *testing.T) {
	c := dial(t, serve(t, nil), Options{Window: 16 << 20})
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-who", "web")
	s, err := c.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chat)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b", "c"} {
		if err := s.SendMsg(wrapperspb.String(v)); err != nil {
			t.Fatal(err)
		}
		got := new(wrapperspb.StringValue)
		if err := s.RecvMsg(got); err != nil || got.GetValue() != v+"/web" {
			t.Fatalf("RecvMsg = %q, %v; want %q", got.GetValue(), err, v+"/web")
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want io.EOF", err)
	}

	// The server ends the call with a status.
	s, err = c.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chat)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.String("fail:no")); err != nil {
		t.Fatal(err)
	}
	err = s.RecvMsg(new(wrapperspb.StringValue))
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || st.Message() != "refused: no" {
		t.Fatalf("RecvMsg = %v, want PermissionDenied \"refused: no\"", err)
	}
	if err := s.SendMsg(wrapperspb.String("late")); err != io.EOF {
		t.Errorf("SendMsg after the end: %v, want io.EOF", err)
	}
}

// TestLargeMessagesAndLimit sends a 6 MiB answer, over grpc-go's 4 MiB
// default, and refuses it when MaxRecvMsgSize is lower.
func TestLargeMessagesAndLimit(t *testing.T) {
	addr := serve(t, nil)
	for _, tc := range []struct {
		max  int
		want codes.Code
	}{{0, codes.OK}, {1 << 20, codes.ResourceExhausted}} {
		c := dial(t, addr, Options{MaxRecvMsgSize: tc.max})
		s, err := c.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chat)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg(wrapperspb.String("big:")); err != nil {
			t.Fatal(err)
		}
		got := new(wrapperspb.StringValue)
		err = s.RecvMsg(got)
		if status.Code(err) != tc.want || tc.want == codes.OK && len(got.GetValue()) != 6<<20+1 {
			t.Errorf("max %d: %d bytes, %v; want %v", tc.max, len(got.GetValue()), err, tc.want)
		}
		s.CloseSend()
	}
}

// TestDeadlineAndCancel checks that a context's deadline reaches the
// server as grpc-timeout and ends the call, and that cancelling unblocks a
// receive.
func TestDeadlineAndCancel(t *testing.T) {
	c := dial(t, serve(t, nil), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s, err := c.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chat)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.String("wait")); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(new(wrapperspb.StringValue)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("RecvMsg = %v, want DeadlineExceeded", err)
	}

	ctx, cancel = context.WithCancel(ctxT(t))
	s, err = c.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chat)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.RecvMsg(new(wrapperspb.StringValue)) }()
	cancel()
	select {
	case err := <-done:
		if status.Code(err) != codes.Canceled {
			t.Fatalf("RecvMsg after cancel = %v, want Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RecvMsg did not return after cancel")
	}
}

// TestTLSAndUnavailable calls a TLS server (ALPN h2, as grpc-go requires),
// then a closed port.
func TestTLSAndUnavailable(t *testing.T) {
	cert, pool := selfSigned(t)
	addr := serve(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	c := dial(t, addr, Options{TLS: &tls.Config{RootCAs: pool, ServerName: "echo.test"}})
	if _, err := healthpb.NewHealthClient(c).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "up"}); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	// Plaintext to the TLS server, and anything to a closed port.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	for _, target := range []string{addr, closed} {
		_, err := healthpb.NewHealthClient(dial(t, target, Options{})).Check(ctxT(t), &healthpb.HealthCheckRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("plaintext to %s: %v, want Unavailable", target, err)
		}
	}
	if _, err := Dial("no-port", Options{}); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("Dial(no-port) = %v", err)
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "echo.test"}, DNSNames: []string{"echo.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestEncodeTimeout(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1n", time.Nanosecond: "1n", 99999999: "99999999n", 100 * time.Millisecond: "100000u",
		time.Hour: "3600000m", 30 * 24 * time.Hour: "2592000S", 1e8 * time.Minute: "1666667H",
	} {
		if got := encodeTimeout(d); got != want {
			t.Errorf("encodeTimeout(%v) = %q, want %q", d, got, want)
		}
	}
}

package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/proxy/config"
)

func TestHTTP1ForwardsAndAddsRequestID(t *testing.T) {
	b := newBackend(t, "b1", false)
	s := newSnap().
		httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)

	r := get(t, client(t), "http://"+addr("out")+"/hello?x=1", "host", "svc.shop")
	if r.code != 200 || r.body != "b1 GET /hello?x=1 " {
		t.Fatalf("got %d %q, want 200 from b1 with the path and query intact", r.code, r.body)
	}
	seen := b.last()
	if seen.Host != "svc.shop" {
		t.Errorf("backend saw Host %q, want the client's authority svc.shop", seen.Host)
	}
	if seen.Header.Get("X-Request-Id") == "" {
		t.Errorf("backend saw no x-request-id; the proxy must generate one")
	}
	if tp := seen.Header.Get("Traceparent"); len(tp) != 55 {
		t.Errorf("backend saw traceparent %q, want a new W3C trace context", tp)
	}
}

func TestHTTP1PostBodyAndHopByHopHeaders(t *testing.T) {
	b := newBackend(t, "b1", false)
	s := newSnap().
		httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)

	req, _ := http.NewRequest(http.MethodPost, "http://"+addr("out")+"/upload", strings.NewReader("payload"))
	req.Header.Set("Connection", "X-Secret-Hop")
	req.Header.Set("X-Secret-Hop", "must-not-pass")
	req.Header.Set("X-End-To-End", "passes")
	r := do(t, client(t), req)
	if r.code != 200 || r.body != "b1 POST /upload payload" {
		t.Fatalf("got %d %q", r.code, r.body)
	}
	seen := b.last()
	if v := seen.Header.Get("X-Secret-Hop"); v != "" {
		t.Errorf("hop-by-hop header named in Connection was forwarded: %q", v)
	}
	if v := seen.Header.Get("X-End-To-End"); v != "passes" {
		t.Errorf("end-to-end header lost: %q", v)
	}
}

func TestH2CDownstreamAndMultiplexedUpstream(t *testing.T) {
	b := newBackend(t, "b1", true)
	s := newSnap().
		httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc", Protocol: config.HTTP2}, loc("r1", "z1", 0, b.addr()))
	_, addr := start(t, s)

	c := h2cClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for range 300 {
		wg.Go(func() {
			resp, err := c.Get("http://" + addr("out") + "/")
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Proto != "HTTP/2.0" || resp.Header.Get("x-proto") != "HTTP/2.0" {
				errs <- errors.New("downstream " + resp.Proto + " upstream " + resp.Header.Get("x-proto") + ", want HTTP/2.0 on both sides")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// 300 concurrent streams exceed one connection's 250-stream limit, so
	// at least two are needed; HTTP/1.1 would have opened ~300.
	if n := b.conns.Load(); n > 10 {
		t.Errorf("proxy opened %d upstream connections for 300 concurrent HTTP/2 requests; want a few multiplexed ones", n)
	}
}

func TestGRPCUnaryStreamingTrailersAndDeadlines(t *testing.T) {
	// A real gRPC server behind the proxy: the standard health service
	// gives us unary (Check), server streaming (Watch) and errors carried
	// in trailers (NOT_FOUND for an unknown service).
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("shop.Cart", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	slow := &slowHealth{}
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Slow", HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Check", Handler: slow.handle}},
	}, slow)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)

	s := newSnap().
		httpListener("out", prefix("/", to("grpc"))).
		cluster(&config.Cluster{Name: "grpc", Protocol: config.HTTP2}, loc("r1", "z1", 0, lis.Addr().String()))
	_, addr := start(t, s)

	cc, err := grpc.NewClient(addr("out"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var trailer metadata.MD
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "shop.Cart"}, grpc.Trailer(&trailer))
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("unary Check through the proxy: %v %v", resp, err)
	}
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.Such"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("error status from trailers: got %v, want NotFound", err)
	}

	// Server streaming: the first message must arrive while the stream is
	// still open (the proxy flushes), and later updates follow.
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "shop.Cart"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first streamed message: %v %v", first, err)
	}
	hs.SetServingStatus("shop.Cart", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := stream.Recv()
	if err != nil || second.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second streamed message: %v %v", second, err)
	}

	// Deadlines propagate: the client's 100ms deadline reaches the server
	// as grpc-timeout and the call ends with DEADLINE_EXCEEDED.
	dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer dcancel()
	err = cc.Invoke(dctx, "/test.Slow/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("slow call: got %v, want DeadlineExceeded", err)
	}
	if d, ok := slow.deadline(); !ok || d > 150*time.Millisecond {
		t.Errorf("server saw deadline %v (ok=%v); the client's grpc-timeout must pass through", d, ok)
	}
	hs.Shutdown()
}

type slowHealth struct {
	mu     sync.Mutex
	remain time.Duration
	has    bool
}

func (s *slowHealth) handle(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var in healthpb.HealthCheckRequest
	if err := dec(&in); err != nil {
		return nil, err
	}
	d, ok := ctx.Deadline()
	s.mu.Lock()
	s.remain, s.has = time.Until(d), ok
	s.mu.Unlock()
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (s *slowHealth) deadline() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remain, s.has
}

func TestGRPCLocalReplyIsTrailersOnly(t *testing.T) {
	s := newSnap().
		httpListener("out", prefix("/", to("grpc"))).
		cluster(&config.Cluster{Name: "grpc", Protocol: config.HTTP2}, loc("r1", "z1", 0, deadAddr(t)))
	_, addr := start(t, s)
	cc, err := grpc.NewClient(addr("out"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "upstream connect error") {
		t.Fatalf("got %v, want UNAVAILABLE naming the connect error", err)
	}
}

func TestTCPProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { echo.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c) // echo until the client half-closes
			})
		}
	})
	s := newSnap().cluster(&config.Cluster{Name: "db"}, loc("r1", "z1", 0, deadAddr(t), echo.Addr().String()))
	s.s.Listeners = []*config.Listener{{Name: "tcp", Address: "127.0.0.1:0", TCP: &config.TCPListener{Cluster: "db"}}}
	_, addr := start(t, s)

	// Several sessions: even when the balancer picks the dead endpoint
	// first, the connect is retried on the live one.
	for i := range 4 {
		c, err := net.Dial("tcp", addr("tcp"))
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.Repeat("x", 100000) + "\n"
		go func() { c.Write([]byte(msg)); c.(*net.TCPConn).CloseWrite() }()
		got, err := io.ReadAll(bufio.NewReader(c))
		c.Close()
		if err != nil || string(got) != msg {
			t.Fatalf("session %d: echoed %d bytes (err %v), want %d", i, len(got), err, len(msg))
		}
	}
}

func TestRemoveHopHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"none", http.Header{"Accept": {"*/*"}}, http.Header{"Accept": {"*/*"}}},
		{"every fixed one", http.Header{
			"Connection": {"keep-alive"}, "Proxy-Connection": {"x"}, "Keep-Alive": {"timeout=5"},
			"Proxy-Authenticate": {"x"}, "Proxy-Authorization": {"x"}, "Te": {"gzip"}, "Trailer": {"X"},
			"Transfer-Encoding": {"chunked"}, "Upgrade": {"h2c"}, "Host-Like": {"kept"},
		}, http.Header{"Host-Like": {"kept"}}},
		{"named by Connection", http.Header{"Connection": {"x-a, X-B", " x-c "}, "X-A": {"1"}, "X-B": {"2"}, "X-C": {"3"}, "X-D": {"4"}},
			http.Header{"X-D": {"4"}}},
		{"TE trailers kept", http.Header{"Te": {"gzip, trailers"}}, http.Header{"Te": {"trailers"}}},
		{"TE trailers kept when Connection lists it", http.Header{"Connection": {"TE"}, "Te": {"trailers"}}, http.Header{"Te": {"trailers"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			removeHopHeaders(tc.in)
			if !reflect.DeepEqual(tc.in, tc.want) {
				t.Errorf("got %v, want %v", tc.in, tc.want)
			}
		})
	}
}

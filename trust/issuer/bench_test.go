package issuer

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/causewaymesh/causeway/trust/trustpb"
)

// BenchmarkSign measures SVID issuance over a real gRPC connection on
// 127.0.0.1 with TLS 1.3: one op is one Sign call (token-file
// authentication, CSR check, ECDSA P-256 signing, response) with a CSR made
// beforehand. Calls/s = 1e9 / ns/op.
func BenchmarkSign(b *testing.B) {
	e := startEnv(b, envOptions{})
	c := rawClient(b, e)
	ctx := withToken(context.Background(), tokWeb)
	req := &trustpb.SignRequest{Csr: newCSR(b)}
	if _, err := c.Sign(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			if _, err := c.Sign(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, start)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		defer reportCPU(b, start)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Sign(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkClientFetch is what a workload pays per rotation: key
// generation, CSR, Sign over TLS, chain verification.
func BenchmarkClientFetch(b *testing.B) {
	e := startEnv(b, envOptions{})
	c := e.client(b, ClientConfig{})
	ctx := context.Background()
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		if _, err := c.Fetch(ctx); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkMTLSHandshake measures one full TLS 1.3 mutual handshake between
// two workloads holding SVIDs from the issuer (ECDSA P-256 leaves under an
// ECDSA P-256 root), verified with go-spiffe (bundle + SPIFFE ID
// authorizer), no session resumption. Both sides run in this process, so
// ns/op and allocs/op are client + server.
func BenchmarkMTLSHandshake(b *testing.B) {
	e := startEnv(b, envOptions{})
	ctx := context.Background()
	web, err := e.client(b, ClientConfig{Token: StaticToken(tokWeb)}).Fetch(ctx)
	if err != nil {
		b.Fatal(err)
	}
	db, err := e.client(b, ClientConfig{Token: StaticToken(tokDB)}).Fetch(ctx)
	if err != nil {
		b.Fatal(err)
	}
	serverConf := tlsconfig.MTLSServerConfig(db.X509SVID(), db.Bundle, tlsconfig.AuthorizeID(idWeb))
	serverConf.MinVersion = tls.VersionTLS13
	serverConf.SessionTicketsDisabled = true // full handshakes only; also no post-handshake write on net.Pipe
	clientConf := tlsconfig.MTLSClientConfig(web.X509SVID(), web.Bundle, tlsconfig.AuthorizeID(idDB))
	clientConf.MinVersion = tls.VersionTLS13

	handshake := func(b *testing.B, cc, sc net.Conn) {
		srv := tls.Server(sc, serverConf)
		errc := make(chan error, 1)
		go func() { errc <- srv.HandshakeContext(ctx) }()
		cli := tls.Client(cc, clientConf)
		if err := cli.HandshakeContext(ctx); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		if cli.ConnectionState().Version != tls.VersionTLS13 || cli.ConnectionState().DidResume {
			b.Fatal("not a full TLS 1.3 handshake")
		}
		// Close the transports, not the TLS conns: tls.Conn.Close would
		// wait up to 5 s to write close_notify into an unread net.Pipe.
		_ = cc.Close()
		_ = sc.Close()
	}
	b.Run("pipe", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			cc, sc := net.Pipe()
			handshake(b, cc, sc)
		}
		reportCPU(b, start)
	})
	b.Run("tcp-loopback", func(b *testing.B) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer lis.Close()
		accepted := make(chan net.Conn)
		go func() {
			defer close(accepted)
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			cc, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			handshake(b, cc, <-accepted)
		}
		reportCPU(b, start)
		lis.Close()
		for range accepted {
		}
	})
}

// cpuTime is the process's user+system CPU time. Benchmarks report
// cpu-ns/op from it: on a shared, loaded machine wall-clock ns/op includes
// waiting for a core, CPU time does not.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ns/op for the loop that started at start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

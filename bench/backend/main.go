// Command backend is the upstream of the data-plane benchmark: a tiny
// net/http server that answers every request with the same small body. It
// speaks HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge) on one port,
// so it can sit behind any hop of the benchmark.
//
// It listens on loopback only unless told otherwise, and exits cleanly on
// SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "host:port to listen on")
	size := flag.Int("body-size", 128, "bytes in every response body")
	flag.Parse()
	if err := run(*addr, *size); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

func run(addr string, size int) error {
	if size < 0 {
		return fmt.Errorf("--body-size %d: must be zero or more", size)
	}
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on --addr %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           fixedBody(body),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Hour,
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("backend listening on %s (http/1.1 + h2c, %d-byte body)\n", ln.Addr(), size)
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// fixedBody answers every request with body. The header values are built
// once, so the handler allocates nothing of its own per request.
func fixedBody(body []byte) http.Handler {
	clen := []string{strconv.Itoa(len(body))}
	ctype := []string{"text/plain"}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Length"] = clen
		h["Content-Type"] = ctype
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

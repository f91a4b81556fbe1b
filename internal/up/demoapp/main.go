// Command demoapp is the workload of `causeway up`: a tiny HTTP server
// that answers every request with where it runs, in the body and in the
// header x-served-by (<cluster>/<zone>/<pod>). The harness in internal/up
// builds it and runs one per pod, behind that pod's sidecar.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "host:port to listen on")
	service := flag.String("service", "app", "service this pod belongs to")
	where := flag.String("where", "", "<cluster>/<zone>/<pod>, sent back as x-served-by")
	flag.Parse()
	if err := run(*addr, *service, *where); err != nil {
		fmt.Fprintln(os.Stderr, "demoapp:", err)
		os.Exit(1)
	}
}

func run(addr, service, where string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on --addr %s: %w", addr, err)
	}
	body := []byte(service + " in " + where + "\n")
	by := []string{where}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["X-Served-By"] = by
		_, _ = w.Write(body)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("demoapp %s (%s) listening on %s\n", service, where, ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

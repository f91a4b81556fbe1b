package admin

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestAppHealth(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && r.Header.Get("X-Probe") == "1" {
			return
		}
		http.Error(w, "sick", http.StatusInternalServerError)
	}))
	defer app.Close()
	appPort := app.Listener.Addr().(*net.TCPAddr).Port

	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("catalog", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	done := make(chan struct{})
	go func() { gs.Serve(gl); close(done) }()
	defer func() { gs.Stop(); <-done }()
	gport := gl.Addr().(*net.TCPAddr).Port

	probes, err := ParseAppProbes(fmt.Sprintf(`{
		"/app-health/web/readyz": {"httpGet": {"path": "/healthz", "port": %d, "httpHeaders": [{"name": "X-Probe", "value": "1"}]}},
		"/app-health/web/livez": {"httpGet": {"path": "/other", "port": %d}},
		"/app-health/db/readyz": {"tcpSocket": {"port": %d}},
		"/app-health/db/livez": {"tcpSocket": {"port": 9, "host": "127.250.0.9"}},
		"/app-health/catalog/readyz": {"grpc": {"port": %d, "service": "catalog"}},
		"/app-health/orders/readyz": {"grpc": {"port": %d, "service": "orders"}, "timeoutSeconds": 2}
	}`, appPort, appPort, appPort, gport, gport))
	if err != nil {
		t.Fatal(err)
	}
	a := start(t, Sources{AppProbes: probes})
	for path, want := range map[string]int{
		"/app-health/web/readyz":     200,
		"/app-health/web/livez":      503,
		"/app-health/db/readyz":      200,
		"/app-health/db/livez":       503,
		"/app-health/catalog/readyz": 200,
		"/app-health/orders/readyz":  503,
		"/app-health/nope/readyz":    404,
	} {
		resp, err := http.Get("http://" + a.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d %q, want %d", path, resp.StatusCode, b, want)
		}
	}

	for _, bad := range []string{`[]`, `{"/x": {"tcpSocket": {"port": 1}}}`, `{"/app-health/a/readyz": {}}`, `{"/app-health/a/readyz": {"tcpSocket": {"port": 0}}}`} {
		if _, err := ParseAppProbes(bad); err == nil || !strings.Contains(err.Error(), AppProbesEnv) {
			t.Errorf("ParseAppProbes(%s) = %v, want an error naming %s", bad, err, AppProbesEnv)
		}
	}
}

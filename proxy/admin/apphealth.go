package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/causewaymesh/causeway/internal/h2grpc"
)

// AppProbesEnv holds the application's health checks that the injector
// moved to the sidecar: a JSON object from admin path
// (/app-health/<container>/<livez|readyz|startupz>) to the original probe.
// internal/inject writes it; its shape is inject.AppProbe's.
const AppProbesEnv = "CAUSEWAY_APP_PROBES"

// AppProbe is one original application probe.
type AppProbe struct {
	HTTPGet *struct {
		Path        string `json:"path,omitempty"`
		Port        int32  `json:"port"`
		Host        string `json:"host,omitempty"`
		Scheme      string `json:"scheme,omitempty"`
		HTTPHeaders []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"httpHeaders,omitempty"`
	} `json:"httpGet,omitempty"`
	TCPSocket *struct {
		Port int32  `json:"port"`
		Host string `json:"host,omitempty"`
	} `json:"tcpSocket,omitempty"`
	GRPC *struct {
		Port    int32  `json:"port"`
		Service string `json:"service,omitempty"`
	} `json:"grpc,omitempty"`
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
}

// ParseAppProbes reads AppProbesEnv's value; every probe must have exactly
// one of httpGet, tcpSocket and grpc, with a port.
func ParseAppProbes(s string) (map[string]AppProbe, error) {
	if s == "" {
		return nil, nil
	}
	var m map[string]AppProbe
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object of probes: %w", AppProbesEnv, err)
	}
	for path, p := range m {
		n := 0
		port := int32(0)
		if p.HTTPGet != nil {
			n, port = n+1, p.HTTPGet.Port
		}
		if p.TCPSocket != nil {
			n, port = n+1, p.TCPSocket.Port
		}
		if p.GRPC != nil {
			n, port = n+1, p.GRPC.Port
		}
		if !strings.HasPrefix(path, "/app-health/") || n != 1 || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("%s: probe %q: want a path under /app-health/ and exactly one of httpGet, tcpSocket, grpc with a port; re-inject the pod", AppProbesEnv, path)
		}
	}
	return m, nil
}

// appHealth runs the original probe of the path and answers as the kubelet
// expects: 200 when the application is healthy, 503 with why otherwise.
// The application is reached on 127.0.0.1 unless the probe names a host
// (the sidecar's own connections are not captured).
func (a *Server) appHealth(w http.ResponseWriter, r *http.Request) {
	p, ok := a.src.AppProbes[r.URL.Path]
	if !ok {
		http.Error(w, "no application probe at "+r.URL.Path, http.StatusNotFound)
		return
	}
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if err := runProbe(ctx, p); err != nil {
		http.Error(w, "application probe failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

func hostPort(host string, port int32) string {
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

func runProbe(ctx context.Context, p AppProbe) error {
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		scheme := "http"
		tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
		if strings.EqualFold(g.Scheme, "HTTPS") {
			// As the kubelet: HTTPS probes do not verify the certificate.
			scheme, tr.TLSClientConfig = "https", &tls.Config{InsecureSkipVerify: true}
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+hostPort(g.Host, g.Port)+path, nil)
		if err != nil {
			return err
		}
		for _, h := range g.HTTPHeaders {
			if strings.EqualFold(h.Name, "Host") {
				req.Host = h.Value
				continue
			}
			req.Header.Add(h.Name, h.Value)
		}
		req.Header.Set("User-Agent", "causeway-probe")
		resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", hostPort(p.TCPSocket.Host, p.TCPSocket.Port))
		if err != nil {
			return err
		}
		return c.Close()
	case p.GRPC != nil:
		cc, err := h2grpc.Dial(hostPort("", p.GRPC.Port), h2grpc.Options{})
		if err != nil {
			return err
		}
		defer cc.Close()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: p.GRPC.Service})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("gRPC health: %s", resp.GetStatus())
		}
		return nil
	}
	return fmt.Errorf("empty probe")
}

package up

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/causewaymesh/causeway/internal/dashboard"
)

// portDashboard is the dashboard's port, on 127.<block>.0.1.
const portDashboard = 15080

// dashboardAddr is where Start serves the dashboard.
func (f *Federation) dashboardAddr() string {
	return fmt.Sprintf("127.%d.0.1:%d", f.net(), portDashboard)
}

// DashboardURL is the dashboard of every cluster of the federation.
func (f *Federation) DashboardURL() string { return "http://" + f.dashboardAddr() + "/dashboard/" }

// dashboardServer is the running dashboard: its listener's server and
// collector; stop ends both.
type dashboardServer struct {
	srv  *http.Server
	col  *dashboard.Collector
	done chan error
}

// startDashboard serves the dashboard of every cluster (their control
// planes' /status and /model) and every sidecar's metrics.
func (f *Federation) startDashboard() (*dashboardServer, error) {
	var clusters []dashboard.Cluster
	for i, c := range f.top.Clusters {
		clusters = append(clusters, dashboard.Cluster{Name: c.Name, Region: c.Region, Zones: c.Zones,
			Admin: fmt.Sprintf("http://%s:%d", f.net().cpIP(i), portAdmin)})
	}
	col, err := dashboard.New(dashboard.Options{Clusters: clusters, Targets: func() []dashboard.Target {
		var ts []dashboard.Target
		for _, p := range f.Pods() {
			ts = append(ts, dashboard.Target{Cluster: p.Cluster, Zone: p.Zone, Pod: p.Name, URL: p.AdminURL() + "/stats/prometheus"})
		}
		return ts
	}})
	if err != nil {
		return nil, fmt.Errorf("up: dashboard: %w", err)
	}
	ln, err := net.Listen("tcp", f.dashboardAddr())
	if err != nil {
		return nil, fmt.Errorf("up: dashboard: %w; is another `causeway up` running? stop it, or free the address", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", dashboard.Handler("/dashboard/", col))
	mux.Handle("/{$}", http.RedirectHandler("/dashboard/", http.StatusFound))
	d := &dashboardServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, col: col, done: make(chan error, 1)}
	go func() { d.done <- d.srv.Serve(ln) }()
	return d, nil
}

// stop closes the server and waits for it.
func (d *dashboardServer) stop() {
	if d == nil {
		return
	}
	// Shutdown lets a scrape in flight finish (it is bounded by the
	// collector's timeouts); Close then drops whatever is left.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.srv.Shutdown(ctx)
	_ = d.srv.Close()
	<-d.done // http.ErrServerClosed, or the listener's own failure: nothing is left to report it to
	d.col.Close()
}

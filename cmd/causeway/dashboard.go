package main

import (
	"fmt"
	"net"
	"net/http"

	"github.com/causewaymesh/causeway/internal/dashboard"
)

// controlPlaneDashboard is the admin listener's /dashboard/: this cluster
// alone, read from its own admin /status and /model (no sidecar metrics:
// the control plane does not know its proxies' admin addresses).
func controlPlaneDashboard(cluster, admin string) (http.Handler, error) {
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return nil, fmt.Errorf("--admin %q: %w", admin, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	col, err := dashboard.New(dashboard.Options{Clusters: []dashboard.Cluster{{Name: cluster, Admin: "http://" + net.JoinHostPort(host, port)}}})
	if err != nil {
		return nil, err
	}
	return dashboard.Handler("/dashboard/", col), nil
}

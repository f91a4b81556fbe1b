package controller

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reconciles        *prometheus.CounterVec
	reconcileDuration prometheus.Histogram
	statusWrites      *prometheus.CounterVec
	errors            *prometheus.CounterVec
	routeTables       prometheus.Gauge
}

// Metric names are documented in docs/gateway.md ("The controller").
func newMetrics(reg prometheus.Registerer, cluster string) (*metrics, error) {
	cl := prometheus.Labels{"cluster": cluster}
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "causeway_gateway_reconciles_total", ConstLabels: cl,
			Help: "Reconciles (list the caches, translate, publish routes, write statuses), by result: ok or error."}, []string{"result"}),
		reconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "causeway_gateway_reconcile_duration_seconds", ConstLabels: cl,
			Help: "Time of one reconcile, status writes included.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "causeway_gateway_status_writes_total", ConstLabels: cl,
			Help: "Status subresource updates sent, by kind and result: ok, conflict (retried on a fresh read), gone or error."}, []string{"kind", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "causeway_gateway_errors_total", ConstLabels: cl,
			Help: "Errors, by stage: discovery, list, read (fresh read after a conflict) or status."}, []string{"stage"}),
		routeTables: prometheus.NewGauge(prometheus.GaugeOpts{Name: "causeway_gateway_route_tables", ConstLabels: cl,
			Help: "Route tables in the last translation."}),
	}
	for _, c := range []prometheus.Collector{m.reconciles, m.reconcileDuration, m.statusWrites, m.errors, m.routeTables} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway controller metrics: %w", err)
		}
	}
	return m, nil
}

package controlplane

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/causewaymesh/causeway/internal/xds"
)

type metrics struct {
	pushes      *prometheus.CounterVec
	pushLatency prometheus.Histogram
	connected   prometheus.Gauge
	refused     prometheus.Counter
	nacks       *prometheus.CounterVec
	resources   *prometheus.GaugeVec
}

// Metric names are documented in docs/control-plane.md.
func newMetrics(reg prometheus.Registerer, cluster string) (*metrics, error) {
	cl := prometheus.Labels{"cluster": cluster}
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "causeway_xds_pushes_total", ConstLabels: cl,
			Help: "Per-node resource-type updates published (each reaches that node's open watches of the type)."}, []string{"type"}),
		pushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "causeway_xds_push_duration_seconds", ConstLabels: cl,
			Help:    "From a model snapshot's arrival (before the debounce) to every node's resources published.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "causeway_xds_connected_proxies", ConstLabels: cl,
			Help: "Distinct xDS node ids with at least one open stream."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "causeway_xds_refused_total", ConstLabels: cl,
			Help: "Streams refused for missing or wrong node metadata."}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "causeway_xds_nacks_total", ConstLabels: cl,
			Help: "NACKs received, by resource type and node id."}, []string{"type", "node"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "causeway_xds_resources", ConstLabels: cl,
			Help: "Resources per type in the latest translation."}, []string{"type"}),
	}
	for _, c := range []prometheus.Collector{m.pushes, m.pushLatency, m.connected, m.refused, m.nacks, m.resources} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("control plane metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) setResources(r xds.Resources) {
	m.resources.WithLabelValues("lds").Set(float64(len(r.Listeners)))
	m.resources.WithLabelValues("rds").Set(float64(len(r.Routes)))
	m.resources.WithLabelValues("cds").Set(float64(len(r.Clusters)))
	m.resources.WithLabelValues("eds").Set(float64(len(r.Endpoints)))
	m.resources.WithLabelValues("sds").Set(float64(len(r.Secrets)))
}

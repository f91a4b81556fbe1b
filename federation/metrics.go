package federation

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type serverMetrics struct {
	refused  *prometheus.CounterVec // trust_domain, reason
	streams  prometheus.Gauge
	messages *prometheus.CounterVec // peer, kind
	revision prometheus.Gauge
}

func newServerMetrics(r prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_federation_export_refused_total",
			Help: "Importers or their messages refused by this exporter, by the peer's trust domain and reason.",
		}, []string{"trust_domain", "reason"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "causeway_federation_export_streams",
			Help: "Open federation streams to importers.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_federation_export_messages_total",
			Help: "Messages sent to importers, by peer cluster and kind (hello, delta, resync, heartbeat).",
		}, []string{"peer", "kind"}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "causeway_federation_export_revision",
			Help: "Revision of the exported state.",
		}),
	}
	return m, register(r, m.refused, m.streams, m.messages, m.revision)
}

type importerMetrics struct {
	refused   *prometheus.CounterVec // peer, reason
	connected *prometheus.GaugeVec   // peer
	stale     *prometheus.GaugeVec   // peer
	services  *prometheus.GaugeVec   // peer
	endpoints *prometheus.GaugeVec   // peer
	messages  *prometheus.CounterVec // peer, kind
	withdrawn *prometheus.CounterVec // peer
}

func newImporterMetrics(r prometheus.Registerer) (*importerMetrics, error) {
	peer := []string{"peer"}
	m := &importerMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_federation_import_refused_total",
			Help: "Streams from an exporting peer ended by a refusal, by peer cluster and reason.",
		}, []string{"peer", "reason"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "causeway_federation_peer_connected",
			Help: "1 while the stream from the peer is up and synced.",
		}, peer),
		stale: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "causeway_federation_peer_stale",
			Help: "1 while the peer's imports are last-known-good from a lost stream.",
		}, peer),
		services: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "causeway_federation_imported_services",
			Help: "Services imported from the peer.",
		}, peer),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "causeway_federation_imported_endpoints",
			Help: "Endpoints imported from the peer (direct, or counted in locality summaries).",
		}, peer),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_federation_import_messages_total",
			Help: "Messages received from the peer, by kind (hello, delta, resync, heartbeat).",
		}, []string{"peer", "kind"}),
		withdrawn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_federation_import_withdrawn_total",
			Help: "Times the peer's imports were withdrawn after the staleness window.",
		}, peer),
	}
	return m, register(r, m.refused, m.connected, m.stale, m.services, m.endpoints, m.messages, m.withdrawn)
}

func register(r prometheus.Registerer, cs ...prometheus.Collector) error {
	if r == nil {
		return nil
	}
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, d := range cs[:i] {
				r.Unregister(d)
			}
			return fmt.Errorf("federation: registering metrics: %w; give each Server and Importer its own registry (or a prometheus.WrapRegistererWith label)", err)
		}
	}
	return nil
}

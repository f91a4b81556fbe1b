package issuer

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a Sign call, the "result" label of
// causeway_svid_sign_requests_total.
const (
	ResultIssued  = "issued"  // an SVID was issued
	ResultRefused = "refused" // the caller's fault: bad token, request or identity
	ResultFailed  = "failed"  // the server's fault or an unreachable dependency
)

// Reasons of a Sign call, the "reason" label of
// causeway_svid_sign_requests_total. Each is also the "reason" attribute of
// the log line.
const (
	ReasonOK                       = "ok"
	ReasonMissingToken             = "missing_token"             // Unauthenticated
	ReasonInvalidToken             = "invalid_token"             // Unauthenticated
	ReasonInvalidCSR               = "invalid_csr"               // InvalidArgument
	ReasonInvalidSPIFFEID          = "invalid_spiffe_id"         // InvalidArgument
	ReasonInvalidTTL               = "invalid_ttl"               // InvalidArgument
	ReasonIdentityMismatch         = "identity_mismatch"         // PermissionDenied
	ReasonAuthenticatorUnavailable = "authenticator_unavailable" // Unavailable
	ReasonSignFailed               = "sign_failed"               // Internal
	ReasonCanceled                 = "canceled"                  // Canceled / DeadlineExceeded
)

// Metrics are the issuer server's Prometheus metrics.
type Metrics struct {
	// Requests counts Sign calls by result and reason.
	Requests *prometheus.CounterVec
	// Issued counts SVIDs issued.
	Issued prometheus.Counter
	// Duration observes Sign latency in seconds, by result.
	Duration *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered). Every result/reason pair starts at zero, so that dashboards
// and alerts see the series before the first refusal.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	reasonResults := [...]struct{ result, reason string }{
		{ResultIssued, ReasonOK},
		{ResultRefused, ReasonMissingToken},
		{ResultRefused, ReasonInvalidToken},
		{ResultRefused, ReasonInvalidCSR},
		{ResultRefused, ReasonInvalidSPIFFEID},
		{ResultRefused, ReasonInvalidTTL},
		{ResultRefused, ReasonIdentityMismatch},
		{ResultFailed, ReasonAuthenticatorUnavailable},
		{ResultFailed, ReasonSignFailed},
		{ResultFailed, ReasonCanceled},
	}
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_svid_sign_requests_total",
			Help: "SVID Sign calls, by result (issued, refused, failed) and reason.",
		}, []string{"result", "reason"}),
		Issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_svid_issued_total",
			Help: "X.509-SVIDs issued.",
		}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "causeway_svid_sign_duration_seconds",
			Help:    "Latency of SVID Sign calls, including authentication, by result.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"result"}),
	}
	for _, rr := range reasonResults {
		m.Requests.WithLabelValues(rr.result, rr.reason)
	}
	for _, r := range []string{ResultIssued, ResultRefused, ResultFailed} {
		m.Duration.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Requests, m.Issued, m.Duration} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("issuer: registering SVID metrics: %w; use one registry per server or wrap it with prometheus.WrapRegistererWith", err)
			}
		}
	}
	return m, nil
}

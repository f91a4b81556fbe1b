package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/internal/merge"
	"github.com/causewaymesh/causeway/internal/model"
)

// MergerOptions configure a Merger.
type MergerOptions struct {
	// Local is this cluster's discovery source. Required.
	Local discovery.Source
	// OnLocal receives every local snapshot before it is merged, on the
	// source's goroutine: the federation exporter's Update (peers get this
	// cluster's truth, never what it imported). May be nil.
	OnLocal func(*model.Snapshot)
	// Cluster labels the metrics.
	Cluster string
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Merger is a discovery.Source that serves the merge (internal/merge) of
// the local source's snapshots, the federation imports (SetImports) and the
// Gateway API route tables (SetRoutes): hand it to ControlPlane.Run. It
// emits a new snapshot whenever an input changes and the merge differs from
// the last one emitted; nothing before the first local snapshot. The
// ControlPlane's debounce applies to what it emits.
//
// Each merge redoes only what changed: merge.Update reuses the last
// merge's services whose inputs are unchanged, the ServiceImport VIPs are
// copied when no service's VIP inputs changed, and the comparison with
// the last emitted model and its validation skip the services that are
// the last model's by identity (Snapshot.Equal, ValidateChanged). What it emits is what a
// merge from scratch would give: a no-op change emits nothing, and a
// model that does not validate is rejected with Validate's full error.
//
// Concurrency: SetImports and SetRoutes store the newest value (atomic) and
// wake Run, from any goroutine, never blocking; Run merges on its own
// goroutine, so a burst of inputs costs at most one merge per wake-up.
type Merger struct {
	o    MergerOptions
	wake chan struct{}

	local     atomic.Pointer[model.Snapshot]
	imported  atomic.Pointer[[]model.Service]
	routes    atomic.Pointer[[]model.RouteTable]
	conflicts atomic.Pointer[[]merge.Conflict]

	merges, invalid prometheus.Counter
	nConflicts      prometheus.Gauge
	importedGauge   prometheus.Gauge
}

// NewMerger checks o and returns a Merger; Run starts it.
func NewMerger(o MergerOptions) (*Merger, error) {
	if o.Local == nil {
		return nil, errors.New("control plane: MergerOptions.Local: required; pass the cluster's discovery source")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	labels := prometheus.Labels{"cluster": o.Cluster}
	m := &Merger{o: o, wake: make(chan struct{}, 1),
		merges: prometheus.NewCounter(prometheus.CounterOpts{Name: "causeway_model_merges_total", ConstLabels: labels,
			Help: "Merges of the local model, the federation imports and the Gateway API routes that changed the served model."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "causeway_model_merge_invalid_total", ConstLabels: labels,
			Help: "Merges that did not validate (a bug): the last good model keeps serving."}),
		nConflicts: prometheus.NewGauge(prometheus.GaugeOpts{Name: "causeway_model_merge_conflicts", ConstLabels: labels,
			Help: "Imported ports, endpoints or route tables the latest merge left out (see /problems)."}),
		importedGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "causeway_model_imported_services", ConstLabels: labels,
			Help: "Services imported from federation peers in the latest merge."}),
	}
	if r := o.Registerer; r != nil {
		for _, c := range []prometheus.Collector{m.merges, m.invalid, m.nConflicts, m.importedGauge} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("control plane: merger metrics: %w", err)
			}
		}
	}
	return m, nil
}

// SetImports makes im the imported services (federation.ImporterConfig.OnImports).
func (m *Merger) SetImports(im *federation.Imports) {
	var svcs []model.Service
	if im != nil {
		svcs = im.Services
	}
	m.imported.Store(&svcs)
	m.poke()
}

// SetRoutes makes rt the Gateway API route tables (gateway/controller.Options.OnRoutes).
func (m *Merger) SetRoutes(rt []model.RouteTable) {
	m.routes.Store(&rt)
	m.poke()
}

// Conflicts is what the latest merge left out (see merge.Conflict).
func (m *Merger) Conflicts() []merge.Conflict {
	if c := m.conflicts.Load(); c != nil {
		return *c
	}
	return nil
}

func (m *Merger) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run runs the local source and emits merged snapshots until ctx ends; it
// returns the source's error (ctx's when it ends first) after the source
// stopped.
func (m *Merger) Run(ctx context.Context, emit func(*model.Snapshot)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srcErr := make(chan error, 1)
	go func() {
		srcErr <- m.o.Local.Run(ctx, func(s *model.Snapshot) {
			if m.o.OnLocal != nil {
				m.o.OnLocal(s)
			}
			m.local.Store(s)
			m.poke()
		})
	}()
	var st mergeState
	for {
		select {
		case <-ctx.Done():
			return <-srcErr
		case err := <-srcErr:
			return err
		case <-m.wake:
			if s := m.merge(&st); s != nil {
				emit(s)
			}
		}
	}
}

// mergeState is what one merge leaves for the next (Run's goroutine only).
type mergeState struct {
	last *model.Snapshot // the last emitted (valid)
	prev *merge.Result   // the last merge, reused by the next
	vips *model.Snapshot // prev.Snapshot with its ClustersetIPs
}

// merge returns the merge of the current inputs, or nil when there is no
// local snapshot yet, the merge equals the last one emitted, or it does
// not validate; it updates st. It merges, compares and validates only the
// services whose inputs changed since the last merge (merge.Update;
// Snapshot.Equal and ValidateChanged stop at shared services).
func (m *Merger) merge(st *mergeState) *model.Snapshot {
	local := m.local.Load()
	if local == nil {
		return nil
	}
	in := merge.Inputs{Local: local}
	if p := m.imported.Load(); p != nil {
		in.Imported = *p
	}
	if p := m.routes.Load(); p != nil {
		in.Routes = *p
	}
	r := merge.Update(st.prev, in)
	conflicts := r.Conflicts
	// ServiceImport VIPs, which capture-mode sidecars answer
	// <svc>.<ns>.svc.clusterset.local with (model/vips.go).
	var prevIn *model.Snapshot
	if st.prev != nil {
		prevIn = st.prev.Snapshot
	}
	s := withClustersetIPs(r.Snapshot, prevIn, st.vips)
	st.prev, st.vips = r, s
	last := st.last
	if old := m.Conflicts(); !slices.Equal(old, conflicts) {
		for _, c := range conflicts {
			if !slices.Contains(old, c) {
				m.o.Logger.Warn("model merge: input left out", "object", c.Object, "field", c.Field, "reason", c.Reason)
			}
		}
		m.conflicts.Store(&conflicts)
		m.nConflicts.Set(float64(len(conflicts)))
	}
	m.importedGauge.Set(float64(len(in.Imported)))
	// Both stop at the services s shares with last (merge.Update keeps
	// unchanged ones): a change costs the services it touched.
	if last.Equal(s) {
		return nil
	}
	if err := s.ValidateChanged(last); err != nil {
		m.invalid.Inc()
		m.o.Logger.Error("model merge: the merged model does not validate (a bug); the last good one keeps serving", "err", err)
		return nil
	}
	m.merges.Inc()
	st.last = s
	return s
}

package mcs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1alpha1"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/internal/model"
)

// ManagedByLabel marks the ServiceImports a Writer created, with the value
// ManagedByValue. A Writer updates and deletes only ServiceImports that
// carry it; it never touches one without it.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "causeway-control-plane"
)

// Options configure a Writer.
type Options struct {
	// Cluster is this cluster's name (status.clusters, messages). Required.
	Cluster string
	// Client talks to the apiserver; nil: built from Config.
	Client mcsclient.Interface
	Config *rest.Config
	// Resync is how often everything is compared again even without a
	// change (a namespace created later, an object edited by hand while
	// the watch was down). Default 1m.
	Resync time.Duration
	// StartGrace keeps the labelled ServiceImports that are no longer
	// wanted for this long after Run starts, instead of deleting them at
	// the first pass: after a restart the federation's imports arrive
	// only once the links catch up, and a service only peers export would
	// otherwise lose its ServiceImport and get a new one (new UID) a
	// moment later. Creates and updates are not delayed. 0: none.
	StartGrace time.Duration
	// Now stamps condition transitions; default time.Now.
	Now func() time.Time
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Writer keeps the MCS objects of one cluster in line with what Causeway
// serves: one ServiceImport per clusterset service (created, updated and
// deleted by it, marked with ManagedByLabel) and the Valid, Ready and
// Conflict conditions of every ServiceExport. See the package doc.
type Writer struct {
	o       Options
	client  mcsclient.Interface
	wake    chan struct{}
	local   atomic.Pointer[model.Snapshot]
	imports atomic.Pointer[federation.Imports]
	// problems are the last reconcile's, for /problems.
	problems atomic.Pointer[[]error]

	writes     *prometheus.CounterVec
	errors     prometheus.Counter
	reconciles prometheus.Counter
}

// NewWriter checks o and returns a Writer; Run starts it.
func NewWriter(o Options) (*Writer, error) {
	if o.Cluster == "" {
		return nil, errors.New("mcs writer: Options.Cluster: required; name this cluster")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Writer{o: o, client: o.Client, wake: make(chan struct{}, 1)}
	if w.client == nil {
		if o.Config == nil {
			return nil, errors.New("mcs writer: Options.Client or Options.Config: required; pass the apiserver's rest.Config")
		}
		var err error
		if w.client, err = mcsclient.NewForConfig(o.Config); err != nil {
			return nil, fmt.Errorf("mcs writer: client: %w", err)
		}
	}
	labels := prometheus.Labels{"cluster": o.Cluster}
	w.writes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "causeway_mcs_writes_total", ConstLabels: labels,
		Help: "Writes of MCS objects by kind (ServiceImport, ServiceExport) and verb (create, update, update_status, delete)."}, []string{"kind", "verb"})
	w.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "causeway_mcs_write_errors_total", ConstLabels: labels,
		Help: "MCS object writes that failed (retried at the next change or resync)."})
	w.reconciles = prometheus.NewCounter(prometheus.CounterOpts{Name: "causeway_mcs_reconciles_total", ConstLabels: labels,
		Help: "Passes that compared the wanted MCS objects with the apiserver's (writing only differences)."})
	if r := o.Registerer; r != nil {
		for _, c := range []prometheus.Collector{w.writes, w.errors, w.reconciles} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("mcs writer: metrics: %w", err)
			}
		}
	}
	return w, nil
}

// SetLocal makes s this cluster's discovery snapshot. Nothing is written
// before the first one.
func (w *Writer) SetLocal(s *model.Snapshot) {
	w.local.Store(s)
	w.poke()
}

// SetImports makes im the merged imports of the peers
// (controlplane.FederationOptions.OnImports).
func (w *Writer) SetImports(im *federation.Imports) {
	w.imports.Store(im)
	w.poke()
}

// Source returns src with every snapshot it emits also handed to
// SetLocal: wrap the discovery source with it.
func (w *Writer) Source(src discovery.Source) discovery.Source { return tap{w, src} }

type tap struct {
	w   *Writer
	src discovery.Source
}

func (t tap) Run(ctx context.Context, emit func(*model.Snapshot)) error {
	return t.src.Run(ctx, func(s *model.Snapshot) {
		t.w.SetLocal(s)
		emit(s)
	})
}

// Problems are what the last reconcile could not do: ServiceImports that
// exist but were not created by Causeway, writes that failed.
func (w *Writer) Problems() []error {
	if p := w.problems.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *Writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run watches ServiceImports and ServiceExports and reconciles on every
// input change, watch event and resync until ctx ends; it returns nil
// then. When the MCS CRDs are not served it logs so and waits for ctx.
func (w *Writer) Run(ctx context.Context) error {
	for {
		_, err := w.client.Discovery().ServerResourcesForGroupVersion(mcsv1alpha1.SchemeGroupVersion.String())
		if err == nil {
			break
		}
		if apierrors.IsNotFound(err) {
			w.o.Logger.Warn("mcs writer: the MCS API is not served (install manifests/crds/mcs-api and restart); no ServiceImports or ServiceExport conditions are written", "err", err)
			<-ctx.Done()
			return nil
		}
		w.o.Logger.Warn("mcs writer: cannot reach the apiserver; retrying", "err", err, "in", discoveryRetry)
		t := time.NewTimer(discoveryRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	// No informer resync: the loop's ticker compares everything anyway.
	// managedFields are dropped before caching (memory); an update
	// without them keeps the apiserver's.
	f := mcsinformers.NewSharedInformerFactoryWithOptions(w.client, 0, mcsinformers.WithTransform(func(o any) (any, error) {
		if m, ok := o.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return o, nil
	}))
	si := f.Multicluster().V1alpha1().ServiceImports()
	se := f.Multicluster().V1alpha1().ServiceExports()
	// Callbacks only wake the loop.
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	if _, err := si.Informer().AddEventHandler(h); err != nil {
		return fmt.Errorf("mcs writer: ServiceImport informer: %w", err)
	}
	if _, err := se.Informer().AddEventHandler(h); err != nil {
		return fmt.Errorf("mcs writer: ServiceExport informer: %w", err)
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("mcs writer: %v informer did not sync", typ)
		}
	}
	r := reconciler{w: w, imports: si.Lister(), exports: se.Lister(), holdDeletes: w.o.StartGrace > 0}
	tick := time.NewTicker(w.o.Resync)
	defer tick.Stop()
	var graceOver <-chan time.Time
	if r.holdDeletes {
		grace := time.NewTimer(w.o.StartGrace)
		defer grace.Stop()
		graceOver = grace.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		case <-tick.C:
		case <-graceOver:
			r.holdDeletes, graceOver = false, nil
		}
		r.reconcile(ctx)
	}
}

// discoveryRetry is the wait between two tries to reach the apiserver at
// Run's start.
const discoveryRetry = 5 * time.Second

// passTimeout bounds one reconcile pass.
const passTimeout = 30 * time.Second

// reconciler is one pass's context; Run's goroutine only.
type reconciler struct {
	w       *Writer
	imports mcslisters.ServiceImportLister
	exports mcslisters.ServiceExportLister
	// holdDeletes: within Options.StartGrace.
	holdDeletes bool
}

// reconcile writes the difference between what Compute wants and what
// the informers' caches hold. Writes go only where something differs; a
// stale cache costs a conflict, which is retried on a fresh read.
func (r *reconciler) reconcile(ctx context.Context) {
	local := r.w.local.Load()
	if local == nil {
		return // nothing is known yet: never withdraw on an empty start
	}
	// One slow write (an apiserver that holds a request) must not stall
	// the loop for good: the pass gives up and the next one retries.
	ctx, cancel := context.WithTimeout(ctx, passTimeout)
	defer cancel()
	d := Compute(r.w.o.Cluster, local, r.w.imports.Load())
	var problems []error
	problems = append(problems, r.serviceImports(ctx, d.Imports)...)
	problems = append(problems, r.serviceExports(ctx, &d)...)
	r.w.problems.Store(&problems)
	r.w.reconciles.Inc()
}

func (r *reconciler) serviceImports(ctx context.Context, want []Import) []error {
	var problems []error
	existing, err := r.imports.List(labels.Everything())
	if err != nil {
		return []error{fmt.Errorf("mcs writer: listing ServiceImports: %w", err)}
	}
	have := make(map[Name]*mcsv1alpha1.ServiceImport, len(existing))
	for _, o := range existing {
		have[Name{o.Namespace, o.Name}] = o
	}
	for i := range want {
		im := &want[i]
		cur := have[im.Service]
		delete(have, im.Service)
		if cur != nil && !owned(cur) {
			problems = append(problems, fmt.Errorf("ServiceImport %s: exists without label %s=%s, so Causeway leaves it alone; its clusterset service (VIP %s, clusters %s) is not written there: delete it to let Causeway manage it",
				im.Service, ManagedByLabel, ManagedByValue, im.IP, strings.Join(im.Clusters, ", ")))
			continue
		}
		if err := r.applyImport(ctx, im, cur); err != nil {
			r.w.errors.Inc()
			problems = append(problems, err)
		}
	}
	// What is left and ours is exported nowhere any more.
	for n, o := range have {
		if !owned(o) || r.holdDeletes {
			continue
		}
		uid := o.UID
		err := r.w.client.MulticlusterV1alpha1().ServiceImports(n.Namespace).Delete(ctx, n.Name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		switch {
		case err == nil:
			r.w.writes.WithLabelValues("ServiceImport", "delete").Inc()
			r.w.o.Logger.Info("mcs writer: ServiceImport withdrawn: exported nowhere any more", "service_import", n.String())
		case apierrors.IsNotFound(err), apierrors.IsConflict(err): // gone, or re-created: the next pass sees it
		default:
			r.w.errors.Inc()
			problems = append(problems, fmt.Errorf("ServiceImport %s: delete: %w", n, err))
		}
	}
	slices.SortFunc(problems, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return problems
}

// updateImport writes one part of *cur (set, through update: the spec or
// the status subresource) until same says it matches im, reading the
// object again after a write conflict; *cur follows the apiserver's copy.
func (r *reconciler) updateImport(ctx context.Context, c interface {
	Get(context.Context, string, metav1.GetOptions) (*mcsv1alpha1.ServiceImport, error)
}, cur **mcsv1alpha1.ServiceImport, im *Import, verb string,
	same func(*mcsv1alpha1.ServiceImport, *Import) bool, set func(*mcsv1alpha1.ServiceImport),
	update func(context.Context, *mcsv1alpha1.ServiceImport, metav1.UpdateOptions) (*mcsv1alpha1.ServiceImport, error)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if same(*cur, im) {
			return nil
		}
		o := (*cur).DeepCopy()
		set(o)
		upd, err := update(ctx, o, metav1.UpdateOptions{})
		if err == nil {
			r.w.writes.WithLabelValues("ServiceImport", verb).Inc()
			*cur = upd
			return nil
		}
		if apierrors.IsConflict(err) {
			if fresh, gerr := c.Get(ctx, im.Service.Name, metav1.GetOptions{}); gerr == nil {
				*cur = fresh
			}
		}
		return err
	})
}

func owned(o *mcsv1alpha1.ServiceImport) bool { return o.Labels[ManagedByLabel] == ManagedByValue }

// applyImport creates or updates the ServiceImport of im; cur is the
// cached object (nil: none).
func (r *reconciler) applyImport(ctx context.Context, im *Import, cur *mcsv1alpha1.ServiceImport) error {
	c := r.w.client.MulticlusterV1alpha1().ServiceImports(im.Service.Namespace)
	if cur == nil {
		o := &mcsv1alpha1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Namespace: im.Service.Namespace, Name: im.Service.Name, Labels: map[string]string{ManagedByLabel: ManagedByValue}},
		}
		setSpec(o, im)
		created, err := c.Create(ctx, o, metav1.CreateOptions{})
		switch {
		case err == nil:
			r.w.writes.WithLabelValues("ServiceImport", "create").Inc()
			cur = created
		case apierrors.IsAlreadyExists(err):
			if cur, err = c.Get(ctx, im.Service.Name, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("ServiceImport %s: get after create conflict: %w", im.Service, err)
			}
			if !owned(cur) {
				return fmt.Errorf("ServiceImport %s: created meanwhile by someone else (no label %s=%s); left alone", im.Service, ManagedByLabel, ManagedByValue)
			}
		case apierrors.IsNotFound(err), apierrors.IsForbidden(err) && namespaceMissing(err):
			// The namespace does not exist here: namespace sameness says
			// the service has no ServiceImport in this cluster until it does.
			return nil
		default:
			return fmt.Errorf("ServiceImport %s: create: %w", im.Service, err)
		}
	}
	// Spec, then status (a subresource), each only when it differs; on a
	// conflict, read again and compare again.
	if err := r.updateImport(ctx, c, &cur, im, "update", specEqual, func(o *mcsv1alpha1.ServiceImport) { setSpec(o, im) }, c.Update); err != nil {
		return fmt.Errorf("ServiceImport %s: update spec: %w", im.Service, err)
	}
	setStatus := func(o *mcsv1alpha1.ServiceImport) { o.Status.Clusters = clusterStatuses(im.Clusters) }
	if err := r.updateImport(ctx, c, &cur, im, "update_status", statusEqual, setStatus, c.UpdateStatus); err != nil {
		return fmt.Errorf("ServiceImport %s: update status.clusters: %w", im.Service, err)
	}
	return nil
}

func namespaceMissing(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	d := st.Status().Details
	return d != nil && d.Kind == "namespaces"
}

// setSpec writes the fields Causeway owns (type, ips, ports) and keeps
// the others.
func setSpec(o *mcsv1alpha1.ServiceImport, im *Import) {
	o.Spec.Type = mcsv1alpha1.ClusterSetIP
	o.Spec.IPs = nil
	if im.IP != "" {
		o.Spec.IPs = []string{im.IP}
	}
	o.Spec.Ports = slices.Clone(im.Ports)
	if o.Labels == nil {
		o.Labels = map[string]string{}
	}
	o.Labels[ManagedByLabel] = ManagedByValue
}

func specEqual(o *mcsv1alpha1.ServiceImport, im *Import) bool {
	if o.Spec.Type != mcsv1alpha1.ClusterSetIP || !owned(o) {
		return false
	}
	if im.IP == "" {
		if len(o.Spec.IPs) != 0 {
			return false
		}
	} else if !slices.Equal(o.Spec.IPs, []string{im.IP}) {
		return false
	}
	return slices.EqualFunc(o.Spec.Ports, im.Ports, func(a, b mcsv1alpha1.ServicePort) bool {
		return a.Name == b.Name && a.Port == b.Port && protocolOrTCP(a.Protocol) == protocolOrTCP(b.Protocol) &&
			deref(a.AppProtocol) == deref(b.AppProtocol)
	})
}

func protocolOrTCP[P ~string](p P) P {
	if p == "" {
		return "TCP"
	}
	return p
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func statusEqual(o *mcsv1alpha1.ServiceImport, im *Import) bool {
	return slices.EqualFunc(o.Status.Clusters, im.Clusters, func(a mcsv1alpha1.ClusterStatus, b string) bool { return a.Cluster == b })
}

func clusterStatuses(cs []string) []mcsv1alpha1.ClusterStatus {
	out := make([]mcsv1alpha1.ClusterStatus, len(cs))
	for i, c := range cs {
		out[i].Cluster = c
	}
	return out
}

// serviceExports sets Valid, Ready and Conflict on every ServiceExport.
func (r *reconciler) serviceExports(ctx context.Context, d *Desired) []error {
	all, err := r.exports.List(labels.Everything())
	if err != nil {
		return []error{fmt.Errorf("mcs writer: listing ServiceExports: %w", err)}
	}
	var problems []error
	for _, se := range all {
		n := Name{se.Namespace, se.Name}
		e, ok := d.Export(n)
		conds := slices.Clone(se.Status.Conditions)
		if !setConditions(&conds, ExportConditions(r.w.o.Cluster, n, e, ok), se.Generation, r.w.o.Now()) {
			continue
		}
		c := r.w.client.MulticlusterV1alpha1().ServiceExports(n.Namespace)
		cur := se
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			o := cur.DeepCopy()
			if !setConditions(&o.Status.Conditions, ExportConditions(r.w.o.Cluster, n, e, ok), o.Generation, r.w.o.Now()) {
				return nil
			}
			_, err := c.UpdateStatus(ctx, o, metav1.UpdateOptions{})
			if err == nil {
				r.w.writes.WithLabelValues("ServiceExport", "update_status").Inc()
				return nil
			}
			if apierrors.IsConflict(err) {
				if fresh, gerr := c.Get(ctx, n.Name, metav1.GetOptions{}); gerr == nil {
					cur = fresh
				}
			}
			return err
		})
		switch {
		case err == nil, apierrors.IsNotFound(err): // deleted meanwhile
		default:
			r.w.errors.Inc()
			problems = append(problems, fmt.Errorf("ServiceExport %s: update status.conditions: %w", n, err))
		}
	}
	return problems
}

// setConditions sets want in conds (keeping other types, and the
// transition time of a condition whose status does not change); it
// reports whether anything changed.
func setConditions(conds *[]metav1.Condition, want []metav1.Condition, gen int64, now time.Time) bool {
	changed := false
	for _, c := range want {
		c.ObservedGeneration = gen
		c.LastTransitionTime = metav1.NewTime(now)
		if meta.SetStatusCondition(conds, c) {
			changed = true
		}
	}
	return changed
}

// ExportConditions are the conditions Causeway sets on the ServiceExport
// n of cluster: e is its export in the local model, ok false when the
// model has none (no Service, or one that cannot be exported).
func ExportConditions(cluster string, n Name, e *Export, ok bool) []metav1.Condition {
	if !ok {
		msg := fmt.Sprintf("no Service %s in cluster %s's model: create it (an ExternalName Service cannot be exported)", n, cluster)
		return []metav1.Condition{
			{Type: string(mcsv1alpha1.ServiceExportConditionValid), Status: metav1.ConditionFalse, Reason: string(mcsv1alpha1.ServiceExportReasonNoService), Message: msg},
			{Type: string(mcsv1alpha1.ServiceExportConditionReady), Status: metav1.ConditionFalse, Reason: string(mcsv1alpha1.ServiceExportReasonFailed), Message: "not exported: " + msg},
			{Type: string(mcsv1alpha1.ServiceExportConditionConflict), Status: metav1.ConditionFalse, Reason: string(mcsv1alpha1.ServiceExportReasonNoConflicts), Message: "nothing exported to conflict with"},
		}
	}
	ready := fmt.Sprintf("exported from %s to the clusterset as ServiceImport %s", cluster, n)
	if e.IP != "" {
		ready += " (VIP " + e.IP + ")"
	}
	ready += ", exported by " + strings.Join(e.Clusters, ", ")
	out := []metav1.Condition{
		{Type: string(mcsv1alpha1.ServiceExportConditionValid), Status: metav1.ConditionTrue, Reason: string(mcsv1alpha1.ServiceExportReasonValid), Message: fmt.Sprintf("Service %s is exportable", n)},
		{Type: string(mcsv1alpha1.ServiceExportConditionReady), Status: metav1.ConditionTrue, Reason: string(mcsv1alpha1.ServiceExportReasonExported), Message: ready},
	}
	if len(e.Conflicts) == 0 {
		return append(out, metav1.Condition{Type: string(mcsv1alpha1.ServiceExportConditionConflict), Status: metav1.ConditionFalse,
			Reason: string(mcsv1alpha1.ServiceExportReasonNoConflicts), Message: fmt.Sprintf("every cluster exporting %s defines it alike", n)})
	}
	var reasons, msgs []string
	for _, c := range e.Conflicts {
		if !slices.Contains(reasons, string(c.Reason)) {
			reasons = append(reasons, string(c.Reason))
		}
		msgs = append(msgs, c.Message)
	}
	// The MCS API combines several reasons with commas.
	return append(out, metav1.Condition{Type: string(mcsv1alpha1.ServiceExportConditionConflict), Status: metav1.ConditionTrue,
		Reason: strings.Join(reasons, ","), Message: truncate(strings.Join(msgs, "; "))})
}

// maxMessage is metav1.Condition's limit on Message.
const maxMessage = 32768

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	const more = " ... (truncated)"
	cut := maxMessage - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}

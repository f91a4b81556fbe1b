package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// MaxRequestBytes bounds an AdmissionReview body: kube-apiserver objects
// are at most 3 MiB, and a review may carry two of them.
const MaxRequestBytes = 7 << 20

// NamespaceGetter looks a namespace up for its labels; an informer lister
// or a clientset fits (see NamespaceFunc).
type NamespaceGetter interface {
	Namespace(ctx context.Context, name string) (*corev1.Namespace, error)
}

// NamespaceFunc adapts a function to NamespaceGetter.
type NamespaceFunc func(ctx context.Context, name string) (*corev1.Namespace, error)

// Namespace calls f.
func (f NamespaceFunc) Namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	return f(ctx, name)
}

// HandlerOptions are the Handler's collaborators; each may be nil.
type HandlerOptions struct {
	// Namespaces resolves the namespace label. Nil means every request
	// comes from a selected namespace: the webhook's namespaceSelector did
	// the selecting, and only the pod's opt-out annotation still counts.
	Namespaces NamespaceGetter
	// Registerer receives the handler's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger receives one line per pod not injected because of an error;
	// nil discards.
	Logger *slog.Logger
	// Events receives a Warning Event (reason EventReasonNotInjected) for
	// every pod admitted without injection because of an error, about the
	// pod's controller (a ReplicaSet, Job, ...), else the pod, else its
	// namespace: a pod being created may have neither a name nor a UID yet.
	// client-go's events.EventRecorder fits; nil records none.
	Events EventRecorder
}

// EventRecorder records Kubernetes Events (client-go's
// k8s.io/client-go/tools/events.EventRecorder has this method).
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// EventReasonNotInjected is the reason of the Warning Event recorded when a
// pod is admitted without injection because of an error.
const EventReasonNotInjected = "SidecarNotInjected"

// Handler is the mutating admission webhook for pods (admission/v1). It
// never denies: whatever goes wrong, the pod is admitted unchanged with a
// warning. Serve it over TLS at the path of the webhook's clientConfig.
type Handler struct {
	in      *injector
	ns      NamespaceGetter
	log     *slog.Logger
	events  EventRecorder
	metrics *handlerMetrics
	now     func() time.Time
}

// Results of an admission, the "result" label of
// causeway_injector_admissions_total.
const (
	resultInjected = "injected"
	resultSkipped  = "skipped"
	resultIgnored  = "ignored" // not a pod CREATE
	resultError    = "error"   // admitted unchanged with a warning
)

type handlerMetrics struct {
	admissions *prometheus.CounterVec
	duration   prometheus.Histogram
}

// NewHandler validates cfg and returns a Handler.
func NewHandler(cfg Config, opts HandlerOptions) (*Handler, error) {
	in, err := newInjector(cfg)
	if err != nil {
		return nil, err
	}
	h := &Handler{in: in, ns: opts.Namespaces, log: opts.Logger, events: opts.Events, now: time.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.metrics = &handlerMetrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_injector_admissions_total",
			Help: "Pod admission reviews answered, by result (injected, skipped, ignored, error) and reason.",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "causeway_injector_admission_duration_seconds",
			Help:    "Time to answer one admission review.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{h.metrics.admissions, h.metrics.duration} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("inject: registering injector metrics: %w", err)
			}
		}
	}
	return h, nil
}

// ServeHTTP answers one AdmissionReview.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an admission.k8s.io/v1 AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	var review admissionv1.AdmissionReview
	resp, result, reason := h.review(r, &review)
	h.metrics.admissions.WithLabelValues(result, reason).Inc()
	h.metrics.duration.Observe(h.now().Sub(start).Seconds())
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	}
	b, err := json.Marshal(&out)
	if err != nil { // only plain fields: cannot happen
		http.Error(w, "encoding the AdmissionReview response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// review decides the response to r; it always allows.
func (h *Handler) review(r *http.Request, review *admissionv1.AdmissionReview) (resp *admissionv1.AdmissionResponse, result, reason string) {
	resp = &admissionv1.AdmissionResponse{Allowed: true}
	var (
		pod    corev1.Pod
		nsName string // the request's namespace, once known: events need it
	)
	admitWith := func(code string, err error, attrs ...any) (*admissionv1.AdmissionResponse, string, string) {
		resp.Warnings = append(resp.Warnings, "causeway: sidecar not injected: "+err.Error())
		h.log.Warn("admitted without injection", append([]any{"reason", code, "err", err}, attrs...)...)
		if h.events != nil && nsName != "" {
			h.events.Eventf(eventRegarding(&pod, nsName), nil, corev1.EventTypeWarning, EventReasonNotInjected, "Inject",
				"%s", truncate(podLabel(&pod, nsName)+" admitted without the Causeway sidecar: "+err.Error(), maxEventNote))
		}
		return resp, resultError, code
	}
	defer func() {
		if p := recover(); p != nil {
			resp = &admissionv1.AdmissionResponse{UID: resp.UID, Allowed: true}
			resp, result, reason = admitWith("panic", fmt.Errorf("internal error: %v", p))
		}
	}()

	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxRequestBytes))
	if err != nil {
		return admitWith("malformed_request", fmt.Errorf("reading the AdmissionReview: %w", err))
	}
	if err := json.Unmarshal(body, review); err != nil {
		return admitWith("malformed_request", fmt.Errorf("the request is not an admission.k8s.io/v1 AdmissionReview: %w", err))
	}
	req := review.Request
	if req == nil {
		return admitWith("malformed_request", errors.New("the AdmissionReview has no request"))
	}
	resp.UID = req.UID
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return resp, resultIgnored, "not_a_pod"
	}
	if req.Operation != admissionv1.Create {
		return resp, resultIgnored, "not_create"
	}
	nsName = req.Namespace
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		pod = corev1.Pod{}
		return admitWith("malformed_pod", fmt.Errorf("request.object does not decode as a v1 Pod: %w", err), "namespace", req.Namespace)
	}
	if nsName == "" {
		nsName = pod.Namespace
	}
	var ns *corev1.Namespace
	if h.ns == nil {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName, Labels: map[string]string{LabelInject: NamespaceEnabled}}}
	} else if ns, err = h.ns.Namespace(r.Context(), nsName); err != nil {
		return admitWith("namespace_lookup", fmt.Errorf("looking up namespace %s: %w", nsName, err), "namespace", nsName)
	}
	origNS := pod.Namespace
	if pod.Namespace == "" {
		pod.Namespace = nsName // for messages; restored before the diff
	}
	out, d, err := h.in.pod(&pod, ns)
	if err != nil {
		return admitWith("pod_spec", err, "namespace", nsName)
	}
	if d.code != "" {
		if d.asked {
			resp.Warnings = append(resp.Warnings, "causeway: sidecar not injected: "+d.why)
		}
		return resp, resultSkipped, d.code
	}
	pod.Namespace, out.Namespace = origNS, origNS
	patch, err := podPatch(&pod, out)
	if err != nil {
		return admitWith("patch", err, "namespace", nsName)
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	return resp, resultInjected, ""
}

// podPatch is the JSON patch from before to after. Both are encoded by the
// same struct types, so the patch touches only what injection changed and
// never fields this build of the API types does not know.
func podPatch(before, after *corev1.Pod) ([]byte, error) {
	a, err := toJSONTree(before)
	if err != nil {
		return nil, fmt.Errorf("encoding the pod: %w", err)
	}
	b, err := toJSONTree(after)
	if err != nil {
		return nil, fmt.Errorf("encoding the injected pod: %w", err)
	}
	return json.Marshal(diffJSON(a, b))
}

// maxEventNote bounds an Event's note (the apiserver refuses more than 1 kB).
const maxEventNote = 1000

// eventRegarding is what an Event about pod is attached to: its controller,
// else the pod itself when it has a name, else its namespace (a pod made
// with generateName has no name at admission).
func eventRegarding(pod *corev1.Pod, ns string) *corev1.ObjectReference {
	if c := metav1.GetControllerOf(pod); c != nil && c.Name != "" {
		return &corev1.ObjectReference{APIVersion: c.APIVersion, Kind: c.Kind, Name: c.Name, UID: c.UID, Namespace: ns}
	}
	if pod.Name != "" {
		return &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, Namespace: ns}
	}
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: ns, Namespace: ns}
}

// podLabel names a pod in messages: "pod ns/name", or "pod ns/prefix*"
// for one made with generateName.
func podLabel(pod *corev1.Pod, ns string) string {
	switch {
	case pod.Name != "":
		return "pod " + ns + "/" + pod.Name
	case pod.GenerateName != "":
		return "pod " + ns + "/" + pod.GenerateName + "*"
	}
	return "pod in namespace " + ns
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

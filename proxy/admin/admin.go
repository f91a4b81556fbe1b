package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sources are where the admin server reads what it shows. Each may be nil.
type Sources struct {
	// Gatherer backs /stats/prometheus.
	Gatherer prometheus.Gatherer
	// Ready backs /ready: 200 "LIVE", or 503 with why.
	Ready func() (ok bool, why string)
	// ConfigDump backs /config_dump, written as indented JSON. Callers
	// must already have removed private keys; the server redacts again.
	ConfigDump func() any
	// Clusters backs /clusters: indented JSON, or a table with
	// ?format=text (a value implementing fmt.Stringer prints itself).
	Clusters func() any
	// Explain backs /explain: what the proxy would do with a request (see
	// explain.go for the query parameters).
	Explain func(listener, authority, path, method string, headers http.Header) any
	// Drain backs POST /drain: it starts a graceful drain and returns
	// promptly. It is called at most once.
	Drain func()
	// AppProbes back /app-health/...: the application's own health checks,
	// which the injector rewrote to go through the sidecar (see
	// AppProbesEnv).
	AppProbes map[string]AppProbe
}

// Server is the admin HTTP server.
type Server struct {
	ln       net.Listener
	srv      *http.Server
	src      Sources
	draining atomic.Bool
}

// Timeouts of the admin server.
const (
	readHeaderTimeout = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
)

// New listens on addr (host:port; port 0 picks a free one) and returns a
// server that is not yet serving. Bind it to a loopback address: the admin
// API has no authentication.
func New(addr string, s Sources) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listening on %q: %w (set a free host:port for the admin address)", addr, err)
	}
	a := &Server{ln: ln, src: s}
	mux := http.NewServeMux()
	mux.HandleFunc("/", a.index)
	mux.Handle("/stats/prometheus", getOnly(a.metricsHandler()))
	mux.Handle("/ready", getOnly(http.HandlerFunc(a.ready)))
	mux.Handle("/config_dump", getOnly(http.HandlerFunc(a.configDump)))
	mux.Handle("/clusters", getOnly(http.HandlerFunc(a.clusters)))
	mux.Handle("/explain", getOnly(http.HandlerFunc(a.explain)))
	mux.HandleFunc("/drain", a.drain)
	mux.Handle("/app-health/", getOnly(http.HandlerFunc(a.appHealth)))
	// Go's profiler, for `go tool pprof http://<admin>/debug/pprof/profile`.
	// The admin listener binds to loopback unless told otherwise.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	return a, nil
}

// Addr returns the address the server listens on, e.g. 127.0.0.1:39123.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown, then returns nil; any other error ends it
// early and is returned.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("admin: serving on %s: %w", s.Addr(), err)
}

// Shutdown stops the server gracefully: no new connections, in-flight
// requests finish until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	// Serve closes the listener; close it here too in case Serve never ran.
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("admin: shutting down %s: %w", s.Addr(), err)
	}
	return nil
}

var routes = []struct{ path, help string }{
	{"/stats/prometheus", "metrics in the Prometheus text format"},
	{"/ready", "200 LIVE when the proxy is ready, else 503 and why"},
	{"/config_dump", "the current configuration as JSON (keys redacted)"},
	{"/clusters", "clusters, endpoints, health and priorities (JSON; ?format=text for a table)"},
	{"/explain", "?authority=&path=&method=&listener=&h_<header>=: which route, cluster, locality and endpoints a request would get"},
	{"/drain", "POST: start a graceful drain"},
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if !allowGet(w, r) {
		return
	}
	var b strings.Builder
	b.WriteString("causeway-proxy admin\n\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, rt := range routes {
		fmt.Fprintf(tw, "  %s\t%s\n", rt.path, rt.help)
	}
	tw.Flush()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func (s *Server) metricsHandler() http.Handler {
	if s.src.Gatherer == nil {
		return notConfigured("Gatherer")
	}
	h := promhttp.HandlerFor(s.src.Gatherer, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	})
	// Always the text format: drop the Accept header that would negotiate
	// protobuf or OpenMetrics.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.Clone(r.Context())
		r.Header.Del("Accept")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.src.Ready == nil {
		notConfigured("Ready").ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ok, why := s.src.Ready()
	if !ok {
		if why == "" {
			why = "not ready"
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(why + "\n"))
		return
	}
	_, _ = w.Write([]byte("LIVE\n"))
}

func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	if s.src.ConfigDump == nil {
		notConfigured("ConfigDump").ServeHTTP(w, r)
		return
	}
	writeJSON(w, s.src.ConfigDump())
}

func (s *Server) clusters(w http.ResponseWriter, r *http.Request) {
	if s.src.Clusters == nil {
		notConfigured("Clusters").ServeHTTP(w, r)
		return
	}
	v := s.src.Clusters()
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		writeJSON(w, v)
	case "text":
		writeText(w, v)
	default:
		http.Error(w, fmt.Sprintf("admin: /clusters: unknown format %q; use format=json or format=text", f), http.StatusBadRequest)
	}
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "admin: /drain accepts POST only", http.StatusMethodNotAllowed)
		return
	}
	if s.src.Drain == nil {
		notConfigured("Drain").ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.draining.CompareAndSwap(false, true) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte("already draining\n"))
		return
	}
	s.src.Drain()
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("draining\n"))
}

func notConfigured(field string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("admin: %s is not available: Sources.%s is nil", r.URL.Path, field), http.StatusNotImplemented)
	})
}

func getOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if allowGet(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, fmt.Sprintf("admin: %s accepts GET only", r.URL.Path), http.StatusMethodNotAllowed)
	return false
}

// writeJSON writes v as redacted, indented JSON.
func writeJSON(w http.ResponseWriter, v any) {
	tree, err := redactedTree(v)
	if err != nil {
		http.Error(w, fmt.Sprintf("admin: %v", err), http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(tree); err != nil {
		http.Error(w, fmt.Sprintf("admin: encoding JSON: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
}

// writeText writes v as a table: a fmt.Stringer prints itself; a list of
// objects (or an object of objects, keyed by name) becomes one row per
// object with a column per field; anything else falls back to JSON.
func writeText(w http.ResponseWriter, v any) {
	var out string
	if s, ok := v.(fmt.Stringer); ok {
		out = s.String()
	} else {
		tree, err := redactedTree(v)
		if err != nil {
			http.Error(w, fmt.Sprintf("admin: %v", err), http.StatusInternalServerError)
			return
		}
		out = table(tree)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(out))
}

// table renders a decoded JSON tree as a text table.
func table(tree any) string {
	var rows []map[string]any
	switch t := tree.(type) {
	case []any:
		for _, e := range t {
			m, ok := e.(map[string]any)
			if !ok {
				return indentJSON(tree)
			}
			rows = append(rows, m)
		}
	case map[string]any:
		names := make([]string, 0, len(t))
		for k := range t {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			m, ok := t[k].(map[string]any)
			if !ok {
				return indentJSON(tree)
			}
			row := map[string]any{"name": k}
			for f, v := range m {
				if f == "name" {
					f = "name_field"
				}
				row[f] = v
			}
			rows = append(rows, row)
		}
	default:
		return indentJSON(tree)
	}
	if len(rows) == 0 {
		return "(none)\n"
	}
	colSet := map[string]bool{}
	for _, r := range rows {
		for k := range r {
			colSet[k] = true
		}
	}
	cols := make([]string, 0, len(colSet))
	for k := range colSet {
		cols = append(cols, k)
	}
	sort.Slice(cols, func(i, j int) bool {
		// "name" first, then alphabetical.
		if (cols[i] == "name") != (cols[j] == "name") {
			return cols[i] == "name"
		}
		return cols[i] < cols[j]
	})
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = cell(r[c])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	return b.String()
}

func cell(v any) string {
	switch t := v.(type) {
	case nil:
		return "-"
	case string:
		if t == "" {
			return "-"
		}
		return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(t)
	case json.Number:
		return t.String()
	case bool:
		return fmt.Sprint(t)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

func indentJSON(tree any) string {
	b, err := json.MarshalIndent(tree, "", "  ")
	if err != nil {
		return fmt.Sprintf("admin: %v\n", err)
	}
	return string(b) + "\n"
}

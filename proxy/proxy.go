package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causewaymesh/causeway/proxy/authz"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/lb"
	"github.com/causewaymesh/causeway/proxy/router"
	"github.com/causewaymesh/causeway/proxy/telemetry"
)

// Options configure a Proxy. The zero value of every field has a usable
// default.
type Options struct {
	// Self describes the workload this proxy stands beside, for metric labels.
	Self telemetry.Workload
	// Metrics receives every measurement; nil disables metrics.
	Metrics *telemetry.Metrics
	// AccessLog receives one line per request; nil disables it.
	AccessLog *telemetry.AccessLog
	Logger    *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// DrainTimeout bounds how long Drain waits for in-flight work
	// (default 20s).
	DrainTimeout time.Duration
	// MirrorTimeout bounds a mirrored request (default 5s).
	MirrorTimeout time.Duration
}

// Proxy is the data-plane engine. See the package documentation for its
// concurrency contract.
type Proxy struct {
	opts  Options
	log   *slog.Logger
	state atomic.Pointer[state]

	// applyMu serialises Apply, Drain and Close; the request path never
	// takes it.
	applyMu   sync.Mutex
	listeners map[string]*listener // by listener name
	retiring  []*listener          // removed by Apply, finishing their connections
	upstreams map[string]*upstream // by cluster name; survive updates
	closed    bool

	draining atomic.Bool // listeners are closing
	unready  atomic.Bool // /ready fails (set before draining begins)
	applied  atomic.Bool

	// bg tracks goroutines that outlive a request (mirrors).
	bg  sync.WaitGroup
	obs *lbObserver
	// capture is set by StartCapture (capturemode.go): listeners are then
	// virtual, fed by the capture sockets. Guarded by applyMu.
	capture *Capture
}

// state is one immutable configuration, published atomically.
type state struct {
	snap      *config.Snapshot
	tables    map[string]*router.Table // by route config name
	upstreams map[string]*upstream     // by cluster name
	secrets   map[string]*config.Secret
	authz     map[string]*listenerAuthz // by listener name; only listeners with RBAC
}

// listenerAuthz is a listener's compiled RBAC filters and the local port
// that destination_port permissions compare with.
type listenerAuthz struct {
	engine *authz.Engine
	port   uint32
}

// New returns a Proxy with no listeners. Call Apply to configure it.
func New(o Options) *Proxy {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 20 * time.Second
	}
	if o.MirrorTimeout == 0 {
		o.MirrorTimeout = 5 * time.Second
	}
	p := &Proxy{
		opts:      o,
		log:       o.Logger,
		listeners: map[string]*listener{},
		upstreams: map[string]*upstream{},
	}
	p.obs = &lbObserver{p: p, reasons: map[[2]string]string{}}
	p.state.Store(&state{
		snap:      &config.Snapshot{},
		tables:    map[string]*router.Table{},
		upstreams: map[string]*upstream{},
		secrets:   map[string]*config.Secret{},
	})
	return p
}

// ErrClosed is returned by Apply after Close or Drain.
var ErrClosed = errors.New("proxy: closed")

// Apply makes s the proxy's configuration. Listeners that cannot bind are
// reported in the returned error (all of them, joined); everything else in s
// is applied regardless, and the listeners that did bind serve.
func (p *Proxy) Apply(s *config.Snapshot) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if s.Routes == nil {
		s.Routes = map[string]*config.RouteConfig{}
	}

	// Route tables: inline route configs of HTTP listeners are compiled
	// under the listener's name, prefixed so they cannot collide with RDS
	// names.
	tables := make(map[string]*router.Table, len(s.Routes)+len(s.Listeners))
	for name, rc := range s.Routes {
		tables[name] = router.Compile(rc)
	}
	for _, l := range s.Listeners {
		if l.HTTP != nil && l.HTTP.Routes != nil {
			tables[inlineRoutesKey(l.Name)] = router.Compile(l.HTTP.Routes)
		}
	}

	// Upstreams: update survivors in place, create new ones, retire the rest
	// after the new state is published.
	ups := make(map[string]*upstream, len(s.Clusters))
	for name, c := range s.Clusters {
		la := c.Static
		if la == nil {
			la = s.Endpoints[c.EndpointsName()]
		}
		if u, ok := p.upstreams[name]; ok {
			u.update(c, la)
			ups[name] = u
			continue
		}
		ups[name] = newUpstream(p, c, la)
	}
	var retired []*upstream
	for name, u := range p.upstreams {
		if _, ok := ups[name]; !ok {
			retired = append(retired, u)
		}
	}
	p.upstreams = ups

	secrets := s.Secrets
	if secrets == nil {
		secrets = map[string]*config.Secret{}
	}
	p.state.Store(&state{snap: s, tables: tables, upstreams: ups, secrets: secrets, authz: compileAuthz(s.Listeners)})

	// Listeners.
	var errs []error
	want := make(map[string]*config.Listener, len(s.Listeners))
	for _, l := range s.Listeners {
		want[l.Name] = l
	}
	for name, ln := range p.listeners {
		l, ok := want[name]
		if ok && ln.sameSocket(l) {
			ln.update(l)
			continue
		}
		delete(p.listeners, name)
		ln.stop(p.opts.DrainTimeout)
		p.retiring = append(p.retiring, ln)
	}
	// Forget retired listeners that have finished.
	kept := p.retiring[:0]
	for _, ln := range p.retiring {
		if !ln.finished() {
			kept = append(kept, ln)
		}
	}
	clear(p.retiring[len(kept):])
	p.retiring = kept
	names := make([]string, 0, len(want))
	for name := range want {
		if _, ok := p.listeners[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ln, err := p.startListenerFor(want[name]) // capturemode.go
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.listeners[name] = ln
	}
	if p.capture != nil {
		p.capture.publish(p.listeners, s) // capturemode.go
	}
	for _, u := range retired {
		u.close()
	}
	p.applied.Store(true)
	return errors.Join(errs...)
}

func inlineRoutesKey(listener string) string { return "\x00listener/" + listener }

// ListenerAddr returns the bound address of a listener (useful when its
// config asked for port 0), or nil.
func (p *Proxy) ListenerAddr(name string) net.Addr {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if ln, ok := p.listeners[name]; ok {
		return ln.ln.Addr()
	}
	return nil
}

// Ready reports whether the proxy has a configuration and is not draining.
func (p *Proxy) Ready() (bool, string) {
	switch {
	case p.unready.Load() || p.draining.Load():
		return false, "draining"
	case !p.applied.Load():
		return false, "no configuration received yet"
	}
	return true, ""
}

// MarkDraining makes Ready fail while the proxy keeps serving, so that
// whoever routes to it stops before its listeners close.
func (p *Proxy) MarkDraining() { p.unready.Store(true) }

// Drain stops accepting connections and waits, up to DrainTimeout or ctx,
// for in-flight requests and connections to finish; then it closes them.
func (p *Proxy) Drain(ctx context.Context) error {
	p.draining.Store(true)
	p.applyMu.Lock()
	lns := make([]*listener, 0, len(p.listeners))
	for _, ln := range p.listeners {
		lns = append(lns, ln)
	}
	p.applyMu.Unlock()
	p.closeCapture() // capturemode.go: accept no more captured connections
	ctx, cancel := context.WithTimeout(ctx, p.opts.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(lns))
	for i, ln := range lns {
		wg.Go(func() { errs[i] = ln.drain(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every listener at once, closes upstream pools and waits for
// every goroutine the proxy started.
func (p *Proxy) Close() error {
	p.applyMu.Lock()
	if p.closed {
		p.applyMu.Unlock()
		return nil
	}
	p.closed = true
	p.draining.Store(true)
	lns := p.retiring
	for _, ln := range p.listeners {
		lns = append(lns, ln)
	}
	ups := p.upstreams
	p.listeners = map[string]*listener{}
	p.retiring = nil
	p.upstreams = map[string]*upstream{}
	p.applyMu.Unlock()
	p.closeCapture() // capturemode.go
	for _, ln := range lns {
		ln.stop(0)
		ln.abort()
	}
	for _, ln := range lns {
		ln.wait()
	}
	p.bg.Wait()
	for _, u := range ups {
		u.close()
	}
	return nil
}

// Draining reports whether Drain or Close has begun.
func (p *Proxy) Draining() bool { return p.draining.Load() }

func (p *Proxy) String() string {
	return fmt.Sprintf("proxy(%s/%s)", p.opts.Self.Namespace, p.opts.Self.Name)
}

// lbObserver forwards balancer events to metrics and the log. It remembers
// why each endpoint was ejected so the matching metric series ends when the
// endpoint returns.
type lbObserver struct {
	p       *Proxy
	mu      sync.Mutex
	reasons map[[2]string]string // {cluster, address} -> reason
}

func (o *lbObserver) Ejected(cluster string, h *lb.Host, reason string) {
	o.p.log.Info("outlier ejected", "cluster", cluster, "endpoint", h.Address, "locality", h.Locality.String(), "reason", reason)
	o.mu.Lock()
	o.reasons[[2]string{cluster, h.Address}] = reason
	o.mu.Unlock()
	if m := o.p.opts.Metrics; m != nil {
		m.Ejected(endpointOf(cluster, h), reason)
	}
}

func (o *lbObserver) Unejected(cluster string, h *lb.Host) {
	o.p.log.Info("outlier returned", "cluster", cluster, "endpoint", h.Address)
	k := [2]string{cluster, h.Address}
	o.mu.Lock()
	reason := o.reasons[k]
	delete(o.reasons, k)
	o.mu.Unlock()
	if m := o.p.opts.Metrics; m != nil {
		m.Unejected(endpointOf(cluster, h), reason)
	}
}

func (o *lbObserver) PriorityChanged(cluster string, from, to int) {
	o.p.log.Info("failover level changed", "cluster", cluster, "from", from, "to", to)
	if m := o.p.opts.Metrics; m != nil {
		m.PriorityChanged(cluster, uint32(max(to, 0)))
	}
}

func endpointOf(cluster string, h *lb.Host) telemetry.Endpoint {
	return telemetry.Endpoint{Service: cluster, Address: h.Address, Cluster: h.Cluster, Locality: h.Locality.String()}
}

// compileAuthz compiles the RBAC filters of every listener that has some.
func compileAuthz(ls []*config.Listener) map[string]*listenerAuthz {
	out := map[string]*listenerAuthz{}
	for _, l := range ls {
		var filters []*config.RBAC
		switch {
		case l.HTTP != nil:
			filters = l.HTTP.RBAC
		case l.TCP != nil:
			filters = l.TCP.RBAC
		}
		if len(filters) == 0 {
			continue
		}
		la := &listenerAuthz{engine: authz.Compile(filters)}
		if ap, err := netip.ParseAddrPort(l.Address); err == nil {
			la.port = uint32(ap.Port())
		}
		out[l.Name] = la
	}
	return out
}

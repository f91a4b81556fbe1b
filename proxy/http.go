package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/causewaymesh/causeway/proxy/authz"
	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/lb"
	"github.com/causewaymesh/causeway/proxy/router"
	"github.com/causewaymesh/causeway/proxy/telemetry"
)

// Response flags, as Envoy's access log spells them.
const (
	flagNoRoute         = telemetry.FlagNoRoute
	flagNoCluster       = telemetry.FlagNoCluster
	flagNoHealthy       = telemetry.FlagNoHealthyUpstream
	flagConnectFailure  = telemetry.FlagUpstreamConnectFailure
	flagOverflow        = telemetry.FlagUpstreamOverflow
	flagUpstreamTimeout = telemetry.FlagUpstreamRequestTimeout
	flagUpstreamReset   = telemetry.FlagUpstreamRemoteReset
	flagRetryLimit      = telemetry.FlagRetryLimitExceeded
	flagDownstreamClose = telemetry.FlagDownstreamDisconnect
	flagDelayInjected   = telemetry.FlagDelayInjected
	flagFaultInjected   = telemetry.FlagFaultInjected
	flagDraining        = telemetry.FlagLocalReset
	flagUnauthorized    = telemetry.FlagUnauthorized
)

// maxReplayBody is the largest request body buffered so that a failed try
// can be retried (Envoy's per_request_buffer_limit is similar). Larger or
// streaming bodies are retried only when no byte of them was sent.
const maxReplayBody = 64 << 10

// Defaults from Envoy.
const (
	defaultRouteTimeout = 15 * time.Second
	defaultBackoffBase  = 25 * time.Millisecond
)

var emptyValue = []string{""}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type httpHandler struct{ ln *listener }

// exchange is one downstream request on its way through the proxy.
type exchange struct {
	p     *Proxy
	l     *config.Listener
	st    *state
	w     http.ResponseWriter
	r     *http.Request
	start time.Time

	grpc     bool
	protocol string
	flags    telemetry.ResponseFlags
	code     int
	grpcCode string
	reason   string

	up       *upstream
	host     *lb.Host
	retries  int
	reqID    string
	traceID  string
	body     *bodyReader
	respSize int64

	// The downstream peer's identity, read once (authorization and the
	// access log both need it): see downstreamPeer.
	peerName            string
	peerAuthn, peerRead bool
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := h.ln.p
	x := &exchange{p: p, l: h.ln.cfg.Load(), st: p.state.Load(), w: w, r: r, start: p.opts.Now()}
	x.grpc = strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
	switch {
	case x.grpc:
		x.protocol = "grpc"
	case r.ProtoMajor == 2:
		x.protocol = "http2"
	default:
		x.protocol = "http1"
	}
	// ContentLength 0 is a request without a body: an HTTP/2 request
	// that declares "content-length: 0" still has a Body (one that reads
	// EOF), which would keep the request off the HTTP/1.1 pool's path
	// upstream.
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		x.body = &bodyReader{rc: r.Body}
		r.Body = x.body
	}
	x.serve()
	x.finish()
}

func (x *exchange) serve() {
	if x.p.draining.Load() {
		x.w.Header().Set("Connection", "close")
		x.w.Header().Set("x-causeway-draining", "true")
		x.localReply(http.StatusServiceUnavailable, flagDraining, "proxy is draining; retry on another endpoint")
		return
	}
	h := x.l.HTTP
	if h == nil {
		x.localReply(http.StatusInternalServerError, flagNoRoute, "listener has no HTTP configuration")
		return
	}
	if t := x.l.TLS; t != nil && !t.Permissive && x.r.TLS == nil {
		// A plaintext connection accepted while the listener was
		// PERMISSIVE outlives a switch to STRICT: refuse and close it.
		x.w.Header().Set("Connection", "close")
		x.localReply(http.StatusForbidden, flagUnauthorized, "listener "+strconv.Quote(x.l.Name)+" requires mutual TLS (STRICT); this plaintext connection was accepted in PERMISSIVE mode")
		return
	}
	x.reqID, x.traceID = telemetry.PrepareRequestHeaders(x.r.Header, h.GenerateRequestID, rand.Uint64)
	if la := x.st.authz[x.l.Name]; la != nil {
		id, authn := x.downstreamPeer()
		if d := la.engine.Check(&authz.Input{PeerID: id, Authenticated: authn, Port: la.port, Request: x.r}); !d.Allowed {
			if m := x.p.opts.Metrics; m != nil {
				m.AuthzDenied(x.l.Name, d.PolicyLabel())
			}
			x.localReply(http.StatusForbidden, flagUnauthorized, d.Reason())
			return
		}
	}

	var table *router.Table
	if h.Routes != nil {
		table = x.st.tables[inlineRoutesKey(x.l.Name)]
	} else {
		table = x.st.tables[h.RouteConfigName]
	}
	if table == nil {
		x.localReply(http.StatusNotFound, flagNoRoute, "route configuration "+strconv.Quote(h.RouteConfigName)+" has not arrived")
		return
	}
	vh, route := table.Match(x.r)
	if route == nil {
		x.localReply(http.StatusNotFound, flagNoRoute, "no route matches "+x.r.Host+x.r.URL.Path)
		return
	}
	if f := route.Fault; f != nil {
		if f.DelayPercent > 0 && chance(f.DelayPercent) {
			x.flags |= flagDelayInjected
			if m := x.p.opts.Metrics; m != nil {
				m.Fault("delay")
			}
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-x.r.Context().Done():
				t.Stop()
				x.flags |= flagDownstreamClose
				return
			}
		}
		if f.AbortPercent > 0 && chance(f.AbortPercent) {
			if m := x.p.opts.Metrics; m != nil {
				m.Fault("abort")
			}
			x.localReply(f.AbortStatus, flagFaultInjected, "fault filter abort")
			return
		}
	}
	switch {
	case route.Redirect != nil:
		loc, code := router.Redirect(x.r, route)
		x.applyResponseHeaders(x.w.Header(), vh, route, nil)
		x.w.Header().Set("Location", loc)
		x.code = code
		x.w.WriteHeader(code)
	case route.Direct != nil:
		x.applyResponseHeaders(x.w.Header(), vh, route, nil)
		x.code = route.Direct.Status
		if route.Direct.Body != "" {
			x.w.Header().Set("Content-Type", "text/plain")
			x.w.Header().Set("Content-Length", strconv.Itoa(len(route.Direct.Body)))
		}
		x.w.WriteHeader(x.code)
		n, _ := io.WriteString(x.w, route.Direct.Body)
		x.respSize = int64(n)
	default:
		x.forward(vh, route, route.Forward)
	}
}

// downstreamPeer returns the downstream peer's SPIFFE ID and whether it
// presented a (verified) certificate, computing them once per request.
func (x *exchange) downstreamPeer() (string, bool) {
	if !x.peerRead {
		x.peerName, x.peerAuthn = peerIdentityOf(x.r.TLS)
		x.peerRead = true
	}
	return x.peerName, x.peerAuthn
}

func chance(percent float64) bool {
	return percent >= 100 || rand.Float64()*100 < percent
}

func (x *exchange) forward(vh *config.VirtualHost, route *config.Route, fa *config.ForwardAction) {
	wc := router.PickCluster(fa, rand.Uint64())
	if wc == nil {
		x.localReply(http.StatusInternalServerError, flagNoCluster, "every weighted cluster of the route has weight 0")
		return
	}
	u := x.st.upstreams[wc.Name]
	if u == nil {
		x.localReply(http.StatusServiceUnavailable, flagNoCluster, "cluster "+strconv.Quote(wc.Name)+" is not configured")
		return
	}
	x.up = u
	r := x.r

	// The request as it goes upstream: hop-by-hop headers removed, then
	// mutations from the least to the most specific level.
	removeHopHeaders(r.Header)
	// Go's clients add "User-Agent: Go-http-client" to requests without
	// one; an empty value tells them not to, so none is invented.
	if _, ok := r.Header["User-Agent"]; !ok {
		r.Header["User-Agent"] = emptyValue
	}
	authority := r.Host
	if fa.HostRewrite != "" {
		authority = fa.HostRewrite
	}
	for _, m := range [...]*config.HeaderMutation{&vh.RequestHeaders, &route.RequestHeaders, &wc.RequestHeaders} {
		if h := router.ApplyHeaders(r.Header, *m, r.RemoteAddr); h != "" {
			authority = h
		}
	}
	u2 := &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	// Routes match and rewrite the escaped path, as the client sent it.
	if esc := r.URL.EscapedPath(); route.Forward.PrefixRewrite != "" || route.Forward.RegexRewrite != nil || route.Forward.FullPathRewrite != "" {
		if np := router.RewritePath(route, esc); np != esc {
			u2.Path, u2.RawPath = np, np
			if un, err := url.PathUnescape(np); err == nil {
				u2.Path = un
			}
		}
	}
	hash, hasHash := router.HashKey(r, fa)

	// Make the body replayable when it is small enough.
	var replay []byte
	if x.body != nil && r.ContentLength > 0 && r.ContentLength <= maxReplayBody {
		b, err := io.ReadAll(io.LimitReader(x.body, maxReplayBody+1))
		if err != nil {
			x.flags |= flagDownstreamClose
			x.code = 0
			return
		}
		replay = b
	}
	replayable := x.body == nil || replay != nil

	for _, m := range fa.Mirrors {
		if replayable && m.Percent > 0 && chance(m.Percent) {
			x.mirror(m.Cluster, u2, authority, replay)
		}
	}

	retry := fa.Retry
	if retry == nil {
		retry = vh.Retry
	}
	timeout := fa.Timeout
	if timeout == 0 {
		timeout = defaultRouteTimeout
	}
	// A gRPC caller's deadline bounds the request too, so that a deadline
	// that expires is reported as DEADLINE_EXCEEDED, not as a reset.
	if x.grpc {
		if d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok && (timeout <= 0 || d < timeout) {
			timeout = d
		}
	}
	ctx := r.Context()
	if timeout > 0 {
		// The cluster's deadline heap, not a runtime timer per request
		// (deadline.go says why).
		var cancel context.CancelFunc
		ctx, cancel = u.dl.withTimeout(ctx, timeout)
		defer cancel()
	}

	if !u.lb.TryAcquireRequest() {
		x.circuitOpen(u, "requests")
		x.localReply(http.StatusServiceUnavailable, flagOverflow, "upstream overflow: cluster "+strconv.Quote(u.name)+" is at max_requests")
		return
	}
	defer u.lb.ReleaseRequest()

	var (
		tried    []*lb.Host
		resp     *http.Response
		lastErr  error
		lastFlag telemetry.ResponseFlags
		// A retry slot is held from the decision to retry until the next
		// decision or the end of the request, so the retry circuit
		// breaker bounds retries in flight, as in Envoy.
		retrySlot bool
	)
	defer func() {
		if retrySlot {
			u.lb.ReleaseRetry()
		}
	}()
	for attempt := 0; ; attempt++ {
		host, err := u.lb.Pick(&lb.PickRequest{Hash: hash, HasHash: hasHash, Tried: tried})
		if err != nil {
			if lastErr == nil && resp == nil {
				x.localReply(http.StatusServiceUnavailable, flagNoHealthy, "no healthy upstream in cluster "+strconv.Quote(u.name))
				return
			}
			break
		}
		tried = append(tried, host)
		x.host = host
		var body io.ReadCloser
		if replay != nil {
			body = io.NopCloser(bytes.NewReader(replay))
		} else if x.body != nil {
			body = x.body
		}
		res, class, err := x.try(ctx, u, host, retry, u2, authority, body, replay)
		if resp != nil {
			resp.Body.Close()
		}
		resp, lastErr, lastFlag = res, err, class.flag
		if !class.retriable(retry, res) || attempt >= numRetries(retry) {
			if class.retriable(retry, res) && numRetries(retry) > 0 {
				x.flags |= flagRetryLimit
			}
			break
		}
		if !replayable && x.body.started() {
			break // part of a streaming body is gone
		}
		if ctx.Err() != nil {
			break
		}
		if retrySlot {
			u.lb.ReleaseRetry()
			retrySlot = false
		}
		// A retry after a connect failure takes no retry slot: the try
		// never reached the upstream (no load to amplify) and the next
		// one avoids the host. When a zone dies under load nearly every
		// request needs one until outlier detection ejects the zone, and
		// a budget of rate x try-time slots would fail them. Nor does one
		// after the connection died under the request (class.lost): the
		// host went away, and on HTTP/2 every stream of the connection
		// fails in the same instant, a burst the budget would refuse.
		connectFailure := class.on == config.RetryConnectFailure || class.lost
		if !connectFailure {
			if retrySlot = u.lb.TryAcquireRetry(); !retrySlot {
				x.circuitOpen(u, "retries")
				x.flags |= flagOverflow
				break
			}
		}
		x.retries++
		if m := x.p.opts.Metrics; m != nil {
			m.Retry(u.name, class.reason)
		}
		// After a connect failure, retry at once (the same reason: a
		// dead zone, nothing to back off from).
		if !connectFailure && !backoff(ctx, retry, attempt) {
			break
		}
	}
	if resp == nil {
		x.upstreamFailure(ctx, lastErr, lastFlag)
		return
	}
	x.respond(resp, vh, route, wc)
}

// tryClass is what a try's outcome means for retries and outlier detection.
type tryClass struct {
	on     config.RetryOn // the condition that matched; 0: success
	flag   telemetry.ResponseFlags
	reason string
	lost   bool // the connection itself failed under the request (a reset)
}

func (c tryClass) retriable(p *config.RetryPolicy, resp *http.Response) bool {
	if p == nil || c.on == 0 {
		return false
	}
	if p.On&c.on != 0 {
		return true
	}
	switch c.on {
	case config.RetryConnectFailure, config.RetryReset, config.RetryRefusedStream:
		// 5xx and gateway-error include transport failures, as in Envoy.
		return p.On&(config.Retry5xx|config.RetryGatewayError) != 0
	case config.Retry5xx:
		if resp == nil {
			return false
		}
		if p.On&config.RetryGatewayError != 0 && isGatewayError(resp.StatusCode) {
			return true
		}
		if p.On&config.RetryRetriableStatusCodes != 0 {
			for _, s := range p.RetriableStatusCodes {
				if s == resp.StatusCode {
					return true
				}
			}
		}
	case config.RetryRetriableStatusCodes:
		return p.On&config.RetryRetriableStatusCodes != 0
	}
	return false
}

func isGatewayError(code int) bool { return code == 502 || code == 503 || code == 504 }

func numRetries(p *config.RetryPolicy) int {
	if p == nil {
		return 0
	}
	return p.NumRetries
}

// try sends the request once to host. It returns the response (nil on a
// transport failure), how the outcome classifies, and the transport error.
func (x *exchange) try(ctx context.Context, u *upstream, host *lb.Host, retry *config.RetryPolicy, target *url.URL, authority string, body io.ReadCloser, replay []byte) (*http.Response, tryClass, error) {
	tr := u.tr.Load()
	tctx := ctx
	var perTry *time.Timer
	if retry != nil && retry.PerTryTimeout > 0 {
		// The per-try timeout covers the wait for response headers; once
		// they arrive the route timeout alone bounds the body. tctx is
		// released with ctx when the request ends.
		var cancel context.CancelFunc
		tctx, cancel = context.WithCancel(ctx)
		perTry = time.AfterFunc(retry.PerTryTimeout, cancel)
	}
	out := &http.Request{
		Method:        x.r.Method,
		URL:           &url.URL{Scheme: tr.scheme, Host: host.Address, Path: target.Path, RawPath: target.RawPath, RawQuery: target.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        x.r.Header,
		Body:          body,
		ContentLength: x.r.ContentLength,
		Host:          authority,
		Trailer:       x.r.Trailer,
	}
	if body == nil {
		out.ContentLength = 0
	}
	if replay != nil {
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(replay)), nil }
	}

	if !u.lb.TryAcquirePending() {
		x.circuitOpen(u, "pending")
		return nil, tryClass{flag: flagOverflow}, errPendingOverflow
	}
	host.Begin()
	var (
		resp *http.Response
		err  error
	)
	resp, err = tr.roundTrip(tctx, out, host.Address)
	u.lb.ReleasePending()
	if perTry != nil {
		perTry.Stop()
	}
	if err == nil && resp.StatusCode == http.StatusServiceUnavailable {
		if c, ok := peerFailure(resp.Header.Get("x-causeway-flags")); ok {
			host.End(lb.GatewayFailure)
			return resp, c, nil
		}
	}
	if err == nil {
		switch {
		case resp.StatusCode >= 500:
			res := lb.Status5xx
			if isGatewayError(resp.StatusCode) {
				res = lb.GatewayFailure
			}
			host.End(res)
			return resp, tryClass{on: config.Retry5xx, reason: strconv.Itoa(resp.StatusCode)}, nil
		default:
			host.End(lb.Success)
			if retry != nil && retry.On&config.RetryRetriableStatusCodes != 0 {
				for _, s := range retry.RetriableStatusCodes {
					if s == resp.StatusCode {
						return resp, tryClass{on: config.RetryRetriableStatusCodes, reason: strconv.Itoa(s)}, nil
					}
				}
			}
			return resp, tryClass{}, nil
		}
	}
	// A transport failure.
	switch {
	case errors.Is(err, errConnOverflow):
		host.End(lb.Abandoned)
		return nil, tryClass{flag: flagOverflow}, err
	case x.r.Context().Err() != nil:
		host.End(lb.Abandoned)
		return nil, tryClass{flag: flagDownstreamClose}, err
	case ctx.Err() != nil:
		host.End(lb.LocalOriginFailure)
		return nil, tryClass{flag: flagUpstreamTimeout}, err
	case x.grpc && nearDeadline(ctx, x.start):
		// A gRPC server resets the stream when the caller's deadline
		// (grpc-timeout) expires; when that reset wins the race with our
		// own timer, it is still a deadline, not an upstream failure.
		host.End(lb.Abandoned)
		return nil, tryClass{flag: flagUpstreamTimeout}, err
	case tctx.Err() != nil: // per-try timeout
		host.End(lb.LocalOriginFailure)
		return nil, tryClass{on: config.RetryReset, flag: flagUpstreamTimeout, reason: "per_try_timeout"}, err
	case isDialError(err):
		host.End(lb.LocalOriginFailure)
		if m := x.p.opts.Metrics; m != nil {
			m.ConnectFailure(u.name, host.Cluster, host.Locality.String())
		}
		return nil, tryClass{on: config.RetryConnectFailure, flag: flagConnectFailure, reason: "connect_failure"}, err
	case connectionLost(err):
		host.End(lb.LocalOriginFailure)
		return nil, tryClass{on: config.RetryReset, flag: flagUpstreamReset, reason: "reset", lost: true}, err
	default:
		host.End(lb.LocalOriginFailure)
		return nil, tryClass{on: config.RetryReset, flag: flagUpstreamReset, reason: "reset"}, err
	}
}

var errPendingOverflow = errors.New("cluster pending-request limit reached (circuit breaker max_pending_requests)")

// peerFailure classifies a 503 that another Causeway proxy answered itself
// (its x-causeway-flags) because it could not reach its own upstream — for
// a sidecar, its application: as a connect failure when nothing reached
// the application (UF, UH), as a lost connection when the application's
// connection failed under the request (UR, UC: it died). Either way the
// endpoint is failing, as if the caller had tried it directly, and the
// request is retried on another one by the same rules.
func peerFailure(flags string) (tryClass, bool) {
	if flags == "" {
		return tryClass{}, false
	}
	lost := false
	for f := range strings.SplitSeq(flags, ",") {
		switch f {
		case "UF", "UH":
			return tryClass{on: config.RetryConnectFailure, flag: flagConnectFailure, reason: "connect_failure"}, true
		case "UR", "UC":
			lost = true
		}
	}
	if lost {
		return tryClass{on: config.RetryReset, flag: flagUpstreamReset, reason: "reset", lost: true}, true
	}
	return tryClass{}, false
}

// connectionLost reports whether err says the connection failed under the
// request, rather than the upstream resetting this one stream: the peer
// reset or closed it (the process died), or the HTTP/2 client's
// connection failed under its streams (errH2ConnLost).
func connectionLost(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errH2ConnLost)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func backoff(ctx context.Context, p *config.RetryPolicy, attempt int) bool {
	base := p.BackoffBase
	if base <= 0 {
		base = defaultBackoffBase
	}
	maxB := p.BackoffMax
	if maxB <= 0 {
		maxB = 10 * base
	}
	d := base << min(attempt, 16)
	if d > maxB || d <= 0 {
		d = maxB
	}
	// Full jitter: uniformly in [0, d).
	t := time.NewTimer(time.Duration(rand.Int64N(int64(d))))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (x *exchange) upstreamFailure(ctx context.Context, err error, flag telemetry.ResponseFlags) {
	switch flag {
	case flagDownstreamClose:
		x.flags |= flagDownstreamClose
		x.code = 0
	case flagUpstreamTimeout:
		x.localReply(http.StatusGatewayTimeout, flagUpstreamTimeout, "upstream request timeout")
	case flagOverflow:
		x.localReply(http.StatusServiceUnavailable, flagOverflow, "upstream overflow: "+errString(err))
	case flagConnectFailure:
		x.localReply(http.StatusServiceUnavailable, flagConnectFailure, "upstream connect error: "+errString(err))
	default:
		if ctx.Err() != nil && x.r.Context().Err() == nil {
			x.localReply(http.StatusGatewayTimeout, flagUpstreamTimeout, "upstream request timeout")
			return
		}
		x.localReply(http.StatusServiceUnavailable, flagUpstreamReset, "upstream reset before response headers: "+errString(err))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// respond copies the upstream response to the client.
func (x *exchange) respond(resp *http.Response, vh *config.VirtualHost, route *config.Route, wc *config.WeightedCluster) {
	defer resp.Body.Close()
	dst := x.w.Header()
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	removeHopHeaders(dst)
	x.applyResponseHeaders(dst, vh, route, wc)
	x.code = resp.StatusCode
	if x.grpc {
		x.grpcCode = resp.Header.Get("Grpc-Status")
	}
	x.w.WriteHeader(resp.StatusCode)

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	flush := resp.ContentLength == -1
	rc := http.NewResponseController(x.w)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := x.w.Write(buf[:n]); werr != nil {
				x.flags |= flagDownstreamClose
				return
			}
			x.respSize += int64(n)
			if flush {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// The upstream went away mid-body: abort the downstream
			// response so the client sees a reset, not a short body.
			x.flags |= flagUpstreamReset
			if x.r.Context().Err() != nil {
				x.flags |= flagDownstreamClose
			}
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
		if x.grpc && k == "Grpc-Status" && len(vv) > 0 {
			x.grpcCode = vv[0]
		}
	}
}

func (x *exchange) applyResponseHeaders(h http.Header, vh *config.VirtualHost, route *config.Route, wc *config.WeightedCluster) {
	if wc != nil {
		router.ApplyHeaders(h, wc.ResponseHeaders, x.r.RemoteAddr)
	}
	router.ApplyHeaders(h, route.ResponseHeaders, x.r.RemoteAddr)
	router.ApplyHeaders(h, vh.ResponseHeaders, x.r.RemoteAddr)
}

// localReply answers from the proxy itself. gRPC callers get a
// trailers-only response with the matching grpc-status, as Envoy does.
func (x *exchange) localReply(code int, flag telemetry.ResponseFlags, msg string) {
	x.flags |= flag
	x.reason = msg
	h := x.w.Header()
	if x.grpc {
		x.code = http.StatusOK
		x.grpcCode = strconv.Itoa(grpcStatusForHTTP(code))
		if flag == flagUpstreamTimeout {
			x.grpcCode = "4" // DEADLINE_EXCEEDED
		}
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", x.grpcCode)
		h.Set("Grpc-Message", url.PathEscape(msg))
		x.w.WriteHeader(http.StatusOK)
		return
	}
	x.code = code
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if x.flags != 0 {
		h.Set("x-causeway-flags", x.flags.String())
	}
	x.w.WriteHeader(code)
	n, _ := io.WriteString(x.w, msg+"\n")
	x.respSize = int64(n)
}

// grpcStatusForHTTP maps an HTTP status to a gRPC code as the gRPC spec's
// "HTTP to gRPC status code mapping" says.
func grpcStatusForHTTP(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// nearDeadline reports whether ctx's deadline is less than a tenth of the
// request's time budget (and at most 50ms) away.
func nearDeadline(ctx context.Context, start time.Time) bool {
	dl, ok := ctx.Deadline()
	if !ok {
		return false
	}
	slack := min(dl.Sub(start)/10, 50*time.Millisecond)
	return time.Until(dl) <= slack
}

// parseGRPCTimeout reads a grpc-timeout header: up to 8 digits and a unit
// (H, M, S, m, u, n), per the gRPC over HTTP/2 spec.
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

func (x *exchange) circuitOpen(u *upstream, limit string) {
	if m := x.p.opts.Metrics; m != nil {
		m.CircuitOpen(u.name, limit)
	}
}

// mirror sends a copy of the request to cluster and discards the answer.
// It never delays the original request.
func (x *exchange) mirror(cluster string, target *url.URL, authority string, body []byte) {
	u := x.st.upstreams[cluster]
	if u == nil || x.p.draining.Load() {
		return
	}
	if !u.lb.TryAcquireRequest() {
		x.circuitOpen(u, "requests")
		return
	}
	host, err := u.lb.Pick(&lb.PickRequest{})
	if err != nil {
		u.lb.ReleaseRequest()
		return
	}
	if m := x.p.opts.Metrics; m != nil {
		m.Mirror(cluster)
	}
	tr := u.tr.Load()
	req := &http.Request{
		Method:     x.r.Method,
		URL:        &url.URL{Scheme: tr.scheme, Host: host.Address, Path: target.Path, RawPath: target.RawPath, RawQuery: target.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1,
		Header: x.r.Header.Clone(),
		Host:   shadowHost(authority),
	}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	timeout := x.p.opts.MirrorTimeout
	x.p.bg.Go(func() {
		defer u.lb.ReleaseRequest()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		host.Begin()
		resp, err := tr.roundTrip(ctx, req, host.Address)
		if err != nil {
			host.End(lb.LocalOriginFailure)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		host.End(resultFor(resp.StatusCode))
	})
}

func resultFor(code int) lb.Result {
	switch {
	case isGatewayError(code):
		return lb.GatewayFailure
	case code >= 500:
		return lb.Status5xx
	}
	return lb.Success
}

// shadowHost appends "-shadow" to the host part, as Envoy does.
func shadowHost(authority string) string {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return authority + "-shadow"
	}
	return net.JoinHostPort(host+"-shadow", port)
}

// finish records metrics and the access log line.
func (x *exchange) finish() {
	dur := x.p.opts.Now().Sub(x.start)
	var reqBytes int64
	if x.body != nil {
		reqBytes = x.body.n
	}
	var peer telemetry.Workload
	peerID := ""
	if x.l.Direction == config.Inbound {
		peerID, _ = x.downstreamPeer()
		peer = workloadFromID(peerID)
	} else if x.host != nil {
		peerID = x.host.Identity
		peer = workloadFromID(peerID)
		peer.Cluster = x.host.Cluster
		peer.Locality = x.host.Locality.String()
	}
	service := ""
	if x.up != nil {
		service = x.up.name
	}
	if m := x.p.opts.Metrics; m != nil {
		m.ObserveRequest(&telemetry.RequestInfo{
			Direction:  x.l.Direction.String(),
			Peer:       peer,
			Service:    service,
			Code:       x.code,
			GRPCStatus: x.grpcCode,
			Protocol:   x.protocol,
			Duration:   dur,
			ReqBytes:   reqBytes,
			RespBytes:  x.respSize,
		})
	}
	if a := x.p.opts.AccessLog; a != nil {
		e := &telemetry.LogEntry{
			StartTime:     x.start,
			Method:        x.r.Method,
			Authority:     x.r.Host,
			Path:          x.r.URL.RequestURI(),
			Protocol:      x.r.Proto,
			ResponseCode:  x.code,
			ResponseFlags: x.flags,
			BytesReceived: reqBytes,
			BytesSent:     x.respSize,
			Duration:      dur,
			RequestID:     x.reqID,
			TraceID:       x.traceID,
			UserAgent:     x.r.UserAgent(),
			Retries:       x.retries,
			Reason:        x.reason,
		}
		if x.up != nil {
			e.UpstreamCluster = x.up.name
		}
		if x.host != nil {
			e.UpstreamHost = x.host.Address
			e.UpstreamLocality = x.host.Locality.String()
		}
		if x.l.Direction == config.Inbound {
			e.SourceIdentity = peerID
		} else {
			e.DestinationIdentity = peerID
		}
		a.Log(e)
	}
}

// workloadFromID reads namespace and service account out of a SPIFFE ID of
// the form spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
func workloadFromID(id string) telemetry.Workload {
	var w telemetry.Workload
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return w
	}
	_, path, _ := strings.Cut(rest, "/")
	// Walk key/value segment pairs without allocating: this runs per request.
	for path != "" {
		var key, val string
		key, path, _ = strings.Cut(path, "/")
		val, path, _ = strings.Cut(path, "/")
		switch key {
		case "ns":
			w.Namespace = val
		case "sa":
			w.Name = val
		}
	}
	return w
}

// Hop-by-hop headers (RFC 9110 §7.6.1) are never forwarded.
// isHopHeader reports whether k (canonical) is a hop-by-hop header.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// removeHopHeaders deletes the hop-by-hop headers of h and those its
// Connection header names. It walks h once rather than deleting each
// hop-by-hop name: a request has a handful of headers, and nine deletes
// hash nine keys.
func removeHopHeaders(h http.Header) {
	var conn, te []string
	for k, v := range h {
		if !isHopHeader(k) {
			continue
		}
		switch k {
		case "Connection":
			conn = v
		case "Te":
			te = v
		}
		delete(h, k)
	}
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto(f); f != "" {
				delete(h, f)
			}
		}
	}
	// "TE: trailers" is end to end for gRPC.
	for _, v := range te {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "trailers") {
				h["Te"] = []string{"trailers"}
				return
			}
		}
	}
}

func textproto(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return http.CanonicalHeaderKey(s)
}

// bodyReader counts request body bytes and remembers whether any were read.
// Close is a no-op: the server owns the body, and a failed try must not
// close it under a retry.
type bodyReader struct {
	rc   io.ReadCloser
	n    int64
	read bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.read = true
	n, err := b.rc.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *bodyReader) Close() error { return nil }

func (b *bodyReader) started() bool { return b != nil && b.read }

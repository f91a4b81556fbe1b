package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/causewaymesh/causeway/internal/h2grpc"
	"github.com/causewaymesh/causeway/proxy/config"
	corev3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/config/core/v3"
	discoveryv3 "github.com/causewaymesh/causeway/proxy/leanxds/envoy/service/discovery/v3"
)

// Options configure a Client. Server, Node and OnUpdate are required
// (Server may be empty to run from Static alone).
type Options struct {
	Server string // host:port of the ADS server
	// Transport configures the ADS connection (h2grpc: gRPC over net/http's
	// HTTP/2; TLS nil means plaintext).
	Transport h2grpc.Options
	Node      *corev3.Node
	Static    *config.Snapshot // resources from the bootstrap, merged under dynamic ones
	// OnUpdate is called from the goroutine running Run, in order, with
	// every new complete snapshot. It must not block for long: the stream
	// waits for it.
	OnUpdate func(*config.Snapshot)
	Logger   *slog.Logger
	Now      func() time.Time

	// WarmingTimeout bounds how long a snapshot waits for referenced RDS,
	// EDS and SDS resources (and the first LDS and CDS responses) before it
	// is published without them. Default 15s, Envoy's initial_fetch_timeout.
	WarmingTimeout time.Duration
	// BackoffBase and BackoffMax bound the reconnect delay (defaults 500ms
	// and 30s); each delay is jittered to between half and all of
	// min(BackoffMax, BackoffBase·2^attempt).
	BackoffBase, BackoffMax time.Duration
	// Rand returns a float in [0,1) for jitter; default math/rand/v2.
	Rand func() float64
	// Observer, when set, hears of every ACK and NACK, from the goroutine
	// running Run (telemetry.Metrics implements it).
	Observer Observer
	// LocalSecrets name SDS secrets the process provides itself (the
	// workload's SVID, from its own key and the SVID issuer): they are
	// never requested from the server and never waited for while warming;
	// the caller merges them into each snapshot before applying it.
	LocalSecrets []string
}

// Observer hears what the client did with each response.
type Observer interface {
	ConfigAccepted(typeURL, version string)
	ConfigRejected(typeURL string)
}

// Status is the client's view of the stream, for /config_dump and metrics.
type Status struct {
	Connected bool
	Types     map[string]TypeStatus // by type URL
	// Refused is the server's error when the last stream ended in a
	// refusal (InvalidArgument, PermissionDenied, Unauthenticated or
	// FailedPrecondition: bad node metadata, a wrong identity) and no
	// response has ever arrived; empty otherwise. A proxy that the
	// control plane refuses is not ready, even after warming expires.
	Refused string
}

// TypeStatus is the state of one resource type.
type TypeStatus struct {
	Version       string    // last accepted version; empty before the first
	LastUpdate    time.Time // when Version was accepted
	LastError     string    // the last NACK's message; cleared by the next accepted response
	LastErrorTime time.Time
	Connected     bool
	Subscribed    []string // resource names; nil for the wildcard types LDS and CDS
}

// Client is an ADS (state-of-the-world) client. Create it with New and
// call Run once.
type Client struct {
	o       Options
	status  atomic.Pointer[Status]
	started atomic.Bool
}

// New checks o and fills in defaults.
func New(o Options) (*Client, error) {
	if o.OnUpdate == nil {
		return nil, errors.New("xdsclient: Options.OnUpdate is nil; give a function that receives snapshots")
	}
	if o.Server != "" && o.Node == nil {
		return nil, errors.New("xdsclient: Options.Node is nil; the ADS server needs node.id to pick a configuration")
	}
	if o.Server != "" && o.Node.GetId() == "" {
		return nil, errors.New("xdsclient: Options.Node.Id is empty; set it (e.g. sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local)")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WarmingTimeout <= 0 {
		o.WarmingTimeout = 15 * time.Second
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 500 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.BackoffMax < o.BackoffBase {
		o.BackoffMax = o.BackoffBase
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	c := &Client{o: o}
	c.status.Store(&Status{Types: map[string]TypeStatus{}})
	return c, nil
}

// Status returns the latest status. It is safe to call from any goroutine.
func (c *Client) Status() Status {
	return *c.status.Load()
}

// Run connects, subscribes and publishes snapshots until ctx is done; it
// then returns nil. It reconnects with jittered exponential backoff. With
// no Server it publishes Static once and waits for ctx.
func (c *Client) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("xdsclient: Run called twice")
	}
	st := newState(&c.o)
	defer st.stop()
	if c.o.Server == "" {
		st.warmExpired = true
		st.maybePublish()
		<-ctx.Done()
		return nil
	}
	conn, err := h2grpc.Dial(c.o.Server, c.o.Transport)
	if err != nil {
		return fmt.Errorf("xdsclient: dial %s: %w", c.o.Server, err)
	}
	defer conn.Close()
	st.maybePublish() // starts the warming timer
	c.status.Store(st.status())
	var everProgressed bool
	var refused string
	publish := func() {
		s := st.status()
		s.Refused = refused
		c.status.Store(s)
	}
	for attempt := 0; ; attempt++ {
		progressed, err := c.stream(ctx, conn, st)
		st.onDisconnect()
		everProgressed = everProgressed || progressed
		refused = ""
		if !everProgressed && isRefusal(err) {
			refused = err.Error()
		}
		publish()
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			attempt = 0
		}
		delay := c.backoff(attempt)
		c.o.Logger.Info("xds: stream ended; reconnecting", "server", c.o.Server, "error", err, "in", delay)
		t := time.NewTimer(delay)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-st.warmC():
				st.expire()
				publish()
			case <-t.C:
				break wait
			}
		}
	}
}

// The ADS method, opened with the lean messages of package leanxds rather
// than go-control-plane's generated client (which would link every Envoy
// message into the sidecar), over package h2grpc rather than grpc-go's
// client.
const adsMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

// isRefusal reports whether err is the server refusing this client
// rather than a transport failure.
func isRefusal(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition:
		return true
	}
	return false
}

func (c *Client) backoff(attempt int) time.Duration {
	d := c.o.BackoffMax
	if attempt < 30 {
		d = min(c.o.BackoffMax, c.o.BackoffBase<<attempt)
	}
	return d/2 + time.Duration(c.o.Rand()*float64(d/2))
}

// stream runs one ADS stream. This goroutine owns st; a receiver goroutine
// hands it responses and a sender goroutine takes requests from it, both
// through channels. progressed reports whether any response arrived.
func (c *Client) stream(ctx context.Context, conn *h2grpc.ClientConn, st *state) (progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	s, err := conn.Stream(sctx, adsMethod)
	if err != nil {
		return false, err
	}
	recvC := make(chan *discoveryv3.DiscoveryResponse)
	sendC := make(chan *discoveryv3.DiscoveryRequest)
	errC := make(chan error, 2)
	wg.Go(func() {
		for {
			r := new(discoveryv3.DiscoveryResponse)
			if err := s.RecvMsg(r); err != nil {
				errC <- fmt.Errorf("receive: %w", err)
				return
			}
			select {
			case recvC <- r:
			case <-sctx.Done():
				return
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case r := <-sendC:
				if err := s.SendMsg(r); err != nil {
					errC <- fmt.Errorf("send: %w", err)
					return
				}
			case <-sctx.Done():
				return
			}
		}
	})
	st.onConnect()
	c.status.Store(st.status())
	c.o.Logger.Info("xds: stream open", "server", c.o.Server)
	for {
		var (
			out  chan<- *discoveryv3.DiscoveryRequest
			next *discoveryv3.DiscoveryRequest
		)
		if len(st.queue) > 0 {
			out, next = sendC, st.queue[0]
		}
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case err := <-errC:
			return progressed, err
		case r := <-recvC:
			progressed = true
			st.handle(r)
		case out <- next:
			st.queue[0] = nil
			st.queue = st.queue[1:]
		case <-st.warmC():
			st.expire()
		}
		c.status.Store(st.status())
	}
}

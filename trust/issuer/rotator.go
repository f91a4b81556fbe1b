package issuer

import (
	"context"
	"errors"
	"fmt"
	"github.com/causewaymesh/causeway/trust"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/status"
)

// Fetcher fetches a new SVID. *Client satisfies it.
type Fetcher interface {
	Fetch(ctx context.Context) (*SVID, error)
}

// Clock and Timer are trust's: the Rotator's time source.
type (
	Clock = trust.Clock
	Timer = trust.Timer
)

// RealClock returns the wall clock.
func RealClock() Clock { return trust.SystemClock() }

// Rotator defaults.
const (
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultAttemptTimeout = 30 * time.Second
)

// ErrNoSVID is returned by the go-spiffe source methods before the first
// SVID.
var ErrNoSVID = errors.New("no SVID fetched yet")

// RotatorOptions configures a Rotator. Fetcher is required.
type RotatorOptions struct {
	// Fetcher fetches SVIDs; usually a *Client.
	Fetcher Fetcher
	// Clock defaults to RealClock().
	Clock Clock
	// Jitter returns a number in [0, 1) that spreads retry delays; nil
	// means math/rand/v2.Float64. It is called from the Run goroutine only.
	Jitter func() float64
	// MinBackoff and MaxBackoff bound the retry delay after a failed
	// fetch: it doubles from MinBackoff up to MaxBackoff and is then
	// jittered into [d/2, d). Defaults DefaultMinBackoff, DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds one fetch; default DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// Logger receives renewals and failures; nil discards.
	Logger *slog.Logger
	// OnUpdate, if set, is called with each new SVID on the Run goroutine
	// before subscribers are notified. It must not block for long.
	OnUpdate func(*SVID)
}

// Rotator keeps an SVID fresh: it fetches one at start, renews it at
// RenewAt (half of its lifetime), retries failed fetches with jittered
// exponential backoff, and keeps serving the current SVID until a new one is
// in hand, even past its expiry (logged at error level).
//
// Each new SVID is published, in order, to OnUpdate and then to every
// subscriber channel. Subscriber channels hold one value and are conflated:
// a slow reader misses intermediate SVIDs but always gets the newest.
//
// Current, Ready, Subscribe and the go-spiffe source methods are safe for
// concurrent use; Run must be called once.
type Rotator struct {
	fetcher  Fetcher
	clock    Clock
	jitter   func() float64
	minB     time.Duration
	maxB     time.Duration
	attemptT time.Duration
	log      *slog.Logger
	onUpdate func(*SVID)

	current atomic.Pointer[SVID]
	ready   chan struct{}
	running atomic.Bool

	mu   sync.Mutex
	subs map[chan *SVID]struct{}
}

// NewRotator validates opts and returns a Rotator; call Run to start it.
func NewRotator(opts RotatorOptions) (*Rotator, error) {
	if opts.Fetcher == nil {
		return nil, errors.New("issuer: RotatorOptions.Fetcher is nil; pass a *issuer.Client")
	}
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.AttemptTimeout == 0 {
		opts.AttemptTimeout = DefaultAttemptTimeout
	}
	if opts.MinBackoff < 0 || opts.MaxBackoff < opts.MinBackoff || opts.AttemptTimeout < 0 {
		return nil, fmt.Errorf("issuer: RotatorOptions: need 0 < MinBackoff (%v) <= MaxBackoff (%v) and AttemptTimeout (%v) > 0",
			opts.MinBackoff, opts.MaxBackoff, opts.AttemptTimeout)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Rotator{
		fetcher: opts.Fetcher, clock: opts.Clock, jitter: opts.Jitter,
		minB: opts.MinBackoff, maxB: opts.MaxBackoff, attemptT: opts.AttemptTimeout,
		log: opts.Logger, onUpdate: opts.OnUpdate,
		ready: make(chan struct{}),
		subs:  make(map[chan *SVID]struct{}),
	}, nil
}

// Current returns the newest SVID, or nil before the first.
func (r *Rotator) Current() *SVID { return r.current.Load() }

// Ready is closed when the first SVID is in hand.
func (r *Rotator) Ready() <-chan struct{} { return r.ready }

// Subscribe returns a channel that receives every new SVID (conflated, see
// Rotator), starting with the current one if any, and a function that
// unsubscribes. The channel is never closed.
func (r *Rotator) Subscribe() (<-chan *SVID, func()) {
	ch := make(chan *SVID, 1)
	r.mu.Lock()
	r.subs[ch] = struct{}{}
	if cur := r.current.Load(); cur != nil {
		ch <- cur
	}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.subs, ch)
		r.mu.Unlock()
	}
}

// GetX509SVID implements go-spiffe's x509svid.Source with the current SVID.
func (r *Rotator) GetX509SVID() (*x509svid.SVID, error) {
	cur := r.current.Load()
	if cur == nil {
		return nil, fmt.Errorf("issuer: rotator: %w", ErrNoSVID)
	}
	return cur.X509SVID(), nil
}

// GetX509BundleForTrustDomain implements go-spiffe's x509bundle.Source with
// the bundle of the current SVID.
func (r *Rotator) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	cur := r.current.Load()
	if cur == nil {
		return nil, fmt.Errorf("issuer: rotator: %w", ErrNoSVID)
	}
	return cur.Bundle.GetX509BundleForTrustDomain(td)
}

// Run fetches and renews until ctx is done, then returns ctx.Err(). It
// returns an error at once if called twice.
func (r *Rotator) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("issuer: Rotator.Run called twice")
	}
	failures := 0
	for {
		var delay time.Duration
		s, err := r.fetch(ctx)
		now := r.clock.Now()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			failures++
			delay = r.backoff(failures)
			attrs := []slog.Attr{
				slog.Int("attempt", failures),
				slog.String("code", status.Code(err).String()),
				slog.String("error", err.Error()),
				slog.Duration("retry_in", delay),
			}
			level := slog.LevelWarn
			if cur := r.current.Load(); cur != nil {
				attrs = append(attrs, slog.String("current", cur.String()))
				if !now.Before(cur.NotAfter) {
					level = slog.LevelError
					attrs = append(attrs, slog.Bool("current_expired", true))
				}
			}
			r.log.LogAttrs(ctx, level, "SVID fetch failed; keeping the current SVID", attrs...)
		default:
			failures = 0
			r.publish(s)
			delay = s.RenewAt.Sub(now)
			if delay < r.minB {
				// A server that returns an SVID already due for
				// renewal must not make us spin.
				delay = r.minB
			}
			r.log.LogAttrs(ctx, slog.LevelInfo, "SVID rotated",
				slog.String("svid", s.String()), slog.Duration("renew_in", delay))
		}
		t := r.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

func (r *Rotator) fetch(ctx context.Context) (*SVID, error) {
	ctx, cancel := context.WithTimeout(ctx, r.attemptT)
	defer cancel()
	return r.fetcher.Fetch(ctx)
}

// backoff is the delay after the n-th consecutive failure (n >= 1):
// min(MinBackoff*2^(n-1), MaxBackoff), jittered into [d/2, d).
func (r *Rotator) backoff(n int) time.Duration {
	d := r.maxB
	if n-1 < 32 {
		if b := r.minB << (n - 1); b > 0 && b < r.maxB {
			d = b
		}
	}
	return d/2 + time.Duration(r.jitter()*float64(d/2))
}

func (r *Rotator) publish(s *SVID) {
	r.current.Store(s)
	if r.onUpdate != nil {
		r.onUpdate(s)
	}
	r.mu.Lock()
	for ch := range r.subs {
		for {
			select {
			case ch <- s:
			default:
				select {
				case <-ch: // drop the stale SVID the reader has not taken
				default:
				}
				continue
			}
			break
		}
	}
	r.mu.Unlock()
	select {
	case <-r.ready:
	default:
		close(r.ready)
	}
}

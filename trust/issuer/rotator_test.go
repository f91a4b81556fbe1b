package issuer

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// fakeClock is a manual clock. Every NewTimer reports its duration on armed,
// so a test can wait until the rotator is blocked before advancing.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	armed  chan time.Duration
}

type fakeTimer struct {
	c       chan time.Time
	at      time.Time
	stopped bool
	fired   bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, armed: make(chan time.Duration, 64)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	t := &fakeTimer{c: make(chan time.Time, 1), at: c.now.Add(d)}
	c.timers = append(c.timers, t)
	c.fireLocked()
	c.mu.Unlock()
	c.armed <- d
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

func (c *fakeClock) fireLocked() {
	keep := c.timers[:0]
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.fired = true
			t.c <- c.now
			continue
		}
		if !t.stopped {
			keep = append(keep, t)
		}
	}
	c.timers = keep
}

func recv[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// switchAuth refuses every token as "unavailable" while down is set.
type switchAuth struct {
	Authenticator
	down atomic.Bool
}

func (s *switchAuth) Authenticate(ctx context.Context, token string) (spiffeid.ID, error) {
	if s.down.Load() {
		return spiffeid.ID{}, errors.New("issuer backend down for the test")
	}
	return s.Authenticator.Authenticate(ctx, token)
}

func TestRotatorRenewsAtHalfLifeAndRetries(t *testing.T) {
	clock := newFakeClock(time.Now().Truncate(time.Second))
	auth := &switchAuth{Authenticator: newTokenAuth(t)}
	e := startEnv(t, envOptions{now: clock.Now, auth: auth})
	c := e.client(t, ClientConfig{TTL: 10 * time.Minute, Now: clock.Now})
	var updates atomic.Int32
	r, err := NewRotator(RotatorOptions{
		Fetcher: c, Clock: clock, Jitter: func() float64 { return 0.5 },
		OnUpdate: func(*SVID) { updates.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, unsubscribe := r.Subscribe()
	defer unsubscribe()
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()

	// First SVID at once; renewal armed at the half-life: NotBefore is
	// backdated by trust.ClockSkew (1m), so half of [now-1m, now+10m] is
	// now+4m30s.
	first := recv(t, ctx, ch, "the first SVID")
	<-r.Ready()
	if got := recv(t, ctx, clock.armed, "the renewal timer"); got != 4*time.Minute+30*time.Second {
		t.Fatalf("renewal armed in %v, want 4m30s", got)
	}
	if r.Current() != first || first.ID != idWeb {
		t.Fatalf("Current = %v, want the first SVID for %v", r.Current(), idWeb)
	}
	if err := r.Run(ctx); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Run: %v", err)
	}

	clock.Advance(4*time.Minute + 30*time.Second)
	second := recv(t, ctx, ch, "the renewed SVID")
	if second.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) == 0 {
		t.Fatal("renewal returned the same certificate")
	}
	if second.PrivateKey == first.PrivateKey {
		t.Fatal("renewal reused the key")
	}
	recv(t, ctx, clock.armed, "the second renewal timer")

	// The issuer goes down: retries with jittered exponential backoff
	// (jitter 0.5 puts each delay at 3/4 of 1s, 2s, 4s) while the current
	// SVID stays.
	auth.down.Store(true)
	clock.Advance(4*time.Minute + 30*time.Second)
	for _, want := range []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second} {
		if got := recv(t, ctx, clock.armed, "a retry timer"); got != want {
			t.Fatalf("retry armed in %v, want %v", got, want)
		}
		if r.Current() != second {
			t.Fatal("the current SVID was dropped while the issuer is down")
		}
		select {
		case s := <-ch:
			t.Fatalf("published %v while the issuer is down", s)
		default:
		}
		if want == 3*time.Second {
			auth.down.Store(false)
		}
		clock.Advance(want)
	}
	third := recv(t, ctx, ch, "the SVID after recovery")
	if third == second || r.Current() != third {
		t.Fatal("recovery did not publish a new SVID")
	}
	recv(t, ctx, clock.armed, "the renewal timer after recovery")
	if n := updates.Load(); n != 3 {
		t.Errorf("OnUpdate called %d times, want 3", n)
	}

	cancel()
	if err := recv(t, ctx, done, "Run to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
}

func TestRotatorBackoff(t *testing.T) {
	r, err := NewRotator(RotatorOptions{Fetcher: &Client{}, MinBackoff: time.Second, MaxBackoff: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n      int
		jitter float64
		want   time.Duration
	}{
		{1, 0, 500 * time.Millisecond},
		{1, 0.999, 999500 * time.Microsecond},
		{2, 0, time.Second},
		{3, 0.5, 3 * time.Second},
		{4, 0, 4 * time.Second},
		{5, 0, 5 * time.Second}, // 16s capped at 10s
		{40, 0, 5 * time.Second},
		{100, 0.5, 7500 * time.Millisecond},
	}
	for _, tt := range tests {
		r.jitter = func() float64 { return tt.jitter }
		if got := r.backoff(tt.n); got != tt.want {
			t.Errorf("backoff(%d) with jitter %v = %v, want %v", tt.n, tt.jitter, got, tt.want)
		}
	}
}

func TestNewRotatorOptions(t *testing.T) {
	tests := []struct {
		name string
		opts RotatorOptions
		want string
	}{
		{name: "no fetcher", want: "Fetcher is nil"},
		{name: "max below min", opts: RotatorOptions{Fetcher: &Client{}, MinBackoff: time.Minute, MaxBackoff: time.Second}, want: "MinBackoff"},
	}
	for _, tt := range tests {
		if _, err := NewRotator(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestRotatorSubscribersAreConflated(t *testing.T) {
	r, err := NewRotator(RotatorOptions{Fetcher: &Client{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetX509SVID(); !errors.Is(err, ErrNoSVID) {
		t.Fatalf("GetX509SVID before the first SVID: %v", err)
	}
	slow, unsubSlow := r.Subscribe()
	defer unsubSlow()
	gone, unsubGone := r.Subscribe()
	unsubGone()
	svids := []*SVID{{ID: idWeb}, {ID: idWeb}, {ID: idWeb}}
	for _, s := range svids {
		r.publish(s)
	}
	if got := <-slow; got != svids[2] {
		t.Fatal("a slow subscriber did not get the newest SVID")
	}
	select {
	case <-slow:
		t.Fatal("a slow subscriber got a stale SVID")
	case <-gone:
		t.Fatal("an unsubscribed channel got an SVID")
	default:
	}
	late, unsubLate := r.Subscribe()
	defer unsubLate()
	if got := <-late; got != svids[2] {
		t.Fatal("a late subscriber did not get the current SVID at once")
	}
}

// TestRotatorsAsSPIFFESources uses two rotators as go-spiffe SVID and bundle
// sources for a real mTLS connection on 127.0.0.1, as a proxy would.
func TestRotatorsAsSPIFFESources(t *testing.T) {
	e := startEnv(t, envOptions{})
	ctx := testCtx(t)
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	rot := func(token string) *Rotator {
		r, err := NewRotator(RotatorOptions{Fetcher: e.client(t, ClientConfig{Token: StaticToken(token)})})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(runCtx) }()
		recv(t, ctx, r.Ready(), "the first SVID")
		return r
	}
	web, db := rot(tokWeb), rot(tokDB)

	serverConf := tlsconfig.MTLSServerConfig(db, db, tlsconfig.AuthorizeID(idWeb))
	clientConf := tlsconfig.MTLSClientConfig(web, web, tlsconfig.AuthorizeID(idDB))
	lis, err := tls.Listen("tcp", "127.0.0.1:0", serverConf)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	srvErr := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer conn.Close()
		_, err = conn.Write([]byte("hi"))
		srvErr <- err
	}()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: clientConf}
	conn, err := d.DialContext(ctx, "tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 2)
	if _, err := conn.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if v := conn.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", v)
	}
	if err := recv(t, ctx, srvErr, "the server side"); err != nil {
		t.Fatal(err)
	}
}

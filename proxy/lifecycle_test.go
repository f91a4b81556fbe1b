package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/causewaymesh/causeway/proxy/config"
)

// TestHotUpdatesDropNothing: while clients send requests, the proxy takes
// 50 config updates that change routes, add and remove a cluster, change
// endpoints and rebuild a transport; every request succeeds and the
// listener keeps its socket.
func TestHotUpdatesDropNothing(t *testing.T) {
	b1, b2, b3 := newBackend(t, "b1", false), newBackend(t, "b2", false), newBackend(t, "b3", false)
	build := func(gen int) *snap {
		main := to("svc")
		extraRoute := prefix("/extra", to("svc"))
		s := newSnap()
		if gen%2 == 0 {
			extraRoute = prefix("/extra", to("extra"))
		}
		r := prefix("/", main)
		r.ResponseHeaders = config.HeaderMutation{Set: []config.HeaderValue{{Name: "x-gen", Value: strconv.Itoa(gen)}}}
		s.httpListener("out", extraRoute, r)
		var eps []string
		switch gen % 3 {
		case 0:
			eps = []string{b1.addr()}
		case 1:
			eps = []string{b2.addr()}
		default:
			eps = []string{b1.addr(), b2.addr()}
		}
		// Every fourth generation changes the connect timeout, which
		// rebuilds the cluster's transport.
		ct := 5 * time.Second
		if gen%4 >= 2 {
			ct = 3 * time.Second
		}
		s.cluster(&config.Cluster{Name: "svc", ConnectTimeout: ct}, loc("r1", "z1", 0, eps...))
		if gen%2 == 0 {
			s.cluster(&config.Cluster{Name: "extra"}, loc("r1", "z1", 0, b3.addr()))
		}
		return s
	}
	p, addr := start(t, build(0))
	want := addr("out")
	c := client(t)

	const n = 3000
	var sent atomic.Int64
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- fanout(4, n, func(i int) error {
			sent.Add(1)
			path := "/"
			if i%2 == 1 {
				path = "/extra"
			}
			r, err := fetch(c, "http://"+want+path)
			if err != nil {
				return fmt.Errorf("request %d (%s): %w", i, path, err)
			}
			if err := ok200(r); err != nil {
				return fmt.Errorf("request %d (%s): %w", i, path, err)
			}
			return nil
		})
		close(stop)
	}()
	// waitSent waits until the clients have sent target requests (or have
	// finished).
	waitSent := func(target int64) {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for sent.Load() < target {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}
	applied := 0
	for gen := 1; gen <= 50; gen++ {
		waitSent(int64(gen * n / 60)) // spread the updates over the stream
		if err := p.Apply(build(gen).s); err != nil {
			t.Fatalf("Apply %d: %v", gen, err)
		}
		applied++
		if got := p.ListenerAddr("out"); got == nil || got.String() != want {
			t.Fatalf("after update %d the listener is at %v, want %s (same socket)", gen, got, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("a request failed during hot updates: %v", err)
	}
	if applied != 50 {
		t.Fatalf("applied %d updates", applied)
	}
	if b3.hits.Load() == 0 {
		t.Errorf("the added cluster never served")
	}
}

func TestGracefulDrain(t *testing.T) {
	hold := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			hold.wait(r.Context())
		}
		io.WriteString(w, "done")
	})
	s := newSnap().httpListener("out", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	p, addr := start(t, s, func(o *Options) { o.DrainTimeout = 30 * time.Second })
	a := addr("out")
	c := client(t)
	if ok, why := p.Ready(); !ok {
		t.Fatalf("not ready before drain: %s", why)
	}

	inflight := make(chan result, 1)
	go func() {
		r, err := fetch(c, "http://"+a+"/slow")
		if err != nil {
			r.body = err.Error()
		}
		inflight <- r
	}()
	eventually(t, 5*time.Second, "the request to be in flight", func() bool { return hold.in.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- p.Drain(ctx) }()

	eventually(t, 5*time.Second, "Ready to turn false", func() bool { ok, _ := p.Ready(); return !ok })
	eventually(t, 5*time.Second, "new connections to be refused", func() bool {
		conn, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a request was in flight", err)
	default:
	}

	hold.open()
	if r := <-inflight; r.code != 200 || r.body != "done" {
		t.Errorf("in-flight request ended with %d %q, want 200", r.code, r.body)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Drain did not return after the in-flight request completed")
	}
}

func TestRemovingListenerClosesSocketAndAddingRebinds(t *testing.T) {
	b := newBackend(t, "b", false)
	fixed := deadAddr(t) // a free port we can bind again
	build := func(withB bool) *snap {
		s := newSnap().httpListener("a", prefix("/", to("svc"))).
			cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
		if withB {
			s.httpListener("b", prefix("/", to("svc")))
			s.s.Listeners[1].Address = fixed
		}
		return s
	}
	p, addr := start(t, build(true))
	c := client(t)
	if r := get(t, c, "http://"+fixed+"/"); r.code != 200 {
		t.Fatalf("listener b: %d", r.code)
	}
	aAddr := addr("a")

	if err := p.Apply(build(false).s); err != nil {
		t.Fatal(err)
	}
	if p.ListenerAddr("b") != nil {
		t.Errorf("listener b still reported after removal")
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	eventually(t, 5*time.Second, "b's socket to close", func() bool {
		conn, err := net.DialTimeout("tcp", fixed, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	if addr("a") != aAddr {
		t.Errorf("listener a moved from %s to %s", aAddr, addr("a"))
	}
	if r := get(t, c, "http://"+aAddr+"/"); r.code != 200 {
		t.Errorf("listener a after removing b: %d", r.code)
	}

	if err := p.Apply(build(true).s); err != nil {
		t.Fatalf("re-adding listener b: %v", err)
	}
	if got := addr("b"); got != fixed {
		t.Errorf("b bound %s, want %s", got, fixed)
	}
	if r := get(t, c, "http://"+fixed+"/"); r.code != 200 {
		t.Errorf("listener b after re-adding: %d", r.code)
	}
}

// TestCloseEndsListenersRemovedByApply: a listener removed by Apply is
// drained in the background; Close must still end it, since Close
// promises to stop everything the proxy started.
func TestCloseEndsListenersRemovedByApply(t *testing.T) {
	hold := newGate(t)
	b := hbackend(t, "b", false, func(w http.ResponseWriter, r *http.Request) { hold.wait(r.Context()) })
	s := newSnap().httpListener("gone", prefix("/", to("svc"))).
		cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	p, addr := start(t, s, func(o *Options) { o.DrainTimeout = time.Minute })
	a := addr("gone")
	c := client(t)
	ended := make(chan error, 1)
	go func() {
		_, err := fetch(c, "http://"+a+"/")
		ended <- err
	}()
	eventually(t, 5*time.Second, "the request to be in flight", func() bool { return hold.in.Load() == 1 })
	keep := newSnap().cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
	if err := p.Apply(keep.s); err != nil {
		t.Fatal(err)
	}
	p.Close()
	select {
	case <-ended:
	case <-time.After(3 * time.Second):
		t.Errorf("a request on a listener removed by Apply is still running 3s after Close returned; " +
			"Close must stop (and wait for) listeners that Apply is still draining")
		hold.open()
		<-ended
	}
}

// TestCloseLeavesNoGoroutines exercises HTTP/1.1, h2c, a TCP session, a
// mirror, outlier detection and an in-flight request, then closes the
// proxy and the backends and checks that no goroutine is left.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	hold := newGate(t)
	b := hbackend(t, "b", true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			hold.wait(r.Context())
		}
		io.WriteString(w, "ok")
	})
	shadow := newBackend(t, "shadow", false)
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var echoWG sync.WaitGroup
	echoWG.Go(func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			echoWG.Go(func() { defer c.Close(); io.Copy(c, c) })
		}
	})

	fa := to("svc")
	fa.Mirrors = []config.Mirror{{Cluster: "shadow", Percent: 100}}
	s := newSnap().httpListener("out", prefix("/", fa)).
		cluster(&config.Cluster{Name: "svc", Protocol: config.HTTP2, Outlier: &config.OutlierDetection{Consecutive5xx: 5, Interval: 50 * time.Millisecond}},
			loc("r1", "z1", 0, b.addr())).
		cluster(&config.Cluster{Name: "shadow"}, loc("r1", "z1", 0, shadow.addr())).
		cluster(&config.Cluster{Name: "echo"}, loc("r1", "z1", 0, echo.Addr().String()))
	s.s.Listeners = append(s.s.Listeners, &config.Listener{Name: "tcp", Address: "127.0.0.1:0", TCP: &config.TCPListener{Cluster: "echo"}})
	p := New(Options{DrainTimeout: 5 * time.Second})
	t.Cleanup(func() { p.Close() })
	if err := p.Apply(s.s); err != nil {
		t.Fatal(err)
	}
	out := p.ListenerAddr("out").String()

	c1, c2 := client(t), h2cClient(t)
	for _, c := range []*http.Client{c1, c2} {
		r, err := fetch(c, "http://"+out+"/")
		if err != nil || r.code != 200 {
			t.Fatalf("got %v %v", r.code, err)
		}
	}
	tcp, err := net.Dial("tcp", p.ListenerAddr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if _, err := io.WriteString(tcp, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(tcp, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("tcp echo: %q %v", buf, err)
	}
	slow := make(chan struct{})
	go func() { defer close(slow); fetch(c1, "http://"+out+"/slow") }()
	eventually(t, 5*time.Second, "the slow request to be in flight", func() bool { return hold.in.Load() == 1 })
	eventually(t, 5*time.Second, "the mirrors to arrive", func() bool { return shadow.hits.Load() >= 2 })

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	<-slow
	hold.open()
	// The TCP session must have been ended by Close.
	tcp.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tcp.Read(buf); err == nil {
		t.Errorf("the TCP session survived Close")
	}
	tcp.Close()
	c1.Transport.(*http.Transport).CloseIdleConnections()
	c2.Transport.(*http.Transport).CloseIdleConnections()
	b.srv.Close()
	shadow.srv.Close()
	echo.Close()
	echoWG.Wait()
	goleak.VerifyNone(t)
}

// TestRetiredListenersAreForgotten: Apply keeps a removed listener only
// until it has finished, so listener churn does not grow the proxy.
func TestRetiredListenersAreForgotten(t *testing.T) {
	b := newBackend(t, "b", false)
	base := func(names ...string) *snap {
		s := newSnap().cluster(&config.Cluster{Name: "svc"}, loc("r1", "z1", 0, b.addr()))
		for _, n := range names {
			s.httpListener(n, prefix("/", to("svc")))
		}
		return s
	}
	p, _ := start(t, base("keep"))
	for i := range 20 {
		if err := p.Apply(base("keep", fmt.Sprintf("churn-%d", i)).s); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "retired listeners to be forgotten", func() bool {
		if err := p.Apply(base("keep").s); err != nil {
			t.Fatal(err)
		}
		p.applyMu.Lock()
		defer p.applyMu.Unlock()
		return len(p.retiring) == 0
	})
}

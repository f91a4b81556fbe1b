package up

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Request is one request of a Traffic run, counted once.
type Request struct {
	// Sent is when the request left, since the run started.
	Sent time.Duration
	Took time.Duration
	// Where is "<cluster>/<zone>" of the pod that answered (its app's
	// X-Served-By), "" when the request failed.
	Where string
	// Err is why it failed (a transport error or a non-200 answer), ""
	// when it was answered 200.
	Err string
}

// Traffic is a steady stream of requests through the client's sidecar
// (StartTraffic); Stop ends it and returns every request.
type Traffic struct {
	start time.Time
	stop  chan struct{}
	done  chan struct{} // closed when the sender and every request ended
	mu    sync.Mutex
	reqs  []Request
	sent  int
}

// StartTraffic sends rate requests per second to host (a clusterset name)
// through the client's sidecar, each in its own goroutine, until Stop, ctx
// ends or limit requests were sent; every request is recorded with when it
// left, how long it took and which zone answered.
func (f *Federation) StartTraffic(ctx context.Context, hc *http.Client, host string, rate, limit int) *Traffic {
	t := &Traffic{start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	url := f.ClientURL() + "/"
	go func() {
		defer close(t.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		// Request n leaves at n/rate: each tick sends every request due,
		// so a late tick (a busy machine) does not lower the rate.
		period := time.Second / time.Duration(rate)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for n := 0; n < limit; {
			select {
			case <-ctx.Done():
				return
			case <-t.stop:
				return
			case <-tick.C:
			}
			due := min(limit, int(time.Since(t.start)/period)+1)
			for ; n < due; n++ {
				t.send(ctx, &wg, hc, url, host)
			}
		}
	}()
	return t
}

// send sends one request in its own goroutine and records it.
func (t *Traffic) send(ctx context.Context, wg *sync.WaitGroup, hc *http.Client, url, host string) {
	sent := time.Since(t.start)
	t.mu.Lock()
	t.sent++
	t.mu.Unlock()
	wg.Go(func() {
		code, h, body, err := httpGet(ctx, hc, url, host)
		r := Request{Sent: sent, Took: time.Since(t.start) - sent}
		switch {
		case err != nil:
			r.Err = err.Error()
		case code != 200:
			r.Err = fmt.Sprintf("%d %s", code, body)
		default:
			r.Where = h.Get("X-Served-By")
			if i := strings.LastIndexByte(r.Where, '/'); i > 0 {
				r.Where = r.Where[:i]
			}
		}
		t.mu.Lock()
		t.reqs = append(t.reqs, r)
		t.mu.Unlock()
	})
}

// Since is the time since the run started, on the clock of Request.Sent.
func (t *Traffic) Since() time.Duration { return time.Since(t.start) }

// Stop stops sending, waits for the requests in flight and returns every
// request sorted by Sent, and how many were sent (the same number unless
// a request was lost, which would be a bug of the count). It may be called
// more than once, from one goroutine at a time.
func (t *Traffic) Stop() ([]Request, int) {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.reqs)
	slices.SortStableFunc(out, func(a, b Request) int { return cmp.Compare(a.Sent, b.Sent) })
	return out, t.sent
}

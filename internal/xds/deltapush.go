package xds

import (
	"runtime"
	"sync"
)

// pusher sends a publish's delta responses from a few workers instead of
// waking every stream's goroutine: a publish queues the streams of its key
// and starts up to max workers (GOMAXPROCS), which take the streams in
// order and push each (deltaConn.kick) and exit when the queue is empty.
// At 1,000 streams that saves, per stream and change, the wake-up of the
// stream's own goroutine and its select.
//
// A worker never blocks on a stream: it skips one whose lock is held (the
// holder pushes when it lets go) and sends only while the send cannot
// block (workerSendLimit).
//
// Concurrency: safe for concurrent use; enqueue and start may be called
// with the cache's lock held (a worker takes the cache's read lock, so it
// computes after the publish has released it). wait returns when no worker
// runs (Server.Stop).
type pusher struct {
	max int

	mu      sync.Mutex
	idle    sync.Cond // on mu: signalled when the last worker exits
	queue   []*deltaConn
	head    int
	workers int
}

// pushBatch is how many streams a worker takes from the queue at a time.
const pushBatch = 32

func newPusher() *pusher {
	p := &pusher{max: max(runtime.GOMAXPROCS(0), 1)}
	p.idle.L = &p.mu
	return p
}

// enqueue asks for a push of st and queues it unless it is already queued
// and not yet taken. dirty is set first, every time: the stream's handler
// may have run (and cleared) an earlier request for a push while st sat in
// the queue, and the worker that takes st pushes only if dirty is set.
func (p *pusher) enqueue(st *deltaConn) {
	st.dirty.Store(true)
	if !st.queued.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	p.queue = append(p.queue, st)
	p.mu.Unlock()
}

// start runs workers for the queue, up to max at once.
func (p *pusher) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := min(p.max-p.workers, (len(p.queue)-p.head+pushBatch-1)/pushBatch)
	for range n {
		p.workers++
		go p.work()
	}
}

func (p *pusher) work() {
	var batch [pushBatch]*deltaConn
	for {
		p.mu.Lock()
		if p.head == len(p.queue) {
			clear(p.queue) // let closed streams go
			p.queue, p.head = p.queue[:0], 0
			p.workers--
			if p.workers == 0 {
				p.idle.Broadcast()
			}
			p.mu.Unlock()
			return
		}
		n := copy(batch[:], p.queue[p.head:])
		p.head += n
		p.mu.Unlock()
		for i, st := range batch[:n] {
			batch[i] = nil
			st.queued.Store(false)
			st.kick(false, false) // enqueue set dirty; a worker's send error is kept in st
		}
	}
}

// wait returns when no worker runs (safe to call while publishes start
// workers, unlike a WaitGroup's Wait).
func (p *pusher) wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.workers > 0 {
		p.idle.Wait()
	}
}

package main

import "time"

// sleepUntil returns at t or after it, and reports whether it had to wait.
//
// Go's timers wake up to about a millisecond late for short sleeps on this
// kind of machine. The schedule does not drift from that (every due time is
// absolute), and latencyStart does not charge the oversleep to the system
// under test. A hand-paced variant (a thread locked per connection, 1 ns
// timer slack and nanosleep) was tried: it cost the load generator about
// twice the CPU per request at 1,000 req/s for no better accuracy, and CPU
// spent here is CPU taken from the proxy on a 2-core machine.
func sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return false
	}
	time.Sleep(d)
	return true
}

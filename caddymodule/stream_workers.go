package caddymodule

import "time"

// streamWorkerIdle is how long a delivery goroutine waits for the next
// delivery before it ends.
const streamWorkerIdle = 10 * time.Second

// workers runs a Stream connection's deliveries, each at once, on
// goroutines kept between deliveries. A delivery runs Caddy's whole handler
// chain in-process, whose stack a new goroutine grows by copying, again for
// every message: a tenth of the bridge's CPU per message in the profile of
// `go run ./bench -stream -profile DIR` (BENCHMARKS.md, Stream mode), as
// net/http's server avoids by keeping a goroutine per connection.
type workers struct {
	next chan func() // taken by an idle worker
	stop chan struct{}
}

func newWorkers() *workers {
	return &workers{next: make(chan func()), stop: make(chan struct{})}
}

// run runs f on an idle worker, or on a new one when none is idle: it
// never waits for a delivery under way.
func (w *workers) run(f func()) {
	select {
	case w.next <- f:
	default:
		go w.work(f)
	}
}

// work runs f, then what it is given next, until it was idle for
// streamWorkerIdle or the workers are closed.
func (w *workers) work(f func()) {
	idle := time.NewTimer(streamWorkerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(streamWorkerIdle)
		select {
		case f = <-w.next:
		case <-idle.C:
			return
		case <-w.stop:
			return
		}
	}
}

// close ends the idle workers, and each busy one after its delivery.
func (w *workers) close() { close(w.stop) }

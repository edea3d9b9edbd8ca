package caddymodule

import (
	"sync"
	"time"
)

// defaultLease is how long a message in flight is held without renewal.
// DingTalk redelivers an unanswered callback after about a minute: a holder
// that died must have let go well before.
const defaultLease = 20 * time.Second

// leaseHolder is what holds a lease: it renews it in the store.
type leaseHolder interface{ renew() }

// renewFunc is a leaseHolder made of a function.
type renewFunc func()

func (f renewFunc) renew() { f() }

// leaseRenewer renews the leases of one kind of holder (a handler's claims,
// a relay's jobs) from one timer, every third of the lease while the
// holder works. Holding and letting go link and unlink a renewedLease that
// the holder embeds, and arm no timer of its own: most callbacks are
// answered in microseconds and are never renewed, at no allocation.
// Benchmark: BenchmarkServeHTTPAccepted (a timer, its closure and its state
// per callback were three of its allocations).
//
// The timer ticks every sixth of the lease while a lease is held. A lease
// is renewed at the second tick after it was taken or last renewed, so
// every third of the lease, the first time a sixth to a third of the lease
// after it was taken. The zero value is ready for use; every lease of one
// renewer has the same length.
type leaseRenewer struct {
	mu      sync.Mutex
	ended   sync.Cond    // a renewal ended; its L is mu
	held    renewedLease // the ring of leases held: its head, which is no lease
	ticks   uint64       // the timer's ticks so far
	timer   *time.Timer  // nil before the first lease
	armed   bool         // the timer will tick: a lease was held at the last tick, or taken since
	every   time.Duration
	started bool // held and ended are set up
}

// renewedLease is one holder's place in its renewer. The zero value holds
// nothing.
type renewedLease struct {
	prev, next *renewedLease
	renewer    *leaseRenewer // nil while no lease is held
	holder     leaseHolder
	since      uint64 // the tick count when it was taken or last renewed
	renewing   bool   // a renewal is under way
}

// hold renews holder's lease, which lasts lease, through l until l.stop.
func (r *leaseRenewer) hold(l *renewedLease, holder leaseHolder, lease time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		r.held.prev, r.held.next = &r.held, &r.held
		r.ended.L = &r.mu
		r.started = true
	}
	*l = renewedLease{prev: r.held.prev, next: &r.held, renewer: r, holder: holder, since: r.ticks}
	l.prev.next, r.held.prev = l, l
	if r.armed {
		return
	}
	r.every, r.armed = max(lease/6, time.Millisecond), true
	if r.timer == nil {
		r.timer = time.AfterFunc(r.every, r.tick)
	} else {
		r.timer.Reset(r.every)
	}
}

// tick starts the renewals that are due, each in its own goroutine, so
// that a store slow to answer one holder delays no other. The timer stops
// once no lease is held.
func (r *leaseRenewer) tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ticks++
	for l := r.held.next; l != &r.held; l = l.next {
		if l.since+2 <= r.ticks && !l.renewing {
			l.since, l.renewing = r.ticks, true
			go r.renew(l)
		}
	}
	if r.held.next == &r.held {
		r.armed = false
		return
	}
	r.timer.Reset(r.every)
}

func (r *leaseRenewer) renew(l *renewedLease) {
	l.holder.renew()
	r.mu.Lock()
	l.renewing = false
	r.mu.Unlock()
	r.ended.Broadcast()
}

// stop ends the renewals. It waits for one under way, so that no renewal
// lands after what the holder writes next (the de-duplication record,
// which a late renewal would shorten to a lease). Stopping a lease that is
// not held, or twice, does nothing.
func (l *renewedLease) stop() {
	r := l.renewer
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for l.renewing {
		r.ended.Wait()
	}
	l.prev.next, l.next.prev = l.next, l.prev
	*l = renewedLease{}
}

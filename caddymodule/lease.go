package caddymodule

import (
	"sync"
	"time"
)

// defaultLease is how long a message in flight is held without renewal.
// DingTalk redelivers an unanswered callback after about a minute: a holder
// that died must have let go well before.
const defaultLease = 20 * time.Second

// renewal keeps a lease alive while its holder works, renewing it every
// third of the lease, from a timer: a holder that finishes sooner (most
// sync requests) costs one timer and no goroutine.
type renewal struct {
	mu      sync.Mutex // held while renewing, so that stop waits for a renewal under way
	timer   *time.Timer
	every   time.Duration
	renew   func()
	stopped bool
}

// renewEvery calls renew every third of lease until stop.
func renewEvery(lease time.Duration, renew func()) *renewal {
	r := &renewal{every: max(lease/3, time.Millisecond), renew: renew}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = time.AfterFunc(r.every, r.fire)
	return r
}

func (r *renewal) fire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.renew()
	r.timer.Reset(r.every)
}

// stop ends the renewals. It waits for one under way, so that no renewal
// lands after what the holder writes next (the de-duplication record,
// which a late renewal would shorten to a lease). Stopping nil, or twice,
// does nothing.
func (r *renewal) stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.timer.Stop()
}

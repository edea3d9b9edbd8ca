package caddymodule

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// The renewer's schedule, on synctest's clock: time.Sleep there moves the
// bubble's clock, and synctest.Wait returns once every goroutine of the
// bubble is blocked, so each count below is exact and nothing waits for
// real time.

// A held lease is renewed every third of the lease, the first time within
// a third of it, until it is let go of; a renewer with nothing held stops
// its timer, and starts it again for the next lease.
func TestLeaseRenewerRenewsEveryThirdOfTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 60 * time.Second
		var renewals atomic.Int64
		var leases leaseRenewer
		var held renewedLease
		count := func(after time.Duration, want int64) {
			t.Helper()
			time.Sleep(after)
			synctest.Wait()
			if got := renewals.Load(); got != want {
				t.Fatalf("%v in: %d renewals, want %d", after, got, want)
			}
		}
		leases.hold(&held, renewFunc(func() { renewals.Add(1) }), lease)
		count(lease/3-time.Second, 0)
		count(2*time.Second, 1)
		count(lease, 4) // every third of the lease since
		held.stop()
		// The same window that counted three renewals sees none now.
		count(lease, 4)
		leases.mu.Lock()
		armed := leases.armed
		leases.mu.Unlock()
		if armed {
			t.Fatal("the renewer's timer ticks on with no lease held")
		}
		// A lease taken after the renewer stopped its timer starts it again.
		leases.hold(&held, renewFunc(func() { renewals.Add(1) }), lease)
		count(lease/3+time.Second, 5)
		held.stop()
	})
}

// Stopping a lease waits for its renewal under way, so that no renewal
// lands after what the holder writes next, and the others go on.
func TestLeaseRenewerStopWaitsForTheRenewalUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 60 * time.Second
		var leases leaseRenewer
		var slow, other renewedLease
		inRenewal, finish := make(chan struct{}), make(chan struct{})
		var finished atomic.Bool
		leases.hold(&slow, renewFunc(func() {
			close(inRenewal)
			<-finish
			finished.Store(true)
		}), lease)
		var others atomic.Int64
		leases.hold(&other, renewFunc(func() { others.Add(1) }), lease)
		select {
		case <-inRenewal: // the clock moved to the first renewal
		case <-time.After(lease):
			t.Fatal("no renewal within a lease")
		}

		stopped := make(chan bool)
		go func() {
			slow.stop()
			stopped <- finished.Load()
		}()
		synctest.Wait() // stop is blocked or has returned
		select {
		case <-stopped:
			t.Fatal("stop returned while its renewal was under way")
		default:
		}
		close(finish)
		if !<-stopped {
			t.Fatal("stop returned before its renewal ended")
		}
		synctest.Wait()
		if n := others.Load(); n != 1 {
			t.Fatalf("the other lease was renewed %d times at the first renewal, want 1", n)
		}
		other.stop()
		other.stop() // twice does nothing
		var never renewedLease
		never.stop() // nor does a lease never held
	})
}

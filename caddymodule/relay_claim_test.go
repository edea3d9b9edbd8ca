package caddymodule

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// A background job holds its msgId for a lease from when it starts (renewed
// while it runs, every third of it): a redelivery within the lease is a
// duplicate, and one after it, with no renewal (the job was lost with its
// process, as far as the store can tell), is run again.
func TestRelayClaimLastsItsLease(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}, Async: &Async{}})
	t.Cleanup(func() { _ = h.Cleanup() })
	start := time.Now().Truncate(time.Millisecond).Add(-72 * time.Hour)
	var clock atomic.Int64 // read by the job's goroutine too
	clock.Store(start.UnixNano())
	h.now = func() time.Time { return time.Unix(0, clock.Load()) }
	h.dedupe.now = h.now

	reached := make(chan struct{}, 2)
	hold := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-hold:
		default:
			close(hold) // never leave a job blocked
		}
	})
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		reached <- struct{}{}
		<-hold // the job runs on; it answers nothing, so nothing is posted
		return nil
	})
	body := dingtalktest.Callback{Text: "slow"}.Body()
	deliver := func(what string) {
		t.Helper()
		req, _ := caddyRequest(signedAt(t, testSecret, start, body))
		rec := &discardWriter{header: http.Header{}}
		if err := h.ServeHTTP(rec, req, next); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	waitReached := func(what string) {
		t.Helper()
		select {
		case <-reached:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the job did not reach the next handler", what)
		}
	}

	ttl := time.Duration(h.Lease) // no renewal comes in this test's real time: it is a third of the lease
	deliver("the first delivery")
	waitReached("the first delivery")
	clock.Store(start.Add(ttl - time.Millisecond).UnixNano())
	deliver("a redelivery within the claim")
	// A job holds its place in the relay until it ends, and this one is held:
	// a second job would be a second place now.
	if n := len(h.relay.admit); n != 1 {
		t.Fatalf("a redelivery within the lease was accepted as a job: %d jobs", n)
	}
	clock.Store(start.Add(ttl + time.Millisecond).UnixNano())
	deliver("a redelivery after the claim")
	waitReached("a redelivery after the claim")
	close(hold)
	h.relay.jobs.Wait()
}

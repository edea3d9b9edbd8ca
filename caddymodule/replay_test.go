package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The grace is measured from the timestamp with the handler's clock: a
// reused sign is a genuine twin up to and including the end of the grace,
// and a replay one millisecond later.
func TestReplayGraceBoundary(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	// The memory store outlives the test: a clock of its own keeps the
	// signs of this run apart from those of an earlier run (-count).
	// Timestamps are milliseconds, and so is this clock.
	now := time.Now().Truncate(time.Millisecond)
	h.now = func() time.Time { return now }

	for _, c := range []struct {
		age    time.Duration
		status int
		reason string
	}{
		{defaultReplayGrace, http.StatusNoContent, ""},
		{defaultReplayGrace + time.Millisecond, http.StatusUnauthorized, reasonReplay},
	} {
		at := now.Add(-c.age)
		genuine := dingtalktest.Callback{Text: "genuine"}.Body()
		if got := serve(h, signedAt(t, testSecret, at, genuine)); got.reached == nil {
			t.Fatalf("age %v: the first message was rejected: %d %q", c.age, got.status, got.reason)
		}
		got := serve(h, signedAt(t, testSecret, at, dingtalktest.Callback{Text: "another"}.Body()))
		if got.status != c.status || got.reason != c.reason || (got.reached != nil) != (c.reason == "") {
			t.Errorf("age %v: another msgId with the same sign got %d %q (reached next: %v), want %d %q",
				c.age, got.status, got.reason, got.reached != nil, c.status, c.reason)
		}
		// A redelivery of the first message is not a replay; de-duplication answers it.
		if got := serve(h, signedAt(t, testSecret, at, genuine)); got.status != http.StatusOK || got.body != `{"msgtype":"empty"}` {
			t.Errorf("age %v: the redelivery got %d %q %q, want the empty reply", c.age, got.status, got.reason, got.body)
		}
	}
}

// With async and a store that keeps jobs (the default memory store here),
// the pair is claimed in the step that records the job, with the same
// boundary: a twin within the grace is run, a replay past it refused, and
// a redelivery of the first message is a duplicate, not a replay.
func TestReplayGraceBoundaryAsync(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}, Async: &Async{}})
	t.Cleanup(func() { _ = h.Cleanup() })
	// A clock of its own keeps this run's pairs apart from other runs' in
	// the process-wide memory store (see TestReplayGraceBoundary).
	now := time.Now().Truncate(time.Millisecond).Add(-96 * time.Hour)
	h.now = func() time.Time { return now }
	h.dedupe.now = h.now
	var ran atomic.Int32
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		ran.Add(1)
		return nil
	})
	deliver := func(at time.Time, body []byte) (int, string) {
		t.Helper()
		req, repl := caddyRequest(signedAt(t, testSecret, at, body))
		rec := httptest.NewRecorder()
		err := h.ServeHTTP(rec, req, next)
		status := rec.Code
		if herr, ok := err.(caddyhttp.HandlerError); ok {
			status = herr.StatusCode
		}
		reason, _ := repl.Get("http.dingtalk.reject_reason")
		s, _ := reason.(string)
		return status, s
	}

	for _, c := range []struct {
		age    time.Duration
		status int
		reason string
		runs   int32
	}{
		{defaultReplayGrace, http.StatusOK, "", 2},
		{defaultReplayGrace + time.Millisecond, http.StatusUnauthorized, reasonReplay, 1},
	} {
		ran.Store(0)
		at := now.Add(-c.age)
		genuine := dingtalktest.Callback{Text: "genuine"}.Body()
		if status, reason := deliver(at, genuine); status != http.StatusOK {
			t.Fatalf("age %v: the first message got %d %q", c.age, status, reason)
		}
		if status, reason := deliver(at, dingtalktest.Callback{Text: "another"}.Body()); status != c.status || reason != c.reason {
			t.Errorf("age %v: another msgId with the same sign got %d %q, want %d %q", c.age, status, reason, c.status, c.reason)
		}
		if status, reason := deliver(at, genuine); status != http.StatusOK || reason != "" {
			t.Errorf("age %v: the redelivery got %d %q, want the empty reply", c.age, status, reason)
		}
		h.relay.jobs.Wait()
		if n := ran.Load(); n != c.runs {
			t.Errorf("age %v: %d jobs ran, want %d", c.age, n, c.runs)
		}
	}
}

// A used (timestamp, sign) pair is remembered for as long as the window
// accepts its timestamp, however long after the grace the replay comes: up
// to max_age after the timestamp, which for a timestamp max_future ahead of
// the clock at its first use is max_age + max_future after that.
func TestReplayRefusedUntilTheTimestampLeavesTheWindow(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	// A clock of its own keeps this run's pairs apart from other runs' in
	// the process-wide memory store (see TestReplayGraceBoundary).
	firstUse := time.Now().Truncate(time.Millisecond).Add(-24 * time.Hour)
	maxAge := time.Duration(h.MaxAge)
	for _, ahead := range []time.Duration{0, time.Duration(h.MaxFuture)} {
		now := firstUse
		h.now = func() time.Time { return now }
		at := firstUse.Add(ahead)
		if got := serve(h, signedAt(t, testSecret, at, dingtalktest.Callback{Text: "genuine"}.Body())); got.reached == nil {
			t.Fatalf("timestamp %v ahead: the first message was rejected: %d %q", ahead, got.status, got.reason)
		}
		for _, age := range []time.Duration{defaultReplayGrace + time.Millisecond, time.Minute, 30 * time.Minute, maxAge} {
			now = at.Add(age)
			got := serve(h, signedAt(t, testSecret, at, dingtalktest.Callback{Text: "forged"}.Body()))
			if got.status != http.StatusUnauthorized || got.reason != reasonReplay || got.reached != nil {
				t.Errorf("timestamp %v ahead: a replay %v after the first use got %d %q (reached next: %v), want 401 %q",
					ahead, now.Sub(firstUse), got.status, got.reason, got.reached != nil, reasonReplay)
			}
		}
		firstUse = firstUse.Add(4 * maxAge)
	}
}

// An answered msgId stays a duplicate for dedupe_ttl after it was answered,
// and is passed on again after it: DingTalk's redeliveries come within the TTL.
func TestDuplicateUntilTheDedupeTTL(t *testing.T) {
	const ttl = 3 * time.Hour // longer than max_age: each redelivery is signed anew
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}, Dedupe: ttl.String()})
	start := time.Now().Truncate(time.Millisecond).Add(-48 * time.Hour)
	now := start
	h.now = func() time.Time { return now }
	h.dedupe.now = h.now // the answered claim is kept at the handler's time
	body := dingtalktest.Callback{Text: "once"}.Body()
	if got := serve(h, signedAt(t, testSecret, now, body)); got.reached == nil {
		t.Fatalf("the message was rejected: %d %q", got.status, got.reason)
	}
	for _, later := range []time.Duration{time.Minute, time.Hour, ttl - time.Millisecond} {
		now = start.Add(later)
		if got := serve(h, signedAt(t, testSecret, now, body)); got.reached != nil || got.body != `{"msgtype":"empty"}` {
			t.Errorf("a redelivery %v later got %d %q (reached next: %v), want the empty reply", later, got.status, got.body, got.reached != nil)
		}
	}
	now = start.Add(ttl + time.Millisecond)
	if got := serve(h, signedAt(t, testSecret, now, body)); got.reached == nil {
		t.Errorf("a redelivery after the TTL got %d %q, want it passed on", got.status, got.body)
	}
}

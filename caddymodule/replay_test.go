package caddymodule

import (
	"net/http"
	"testing"
	"time"

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

package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestStreamRetriesAFailedDeliveryThenCountsAndLogsIt(t *testing.T) {
	s := startStreamed(t, "", "")
	var calls atomic.Int32
	s.backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if n <= 2 || strings.Contains(string(body), "always down") {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"msgtype":"text","text":{"content":"third time lucky"}}`)
	}
	before, _ := scrape(t, s.URL+"/metrics")

	// Two 503s, then an answer: delivered once, answered once.
	s.push(t, s.message("flaky"))
	waitFor(t, "the answer", func() bool { return s.webhook.Count() == 1 })
	if n := calls.Load(); n != 3 {
		t.Errorf("the backend was called %d times, want 3", n)
	}

	// Always 503: four attempts, then a failure logged and counted.
	s.push(t, s.message("always down"))
	waitFor(t, "the failure to be logged", func() bool { return strings.Contains(s.logs(), "dingtalk stream message not delivered") })
	if n := calls.Load(); n != 7 {
		t.Errorf("the backend was called %d times in all, want 3 + 4", n)
	}
	if !strings.Contains(s.logs(), "after 4 attempts") || s.webhook.Count() != 1 {
		t.Errorf("webhook posts %d; logs:\n%s", s.webhook.Count(), s.logs())
	}
	after, _ := scrape(t, s.URL+"/metrics")
	for series, want := range map[string]float64{
		`caddy_dingtalk_stream_frames_total{outcome="delivered",robot="support",topic="message"}`: 1,
		`caddy_dingtalk_stream_frames_total{outcome="failed",robot="support",topic="message"}`:    1,
		`caddy_dingtalk_stream_delivery_duration_seconds_count{robot="support",topic="message"}`:  2,
		`caddy_dingtalk_webhook_posts_total{bot="support",result="ok"}`:                           1,
	} {
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s went up by %v, want %v", series, got, want)
		}
	}
	if after[`caddy_dingtalk_stream_connected{robot="support"}`] != 1 {
		t.Errorf("the connection is not shown as up")
	}
}

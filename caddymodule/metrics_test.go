package caddymodule

import (
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The collectors are process-wide: each test uses bots of its own, and
// series shared with other tests (bot "") are compared before and after.

// TestMetricsSurviveReloadsAndSharedConfigs loads a config with two
// dingtalk handlers twice, as a reload does: registering never fails, the
// new config's registry serves the series, and the counts go on.
func TestMetricsSurviveReloadsAndSharedConfigs(t *testing.T) {
	const name = "unit-reload"
	before := written(t, metrics.requests.WithLabelValues(name, requestAccepted)).GetCounter().GetValue()
	for load := 1; load <= 2; load++ {
		ctx := newTestConfig(t)
		for range 2 {
			h := provisionIn(t, ctx, &Handler{Bots: []Bot{{Name: name, Secret: testSecret}}, Dedupe: "off"})
			if got := serve(h, signedAt(t, testSecret, fixedNow, dingtalktest.Callback{Text: "hi"}.Body())); got.reached == nil {
				t.Fatalf("load %d: rejected: %q", load, got.reason)
			}
		}
		got := gathered(t, ctx.GetMetricsRegistry(), "caddy_dingtalk_requests_total", prometheus.Labels{"bot": name, "outcome": "accepted"})
		if want := before + float64(2*load); got != want {
			t.Errorf("load %d: accepted = %v, want %v (process-wide: neither reset nor doubled)", load, got, want)
		}
	}
}

// gathered returns the value of the series of family with labels, as the
// registry serves it.
func gathered(t *testing.T, registry *prometheus.Registry, family string, labels prometheus.Labels) float64 {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("the registry serves no %s%v", family, labels)
	return 0
}

func TestRejectionsAreCountedByBotAndReason(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "unit-reject", Secret: testSecret}}})
	count := func(bot, outcome string) float64 {
		return written(t, metrics.requests.WithLabelValues(bot, outcome)).GetCounter().GetValue()
	}
	timed := func() uint64 {
		return written(t, metrics.backendDuration.WithLabelValues("unit-reject", modeSync).(prometheus.Metric)).GetHistogram().GetSampleCount()
	}
	cases := []struct {
		bot, outcome string
		want, before float64
	}{
		{"", reasonBadSign, 1, 0}, // no bot is known before a sign matched
		{"unit-reject", reasonBadBody, 2, 0},
		{"unit-reject", requestAccepted, 1, 0},
		{"unit-reject", requestDuplicate, 1, 0},
	}
	for i, c := range cases {
		cases[i].before = count(c.bot, c.outcome)
	}
	timedBefore := timed()

	serve(h, signedAt(t, "wrong secret", fixedNow, dingtalktest.Callback{Text: "hi"}.Body()))
	serve(h, signedAt(t, testSecret, fixedNow, []byte("not JSON")))
	serve(h, signedAt(t, testSecret, fixedNow, []byte("not JSON")))
	body := dingtalktest.Callback{Text: "hi"}.Body()
	serve(h, signedAt(t, testSecret, fixedNow, body))
	serve(h, signedAt(t, testSecret, fixedNow, body))

	for _, c := range cases {
		if got := count(c.bot, c.outcome) - c.before; got != c.want {
			t.Errorf("requests{bot=%q,outcome=%q} went up by %v, want %v", c.bot, c.outcome, got, c.want)
		}
	}
	if got := timed() - timedBefore; got != 1 {
		t.Errorf("the backend was timed %d times, want once: for the one callback passed on", got)
	}
}

// written is what m shows in a scrape.
func written(t *testing.T, m prometheus.Metric) *dto.Metric {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestPostResult(t *testing.T) {
	for err, want := range map[error]string{
		nil:                        postOK,
		dingtalk.ErrWebhookExpired: postExpired,
		&dingtalk.WebhookError{Status: 200, ErrCode: dingtalk.ErrCodeSessionExpired}: postExpired,
		fmt.Errorf("x: %w", dingtalk.ErrWebhookNotAllowed):                           postRefused,
		&dingtalk.WebhookError{Status: 200, ErrCode: 40035}:                          postErrCode,
		fmt.Errorf("after 3 attempts: %w", &dingtalk.WebhookError{Status: 502}):      postError,
		errors.New("connection refused"):                                             postError,
	} {
		if got := postResult(err); got != want {
			t.Errorf("postResult(%v) = %q, want %q", err, got, want)
		}
	}
}

// BenchmarkReportAccepted is the cost the metrics add to each accepted
// callback (with INFO logging off): no allocation.
func BenchmarkReportAccepted(b *testing.B) {
	rp := &reporter{logger: zap.NewNop()}
	bots := []bot{{name: "bench"}}
	metrics.forBots(bots, modeSync)
	msg := dingtalktest.Callback{Text: "hi"}.Message()
	v := &Verified{Bot: "bench", Message: &msg, signer: &bots[0]}
	b.ReportAllocs()
	for b.Loop() {
		rp.accepted(v)
	}
}

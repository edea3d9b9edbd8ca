package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The module's counters are process-wide and other tests count too: each
// test here has bots of its own, and compares the series of bot "" (no sign
// matched) before and after.

// scrape returns the caddy_dingtalk_* samples url serves, by series
// (name{labels} as exposed), and the whole text.
func scrape(t *testing.T, url string) (map[string]float64, string) {
	t.Helper()
	var resp *http.Response
	// Each load starts a new admin endpoint on the same port and closes the
	// old one in the background: meanwhile a connection may be reset.
	waitFor(t, "a connection to "+url, func() bool {
		var err error
		resp, err = http.Get(url)
		return err == nil
	})
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %d %v\n%s", url, resp.StatusCode, err, text)
	}
	samples := map[string]float64{}
	for line := range strings.Lines(string(text)) {
		if !strings.HasPrefix(line, "caddy_dingtalk_") {
			continue
		}
		series, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		samples[series] = v
	}
	return samples, string(text)
}

// mustCount compares the change of every series of the given bots (bot ""
// included) between before and after with want: a series not in want must
// not have changed. Buckets and sums of histograms depend on timing and
// are left out; their _count is compared.
func mustCount(t *testing.T, before, after map[string]float64, bots []string, want map[string]float64) {
	t.Helper()
	for series := range want {
		if _, ok := after[series]; !ok {
			t.Errorf("no series %s", series)
		}
	}
	for series, value := range after {
		if strings.Contains(series, "_bucket{") || strings.Contains(series, "_sum{") || !ofBots(series, bots) {
			continue
		}
		if got := value - before[series]; got != want[series] {
			t.Errorf("%s went up by %v, want %v", series, got, want[series])
		}
	}
}

func ofBots(series string, bots []string) bool {
	for _, bot := range bots {
		if strings.Contains(series, `bot="`+bot+`"`) {
			return true
		}
	}
	return false
}

func TestMetricsCountEveryOutcomeAndSurviveAReload(t *testing.T) {
	const sales, support, other = "metrics sales secret", "metrics support secret", "metrics other secret"
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	admin := "127.0.0.1:" + freePort(t)
	// Two dingtalk handlers in one config; the metrics handler and the
	// admin endpoint both serve the config's registry.
	s := site{FilterSign: true, Admin: admin, Body: fmt.Sprintf(`
	handle /metrics {
		metrics
	}
	route /robot {
		dingtalk {
			bot metrics-sales %q
			bot metrics-support %q {
				robot_code dingsupport
			}
		}
		reverse_proxy %s
	}
	route /other {
		dingtalk {
			bot metrics-other %q
		}
		respond 204
	}`, sales, support, hostPort(upstream.URL), other)}
	g := startGateway(t, s)
	bots := []string{"", "metrics-sales", "metrics-support", "metrics-other"}
	endpoints := []struct{ name, url string }{
		{"metrics handler", g.URL + "/metrics"},
		{"admin endpoint", "http://" + admin + "/metrics"},
	}
	before, _ := scrape(t, endpoints[0].url)

	first := callback("first")
	for _, body := range [][]byte{first, callback("second"), callback("third"), first, first} {
		g.post("/robot", sales, body)
	}
	g.post("/robot", support, dingtalktest.Callback{Text: "hi", RobotCode: "dingsupport"}.Body())
	g.post("/robot", support, dingtalktest.Callback{Text: "hi", RobotCode: "someone else"}.Body())
	g.post("/robot", sales, []byte("not JSON"))
	g.post("/robot", "not a configured secret", callback("forged"))
	g.post("/other", "not a configured secret", callback("forged"))
	g.post("/other", other, callback("hi"))
	g.post("/robot", sales, callback("get"), func(r *http.Request) { r.Method = http.MethodGet })
	signedAgo := func(ago time.Duration) func(*http.Request) {
		ts := strconv.FormatInt(time.Now().Add(-ago).UnixMilli(), 10)
		return func(r *http.Request) {
			r.Header.Set(dingtalk.HeaderTimestamp, ts)
			r.Header.Set(dingtalk.HeaderSign, dingtalk.Sign(sales, ts))
		}
	}
	g.post("/robot", sales, callback("old"), signedAgo(2*time.Hour))
	// A (timestamp, sign) pair back with another message after the grace is a replay.
	pair := signedAgo(time.Minute)
	g.post("/robot", sales, callback("signed a minute ago"), pair)
	g.post("/robot", sales, callback("another message, the same pair"), pair)
	if n := upstream.Count(); n != 5 {
		t.Fatalf("upstream saw %d callbacks, want 5", n)
	}

	want := map[string]float64{
		`caddy_dingtalk_requests_total{bot="metrics-sales",outcome="accepted"}`:            4,
		`caddy_dingtalk_requests_total{bot="metrics-sales",outcome="replay"}`:              1,
		`caddy_dingtalk_requests_total{bot="metrics-sales",outcome="duplicate"}`:           2,
		`caddy_dingtalk_requests_total{bot="metrics-sales",outcome="bad_body"}`:            1,
		`caddy_dingtalk_requests_total{bot="metrics-support",outcome="accepted"}`:          1,
		`caddy_dingtalk_requests_total{bot="metrics-support",outcome="robot_code"}`:        1,
		`caddy_dingtalk_requests_total{bot="metrics-other",outcome="accepted"}`:            1,
		`caddy_dingtalk_requests_total{bot="",outcome="bad_sign"}`:                         2,
		`caddy_dingtalk_requests_total{bot="",outcome="method"}`:                           1,
		`caddy_dingtalk_requests_total{bot="",outcome="expired"}`:                          1,
		`caddy_dingtalk_backend_duration_seconds_count{bot="metrics-sales",mode="sync"}`:   4,
		`caddy_dingtalk_backend_duration_seconds_count{bot="metrics-support",mode="sync"}`: 1,
		`caddy_dingtalk_backend_duration_seconds_count{bot="metrics-other",mode="sync"}`:   1,
		// Each bot's series are there from the start, at 0.
		`caddy_dingtalk_requests_total{bot="metrics-support",outcome="duplicate"}`: 0,
		`caddy_dingtalk_requests_total{bot="metrics-other",outcome="duplicate"}`:   0,
	}
	var counted map[string]float64
	for _, e := range endpoints {
		t.Run(e.name, func(t *testing.T) {
			after, text := scrape(t, e.url)
			mustCount(t, before, after, bots, want)
			if n := strings.Count(text, "# TYPE caddy_dingtalk_requests_total counter"); n != 1 {
				t.Errorf("caddy_dingtalk_requests_total is described %d times", n)
			}
			counted = after
		})
	}

	// A reload registers the same collectors into the new config's registry:
	// the counts are the process's, so they neither reset nor double.
	s.Body += "\n\trespond /health 200"
	g.load(s)
	for _, e := range endpoints {
		reloaded, _ := scrape(t, e.url)
		mustCount(t, counted, reloaded, bots, nil)
	}
	g.post("/robot", sales, callback("after the reload"))
	g.post("/robot", "not a configured secret", callback("forged"))
	for _, e := range endpoints {
		after, _ := scrape(t, e.url)
		mustCount(t, counted, after, bots, map[string]float64{
			`caddy_dingtalk_requests_total{bot="metrics-sales",outcome="accepted"}`:          1,
			`caddy_dingtalk_backend_duration_seconds_count{bot="metrics-sales",mode="sync"}`: 1,
			`caddy_dingtalk_requests_total{bot="",outcome="bad_sign"}`:                       1,
		})
	}
}

func TestMetricsCountAsyncJobsAndWebhookPosts(t *testing.T) {
	const secret = "metrics async secret"
	backend := dingtalktest.NewRecorder()
	defer backend.Close()
	backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		m, _ := dingtalk.ParseMessage(readBody(r))
		switch m.TrimmedText() {
		case "fail":
			w.WriteHeader(http.StatusInternalServerError)
		case "slow":
			select { // until the relay's timeout ends the request
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case "quiet":
		default:
			fmt.Fprint(w, "an answer")
		}
	}
	webhook := dingtalktest.NewWebhook()
	defer webhook.Close()
	webhook.Handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/errcode":
			fmt.Fprint(w, `{"errcode":40035,"errmsg":"bad message"}`)
		case "/expired":
			fmt.Fprint(w, `{"errcode":300001,"errmsg":"session expired"}`)
		case "/down":
			w.WriteHeader(http.StatusBadGateway)
		default:
			fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
		}
	}
	unlisted := dingtalktest.NewWebhook()
	defer unlisted.Close()
	g := startGateway(t, site{FilterSign: true, Body: fmt.Sprintf(`
	handle /metrics {
		metrics
	}
	route /robot {
		dingtalk {
			bot metrics-async %q
			async {
				webhook_hosts %s
				webhook_retries 0
				timeout 1s
				fallback_text "sorry"
			}
		}
		reverse_proxy %s
	}`, secret, hostPort(webhook.URL), hostPort(backend.URL))})
	bots := []string{"", "metrics-async"}
	before, _ := scrape(t, g.URL+"/metrics")

	to := func(path string) string { return webhook.URL + path + "?session=" + dingtalktest.NewSession() }
	expired := dingtalktest.Callback{Text: "hello", SessionWebhook: to("/ok")}.Message()
	expired.SessionWebhookExpiredTime = dingtalk.Millis(time.Now().Add(-time.Minute).UnixMilli())
	expiredBody, _ := json.Marshal(expired)
	jobs := []struct {
		body                   []byte
		outcome, webhookResult string
	}{
		{dingtalktest.Callback{Text: "hello", SessionWebhook: to("/ok")}.Body(), "succeeded", "ok"},
		{dingtalktest.Callback{Text: "fail", SessionWebhook: to("/ok")}.Body(), "failed", "ok"}, // the fallback
		{dingtalktest.Callback{Text: "slow", SessionWebhook: to("/ok")}.Body(), "timed_out", "ok"},
		{dingtalktest.Callback{Text: "hello", SessionWebhook: to("/errcode")}.Body(), "succeeded", "errcode"},
		{dingtalktest.Callback{Text: "hello", SessionWebhook: to("/down")}.Body(), "succeeded", "error"},
		{dingtalktest.Callback{Text: "hello", SessionWebhook: to("/expired")}.Body(), "succeeded", "expired"},
		{expiredBody, "succeeded", "expired"},
		{dingtalktest.Callback{Text: "hello", SessionWebhook: unlisted.SessionURL()}.Body(), "succeeded", "refused"},
		{dingtalktest.Callback{Text: "quiet", SessionWebhook: to("/ok")}.Body(), "succeeded", "none"},
	}
	for _, j := range jobs {
		mustEmptyAck(t, g.post("/robot", secret, j.body))
	}
	mustEmptyAck(t, g.post("/robot", secret, jobs[0].body)) // a redelivery

	const finished = "dingtalk async job finished"
	waitFor(t, "every job to finish", func() bool { return strings.Count(g.logs(), finished) == len(jobs) })
	after, _ := scrape(t, g.URL+"/metrics")
	mustCount(t, before, after, bots, map[string]float64{
		`caddy_dingtalk_requests_total{bot="metrics-async",outcome="accepted"}`:               9,
		`caddy_dingtalk_requests_total{bot="metrics-async",outcome="duplicate"}`:              1,
		`caddy_dingtalk_async_jobs_total{bot="metrics-async",outcome="queued"}`:               9,
		`caddy_dingtalk_async_jobs_total{bot="metrics-async",outcome="succeeded"}`:            7,
		`caddy_dingtalk_async_jobs_total{bot="metrics-async",outcome="failed"}`:               1,
		`caddy_dingtalk_async_jobs_total{bot="metrics-async",outcome="timed_out"}`:            1,
		`caddy_dingtalk_webhook_posts_total{bot="metrics-async",result="ok"}`:                 3,
		`caddy_dingtalk_webhook_posts_total{bot="metrics-async",result="errcode"}`:            1,
		`caddy_dingtalk_webhook_posts_total{bot="metrics-async",result="error"}`:              1,
		`caddy_dingtalk_webhook_posts_total{bot="metrics-async",result="expired"}`:            2,
		`caddy_dingtalk_webhook_posts_total{bot="metrics-async",result="refused"}`:            1,
		`caddy_dingtalk_webhook_duration_seconds_count{bot="metrics-async",result="ok"}`:      3,
		`caddy_dingtalk_webhook_duration_seconds_count{bot="metrics-async",result="errcode"}`: 1,
		`caddy_dingtalk_webhook_duration_seconds_count{bot="metrics-async",result="error"}`:   1,
		`caddy_dingtalk_webhook_duration_seconds_count{bot="metrics-async",result="expired"}`: 1, // only the one that was contacted
		`caddy_dingtalk_backend_duration_seconds_count{bot="metrics-async",mode="async"}`:     9,
		`caddy_dingtalk_async_jobs_running{bot="metrics-async"}`:                              0,
		`caddy_dingtalk_async_jobs_waiting{bot="metrics-async"}`:                              0,
	})
	if n := unlisted.Count(); n != 0 {
		t.Errorf("the unlisted webhook was contacted %d times", n)
	}

	// Each job's outcome line says what happened to it, and how it ended at the webhook.
	type outcome struct{ Outcome, WebhookResult string }
	logged := map[string]outcome{}
	for _, e := range moduleLog(t, g) {
		if e.Msg == finished {
			if e.Bot != "metrics-async" || e.Duration == nil {
				t.Errorf("job line without bot or duration: %+v", e)
			}
			logged[e.MsgID] = outcome{e.Outcome, e.WebhookResult}
		}
	}
	for i, j := range jobs {
		m, _ := dingtalk.ParseMessage(j.body)
		if got, want := logged[m.MsgID], (outcome{j.outcome, j.webhookResult}); got != want {
			t.Errorf("job %d logged %+v, want %+v", i+1, got, want)
		}
	}
}

func TestMetricsShowAFullQueue(t *testing.T) {
	const secret = "metrics queue secret"
	gate := newGate()
	defer func() {
		if !gate.isOpen() {
			gate.open()
		}
	}()
	backend := dingtalktest.NewRecorder()
	defer backend.Close()
	backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		gate.wait()
		fmt.Fprint(w, "done")
	}
	webhook := dingtalktest.NewWebhook()
	defer webhook.Close()
	g := startGateway(t, site{FilterSign: true, Body: fmt.Sprintf(`
	handle /metrics {
		metrics
	}
	route /robot {
		dingtalk {
			bot metrics-queue %q
			async {
				webhook_hosts %s
				workers 1
				queue 1
			}
		}
		reverse_proxy %s
	}`, secret, hostPort(webhook.URL), hostPort(backend.URL))})
	bots := []string{"metrics-queue"}
	before, _ := scrape(t, g.URL+"/metrics")
	body := func(text string) []byte {
		return dingtalktest.Callback{Text: text, SessionWebhook: webhook.SessionURL()}.Body()
	}

	mustEmptyAck(t, g.post("/robot", secret, body("runs")))
	waitFor(t, "the first job to reach the backend", func() bool { return backend.Count() == 1 })
	mustEmptyAck(t, g.post("/robot", secret, body("waits")))
	if resp := g.post("/robot", secret, body("refused")); resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("with the queue full got %d, want 503", resp.Status)
	}
	held, _ := scrape(t, g.URL+"/metrics")
	mustCount(t, before, held, bots, map[string]float64{
		`caddy_dingtalk_requests_total{bot="metrics-queue",outcome="accepted"}`:   2,
		`caddy_dingtalk_requests_total{bot="metrics-queue",outcome="queue_full"}`: 1,
		`caddy_dingtalk_async_jobs_total{bot="metrics-queue",outcome="queued"}`:   2,
		`caddy_dingtalk_async_jobs_total{bot="metrics-queue",outcome="dropped"}`:  1,
		`caddy_dingtalk_async_jobs_running{bot="metrics-queue"}`:                  1,
		`caddy_dingtalk_async_jobs_waiting{bot="metrics-queue"}`:                  1,
	})

	gate.open()
	waitFor(t, "both replies", func() bool { return webhook.Count() == 2 })
	waitFor(t, "both jobs to finish", func() bool { return strings.Count(g.logs(), "dingtalk async job finished") == 2 })
	after, _ := scrape(t, g.URL+"/metrics")
	mustCount(t, held, after, bots, map[string]float64{
		`caddy_dingtalk_async_jobs_total{bot="metrics-queue",outcome="succeeded"}`:        2,
		`caddy_dingtalk_webhook_posts_total{bot="metrics-queue",result="ok"}`:             2,
		`caddy_dingtalk_webhook_duration_seconds_count{bot="metrics-queue",result="ok"}`:  2,
		`caddy_dingtalk_backend_duration_seconds_count{bot="metrics-queue",mode="async"}`: 2,
		`caddy_dingtalk_async_jobs_running{bot="metrics-queue"}`:                          -1,
		`caddy_dingtalk_async_jobs_waiting{bot="metrics-queue"}`:                          -1,
	})
}

// readBody is the request's body; the Recorder has read it and put it back.
func readBody(r *http.Request) []byte {
	body, _ := io.ReadAll(r.Body)
	return body
}

package integration

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// resetAfter answers by writing raw bytes (nothing, or the start of a
// response) and then resetting the connection.
func resetAfter(raw string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		_, _ = buf.WriteString(raw)
		_ = buf.Flush()
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.SetLinger(0) // close with RST, not FIN
		}
		_ = conn.Close()
	}
}

// observed is s with the sign filter the README ships (a failing upstream
// makes Caddy log the request's headers) and Caddy's metrics on /metrics.
func observed(s site) site {
	s.FilterSign = true
	s.Body += "\n\thandle /metrics {\n\t\tmetrics\n\t}"
	return s
}

// countsOf are the bot "default" series: every fault test's gateway has
// that one bot, and the tests run one at a time.
var countsOf = []string{"default"}

// A response cut off after its headers and part of its body.
const brokenResponse = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"msgtype\":\"text\",\"te"

// faulty answers with fault while failing is set, and with good otherwise.
type faulty struct {
	failing     atomic.Bool
	fault, good http.HandlerFunc
}

func (f *faulty) serve(w http.ResponseWriter, r *http.Request) {
	if f.failing.Load() {
		f.fault(w, r)
		return
	}
	f.good(w, r)
}

// When the upstream fails, DingTalk gets a clear error status or a broken
// answer, and the claim on the msgId is released: DingTalk's redelivery
// reaches the upstream again once it is back, and gets its answer.
func TestSyncUpstreamFaultsReleaseTheMessage(t *testing.T) {
	cases := []struct {
		name   string
		fault  http.HandlerFunc // nil: the upstream refuses connections
		status int              // 0: the answer breaks off
	}{
		{"refuses connections", nil, http.StatusBadGateway},
		{"resets before answering", resetAfter(""), http.StatusBadGateway},
		{"resets mid-response", resetAfter(brokenResponse), 0},
		{"answers 500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, 500},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			upstream := dingtalktest.NewRecorder()
			t.Cleanup(upstream.Close)
			f := &faulty{fault: c.fault, good: echoMsgID}
			upstream.Handler = f.serve
			g := startGateway(t, observed(proxySite(upstream, "")))
			if resp := g.post("/robot", testSecret, callback("warm up")); resp.Status != 200 {
				t.Fatalf("warm-up answered %d", resp.Status)
			}
			resources := startResourceCheck(t, g, upstream)
			before, _ := scrape(t, g.URL+"/metrics")

			f.failing.Store(true)
			if c.fault == nil {
				gone := dingtalktest.NewRecorder()
				gone.Close() // a port where nothing listens any more
				g.load(observed(proxySite(gone, "")))
			}
			var body []byte
			for range 5 { // a few times, so that a leak per failure would exceed the slack
				body = callback("hello")
				resp, err := g.deliver(testSecret, body, time.Now())
				switch {
				case c.status == 0 && err == nil:
					t.Fatalf("the broken answer arrived whole (status %d)", resp.Status)
				case c.status != 0 && (err != nil || resp.Status != c.status):
					t.Fatalf("got %d, %v; want %d", resp.Status, err, c.status)
				}
			}

			// The upstream is back: DingTalk's redelivery of the last message is answered.
			f.failing.Store(false)
			if c.fault == nil {
				g.load(observed(proxySite(upstream, "")))
			}
			sentBefore := upstream.Count()
			resp := mustDeliver(t, g, body)
			if resp.Status != 200 || !strings.HasPrefix(resp.Body, "re:msg") {
				t.Fatalf("the redelivery got %d %q, want the upstream's answer (was the claim released?)", resp.Status, resp.Body)
			}
			if n := upstream.Count() - sentBefore; n != 1 {
				t.Fatalf("the redelivery reached the upstream %d times, want once", n)
			}
			// Every delivery was accepted (none answered as a duplicate) and timed.
			after, _ := scrape(t, g.URL+"/metrics")
			mustCount(t, before, after, countsOf, map[string]float64{
				`caddy_dingtalk_requests_total{bot="default",outcome="accepted"}`:          6,
				`caddy_dingtalk_backend_duration_seconds_count{bot="default",mode="sync"}`: 6,
			})
			resources.verify(t)
		})
	}
}

// mustDeliver delivers a genuine body as DingTalk does (again when a reload
// closed the connection under it) and fails the test when no answer came.
func mustDeliver(t *testing.T, g *gateway, body []byte) response {
	t.Helper()
	resp, err := g.deliver(testSecret, body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// jobsFinished counts the relay's "job finished" log lines.
func jobsFinished(g *gateway) int { return strings.Count(g.logs(), "dingtalk async job finished") }

// When the backend fails in the background, the relay posts the fallback
// and releases the claim: each redelivery runs the route again, and once
// the backend is back the answer is posted.
func TestAsyncBackendFaultsPostTheFallbackAndReleaseTheMessage(t *testing.T) {
	const fallback = `{"msgtype":"text","text":{"content":"sorry"}}`
	cases := []struct {
		name  string
		fault http.HandlerFunc // nil: the backend refuses connections
	}{
		{"refuses connections", nil},
		{"resets before answering", resetAfter("")},
		{"resets mid-response", resetAfter(brokenResponse)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &faulty{fault: c.fault, good: echoMsgID}
			rl := startRelayed(t, openGate(), `fallback_text "sorry"`, f.serve)
			rl.load(observed(asyncSite(rl.backend, rl.webhook, `fallback_text "sorry"`)))
			mustEmptyAck(t, mustDeliver(t, rl.gateway, rl.callbackTo("warm up")))
			waitFor(t, "the warm-up's reply", func() bool { return rl.webhook.Count() == 1 && jobsFinished(rl.gateway) == 1 })
			resources := startResourceCheck(t, rl.gateway, rl.backend, rl.webhook)
			before, _ := scrape(t, rl.URL+"/metrics")

			f.failing.Store(true)
			if c.fault == nil {
				gone := dingtalktest.NewRecorder()
				gone.Close() // a port where nothing listens any more
				rl.load(observed(asyncSite(gone, rl.webhook, `fallback_text "sorry"`)))
			}
			body := rl.callbackTo("hello")
			for i := 1; i <= 3; i++ { // the first delivery and two redeliveries
				mustEmptyAck(t, mustDeliver(t, rl.gateway, body))
				waitFor(t, "the job to finish", func() bool { return jobsFinished(rl.gateway) == 1+i })
				if n := rl.webhook.Count(); n != 1+i {
					t.Fatalf("after delivery %d the webhook got %d posts, want %d", i, n, 1+i)
				}
				if got := string(rl.webhook.Requests()[i].Body); got != fallback {
					t.Fatalf("posted %s, want the fallback", got)
				}
			}
			if strings.Count(rl.logs(), `"answered":false`) != 3 {
				t.Error("the failed jobs are not logged as unanswered")
			}

			f.failing.Store(false)
			if c.fault == nil {
				rl.load(observed(asyncSite(rl.backend, rl.webhook, `fallback_text "sorry"`)))
			}
			mustEmptyAck(t, mustDeliver(t, rl.gateway, body))
			waitFor(t, "the answer", func() bool { return rl.webhook.Count() == 5 })
			if got := answeredMsgID(rl.webhook.Requests()[4].Body); !strings.Contains(string(body), `"msgId":"`+got+`"`) {
				t.Fatalf("posted the answer to %q, not to the redelivered message", got)
			}
			waitFor(t, "the last job to finish", func() bool { return jobsFinished(rl.gateway) == 5 })
			after, _ := scrape(t, rl.URL+"/metrics")
			mustCount(t, before, after, countsOf, map[string]float64{
				`caddy_dingtalk_requests_total{bot="default",outcome="accepted"}`:           4,
				`caddy_dingtalk_async_jobs_total{bot="default",outcome="queued"}`:           4,
				`caddy_dingtalk_async_jobs_total{bot="default",outcome="failed"}`:           3,
				`caddy_dingtalk_async_jobs_total{bot="default",outcome="succeeded"}`:        1,
				`caddy_dingtalk_webhook_posts_total{bot="default",result="ok"}`:             4, // three fallbacks, one answer
				`caddy_dingtalk_webhook_duration_seconds_count{bot="default",result="ok"}`:  4,
				`caddy_dingtalk_backend_duration_seconds_count{bot="default",mode="async"}`: 4,
			})
			resources.verify(t)
		})
	}
}

// A webhook post that may have been shown keeps the claim (a second answer
// in the chat is worse than none); one that certainly was not releases it,
// so that DingTalk's redelivery runs the route again.
func TestAsyncWebhookFaultsSettleTheClaim(t *testing.T) {
	hang := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
	errcode := func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"errcode":40035,"errmsg":"bad message"}`)
	}
	cases := []struct {
		name        string
		webhook     http.HandlerFunc
		expired     bool
		attempts    int
		redelivered bool
		result      string // of the webhook post, as counted
	}{
		{"times out: maybe shown, kept", hang, false, 3, false, "error"},
		{"5xx: maybe shown, kept", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }, false, 3, false, "error"},
		{"errcode: not shown, released", errcode, false, 1, true, "errcode"},
		{"expired: not contacted, released", nil, true, 0, true, "expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rl := startRelayed(t, openGate(), "webhook_timeout 300ms", echoMsgID)
			rl.load(observed(asyncSite(rl.backend, rl.webhook, "webhook_timeout 300ms")))
			mustEmptyAck(t, mustDeliver(t, rl.gateway, rl.callbackTo("warm up")))
			waitFor(t, "the warm-up's reply", func() bool { return rl.webhook.Count() == 1 && jobsFinished(rl.gateway) == 1 })
			resources := startResourceCheck(t, rl.gateway, rl.backend, rl.webhook)
			before, _ := scrape(t, rl.URL+"/metrics")

			if c.webhook != nil {
				rl.webhook.Handler = c.webhook
			}
			cb := dingtalktest.Callback{Text: "hi", SessionWebhook: rl.webhook.SessionURL()}
			if c.expired {
				cb.Now = time.Now().Add(-2 * time.Hour) // its sessionWebhook expired 30 minutes ago
			}
			body := cb.Body()
			mustEmptyAck(t, mustDeliver(t, rl.gateway, body))
			waitFor(t, "the job to finish", func() bool { return jobsFinished(rl.gateway) == 2 })
			if n := rl.webhook.Count() - 1; n != c.attempts {
				t.Fatalf("the webhook got %d attempts, want %d", n, c.attempts)
			}

			mustEmptyAck(t, mustDeliver(t, rl.gateway, body))
			if c.redelivered {
				waitFor(t, "the redelivery's job", func() bool { return jobsFinished(rl.gateway) == 3 })
			}
			nothingMore(t, count{"callbacks the backend saw", map[bool]int{true: 3, false: 2}[c.redelivered], rl.backend.Count})
			jobs := map[bool]float64{true: 2, false: 1}[c.redelivered]
			want := map[string]float64{
				`caddy_dingtalk_requests_total{bot="default",outcome="accepted"}`:             jobs,
				`caddy_dingtalk_async_jobs_total{bot="default",outcome="queued"}`:             jobs,
				`caddy_dingtalk_async_jobs_total{bot="default",outcome="succeeded"}`:          jobs,
				`caddy_dingtalk_webhook_posts_total{bot="default",result="` + c.result + `"}`: jobs,
				`caddy_dingtalk_backend_duration_seconds_count{bot="default",mode="async"}`:   jobs,
			}
			if !c.redelivered {
				want[`caddy_dingtalk_requests_total{bot="default",outcome="duplicate"}`] = 1
			}
			if c.attempts > 0 { // the post contacted the webhook, and was timed
				want[`caddy_dingtalk_webhook_duration_seconds_count{bot="default",result="`+c.result+`"}`] = jobs
			}
			after, _ := scrape(t, rl.URL+"/metrics")
			mustCount(t, before, after, countsOf, want)
			resources.verify(t)
		})
	}
}

// Caddy reloads a changed config while callbacks keep coming, some of them
// redelivered: every message is answered exactly once, on whichever config
// it arrived, and nothing is left running.
func TestReloadUnderLoadAnswersEveryMessageOnce(t *testing.T) {
	const senders, maxPerSender, reloads = 4, 200, 8
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			backend := dingtalktest.NewRecorder()
			t.Cleanup(backend.Close)
			backend.Handler = func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(20 * time.Millisecond) // keeps some answers in flight across each reload
				echoMsgID(w, r)
			}
			webhook := dingtalktest.NewWebhook()
			t.Cleanup(webhook.Close)
			configs := []site{observed(proxySite(backend, "")), observed(proxySite(backend, "max_age 30m"))}
			if async {
				configs = []site{observed(asyncSite(backend, webhook, "")), observed(asyncSite(backend, webhook, `fallback_text "changed"`))}
			}
			g := startGateway(t, configs[0])
			callbackFor := func(text string) []byte {
				return dingtalktest.Callback{Text: text, SessionWebhook: webhook.SessionURL()}.Body()
			}
			if resp := g.post("/robot", testSecret, callbackFor("warm up")); resp.Status != 200 {
				t.Fatalf("warm-up answered %d", resp.Status)
			}
			if async {
				waitFor(t, "the warm-up's reply", func() bool { return webhook.Count() == 1 && jobsFinished(g) == 1 })
			}
			resources := startResourceCheck(t, g, backend, webhook)
			backend0, webhook0 := backend.Count(), webhook.Count()
			before, _ := scrape(t, g.URL+"/metrics")

			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				problems problemLog
				sent     = map[string]bool{}
			)
			stop := make(chan struct{})
			for s := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range maxPerSender {
						select {
						case <-stop:
							return
						case <-time.After(10 * time.Millisecond): // a steady stream, not a flood
						}
						msgID := fmt.Sprintf("reload-%d-%d", s, i)
						body := dingtalktest.Callback{Text: "hi", MsgID: msgID, SessionWebhook: webhook.SessionURL()}.Body()
						mu.Lock()
						sent[msgID] = true
						mu.Unlock()
						for delivery := range 2 { // DingTalk's redelivery follows at once
							resp, err := g.deliver(testSecret, body, time.Now())
							switch {
							case err != nil:
								problems.add("%s: %v", msgID, err)
							case resp.Status != 200:
								problems.add("%s delivery %d: status %d", msgID, delivery, resp.Status)
							case (async || delivery == 1) && resp.Body != `{"msgtype":"empty"}`:
								problems.add("%s delivery %d answered %q, want the empty reply", msgID, delivery, resp.Body)
							case !async && delivery == 0 && resp.Body != "re:"+msgID && resp.Body != `{"msgtype":"empty"}`:
								problems.add("%s answered %q", msgID, resp.Body)
							}
						}
					}
				}()
			}
			for i := range reloads {
				time.Sleep(100 * time.Millisecond)
				g.load(configs[(i+1)%2])
			}
			close(stop)
			wg.Wait()
			for _, p := range problems.list() {
				t.Error(p)
			}

			// Every message reached the backend exactly once; with the relay,
			// exactly one answer per message was posted.
			answers := backend
			if async {
				answers = webhook
				waitFor(t, "every answer to be posted", func() bool { return webhook.Count()-webhook0 >= len(sent) })
				nothingMore(t, count{"answers posted", len(sent), func() int { return webhook.Count() - webhook0 }})
			}
			for name, rec := range map[string]*dingtalktest.Recorder{"backend": backend, "answers": answers} {
				seen := map[string]int{}
				start := backend0
				if rec == webhook {
					start = webhook0
				}
				for _, r := range rec.Requests()[start:] {
					if rec == webhook {
						seen[answeredMsgID(r.Body)]++
					} else if m, err := dingtalk.ParseMessage(r.Body); err == nil {
						seen[m.MsgID]++
					}
				}
				for msgID := range sent {
					if seen[msgID] != 1 {
						t.Errorf("%s: %s seen %d times, want once", name, msgID, seen[msgID])
					}
				}
				if len(seen) != len(sent) {
					t.Errorf("%s: %d messages seen, %d sent", name, len(seen), len(sent))
				}
			}
			// The counters agree: each message accepted once (the rest were
			// duplicates), and with the relay each job succeeded and its answer
			// was confirmed.
			after, _ := scrape(t, g.URL+"/metrics")
			counted := func(series string) int { return int(after[series] - before[series]) }
			want := map[string]int{`caddy_dingtalk_requests_total{bot="default",outcome="accepted"}`: len(sent)}
			if async {
				want[`caddy_dingtalk_async_jobs_total{bot="default",outcome="succeeded"}`] = len(sent)
				want[`caddy_dingtalk_webhook_posts_total{bot="default",result="ok"}`] = len(sent)
			}
			for series, n := range want {
				if got := counted(series); got != n {
					t.Errorf("%s went up by %d, want %d", series, got, n)
				}
			}
			t.Logf("%d messages, each delivered twice, across %d reloads", len(sent), reloads)
			resources.verify(t)
		})
	}
}

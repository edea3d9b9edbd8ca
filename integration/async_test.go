package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// relayed is a gateway with the async relay in front of a backend, and a
// fake DingTalk sessionWebhook listed in webhook_hosts.
type relayed struct {
	*gateway
	backend *dingtalktest.Recorder
	webhook *dingtalktest.Recorder
	gate    *gate
}

// gate holds the backend's answers until the test opens it.
type gate struct{ ch chan struct{} }

func newGate() *gate  { return &gate{ch: make(chan struct{})} }
func (g *gate) open() { close(g.ch) }
func (g *gate) wait() { <-g.ch }
func openGate() *gate { g := newGate(); g.open(); return g }
func (g *gate) isOpen() bool {
	select {
	case <-g.ch:
		return true
	default:
		return false
	}
}

// asyncSite is a route with the relay; options go into the async block.
func asyncSite(backend, webhook *dingtalktest.Recorder, options string) site {
	// The relay answers 503 when its queue is full, and Caddy's error log
	// prints the request's headers: the site ships the sign filter.
	return site{FilterSign: true, Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			async {
				webhook_hosts %s
				webhook_retries 2
				%s
			}
		}
		reverse_proxy %s
	}`, testSecret, hostPort(webhook.URL), options, hostPort(backend.URL))}
}

// startRelayed starts a backend that answers with answer after the gate
// opens, a fake webhook, and the gateway.
func startRelayed(t *testing.T, g *gate, options string, answer http.HandlerFunc) *relayed {
	t.Helper()
	backend := dingtalktest.NewRecorder()
	t.Cleanup(backend.Close)
	backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		g.wait()
		answer(w, r)
	}
	webhook := dingtalktest.NewRecorder()
	t.Cleanup(webhook.Close)
	webhook.Handler = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
	}
	gw := startGateway(t, asyncSite(backend, webhook, options))
	t.Cleanup(func() {
		if !g.isOpen() {
			g.open() // never leave a backend handler blocked
		}
	})
	return &relayed{gateway: gw, backend: backend, webhook: webhook, gate: g}
}

// callbackTo is a callback whose sessionWebhook is the fake webhook.
func (rl *relayed) callbackTo(text string) []byte {
	return dingtalktest.Callback{Text: text, Group: true, SessionWebhook: rl.webhook.URL + "/robot/sendBySession?session=s3cr3t-token"}.Body()
}

func plainText(text string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, text)
	}
}

// waitFor polls cond for up to 10 s: generous, because the machine may be loaded.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustEmptyAck(t *testing.T, resp response) {
	t.Helper()
	if resp.Status != http.StatusOK || resp.Body != `{"msgtype":"empty"}` {
		t.Fatalf("ack = %d %q, want 200 {\"msgtype\":\"empty\"}", resp.Status, resp.Body)
	}
}

func TestAsyncAcksBeforeTheBackendAnswersThenPostsItsTextOnce(t *testing.T) {
	rl := startRelayed(t, newGate(), "", plainText("it is sunny"))
	body := rl.callbackTo("weather?")

	// The backend is held: an answer now can only be the relay's ack.
	mustEmptyAck(t, rl.post("/robot", testSecret, body))
	waitFor(t, "the backend to get the callback", func() bool { return rl.backend.Count() == 1 })
	if rl.webhook.Count() != 0 {
		t.Fatal("something was posted before the backend answered")
	}

	// A redelivery while the job runs is answered empty and not passed on.
	mustEmptyAck(t, rl.post("/robot", testSecret, body))

	rl.gate.open()
	waitFor(t, "the reply on the webhook", func() bool { return rl.webhook.Count() == 1 })
	nothingMore(t, count{"backend deliveries", 1, rl.backend.Count}, count{"webhook posts", 1, rl.webhook.Count})
	posts := rl.webhook.Requests()
	if got, want := string(posts[0].Body), `{"msgtype":"text","text":{"content":"it is sunny"}}`; got != want {
		t.Errorf("posted %s, want %s", got, want)
	}
	if posts[0].Path != "/robot/sendBySession?session=s3cr3t-token" || posts[0].Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("posted to %s with %v", posts[0].Path, posts[0].Header)
	}
	mustEqualBytes(t, "body the backend received", rl.backend.Requests()[0].Body, body)
	if strings.Contains(rl.logs(), "s3cr3t-token") {
		t.Error("the session token appears in the log")
	}
	// Once answered, a redelivery is still a duplicate.
	mustEmptyAck(t, rl.post("/robot", testSecret, body))
	nothingMore(t, count{"backend deliveries after a redelivery", 1, rl.backend.Count}, count{"webhook posts after a redelivery", 1, rl.webhook.Count})
}

func TestAsyncPostsABackendsJSONMessageAsIs(t *testing.T) {
	reply := `{"msgtype":"markdown","markdown":{"title":"T","text":"**bold**"}}`
	rl := startRelayed(t, openGate(), "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, reply)
	})
	mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("md")))
	waitFor(t, "the reply", func() bool { return rl.webhook.Count() == 1 })
	if got := string(rl.webhook.Requests()[0].Body); got != reply {
		t.Fatalf("posted %s, want %s", got, reply)
	}
}

func TestAsyncPostsNothingForAnEmptyAnswer(t *testing.T) {
	for name, answer := range map[string]http.HandlerFunc{
		"empty body":    func(w http.ResponseWriter, r *http.Request) {},
		"empty message": func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"msgtype":"empty"}`) },
	} {
		t.Run(name, func(t *testing.T) {
			rl := startRelayed(t, openGate(), "", answer)
			mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("quiet")))
			waitFor(t, "the job to finish", func() bool { return strings.Contains(rl.logs(), "dingtalk async job finished") })
			if n := rl.webhook.Count(); n != 0 {
				t.Fatalf("webhook got %d posts, want none", n)
			}
		})
	}
}

func TestAsyncFailedBackendPostsFallbackAndReleasesTheClaim(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	rl := startRelayed(t, openGate(), `fallback_text "Sorry {http.dingtalk.sender_nick}, try again"`, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "fine now")
	})
	body := rl.callbackTo("hi")
	mustEmptyAck(t, rl.post("/robot", testSecret, body))
	waitFor(t, "the fallback", func() bool { return rl.webhook.Count() == 1 })
	if got, want := string(rl.webhook.Requests()[0].Body), `{"msgtype":"text","text":{"content":"Sorry Zhang San, try again"}}`; got != want {
		t.Fatalf("posted %s, want %s", got, want)
	}
	// The job's last line, logged after the claim was released ("dingtalk
	// async route failed" says "failed" before that).
	waitFor(t, "the job to finish", func() bool {
		return strings.Contains(rl.logs(), `"msg":"dingtalk async job finished"`) && strings.Contains(rl.logs(), `"outcome":"failed"`)
	})

	// The claim was released: DingTalk's redelivery reaches the backend again.
	fail.Store(false)
	mustEmptyAck(t, rl.post("/robot", testSecret, body))
	waitFor(t, "the second reply", func() bool { return rl.webhook.Count() == 2 })
	if n := rl.backend.Count(); n != 2 {
		t.Fatalf("backend saw %d deliveries, want 2", n)
	}
	if got := string(rl.webhook.Requests()[1].Body); got != `{"msgtype":"text","text":{"content":"fine now"}}` {
		t.Fatalf("second post %s", got)
	}
}

func TestAsyncTimeoutPostsFallback(t *testing.T) {
	rl := startRelayed(t, newGate(), "timeout 300ms\nfallback_text \"too slow\"", plainText("late"))
	mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("slow")))
	waitFor(t, "the fallback", func() bool { return rl.webhook.Count() == 1 })
	if got := string(rl.webhook.Requests()[0].Body); got != `{"msgtype":"text","text":{"content":"too slow"}}` {
		t.Fatalf("posted %s", got)
	}
	waitFor(t, "the outcome in the log", func() bool { return strings.Contains(rl.logs(), `"outcome":"timed_out"`) })
	rl.gate.open()
	nothingMore(t, count{"webhook posts after the late answer", 1, rl.webhook.Count})
}

// A forged body must never steer the relay to a host that is not listed.
func TestAsyncNeverContactsAForgedWebhook(t *testing.T) {
	evil := dingtalktest.NewRecorder()
	defer evil.Close()
	rl := startRelayed(t, openGate(), "", plainText("secret answer"))
	listed := hostPort(rl.webhook.URL)
	redirector := func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+"/stolen", http.StatusFound)
	}
	// An unlisted host that speaks https: the relay's TLS handshake would
	// fail before any request, so what counts is that it was dialled at all.
	var dialled atomic.Int64
	evilTLS := httptest.NewUnstartedServer(http.NotFoundHandler())
	evilTLS.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			dialled.Add(1)
		}
	}
	evilTLS.StartTLS()
	defer evilTLS.Close()
	cases := map[string]dingtalktest.Callback{
		"host not listed":        {SessionWebhook: evil.SessionURL()},
		"userinfo":               {SessionWebhook: "http://" + hostPort(evil.URL) + "@" + listed + "/?session=" + dingtalktest.NewSession()},
		"userinfo on ours":       {SessionWebhook: "http://user@" + listed + "/?session=" + dingtalktest.NewSession()},
		"backslash":              {SessionWebhook: "http://" + listed + "\\@" + hostPort(evil.URL) + "/"},
		"https, host not listed": {SessionWebhook: evilTLS.URL + "/robot/sendBySession?session=" + dingtalktest.NewSession()},
		"not a URL":              {SessionWebhook: "javascript:alert(1)"},
	}
	for name, cb := range cases {
		cb.Text = name
		mustEmptyAck(t, rl.post("/robot", testSecret, cb.Body()))
	}
	// Expired: the listed webhook itself must not be contacted.
	expired := dingtalktest.Callback{Text: "expired", SessionWebhook: rl.webhook.SessionURL(), Now: time.Now().Add(-2 * time.Hour)}.Message()
	expired.CreateAt = 0
	expiredBody, _ := json.Marshal(expired)
	mustEmptyAck(t, rl.post("/robot", testSecret, expiredBody))

	waitFor(t, "every job to finish", func() bool { return strings.Count(rl.logs(), "dingtalk async job finished") == len(cases)+1 })
	if n := evil.Count(); n != 0 {
		t.Fatalf("the forged host was contacted %d times", n)
	}
	if n := dialled.Load(); n != 0 {
		t.Fatalf("the unlisted https host was dialled %d times", n)
	}
	if n := rl.webhook.Count(); n != 0 {
		t.Fatalf("the listed webhook was contacted %d times for forged or expired URLs", n)
	}

	// A listed webhook that redirects is not followed.
	rl.webhook.Handler = redirector
	mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("redirect me")))
	waitFor(t, "the post", func() bool { return rl.webhook.Count() == 1 })
	nothingMore(t, count{"requests to the redirect's target", 0, evil.Count}, count{"posts to the redirecting webhook", 1, rl.webhook.Count})
}

func TestAsyncWebhookFailures(t *testing.T) {
	cases := []struct {
		name     string
		answer   http.HandlerFunc
		attempts int
		logged   string
	}{
		{"5xx is retried then given up", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }, 3, "HTTP 502"},
		{"expired session is not retried", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"errcode":300001,"errmsg":"session expired"}`)
		}, 1, `"errcode":300001`},
		{"other errcode is not retried", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"errcode":40035,"errmsg":"bad message"}`)
		}, 1, `"errcode":40035`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rl := startRelayed(t, openGate(), "", plainText("answer"))
			rl.webhook.Handler = c.answer
			mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("hi")))
			waitFor(t, "the failure in the log", func() bool { return strings.Contains(rl.logs(), "sessionWebhook post failed") })
			nothingMore(t, count{"webhook attempts", c.attempts, rl.webhook.Count})
			if !strings.Contains(rl.logs(), c.logged) {
				t.Errorf("the log does not say %s", c.logged)
			}
		})
	}
}

func TestAsyncFullQueueAnswers503WithoutClaiming(t *testing.T) {
	rl := startRelayed(t, newGate(), "workers 1\nqueue 1", plainText("done"))
	mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("one")))
	waitFor(t, "the first job to run", func() bool { return rl.backend.Count() == 1 })
	mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("two"))) // waits for the worker

	third := rl.callbackTo("three")
	if resp := rl.post("/robot", testSecret, third); resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("with the queue full got %d, want 503", resp.Status)
	}
	rl.gate.open()
	waitFor(t, "both replies", func() bool { return rl.webhook.Count() == 2 })

	// The refused message was not claimed: its redelivery is accepted and answered.
	mustEmptyAck(t, rl.post("/robot", testSecret, third))
	waitFor(t, "the third reply", func() bool { return rl.webhook.Count() == 3 })
}

func TestAsyncReloadDuringAJobDeliversOnce(t *testing.T) {
	rl := startRelayed(t, newGate(), "", plainText("survived the reload"))
	body := rl.callbackTo("long job")
	mustEmptyAck(t, rl.post("/robot", testSecret, body))
	waitFor(t, "the job to reach the backend", func() bool { return rl.backend.Count() == 1 })

	// Reload with a changed config while the job is held in the backend. A
	// reload that waited for the job would never return while the gate is shut.
	reloaded := make(chan struct{})
	go func() {
		rl.load(asyncSite(rl.backend, rl.webhook, `fallback_text "changed"`))
		close(reloaded)
	}()
	select {
	case <-reloaded:
	case <-time.After(10 * time.Second):
		t.Fatal("the reload waits for the background job")
	}

	// The new config knows the message is in flight.
	mustEmptyAck(t, rl.post("/robot", testSecret, body))
	rl.gate.open()
	waitFor(t, "the reply", func() bool { return rl.webhook.Count() == 1 })
	nothingMore(t, count{"webhook posts after the reload", 1, rl.webhook.Count}, count{"backend deliveries after the reload", 1, rl.backend.Count})
	if got := string(rl.webhook.Requests()[0].Body); got != `{"msgtype":"text","text":{"content":"survived the reload"}}` {
		t.Fatalf("posted %s", got)
	}
}

// The background run sees the placeholders of the request, and the route's
// handlers after the relay (here respond) answer into the relay.
func TestAsyncRunsBuiltInAnswersWithPlaceholders(t *testing.T) {
	webhook := dingtalktest.NewRecorder()
	defer webhook.Close()
	g := startGateway(t, site{Body: fmt.Sprintf(`
	route /robot {
		vars greeting "Hello"
		dingtalk {
			secret %q
			async {
				webhook_hosts %s
			}
		}
		respond "{vars.greeting} {http.dingtalk.sender_nick}: you said {http.dingtalk.text} on {http.request.uri.path}"
	}`, testSecret, hostPort(webhook.URL))})
	body := dingtalktest.Callback{Text: "hi \"there\"", Group: true, SessionWebhook: webhook.SessionURL()}.Body()
	mustEmptyAck(t, g.post("/robot", testSecret, body))
	waitFor(t, "the reply", func() bool { return webhook.Count() == 1 })
	var posted struct {
		MsgType string `json:"msgtype"`
		Text    struct{ Content string }
	}
	if err := json.Unmarshal(webhook.Requests()[0].Body, &posted); err != nil {
		t.Fatal(err)
	}
	if want := `Hello Zhang San: you said hi "there" on /robot`; posted.MsgType != "text" || posted.Text.Content != want {
		t.Fatalf("posted %+v, want text %q", posted, want)
	}
}

// A job waiting for a worker keeps its leases: the relay does not take it
// over as a dead holder's job, so its message reaches the backend once.
func TestAsyncQueuedJobKeepsItsLease(t *testing.T) {
	const lease = 300 * time.Millisecond
	rl := startRelayed(t, newGate(), "", plainText("done"))
	rl.load(site{FilterSign: true, Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			lease %v
			async {
				webhook_hosts %s
				workers 1
			}
		}
		reverse_proxy %s
	}`, testSecret, lease, hostPort(rl.webhook.URL), hostPort(rl.backend.URL))})
	mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("one")))
	waitFor(t, "the first job to run", func() bool { return rl.backend.Count() == 1 })
	mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("two"))) // waits for the worker
	// The time under test: the queued job's first lease lapses many times
	// over. A relay that took it over would log so at once (the copy then
	// waits for the worker too).
	time.Sleep(6 * lease)
	if strings.Contains(rl.logs(), "taken over") {
		t.Fatal("a queued job was taken over in a gateway whose every holder is alive")
	}
	rl.gate.open()
	waitFor(t, "both replies", func() bool { return rl.webhook.Count() == 2 })
	if n := rl.backend.Count(); n != 2 {
		t.Fatalf("the backend got %d calls for 2 messages", n)
	}
	if strings.Contains(rl.logs(), "taken over") {
		t.Fatal("a job was taken over in a gateway whose every holder is alive")
	}
	if n := rl.webhook.Count(); n != 2 {
		t.Fatalf("%d replies for 2 messages", n)
	}
}

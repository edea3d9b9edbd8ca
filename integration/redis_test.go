package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// pong is what the test upstream answers, to tell a forwarded callback from
// the gateway's own empty reply to a duplicate.
const pong = `{"msgtype":"text","text":{"content":"pong"}}`

func pongUpstream(t *testing.T) *dingtalktest.Recorder {
	upstream := dingtalktest.NewRecorder()
	t.Cleanup(upstream.Close)
	upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, pong)
	}
	return upstream
}

// redisSite is a site body that verifies /robot with a Redis store and
// proxies genuine callbacks to upstream; rejections answer their reason.
func redisSite(redisAddr, timeout, storeOptions, options string, upstream *dingtalktest.Recorder) string {
	return fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			%s
			store redis {
				address %s
				timeout %s
				%s
			}
		}
		reverse_proxy %s
	}
	handle_errors {
		respond "{http.dingtalk.reject_reason}"
	}`, testSecret, options, redisAddr, timeout, storeOptions, hostPort(upstream.URL))
}

// twoInstances models two gateways behind one robot that share one Redis:
// only one Caddy config can run in a process, so it is one config with two
// sites on two ports, each with its own dingtalk handler and Redis store.
// Their timeouts differ, so that they do not even share a Redis client. The
// log has the shipped sign filter, so that a sign in it is the module's doing.
// secondOptions go into the second instance's dingtalk block only.
func twoInstances(t *testing.T, redisAddr, storeOptions, secondOptions string, upstream *dingtalktest.Recorder) (*gateway, *gateway) {
	t.Helper()
	second := "http://127.0.0.1:" + freePort(t)
	one := startGateway(t, site{
		FilterSign: true,
		Body:       redisSite(redisAddr, "1s", storeOptions, "", upstream),
		Extra:      second + " {" + redisSite(redisAddr, "2s", storeOptions, secondOptions, upstream) + "\n}",
	})
	two := *one
	two.URL = second
	return one, &two
}

// signedAt returns a callback request to g's /robot, signed at the given moment.
func (g *gateway) signedAt(at time.Time, body []byte) *http.Request {
	g.t.Helper()
	req, err := dingtalktest.NewRequest(g.URL+"/robot", testSecret, body, at)
	if err != nil {
		g.t.Fatal(err)
	}
	return req
}

// deliver posts body to url, signed now; it may run on any goroutine.
func deliver(url string, body []byte) (response, error) {
	req, err := dingtalktest.NewRequest(url, testSecret, body, time.Now())
	if err != nil {
		return response{}, err
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(got)}, err
}

func TestTwoInstancesForwardAMessageOnce(t *testing.T) {
	srv := redistest.Start(t)
	upstream := pongUpstream(t)
	one, two := twoInstances(t, srv.Addr, "", "", upstream)

	// DingTalk redelivering one message to both gateways at once.
	body := callback("to both")
	const deliveries = 20
	results := make([]response, deliveries)
	errs := make([]error, deliveries)
	var wg sync.WaitGroup
	for i := range deliveries {
		url := one.URL + "/robot"
		if i%2 == 1 {
			url = two.URL + "/robot"
		}
		wg.Go(func() { results[i], errs[i] = deliver(url, body) })
	}
	wg.Wait()

	forwarded := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		switch {
		case r.Status == http.StatusOK && r.Body == pong:
			forwarded++
		case r.Status == http.StatusOK && r.Body == `{"msgtype":"empty"}`:
		default:
			t.Errorf("delivery %d got %d %q, want the upstream's answer or the empty reply", i, r.Status, r.Body)
		}
	}
	if n := upstream.Count(); n != 1 || forwarded != 1 {
		t.Fatalf("the upstream saw the message %d times (%d answers came from it), want exactly once", n, forwarded)
	}
}

func TestRedisDownWithOnErrorClosed(t *testing.T) {
	srv := redistest.Start(t)
	upstream := pongUpstream(t)
	// on_error closed is the default. Without the replay guard on the
	// second instance, its de-duplication is what meets the failure.
	one, two := twoInstances(t, srv.Addr, "", "replay_guard off", upstream)

	srv.Stop()
	for _, g := range []*gateway{one, two} {
		resp := g.post("/robot", testSecret, callback("while redis is down"))
		if resp.Status != http.StatusServiceUnavailable || resp.Body != "store_unavailable" {
			t.Fatalf("with Redis down %s answered %d %q, want 503 store_unavailable", g.URL, resp.Status, resp.Body)
		}
	}
	if n := upstream.Count(); n != 0 {
		t.Fatalf("with Redis down and on_error closed, %d callbacks reached the upstream", n)
	}

	srv.Restart()
	body := callback("after redis is back")
	waitFor(t, "the gateway to reach Redis again", func() bool {
		return one.post("/robot", testSecret, body).Status == http.StatusOK
	})
	if n := upstream.Count(); n != 1 {
		t.Fatalf("the upstream saw %d callbacks, want only the one accepted after the restart", n)
	}
	if resp := two.post("/robot", testSecret, body); resp.Status != http.StatusOK || resp.Body != `{"msgtype":"empty"}` {
		t.Fatalf("the redelivery to the other instance got %d %q, want the empty reply", resp.Status, resp.Body)
	}
	if n := upstream.Count(); n != 1 {
		t.Fatalf("de-duplication does not work again after the restart: the upstream saw %d callbacks", n)
	}
}

func TestRedisDownWithOnErrorOpen(t *testing.T) {
	const password = "redis-password-for-the-test"
	srv := redistest.Start(t, "--requirepass", password)
	t.Setenv("CADDY_DINGTALK_TEST_REDIS_PASSWORD", password)
	upstream := pongUpstream(t)
	// Without the replay guard on the second instance, its de-duplication
	// is what meets the failure.
	one, two := twoInstances(t, srv.Addr, "password {env.CADDY_DINGTALK_TEST_REDIS_PASSWORD}\non_error open", "replay_guard off", upstream)

	body := callback("up")
	if resp := one.post("/robot", testSecret, body); resp.Body != pong {
		t.Fatalf("with Redis up: %d %q", resp.Status, resp.Body)
	}
	if resp := two.post("/robot", testSecret, body); resp.Body != `{"msgtype":"empty"}` {
		t.Fatalf("with Redis up, the redelivery got %d %q, want the empty reply", resp.Status, resp.Body)
	}

	srv.Stop()
	// Without Redis nothing is de-duplicated: both deliveries go through.
	down := callback("while redis is down")
	for _, g := range []*gateway{one, two} {
		if resp := g.post("/robot", testSecret, down); resp.Status != http.StatusOK || resp.Body != pong {
			t.Fatalf("with Redis down and on_error open %s answered %d %q, want the upstream's answer", g.URL, resp.Status, resp.Body)
		}
	}
	if n := upstream.Count(); n != 3 {
		t.Fatalf("the upstream saw %d callbacks, want 3", n)
	}
	logs := one.logs()
	var warnings []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "dingtalk store unavailable") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 2 {
		t.Fatalf("%d warnings about the store, want one per callback (2):\n%s", len(warnings), logs)
	}
	for _, w := range warnings {
		if !strings.Contains(w, `"level":"warn"`) || !strings.Contains(w, `"msg_id"`) {
			t.Fatalf("the warning is not at WARN with the msgId: %s", w)
		}
	}
	if strings.Contains(logs, password) {
		t.Fatal("the Redis password is in Caddy's log")
	}

	srv.Restart()
	waitFor(t, "de-duplication through Redis again", func() bool {
		again := callback("after redis is back")
		return one.post("/robot", testSecret, again).Body == pong &&
			two.post("/robot", testSecret, again).Body == `{"msgtype":"empty"}`
	})
}

// The async relay claims messages and records its jobs too; it follows the
// same on_error policy, and warns once per callback whichever of the
// store's uses met the failure first (the replay guard, or the claim).
func TestAsyncWithRedisDown(t *testing.T) {
	for _, tc := range []struct{ onError, replayGuard string }{{"closed", "off"}, {"open", "off"}, {"open", "on"}} {
		onError := tc.onError
		t.Run(onError+" replay_guard "+tc.replayGuard, func(t *testing.T) {
			srv := redistest.Start(t)
			backend := pongUpstream(t)
			webhook := dingtalktest.NewRecorder()
			t.Cleanup(webhook.Close)
			webhook.Handler = func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`) }
			g := startGateway(t, site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			replay_guard %s # off: the relay's claim meets the failure
			store redis {
				address %s
				timeout 1s
				on_error %s
			}
			async {
				webhook_hosts %s
			}
		}
		reverse_proxy %s
	}
	handle_errors {
		respond "{http.dingtalk.reject_reason}"
	}`, testSecret, tc.replayGuard, srv.Addr, onError, hostPort(webhook.URL), hostPort(backend.URL))})

			srv.Stop()
			body := dingtalktest.Callback{Text: "hi", SessionWebhook: webhook.SessionURL()}.Body()
			resp := g.post("/robot", testSecret, body)
			if onError == "closed" {
				if resp.Status != http.StatusServiceUnavailable || resp.Body != "store_unavailable" {
					t.Fatalf("got %d %q, want 503 store_unavailable", resp.Status, resp.Body)
				}
				nothingMore(t, count{"callbacks the backend saw while Redis was down", 0, backend.Count})
				return
			}
			mustEmptyAck(t, resp)
			waitFor(t, "the backend's answer posted to the webhook", func() bool { return webhook.Count() == 1 })
			if n := strings.Count(g.logs(), "dingtalk store unavailable"); n != 1 {
				t.Fatalf("%d warnings about the store, want 1", n)
			}
		})
	}
}

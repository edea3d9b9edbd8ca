package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// The robot application of the OpenAPI tests.
const (
	apiAppKey = "dingintegrationappkey"
	apiSecret = "openapi tests' AppSecret"
)

// openAPISetup is a gateway whose relay posts to a fake webhook and, for the
// robot's AppKey, falls back to a fake OpenAPI.
type openAPISetup struct {
	*gateway
	webhook *dingtalktest.Recorder
	api     *dingtalktest.OpenAPI
}

// newFakeOpenAPI starts a fake OpenAPI knowing the tests' robot; the
// tokens it issues join the suite's log check.
func newFakeOpenAPI(t *testing.T) *dingtalktest.OpenAPI {
	t.Helper()
	api := dingtalktest.NewOpenAPI(dingtalktest.OpenAPIApp{AppKey: apiAppKey, AppSecret: apiSecret})
	t.Cleanup(func() {
		for _, r := range api.Requests() {
			leakCheck.add(leakCheck.tokens, r.Header.Get(openapi.HeaderAccessToken))
		}
		api.Close()
	})
	return api
}

// startOpenAPISetup starts the fakes and a gateway whose backend answers
// replies[text] to a callback saying text. The webhook answers errcode
// 300001 on paths ending in /expired. botOptions go into the bot's block
// (its app_key, usually), options into the dingtalk block.
func startOpenAPISetup(t *testing.T, botOptions, options string, replies map[string]string) *openAPISetup {
	t.Helper()
	backend := dingtalktest.NewRecorder()
	t.Cleanup(backend.Close)
	backend.Handler = func(w http.ResponseWriter, r *http.Request) {
		m, _ := dingtalk.ParseMessage(readBody(r))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, replies[m.TrimmedText()])
	}
	webhook := dingtalktest.NewWebhook()
	t.Cleanup(webhook.Close)
	webhook.Handler = func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/expired") {
			fmt.Fprint(w, `{"errcode":300001,"errmsg":"session 不存在"}`)
			return
		}
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
	}
	api := newFakeOpenAPI(t)
	g := startGateway(t, site{FilterSign: true, Body: fmt.Sprintf(`
	handle /metrics {
		metrics
	}
	route /robot {
		dingtalk {
			bot openapi-bot %q {
				%s
			}
			api_base %s
			%s
			async {
				webhook_hosts %s
				webhook_retries 0
			}
		}
		reverse_proxy %s
	}`, apiSecret, botOptions, api.URL, options, hostPort(webhook.URL), hostPort(backend.URL))})
	return &openAPISetup{gateway: g, webhook: webhook, api: api}
}

// How a test makes the sessionWebhook unusable.
const (
	webhookErrcode = "errcode 300001"
	webhookExpired = "expired"
	webhookMissing = "missing"
)

// callback is a callback saying text whose sessionWebhook is unusable as
// how says, or usable when how is empty.
func (s *openAPISetup) callback(text string, group bool, how string) []byte {
	m := dingtalktest.Callback{Text: text, Group: group, SessionWebhook: s.webhook.SessionURL()}.Message()
	switch how {
	case webhookErrcode:
		m.SessionWebhook = s.webhook.URL + "/expired?session=" + dingtalktest.NewSession()
	case webhookExpired:
		m.SessionWebhookExpiredTime = dingtalk.Millis(time.Now().Add(-time.Minute).UnixMilli())
	case webhookMissing:
		m.SessionWebhook, m.SessionWebhookExpiredTime = "", 0
	}
	body, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return body
}

func TestRelayFallsBackToTheOpenAPIForEveryReplyType(t *testing.T) {
	// Each reply names itself in its text, so that a send can be told apart.
	type want struct {
		msgKey string
		param  map[string]string // a subset of msgParam
	}
	cases := map[string]struct {
		reply string
		want  want
	}{
		"text":     {`{"msgtype":"text","text":{"content":"text reply"},"at":{"atUserIds":["user123"]}}`, want{"sampleText", map[string]string{"content": "text reply"}}},
		"markdown": {`{"msgtype":"markdown","markdown":{"title":"T","text":"markdown reply"}}`, want{"sampleMarkdown", map[string]string{"title": "T", "text": "markdown reply"}}},
		"link": {`{"msgtype":"link","link":{"title":"T","text":"link reply","messageUrl":"https://m","picUrl":"https://p"}}`,
			want{"sampleLink", map[string]string{"text": "link reply", "messageUrl": "https://m", "picUrl": "https://p"}}},
		"single card": {`{"msgtype":"actionCard","actionCard":{"title":"T","text":"single card reply","singleTitle":"Read","singleURL":"https://r"}}`,
			want{"sampleActionCard", map[string]string{"text": "single card reply", "singleTitle": "Read", "singleURL": "https://r"}}},
		"buttons card": {`{"msgtype":"actionCard","actionCard":{"title":"T","text":"buttons card reply","btns":[{"title":"A","actionURL":"https://a"},{"title":"B","actionURL":"https://b"}]}}`,
			want{"sampleActionCard2", map[string]string{"text": "buttons card reply", "actionTitle1": "A", "actionURL2": "https://b"}}},
		"feed card": {`{"msgtype":"feedCard","feedCard":{"links":[{"title":"feed card reply","messageURL":"https://f","picURL":"https://fp"}]}}`,
			want{"sampleMarkdown", map[string]string{"title": "feed card reply", "text": "![](https://fp)\n[feed card reply](https://f)"}}},
	}
	replies := map[string]string{}
	for name, c := range cases {
		replies[name] = c.reply
	}
	s := startOpenAPISetup(t, "app_key "+apiAppKey, "", replies)
	before, _ := scrape(t, s.URL+"/metrics")

	// Every type, in a group and 1:1, with each way the webhook fails.
	type sentCase struct {
		name  string
		group bool
		how   string
	}
	var sent []sentCase
	hows := []string{webhookErrcode, webhookExpired, webhookMissing}
	i := 0
	for name := range cases {
		for _, group := range []bool{true, false} {
			c := sentCase{name, group, hows[i%len(hows)]}
			i++
			mustEmptyAck(t, s.post("/robot", apiSecret, s.callback(name, c.group, c.how)))
			sent = append(sent, c)
		}
	}
	waitFor(t, "every reply through the OpenAPI", func() bool { return len(s.api.Sent()) == len(sent) })
	// The fake records a send when it arrives; the module counts it once
	// the answer is back, before the job's last line: wait for those lines.
	waitFor(t, "the jobs' end", func() bool {
		return strings.Count(s.logs(), "dingtalk async job finished") == len(sent)
	})

	for _, c := range sent {
		w := cases[c.name].want
		found := slices.IndexFunc(s.api.Sent(), func(m dingtalktest.Sent) bool {
			if m.MsgKey != w.msgKey || m.RobotCode != apiAppKey {
				return false
			}
			for k, v := range w.param {
				if m.Param[k] != v {
					return false
				}
			}
			if c.group {
				return m.Path == dingtalktest.OpenAPIGroupSendPath && m.ConversationID == "cidGroup123=="
			}
			return m.Path == dingtalktest.OpenAPIBatchSendPath && slices.Equal(m.UserIDs, []string{"user123"})
		})
		if found < 0 {
			t.Errorf("%s (group %v, webhook %s): no send with %s %v; sent: %+v", c.name, c.group, c.how, w.msgKey, w.param, s.api.Sent())
		}
	}
	// Only the webhooks answering 300001 were posted to, once each.
	errcodes := 0
	for _, c := range sent {
		if c.how == webhookErrcode {
			errcodes++
		}
	}
	if n := s.webhook.Count(); n != errcodes {
		t.Errorf("the webhook got %d posts, want %d (the 300001 ones)", n, errcodes)
	}
	if n := s.api.TokenFetches(); n != 1 {
		t.Errorf("%d token fetches, want 1", n)
	}
	after, _ := scrape(t, s.URL+"/metrics")
	for series, want := range map[string]float64{
		`caddy_dingtalk_webhook_posts_total{bot="openapi-bot",result="openapi"}`:             float64(len(sent)),
		`caddy_dingtalk_webhook_posts_total{bot="openapi-bot",result="expired"}`:             float64(len(sent) - len(sent)/3),
		`caddy_dingtalk_openapi_calls_total{api="token",bot="openapi-bot",result="ok"}`:      1,
		`caddy_dingtalk_openapi_calls_total{api="group_send",bot="openapi-bot",result="ok"}`: float64(len(sent) / 2),
		`caddy_dingtalk_openapi_calls_total{api="batch_send",bot="openapi-bot",result="ok"}`: float64(len(sent) / 2),
		`caddy_dingtalk_async_jobs_total{bot="openapi-bot",outcome="succeeded"}`:             float64(len(sent)),
	} {
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s went up by %v, want %v", series, got, want)
		}
	}
}

func TestRelayWithoutAnAppKeyDoesNotFallBack(t *testing.T) {
	s := startOpenAPISetup(t, "", "", map[string]string{"hi": `{"msgtype":"text","text":{"content":"lost"}}`})
	for _, how := range []string{webhookErrcode, webhookMissing} {
		mustEmptyAck(t, s.post("/robot", apiSecret, s.callback("hi", true, how)))
	}
	waitFor(t, "the jobs' end", func() bool { return strings.Count(s.logs(), "dingtalk async job finished") == 2 })
	if n := s.webhook.Count(); n != 1 {
		t.Fatalf("the webhook got %d posts, want 1 (the 300001 one)", n)
	}
	if n := s.api.Count(); n != 0 {
		t.Fatalf("the OpenAPI got %d calls from a gateway without an app_key", n)
	}
}

func TestLongAnswersArriveAsOrderedParts(t *testing.T) {
	// 50,000 bytes of numbered lines: the parts, in order, must give them back.
	var long strings.Builder
	for i := 0; long.Len() < 50000; i++ {
		fmt.Fprintf(&long, "line %05d of the long answer, with some words to fill it up.\n", i)
	}
	answer := long.String()[:50000]
	reply, _ := json.Marshal(dingtalk.NewText(answer))
	s := startOpenAPISetup(t, "app_key "+apiAppKey, "", map[string]string{"long": string(reply)})

	for _, how := range []string{"", webhookMissing} {
		t.Run("webhook "+cmpOr(how, "usable"), func(t *testing.T) {
			postsBefore, sentBefore := s.webhook.Count(), len(s.api.Sent())
			mustEmptyAck(t, s.post("/robot", apiSecret, s.callback("long", true, how)))
			var parts []string
			waitFor(t, "the whole answer", func() bool {
				parts = parts[:0]
				if how == "" {
					for _, r := range s.webhook.Requests()[postsBefore:] {
						var m dingtalk.OutgoingMessage
						if err := json.Unmarshal(r.Body, &m); err != nil || m.Text == nil {
							t.Fatalf("webhook post %s is not a text message", r.Body)
						}
						parts = append(parts, m.Text.Content)
					}
				} else {
					for _, m := range s.api.Sent()[sentBefore:] {
						parts = append(parts, m.Param["content"])
					}
				}
				return len(strings.Join(parts, "")) >= len(answer)
			})
			if got := strings.Join(parts, ""); got != answer {
				t.Fatalf("the %d parts joined are not the answer", len(parts))
			}
			if len(parts) < 50000/dingtalk.DefaultMaxReplyChars {
				t.Fatalf("%d parts, want at least %d", len(parts), 50000/dingtalk.DefaultMaxReplyChars)
			}
			for _, p := range parts {
				if n := len([]rune(p)); n > dingtalk.DefaultMaxReplyChars {
					t.Fatalf("a part of %d characters", n)
				}
			}
		})
	}
}

func cmpOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func TestTwoGatewaysSharingRedisFetchOneTokenAndStayUnderOneRate(t *testing.T) {
	srv := redistest.Start(t)
	backend := dingtalktest.NewRecorder()
	t.Cleanup(backend.Close)
	backend.Handler = plainText("shared answer")
	webhook := dingtalktest.NewWebhook()
	t.Cleanup(webhook.Close)
	api := newFakeOpenAPI(t)
	const rate = 10
	one, second := startTwoGatewaysOnRedis(t, srv.Addr, api, webhook, backend, rate, "")
	setup := &openAPISetup{gateway: one, webhook: webhook, api: api}

	const callbacks = 3 * rate
	for i := range callbacks {
		url := one.URL
		if i%2 == 1 {
			url = second
		}
		req, err := dingtalktest.NewRequest(url+"/robot", apiSecret, setup.callback(fmt.Sprint("question ", i), false, webhookMissing), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		mustEmptyAck(t, one.do(req))
	}
	waitFor(t, "every answer through the OpenAPI", func() bool { return len(api.Sent()) == callbacks })
	if n := api.TokenFetches(); n != 1 {
		t.Errorf("the two gateways fetched %d tokens, want 1", n)
	}
	if n := api.MaxPerSecond(""); n > rate {
		t.Errorf("DingTalk saw %d calls in one second, over the api_rate of %d the gateways share", n, rate)
	}
	sends := api.Calls(dingtalktest.OpenAPIBatchSendPath)
	if span, least := sends[len(sends)-1].At.Sub(sends[0].At), (callbacks-1)*openapi.Interval(rate)*9/10; span < least {
		t.Errorf("%d sends took %v, want at least %v at %d a second", callbacks, span, least, rate)
	}
}

// startTwoGatewaysOnRedis starts two gateways in one config, as in
// twoInstances: their Redis timeouts differ, so that they share nothing but
// the redis-server at redisAddr. Each has the tests' robot, at rate calls a
// second, in front of backend; async goes into their async blocks. It
// returns the first gateway and the second's URL.
func startTwoGatewaysOnRedis(t *testing.T, redisAddr string, api *dingtalktest.OpenAPI, webhook, backend *dingtalktest.Recorder, rate int, async string) (*gateway, string) {
	t.Helper()
	siteFor := func(timeout string) string {
		return fmt.Sprintf(`
	route /robot {
		dingtalk {
			bot shared-bot %q {
				app_key %s
			}
			api_base %s
			api_rate %d
			store redis {
				address %s
				timeout %s
			}
			async {
				webhook_hosts %s
				%s
			}
		}
		reverse_proxy %s
	}`, apiSecret, apiAppKey, api.URL, rate, redisAddr, timeout, hostPort(webhook.URL), async, hostPort(backend.URL))
	}
	second := "http://127.0.0.1:" + freePort(t)
	one := startGateway(t, site{FilterSign: true, Body: siteFor("1s"), Extra: second + " {" + siteFor("2s") + "\n}"})
	return one, second
}

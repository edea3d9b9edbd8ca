//go:build unix

package examples

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// secret is the robots' secret where a test gives its own; the others give
// the trial secrets, as the READMEs do.
const secret = "the examples test's secret"

const trialSecret = "this is a secret"

func TestPythonBackend(t *testing.T) {
	needs(t, "python3")
	testBackend(t, "python", "Python", "python3", "examples/python/backend.py")
}

func TestNodeBackend(t *testing.T) {
	needs(t, "node")
	testBackend(t, "node", "Node.js", "node", "examples/node/backend.js")
}

func TestGoBackend(t *testing.T) {
	testBackend(t, "go", "Go", bin.goBackend)
}

// testBackend runs the example in examples/dir, whose backend (started
// with argv) answers as lang, and checks its answers.
func testBackend(t *testing.T, dir, lang string, argv ...string) {
	ex := newExample(t, dir)
	ex.set("DINGTALK_APP_SECRET", secret)
	ex.start(ex.addr("BACKEND_ADDR"), argv...)
	ex.caddy()

	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"Hi Zhang San, bot default (`+lang+`) got: hello @user123"},"at":{"atUserIds":["user123"]}}`),
		"--secret-env", "DINGTALK_APP_SECRET", "--text", "hello")
	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"Hi 李四, bot default (`+lang+`) got: 杭州 \"weather\"? @staff42"},"at":{"atUserIds":["staff42"]}}`),
		"--secret-env", "DINGTALK_APP_SECRET", "--group", "--text", `杭州 "weather"?`, "--sender-nick", "李四", "--sender-staff-id", "staff42")
	// An external user has no staff id: the reply @s the DingTalk id.
	external := bodyFile(t, dingtalktest.Callback{Text: "hi", Anonymous: true}.Body())
	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"Hi Zhang San, bot default (`+lang+`) got: hi @$:LWCP_v1:$sender"},"at":{"atDingtalkIds":["$:LWCP_v1:$sender"]}}`),
		"--secret-env", "DINGTALK_APP_SECRET", "--body", external)
	// Only the secret in the environment signs.
	ex.expectRejected("401 Unauthorized", "--secret", trialSecret)
}

func TestMultiBot(t *testing.T) {
	needs(t, "python3")
	ex := newExample(t, "multi-bot")
	ex.set("DINGTALK_SALES_SECRET", secret)
	ex.set("DINGTALK_SUPPORT_SECRET", "testAppSecret123")
	ex.start(ex.addr("BACKEND_ADDR"), "python3", "examples/multi-bot/backend.py")
	ex.caddy()

	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"Thanks Zhang San! A sales rep will get back to you about: a quote for 100 seats @user123"},"at":{"atUserIds":["user123"]}}`),
		"--secret-env", "DINGTALK_SALES_SECRET", "--text", "a quote for 100 seats")
	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"Support here, Zhang San. Ticket opened for: my login fails @user123"},"at":{"atUserIds":["user123"]}}`),
		"--secret", "testAppSecret123", "--text", "my login fails")
	ex.expectRejected("401 Unauthorized", "--secret", trialSecret)
}

func TestBuiltin(t *testing.T) {
	ex := newExample(t, "builtin")
	ex.set("DINGTALK_APP_SECRET", trialSecret)
	ex.caddy()

	help := printed(t, `{"msgtype":"markdown","markdown":{"title":"Help","text":"**What I answer**\n- **ping**: pong\n- **whoami**: what I know about you\n- **help**: this text"}}`)
	ex.expect(help, "--secret", trialSecret, "--text", "help")
	ex.expect(help, "--secret", trialSecret, "--text", "/Help", "--group")
	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"pong @user123"},"at":{"atUserIds":["user123"]}}`),
		"--secret", trialSecret, "--text", "ping")
	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"You are Zhang San, staff id user123; chat: group; bot: default."}}`),
		"--secret", trialSecret, "--text", "whoami", "--group")
	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"Hi Zhang San, I only know help, ping and whoami. @user123"},"at":{"atUserIds":["user123"]}}`),
		"--secret", trialSecret, "--text", "good morning")
}

func TestRouting(t *testing.T) {
	ex := newExample(t, "routing")
	ex.set("DINGTALK_APP_SECRET", secret)
	weather, ask := ex.addr("WEATHER_ADDR"), ex.addr("ASK_ADDR")
	ex.start(weather, bin.upstream, "-addr", weather, "-name", "weather")
	ex.start(ask, bin.upstream, "-addr", ask, "-name", "ask")
	ex.caddy()

	// The answers the example's README shows.
	for text, reply := range map[string]string{
		"/weather Hangzhou":   `{"msgtype":"text","text":{"content":"[weather] you said \"/weather Hangzhou\" (argument \"Hangzhou\") @user123"},"at":{"atUserIds":["user123"]}}`,
		"/ask what is Caddy?": `{"msgtype":"text","text":{"content":"[ask] you said \"/ask what is Caddy?\" @user123"},"at":{"atUserIds":["user123"]}}`,
		"help":                `{"msgtype":"markdown","markdown":{"title":"Help","text":"- **/weather** *city*: the weather\n- **/ask** *question*: ask the assistant"}}`,
		"good morning":        `{"msgtype":"text","text":{"content":"Sorry Zhang San, I don't know \"good morning\""}}`,
	} {
		ex.expect(printed(t, reply), "--secret-env", "DINGTALK_APP_SECRET", "--text", text)
	}
}

func TestAsyncLLM(t *testing.T) {
	needs(t, "python3")
	ex := newExample(t, "async-llm")
	ex.set("DINGTALK_APP_SECRET", trialSecret)
	ex.set("DELAY_SECONDS", "1")
	ex.start(ex.addr("BACKEND_ADDR"), "python3", "examples/async-llm/backend.py")
	webhook := ex.addr("WEBHOOK_HOST")
	ex.caddy()

	// The gateway answers empty at once; the backend's answer reaches the
	// sessionWebhook later.
	ex.expect(printed(t, `{"msgtype":"empty"}`,
		`{"msgtype":"text","text":{"content":"After 1 s of thought, Zhang San: \"what is the meaning of life?\" is a fine question."}}`),
		"--secret", trialSecret, "--text", "what is the meaning of life?", "--webhook-listen", webhook, "--wait", "60s")
}

func TestStreamingLLM(t *testing.T) {
	needs(t, "python3")
	ex := newExample(t, "streaming-llm")
	ex.set("WORD_SECONDS", "0.02")
	ex.set("DINGTALK_APP_SECRET", trialSecret)
	ex.start(ex.addr("BACKEND_ADDR"), "python3", "examples/streaming-llm/backend.py")
	api := ex.addr("API_BASE")
	ex.set("API_BASE", "http://"+api)
	ex.caddy()

	// The card is created, fills in, and ends finished with the whole answer.
	stdout, stderr, err := ex.send("--secret", trialSecret, "--text", "how do cards work?", "--group",
		"--openapi-listen", api, "--wait", "60s")
	if err != nil {
		t.Fatalf("send: %v\n%s\n%s", err, stdout, stderr)
	}
	const answer = `Zhang San, you asked "how do cards work?": here is the answer, one word at a time.`
	for _, want := range []string{"card 1 created (dtv1.card//IM_GROUP.", "final: " + answer + "\n", "card 1 state finished"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("send printed no %q:\n%s", want, stdout)
		}
	}
	if strings.Count(stdout, "card 1 update") < 2 {
		t.Errorf("the card did not fill in over several updates:\n%s", stdout)
	}
}

func TestMultiInstance(t *testing.T) {
	redis := redistest.Start(t)
	start := func(name string) *example {
		ex := newExample(t, "multi-instance")
		ex.set("DINGTALK_APP_SECRET", trialSecret)
		ex.set("INSTANCE", name)
		ex.set("REDIS_ADDR", redis.Addr)
		ex.caddy()
		return ex
	}
	a, b := start("a"), start("b")

	// DingTalk delivers to a, then redelivers to b: answered once.
	a.expect(printed(t, `{"msgtype":"text","text":{"content":"Instance a answered: hello @user123"},"at":{"atUserIds":["user123"]}}`),
		"--secret", trialSecret, "--msg-id", "msgShared1", "--text", "hello")
	b.expect(printed(t, `{"msgtype":"empty"}`), "--secret", trialSecret, "--msg-id", "msgShared1", "--text", "hello")
	b.expect(printed(t, `{"msgtype":"text","text":{"content":"Instance b answered: new @user123"},"at":{"atUserIds":["user123"]}}`),
		"--secret", trialSecret, "--text", "new")

	// Redis down: on_error closed refuses rather than answer twice.
	redis.Stop()
	a.expectRejected("503 Service Unavailable", "--secret", trialSecret)
}

// trialAppKey is the AppKey the examples' Caddyfiles default to.
const trialAppKey = "dingtrialappkey"

// fakeOpenAPI plays DingTalk's OpenAPI for the examples' trial robot, points
// API_BASE at it and gives Caddy the trial secret.
func (ex *example) fakeOpenAPI() *dingtalktest.OpenAPI {
	api := dingtalktest.NewOpenAPI(dingtalktest.OpenAPIApp{AppKey: trialAppKey, AppSecret: trialSecret})
	ex.t.Cleanup(api.Close)
	ex.set("API_BASE", api.URL)
	ex.set("DINGTALK_APP_SECRET", trialSecret)
	return api
}

func TestNotify(t *testing.T) {
	needs(t, "curl")
	ex := newExample(t, "notify")
	api := ex.fakeOpenAPI()
	ex.caddy()
	notify := func(password string, args ...string) (string, error) {
		cmd := exec.Command("examples/notify/notify.sh", args...)
		cmd.Dir = ".."
		cmd.Env = append(ex.env, "NOTIFY_PASSWORD="+password)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := notify("trial password", "cidGroup123==", `The "nightly" build is green \o/`)
	if err != nil || out != `{"results":[{"processQueryKey":"fake-process-1"}]}`+"\n" {
		t.Fatalf("notify.sh: %v\n%s", err, out)
	}
	sent := api.Sent()
	if len(sent) != 1 || sent[0].ConversationID != "cidGroup123==" || sent[0].Param["content"] != `The "nightly" build is green \o/` {
		t.Fatalf("DingTalk got %+v", sent)
	}
	// A wrong password reaches nothing.
	if out, err := notify("wrong", "cidGroup123==", "x"); err == nil {
		t.Fatalf("notify.sh with a wrong password succeeded:\n%s", out)
	}
	if n := api.Count(); n != 2 { // the token and the one send
		t.Fatalf("the OpenAPI got %d calls, want 2", n)
	}
}

func TestMedia(t *testing.T) {
	needs(t, "python3")
	ex := newExample(t, "media")
	api := ex.fakeOpenAPI()
	picture := []byte("\x89PNG\r\n\x1a\n a small picture")
	api.AddMedia("dc/Picture+1==", dingtalktest.Media{ContentType: "image/png", Body: picture})
	ex.addr("MEDIA_ADDR")
	ex.start(ex.addr("BACKEND_ADDR"), "python3", "examples/media/backend.py")
	ex.caddy()

	m := dingtalktest.Callback{}.Message()
	m.MsgType, m.Text = "picture", nil
	m.Content = []byte(`{"pictureDownloadCode":"pdc==","downloadCode":"dc/Picture+1=="}`)
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ex.expect(printed(t, fmt.Sprintf(`{"msgtype":"text","text":{"content":"Got your picture, Zhang San: %d bytes of image/png."}}`, len(picture))),
		"--secret", trialSecret, "--body", bodyFile(t, body))
	ex.expect(printed(t, `{"msgtype":"text","text":{"content":"Send me a picture, Zhang San."}}`),
		"--secret", trialSecret, "--text", "hello")
}

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// send runs `caddy dingtalk send` and fails the test if the secret shows up
// in anything it printed or returned.
func send(t *testing.T, opts sendOptions) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runSend(context.Background(), opts, &out, &errOut)
	assertNoSecret(t, testSecret, out.String(), errOut.String(), err)
	return out.String(), errOut.String(), err
}

// newGateway is a fake gateway: it refuses requests not signed with secret
// as the dingtalk handler does (401, empty body) and lets answer reply to
// the others.
func newGateway(t *testing.T, secret string, answer http.HandlerFunc) *dingtalktest.Recorder {
	t.Helper()
	gw := dingtalktest.NewRecorder()
	t.Cleanup(gw.Close)
	gw.Handler = func(w http.ResponseWriter, r *http.Request) {
		if !dingtalk.SignMatches(secret, r.Header.Get(dingtalk.HeaderTimestamp), r.Header.Get(dingtalk.HeaderSign)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		answer(w, r)
	}
	return gw
}

// reply answers with status and body as a JSON-speaking server would.
func reply(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

const jsonType = "application/json; charset=utf-8"

// The fields of the protocol notes' sample callback: a built one has them all.
var callbackFields = []string{
	"msgtype", "msgId", "text", "createAt", "conversationType", "conversationId", "conversationTitle",
	"senderId", "senderNick", "senderStaffId", "senderCorpId", "sessionWebhook", "sessionWebhookExpiredTime",
	"isAdmin", "isInAtList", "atUsers", "chatbotCorpId", "chatbotUserId", "robotCode",
}

func TestSendPostsARealisticSignedCallback(t *testing.T) {
	gw := newGateway(t, testSecret, reply(http.StatusOK, jsonType, `{"msgtype":"text","text":{"content":"pong 你好"}}`))

	before := time.Now()
	stdout, stderr, err := send(t, sendOptions{
		URL:    gw.URL + "/robot",
		Secret: secretSource{Value: testSecret},
		Callback: dingtalktest.Callback{
			Text: "ping", Group: true, SenderNick: "Li Si", SenderStaffID: "staff42", RobotCode: "dingbot9", MsgID: "msgFixed==",
		},
	})
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if want := "200 OK\n{\n  \"msgtype\": \"text\",\n  \"text\": {\n    \"content\": \"pong 你好\"\n  }\n}\n"; stdout != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, want)
	}
	if want := "sending a group text callback, msgId msgFixed==, to " + gw.URL + "/robot\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}

	got := gw.Requests()
	if len(got) != 1 {
		t.Fatalf("gateway saw %d requests, want 1", len(got))
	}
	r := got[0]
	if r.Method != http.MethodPost || r.Path != "/robot" || r.Header.Get("Content-Type") != jsonType {
		t.Errorf("gateway saw %s %s with Content-Type %q", r.Method, r.Path, r.Header.Get("Content-Type"))
	}
	ts := r.Header.Get(dingtalk.HeaderTimestamp)
	if !dingtalk.SignMatches(testSecret, ts, r.Header.Get(dingtalk.HeaderSign)) {
		t.Errorf("sign does not match timestamp %s", ts)
	}
	if at, err := dingtalk.ParseTimestamp(ts); err != nil || at.Before(before.Truncate(time.Millisecond)) || at.After(after) {
		t.Errorf("timestamp %s is not the time of sending", ts)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &fields); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	for _, name := range callbackFields {
		if _, ok := fields[name]; !ok {
			t.Errorf("body has no %s: %s", name, r.Body)
		}
	}
	m, err := dingtalk.ParseMessage(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if m.MsgID != "msgFixed==" || m.Text.Content != " ping" || m.Conversation() != dingtalk.ConversationGroup ||
		m.SenderNick != "Li Si" || m.SenderStaffID != "staff42" || m.RobotCode != "dingbot9" {
		t.Errorf("body does not carry the flags: %s", r.Body)
	}
	if !strings.HasPrefix(m.SessionWebhook, "https://oapi.dingtalk.com/robot/sendBySession?session=") || m.WebhookExpired(after) {
		t.Errorf("sessionWebhook %q expiring at %d is not DingTalk's or not valid", m.SessionWebhook, m.SessionWebhookExpiredTime)
	}
}

func TestSendDefaultsToAFreshOneToOneHello(t *testing.T) {
	gw := newGateway(t, testSecret, reply(http.StatusOK, jsonType, `{"msgtype":"empty"}`))
	t.Setenv("CADDY_DINGTALK_TEST_SECRET", testSecret)
	opts := sendOptions{URL: gw.URL + "/robot", Secret: secretSource{Env: "CADDY_DINGTALK_TEST_SECRET"}}
	for range 2 {
		if stdout, _, err := send(t, opts); err != nil || stdout != "200 OK\n{\n  \"msgtype\": \"empty\"\n}\n" {
			t.Fatalf("stdout %q, err %v", stdout, err)
		}
	}
	got := gw.Requests()
	var ids []string
	for _, r := range got {
		m, err := dingtalk.ParseMessage(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if m.TrimmedText() != "hello" || m.Text.Content != "hello" || m.Conversation() != dingtalk.ConversationSingle {
			t.Errorf("default callback is %s", r.Body)
		}
		ids = append(ids, m.MsgID)
	}
	if ids[0] == ids[1] {
		t.Errorf("both sends used msgId %s", ids[0])
	}
}

func TestSendBodyFileIsSentAsIs(t *testing.T) {
	gw := newGateway(t, testSecret, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := dingtalk.ParseMessage(body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
	})
	file := filepath.Join(t.TempDir(), "no-id.json")
	body := []byte(`{"msgtype":"text", "text":{"content":"no id"}}` + "\n")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, err := send(t, sendOptions{URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret}, BodyFile: file})

	if want := "the gateway answered 400 Bad Request (body refused: it must be a JSON object with msgtype and msgId)"; err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if stdout != "400 Bad Request\n(empty body)\n" {
		t.Errorf("stdout %q", stdout)
	}
	if want := "sending " + file + " to " + gw.URL + "/robot\nnote: the gateway will refuse " + file + ": invalid callback body: no msgId\n"; stderr != want {
		t.Errorf("stderr %q\nwant %q", stderr, want)
	}
	got := gw.Requests()
	if len(got) != 1 || !bytes.Equal(got[0].Body, body) {
		t.Fatalf("gateway saw %d requests, want 1 with the file's bytes", len(got))
	}
	if !dingtalk.SignMatches(testSecret, got[0].Header.Get(dingtalk.HeaderTimestamp), got[0].Header.Get(dingtalk.HeaderSign)) {
		t.Error("the file was not signed")
	}
}

// asyncGateway answers {"msgtype":"empty"} at once and then posts replies
// to the callback's sessionWebhook, as the gateway's async mode does.
func asyncGateway(t *testing.T, replies ...string) *dingtalktest.Recorder {
	return newGateway(t, testSecret, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m, err := dingtalk.ParseMessage(body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		reply(http.StatusOK, jsonType, `{"msgtype":"empty"}`)(w, r)
		go func() {
			for _, text := range replies {
				resp, err := http.Post(m.SessionWebhook, jsonType, strings.NewReader(text))
				if err != nil {
					t.Errorf("posting to the sessionWebhook: %v", err)
					return
				}
				answer, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(answer) != `{"errcode":0,"errmsg":"ok"}` {
					t.Errorf("the fake sessionWebhook answered %s", answer)
				}
			}
		}()
	})
}

// listenLine matches the line send prints when its fake sessionWebhook listens.
var listenLine = regexp.MustCompile(`(?m)^fake sessionWebhook listening on (http://127\.0\.0\.1:\d+)$`)

func TestSendPrintsTheSessionWebhookPosts(t *testing.T) {
	gw := asyncGateway(t, `{"msgtype":"text","text":{"content":"first"}}`, `{"msgtype":"markdown","markdown":{"title":"T","text":"second"}}`)

	stdout, stderr, err := send(t, sendOptions{
		URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret},
		WebhookListen: "127.0.0.1:0", Count: 2,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	want := `200 OK
{
  "msgtype": "empty"
}
sessionWebhook post 1:
{
  "msgtype": "text",
  "text": {
    "content": "first"
  }
}
sessionWebhook post 2:
{
  "msgtype": "markdown",
  "markdown": {
    "title": "T",
    "text": "second"
  }
}
`
	if stdout != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, want)
	}
	listen := listenLine.FindStringSubmatch(stderr)
	if listen == nil || !strings.HasSuffix(stderr, "waiting up to 30s for 2 sessionWebhook post(s)\n") {
		t.Fatalf("stderr %q", stderr)
	}
	m, err := dingtalk.ParseMessage(gw.Requests()[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	hook, err := url.Parse(m.SessionWebhook)
	if err != nil || "http://"+hook.Host != listen[1] || hook.Path != dingtalktest.WebhookPath || len(hook.Query().Get("session")) != 32 {
		t.Errorf("the callback's sessionWebhook %q is not the fake one on %s", m.SessionWebhook, listen[1])
	}
}

func TestSendWebhookListenFailsWithoutAPost(t *testing.T) {
	gw := newGateway(t, testSecret, reply(http.StatusOK, jsonType, `{"msgtype":"text","text":{"content":"sync"}}`))

	// Nothing will ever post: the short wait cannot make this flaky.
	stdout, stderr, err := send(t, sendOptions{
		URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret},
		WebhookListen: "127.0.0.1:0", Wait: 50 * time.Millisecond,
	})
	listen := listenLine.FindStringSubmatch(stderr)
	if listen == nil {
		t.Fatalf("stderr %q", stderr)
	}
	want := "no sessionWebhook post arrived within 50ms (--wait): does the gateway reply asynchronously, and does its webhook policy allow " +
		strings.TrimPrefix(listen[1], "http://") + "?"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if !strings.HasPrefix(stdout, "200 OK\n") {
		t.Errorf("stdout %q", stdout)
	}
}

func TestSendDoesNotWaitAfterARejection(t *testing.T) {
	gw := newGateway(t, "another secret", nil)
	_, _, err := send(t, sendOptions{URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret}, WebhookListen: "127.0.0.1:0"})
	want := "the gateway answered 401 Unauthorized (timestamp or sign refused: is the secret the gateway's, and this machine's clock right? Caddy's log names the reason); not waiting for sessionWebhook posts"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// deadAddress returns a loopback address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestSendErrors(t *testing.T) {
	t.Setenv("CADDY_DINGTALK_EMPTY", "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dead := deadAddress(t)
	secret := secretSource{Value: testSecret}

	tests := map[string]struct {
		answer     http.HandlerFunc // the gateway's; nil: the request must not be sent
		opts       sendOptions      // with an answer, URL is the gateway's
		wantErr    string           // %s: the gateway's URL
		wantStdout string
	}{
		"no url": {
			opts:    sendOptions{Secret: secret},
			wantErr: "--url is required: the gateway's callback URL, like http://localhost:8080/robot",
		},
		"url without scheme": {
			opts:    sendOptions{URL: "localhost:8080/robot", Secret: secret},
			wantErr: `--url "localhost:8080/robot" is not an absolute http(s) URL, like http://localhost:8080/robot`,
		},
		"no secret": {
			opts:    sendOptions{URL: "http://" + dead + "/robot"},
			wantErr: "no secret: give the robot's AppSecret with --secret-env NAME (keeps it out of shell history) or --secret",
		},
		"empty variable": {
			opts:    sendOptions{URL: "http://" + dead + "/robot", Secret: secretSource{Env: "CADDY_DINGTALK_EMPTY"}},
			wantErr: "--secret-env: environment variable CADDY_DINGTALK_EMPTY is empty",
		},
		"unreachable": {
			opts:    sendOptions{URL: "http://" + dead + "/robot", Secret: secret},
			wantErr: "cannot reach http://" + dead + "/robot: dial tcp " + dead + ": connect: connection refused",
		},
		"non-JSON reply": {
			answer:     reply(http.StatusOK, "text/plain; charset=utf-8", "hello there"),
			opts:       sendOptions{Secret: secret},
			wantErr:    `the reply is not JSON (Content-Type "text/plain; charset=utf-8"); its raw body is printed above`,
			wantStdout: "200 OK\nhello there\n",
		},
		"empty reply": {
			answer:     reply(http.StatusOK, "", ""),
			opts:       sendOptions{Secret: secret},
			wantErr:    `the reply is empty, not JSON: Caddy answers so when no site answers the host of %s, or no route its path: use the dingtalk route's URL with the host of the site's address (a site http://localhost:8080 does not answer http://127.0.0.1:8080); a gateway's "no reply" is {"msgtype":"empty"}`,
			wantStdout: "200 OK\n(empty body)\n",
		},
		"wrong secret": {
			opts:       sendOptions{Secret: secretSource{Value: "a wrong secret"}},
			answer:     reply(http.StatusOK, jsonType, `{}`),
			wantErr:    "the gateway answered 401 Unauthorized (timestamp or sign refused: is the secret the gateway's, and this machine's clock right? Caddy's log names the reason)",
			wantStdout: "401 Unauthorized\n(empty body)\n",
		},
		"redirect": {
			answer: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://bot.example.com/robot", http.StatusPermanentRedirect)
			},
			opts:       sendOptions{Secret: secret},
			wantErr:    "the gateway answered 308 Permanent Redirect (redirect to https://bot.example.com/robot: use that URL)",
			wantStdout: "308 Permanent Redirect\n(empty body)\n",
		},
		"timeout": {
			answer:  func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			opts:    sendOptions{Secret: secret, Timeout: 50 * time.Millisecond},
			wantErr: "no answer from %s within 50ms (--timeout)",
		},
		"body and text": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, BodyFile: "x.json", Callback: dingtalktest.Callback{Text: "hi"}},
			wantErr: "--body sends the file as it is: --msgtype, --text, --group, --sender-nick, --sender-staff-id, --robot-code, --msg-id, --download-code and --admin only shape a built callback",
		},
		"body and admin": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, BodyFile: "x.json", Admin: true},
			wantErr: "--body sends the file as it is: --msgtype, --text, --group, --sender-nick, --sender-staff-id, --robot-code, --msg-id, --download-code and --admin only shape a built callback",
		},
		"unknown msgtype": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, Callback: dingtalktest.Callback{MsgType: "sticker"}},
			wantErr: `--msgtype "sticker" is not one of text, picture, richText, file, audio, video`,
		},
		"text of a picture": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, Callback: dingtalktest.Callback{MsgType: "picture", Text: "hi"}},
			wantErr: "--text: a picture callback carries no text (text, richText and audio do)",
		},
		"backend down": {
			answer:     reply(http.StatusBadGateway, "", ""),
			opts:       sendOptions{Secret: secret},
			wantErr:    "the gateway answered 502 Bad Gateway (the callback was genuine, but Caddy could not reach the backend: is it running, on the address reverse_proxy names? Caddy's log has the error)",
			wantStdout: "502 Bad Gateway\n(empty body)\n",
		},
		"queue full": {
			answer:     reply(http.StatusServiceUnavailable, "", ""),
			opts:       sendOptions{Secret: secret},
			wantErr:    "the gateway answered 503 Service Unavailable (the gateway cannot take it now: the async queue is full, or the store (Redis) is down with on_error closed; Caddy's log names the reason, and DingTalk would deliver it again later)",
			wantStdout: "503 Service Unavailable\n(empty body)\n",
		},
		"missing body file": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, BodyFile: "/nonexistent/x.json"},
			wantErr: "--body: open /nonexistent/x.json: no such file or directory",
		},
		"wait without a webhook": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, Wait: time.Second},
			wantErr: "--wait and --count only apply with --webhook-listen or --openapi-listen",
		},
		"app key without a fake OpenAPI": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, AppKey: "k"},
			wantErr: "--app-key only applies with --openapi-listen",
		},
		"OpenAPI address in use": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, OpenAPIListen: busy.Addr().String()},
			wantErr: "--openapi-listen: listen tcp " + busy.Addr().String() + ": bind: address already in use",
		},
		"negative count": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, WebhookListen: "127.0.0.1:0", Count: -1},
			wantErr: "--wait, --count and --timeout cannot be negative",
		},
		"webhook address in use": {
			opts:    sendOptions{URL: "http://" + dead, Secret: secret, WebhookListen: busy.Addr().String()},
			wantErr: "--webhook-listen: listen tcp " + busy.Addr().String() + ": bind: address already in use",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := tc.opts
			var gw *dingtalktest.Recorder
			if tc.answer != nil {
				gw = newGateway(t, testSecret, tc.answer)
				opts.URL = gw.URL + "/robot"
			}
			stdout, _, err := send(t, opts)
			want := tc.wantErr
			if gw != nil {
				want = strings.ReplaceAll(want, "%s", gw.URL+"/robot")
			}
			if err == nil || err.Error() != want {
				t.Errorf("err = %v\nwant %s", err, want)
			}
			if stdout != tc.wantStdout {
				t.Errorf("stdout %q, want %q", stdout, tc.wantStdout)
			}
		})
	}
}

func TestPrintBody(t *testing.T) {
	tests := []struct {
		body, want string
		err        error
	}{
		{`{"a":[1,2],"b":"你好"}`, "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"你好\"\n}\n", nil},
		{"{\"msgtype\":\"empty\"}\n", "{\n  \"msgtype\": \"empty\"\n}\n", nil},
		{"  \n", "(empty body)\n", errEmptyBody},
		{"<html>oops</html>", "<html>oops</html>\n", errNotJSON},
		{`{"a":1} trailing`, `{"a":1} trailing` + "\n", errNotJSON},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		err := printBody(&out, []byte(tc.body))
		if out.String() != tc.want || err != tc.err {
			t.Errorf("printBody(%q) printed %q, %v; want %q, %v", tc.body, out.String(), err, tc.want, tc.err)
		}
	}
}

func TestSendBodyFileWithAnotherSessionWebhook(t *testing.T) {
	gw := newGateway(t, testSecret, reply(http.StatusOK, jsonType, `{"msgtype":"empty"}`))
	file := filepath.Join(t.TempDir(), "callback.json")
	if err := os.WriteFile(file, dingtalktest.Callback{Text: "elsewhere"}.Body(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, _ := send(t, sendOptions{
		URL: gw.URL + "/robot", Secret: secretSource{Value: testSecret}, BodyFile: file,
		WebhookListen: "127.0.0.1:0", Wait: time.Millisecond,
	})
	listen := listenLine.FindStringSubmatch(stderr)
	if listen == nil || !strings.Contains(stderr, "note: the sessionWebhook in "+file+" is not on "+listen[1]+": posts to it will not show here\n") {
		t.Errorf("stderr %q", stderr)
	}
}

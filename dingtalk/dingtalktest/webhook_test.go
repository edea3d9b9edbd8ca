package dingtalktest_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

func TestWebhookAnswersLikeDingTalkAndRecords(t *testing.T) {
	hook := dingtalktest.NewWebhook()
	defer hook.Close()
	target := hook.SessionURL()
	u, err := url.Parse(target)
	if err != nil || u.Path != dingtalktest.WebhookPath || len(u.Query().Get("session")) != 32 {
		t.Fatalf("SessionURL() = %q", target)
	}
	if other := hook.SessionURL(); other == target {
		t.Errorf("two SessionURLs share the session: %s", other)
	}

	resp, err := http.Post(target, "application/json", strings.NewReader(`{"msgtype":"text","text":{"content":"hi"}}`))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(answer) != `{"errcode":0,"errmsg":"ok"}` {
		t.Errorf("answer %d %s", resp.StatusCode, answer)
	}
	got := hook.Requests()
	if len(got) != 1 || got[0].Path != u.RequestURI() || string(got[0].Body) != `{"msgtype":"text","text":{"content":"hi"}}` {
		t.Errorf("recorded %+v", got)
	}
}

func TestRecorderHandlerCanReadTheBody(t *testing.T) {
	rec := dingtalktest.NewRecorder()
	defer rec.Close()
	rec.Handler = func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	}
	resp, err := http.Post(rec.URL, "text/plain", strings.NewReader("echo"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); string(body) != "echo" {
		t.Errorf("handler read %q, want the request body", body)
	}
}

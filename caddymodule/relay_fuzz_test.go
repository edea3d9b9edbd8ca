package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// FuzzRelayReply checks what the async relay posts to a sessionWebhook:
// whatever the route answered (status, content type, body), the message
// built from it is valid JSON with a msgtype other than "empty", or there is
// none; plain text arrives as a text message saying exactly that text. And
// the fallback text, whose placeholders carry values from the unsigned
// body, is always a valid text message that shows those values verbatim
// (a value that looks like a placeholder is not expanded again).
func FuzzRelayReply(f *testing.F) {
	for _, seed := range []struct {
		status      int
		contentType string
		body        string
		nick        string
	}{
		{200, "text/plain; charset=utf-8", "it is sunny", "Zhang San"},
		{200, "application/json", `{"msgtype":"markdown","markdown":{"title":"T","text":"**b**"}}`, `"quoted"`},
		{200, "application/json", `{"msgtype":"empty"}`, "{http.dingtalk.text}"},
		{200, "application/json", `{"no":"msgtype"}`, "line\nbreak"},
		{200, "application/json", `{"msgtype":`, "\xff\xfe"},
		{200, "", `{"msgtype":"text","text":{"content":"sniffed"}}`, "{env.HOME}"},
		{200, "text/html", "<b>\"hi\"</b>\u2028", `\u0000`},
		{204, "", "", ""},
		{500, "text/plain", "boom", "Ann"},
		{302, "", "", "Ann"},
	} {
		f.Add(seed.status, seed.contentType, []byte(seed.body), seed.nick)
	}
	const fallbackText = "Sorry {http.dingtalk.sender_nick}, {http.dingtalk.text} failed"

	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte, nick string) {
		rec := newRecordedResponse(maxReplySize)
		rec.Header().Set("Content-Type", contentType)
		if status != 0 {
			rec.WriteHeader(status)
		}
		_, _ = rec.Write(body)
		reply, err := replyFromResponse(rec)
		switch {
		case err != nil && reply != nil:
			t.Fatalf("both a reply and an error: %q, %v", reply, err)
		case reply != nil:
			mustBeMessage(t, reply)
		}
		if (status != 0 && (status < 200 || status > 299)) && err == nil {
			t.Fatalf("HTTP %d gave no error", status)
		}
		if reply != nil && !json.Valid(body) && utf8.Valid(body) && textOf(t, reply) != string(body) {
			t.Fatalf("text %q was posted as %s", body, reply)
		}

		v := &Verified{Bot: "b", Message: &dingtalk.Message{MsgType: "text", MsgID: "m", SenderNick: nick, Text: &dingtalk.TextContent{Content: string(body)}}}
		req, repl := caddyRequest(httptest.NewRequest(http.MethodPost, "/robot", nil))
		addPlaceholders(repl, v)
		rl := &relay{cfg: Async{FallbackText: fallbackText}}
		fallback := rl.fallback(&job{v: v, req: req})
		mustBeMessage(t, fallback)
		want := "Sorry " + nick + ", " + v.Message.TrimmedText() + " failed"
		if got := textOf(t, fallback); utf8.ValidString(want) && got != want {
			t.Fatalf("fallback says %q, want %q", got, want)
		}
	})
}

// mustBeMessage fails unless msg is a JSON object with a msgtype other than "empty".
func mustBeMessage(t *testing.T, msg []byte) {
	t.Helper()
	var m struct {
		MsgType string `json:"msgtype"`
	}
	if !json.Valid(msg) || json.Unmarshal(msg, &m) != nil || m.MsgType == "" || m.MsgType == "empty" {
		t.Fatalf("posted %q, which is not a DingTalk message", msg)
	}
}

// textOf returns the content of a text message, or "" for another msgtype.
func textOf(t *testing.T, msg []byte) string {
	t.Helper()
	var m struct {
		MsgType string `json:"msgtype"`
		Text    struct {
			Content string `json:"content"`
		} `json:"text"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatal(err)
	}
	return m.Text.Content
}

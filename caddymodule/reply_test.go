package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// serveReply validates rh as Caddy would and answers r with it.
func serveReply(t *testing.T, rh *Reply, r *http.Request) (*httptest.ResponseRecorder, error) {
	t.Helper()
	if err := rh.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if rh.logger == nil {
		rh.logger = zap.NewNop()
	}
	w := httptest.NewRecorder()
	return w, rh.ServeHTTP(w, r, nil)
}

func TestReplyJSON(t *testing.T) {
	staff := dingtalktest.Callback{Text: "hello", Group: true, SenderNick: "Ann", SenderStaffID: "user123"}.Body()
	external := dingtalktest.Callback{Text: "hello", Anonymous: true}.Body()
	cases := []struct {
		name  string
		reply Reply
		body  []byte
		want  string
	}{
		{"text", Reply{Type: "text", Text: "You said: {http.dingtalk.text}"}, staff,
			`{"msgtype":"text","text":{"content":"You said: hello"}}`},
		{"text at the sender by staff id", Reply{Type: "text", Text: "Hi {http.dingtalk.sender_nick}", AtSender: true}, staff,
			`{"msgtype":"text","text":{"content":"Hi Ann @user123"},"at":{"atUserIds":["user123"]}}`},
		{"text at an external sender by DingTalk id", Reply{Type: "text", Text: "Hi", AtSender: true}, external,
			`{"msgtype":"text","text":{"content":"Hi @$:LWCP_v1:$sender"},"at":{"atDingtalkIds":["$:LWCP_v1:$sender"]}}`},
		{"text at all", Reply{Type: "text", Text: "meeting", AtAll: true}, staff,
			`{"msgtype":"text","text":{"content":"meeting"},"at":{"isAtAll":true}}`},
		{"markdown", Reply{Type: "markdown", Title: "For {http.dingtalk.sender_nick}", Text: "- a\n- b", AtSender: true}, staff,
			`{"msgtype":"markdown","markdown":{"title":"For Ann","text":"- a\n- b @user123"},"at":{"atUserIds":["user123"]}}`},
		{"link", Reply{Type: "link", Title: "Search", Text: "{http.dingtalk.text}",
			URL: "https://example.com/?q={http.dingtalk.text.urlencoded}", Pic: "https://example.com/p.png"}, staff,
			`{"msgtype":"link","link":{"title":"Search","text":"hello","picUrl":"https://example.com/p.png","messageUrl":"https://example.com/?q=hello"}}`},
		{"single action_card", Reply{Type: "action_card", Title: "T", Text: "**{http.dingtalk.text}**", URL: "https://example.com/r"}, staff,
			`{"msgtype":"actionCard","actionCard":{"title":"T","text":"**hello**","singleTitle":"Read more","singleURL":"https://example.com/r"}}`},
		{"action_card with buttons", Reply{Type: "action_card", Title: "T", Text: "pick", Buttons: []ReplyButton{
			{Title: "Yes", URL: "https://example.com/y?m={http.dingtalk.msg_id.urlencoded}"}, {Title: "No", URL: "https://example.com/n"}}},
			dingtalktest.Callback{Text: "x", MsgID: "msgABC"}.Body(),
			`{"msgtype":"actionCard","actionCard":{"title":"T","text":"pick","btns":[{"title":"Yes","actionURL":"https://example.com/y?m=msgABC"},{"title":"No","actionURL":"https://example.com/n"}]}}`},
		{"feed_card", Reply{Type: "feed_card", Links: []ReplyLink{
			{Title: "{http.dingtalk.text}", URL: "https://example.com/1", Pic: "https://example.com/1.png"},
			{Title: "Two", URL: "https://example.com/2", Pic: "https://example.com/2.png"}}}, staff,
			`{"msgtype":"feedCard","feedCard":{"links":[{"title":"hello","messageURL":"https://example.com/1","picURL":"https://example.com/1.png"},{"title":"Two","messageURL":"https://example.com/2","picURL":"https://example.com/2.png"}]}}`},
		{"empty", Reply{Type: "empty"}, staff, `{"msgtype":"empty"}`},
		{"unknown placeholders stay as written", Reply{Type: "text", Text: `{"json": {unknown.placeholder}}`}, staff,
			`{"msgtype":"text","text":{"content":"{\"json\": {unknown.placeholder}}"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := verifiedRequest(t, "default", c.body)
			w, err := serveReply(t, &c.reply, r)
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("status %d, Content-Type %q", w.Code, w.Header().Get("Content-Type"))
			}
			if got := w.Body.String(); got != c.want {
				t.Errorf("body:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// Placeholder values are user text. Whatever they hold, the answer is valid
// JSON whose decoded text is exactly what the user sent.
func TestReplyEscapesHostilePlaceholderValues(t *testing.T) {
	t.Setenv("CADDY_DINGTALK_REPLY_TEST", "must not appear")
	hostile := []string{
		`"quoted"`,
		`back\slash \" \\n \u0041`,
		"new\nline\r\nand\ttab",
		"</script><script>alert(1)</script>",
		"4-byte emoji 😀🇨🇳 and 中文",
		"line\u2028separators\u2029inside",
		`{env.CADDY_DINGTALK_REPLY_TEST} {http.dingtalk.sender_nick}`,
		`","at":{"isAtAll":true},"x":"`,
	}
	reply := Reply{Type: "markdown", Title: "{http.dingtalk.sender_nick}", Text: "said: {http.dingtalk.text}", AtSender: true}
	for _, value := range hostile {
		t.Run(value, func(t *testing.T) {
			body := dingtalktest.Callback{Text: value, SenderNick: value, SenderStaffID: value}.Body()
			r, _ := verifiedRequest(t, "default", body)
			w, err := serveReply(t, &reply, r)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeReply(t, w.Body.Bytes())
			if got.Markdown.Title != value || got.Markdown.Text != "said: "+value+" @"+value {
				t.Errorf("decoded markdown = %+v", got.Markdown)
			}
			if len(got.At.AtUserIDs) != 1 || got.At.AtUserIDs[0] != value || got.At.IsAtAll {
				t.Errorf("decoded at = %+v", got.At)
			}
		})
	}
}

// Invalid UTF-8 in the callback body becomes U+FFFD, and the reply is valid JSON.
func TestReplyToInvalidUTF8IsValidJSON(t *testing.T) {
	body := []byte("{\"msgtype\":\"text\",\"msgId\":\"msg1\",\"senderNick\":\"bad \xff\xfe nick\",\"text\":{\"content\":\"half an emoji \xf0\x9f\"}}")
	r, _ := verifiedRequest(t, "default", body)
	w, err := serveReply(t, &Reply{Type: "text", Text: "{http.dingtalk.sender_nick}: {http.dingtalk.text}"}, r)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeReply(t, w.Body.Bytes())
	if want := "bad \uFFFD\uFFFD nick: half an emoji \uFFFD\uFFFD"; got.Text.Content != want {
		t.Errorf("decoded text %q, want %q", got.Text.Content, want)
	}
}

func decodeReply(t *testing.T, data []byte) dingtalk.OutgoingMessage {
	t.Helper()
	if !json.Valid(data) {
		t.Fatalf("invalid JSON: %q", data)
	}
	var msg dingtalk.OutgoingMessage
	if err := json.Unmarshal(data, &msg); err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestReplyWithoutVerifiedCallbackFails(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	rh := &Reply{Type: "text", Text: "hi", logger: zap.New(core)}
	r, _ := unverifiedRequest(dingtalktest.Callback{Text: "forged"}.Body())
	w, err := serveReply(t, rh, r)

	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusInternalServerError {
		t.Fatalf("error %v, want a 500 HandlerError", err)
	}
	if w.Body.Len() != 0 {
		t.Errorf("something was written: %q", w.Body.String())
	}
	entries := logs.FilterMessageSnippet("without a verified DingTalk callback").All()
	if len(entries) != 1 || entries[0].Level != zap.ErrorLevel {
		t.Errorf("want one ERROR log line saying so, got %v", logs.All())
	}
}

// A JSON config gets the same checks as a Caddyfile, when it is loaded.
func TestReplyValidate(t *testing.T) {
	cases := []struct {
		reply Reply
		want  string // empty: valid
	}{
		{Reply{Type: "text", Text: "t"}, ""},
		{Reply{Type: "text"}, "a text reply needs a text"},
		{Reply{Type: "Text", Text: "t"}, `unknown type "Text"`},
		{Reply{}, `unknown type ""`},
		{Reply{Type: "text", Text: "t", URL: "https://example.com"}, "a text reply takes no url"},
		{Reply{Type: "markdown", Text: "t"}, "a markdown reply needs a title"},
		{Reply{Type: "link", Title: "t", Text: "t"}, "a link reply needs a url"},
		{Reply{Type: "link", Title: "t", Text: "t", URL: "u", AtSender: true}, "a link reply cannot @ anyone"},
		{Reply{Type: "feed_card", Links: []ReplyLink{{"t", "u", "p"}}, AtAll: true}, "a feed_card reply cannot @ anyone"},
		{Reply{Type: "empty", AtSender: true}, "an empty reply cannot @ anyone"},
		{Reply{Type: "empty", Text: "t"}, "an empty reply takes no text"},
		{Reply{Type: "action_card", Title: "t", Text: "t"}, "either a url"},
		{Reply{Type: "action_card", Title: "t", Text: "t", URL: "u", Buttons: []ReplyButton{{"b", "u"}}}, "either a url"},
		{Reply{Type: "action_card", Title: "t", Text: "t", Buttons: []ReplyButton{{"b", ""}}}, "button 1 needs a title and a url"},
		{Reply{Type: "action_card", Title: "t", Text: "t", Buttons: []ReplyButton{{"b", "u"}}, AtSender: true}, ""},
		{Reply{Type: "feed_card"}, "a feed_card reply needs a link"},
		{Reply{Type: "feed_card", Links: []ReplyLink{{"t", "u", ""}}}, "link 1 needs a title, a url and a pic"},
	}
	for _, c := range cases {
		err := c.reply.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", c.reply, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want one containing %q", c.reply, err, c.want)
		}
	}
}

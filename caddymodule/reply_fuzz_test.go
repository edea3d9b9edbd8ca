package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// FuzzReply answers callbacks whose sender and text are hostile (quotes,
// backslashes, newlines, braces that look like placeholders, invalid UTF-8,
// URL syntax) with every reply type, and checks that the answer is a valid
// DingTalk message of the configured type, that every value arrives as the
// gateway read it from the body, verbatim (not expanded again), that a
// .urlencoded value put into a URL's query reads back as itself (no
// parameter of its own), and that at_sender mentions exactly the sender.
func FuzzReply(f *testing.F) {
	for _, seed := range []struct {
		nick, text, staffID, senderID string
		kind                          uint8
		atSender                      bool
	}{
		{"Zhang San", "hello", "user123", "$:LWCP_v1:$sender", 0, true},
		{`"}, "msgtype": "link`, `\"\\n{http.dingtalk.sender_nick}`, "", "$:LWCP_v1:$x", 0, true},
		{"{env.HOME}", "a&admin=true#frag?x=1+2", "u", "", 2, false},
		{"\xff\xfe", "line one\r\nline two", "", "", 1, true},
		{"Ann", "  {http.dingtalk.text}  ", "boss", "s", 3, true},
		{"</title>", "**bold** [x](javascript:alert(1))", "u@x", "s", 4, false},
		{"", "", "", "", 5, false},
	} {
		f.Add(seed.nick, seed.text, seed.staffID, seed.senderID, seed.kind, seed.atSender)
	}
	const base = "https://example.com/r?q="
	replies := []Reply{
		{Type: "text", Text: "{http.dingtalk.sender_nick} said: {http.dingtalk.text}"},
		{Type: "markdown", Title: "{http.dingtalk.sender_nick}", Text: "> {http.dingtalk.text}"},
		{Type: "link", Title: "{http.dingtalk.sender_nick}", Text: "{http.dingtalk.text}", URL: base + "{http.dingtalk.text.urlencoded}"},
		{Type: "action_card", Title: "{http.dingtalk.sender_nick}", Text: "{http.dingtalk.text}",
			Buttons: []ReplyButton{{Title: "{http.dingtalk.text}", URL: base + "{http.dingtalk.text.urlencoded}"}}},
		{Type: "feed_card", Links: []ReplyLink{{Title: "{http.dingtalk.text}", URL: base + "{http.dingtalk.text.urlencoded}", Pic: "https://example.com/p.png"}}},
		{Type: "empty"},
	}

	f.Fuzz(func(t *testing.T, nick, text, staffID, senderID string, kind uint8, atSender bool) {
		body := callbackBody(dingtalktest.Callback{}, func(m *dingtalk.Message) {
			m.SenderNick, m.Text.Content, m.SenderStaffID, m.SenderID = nick, text, staffID, senderID
		})
		r, _ := verifiedRequest(t, "default", body)
		v, _ := VerifiedFrom(r.Context())
		in := v.Message // what the gateway read: invalid UTF-8 is replaced by now
		rh := replies[int(kind)%len(replies)]
		rh.AtSender = atSender && dingtalk.CanMention(replyTypes[rh.Type].msgType)

		w, err := serveReply(t, &rh, r)
		if err != nil || w.Code != http.StatusOK {
			t.Fatalf("answered %d, %v", w.Code, err)
		}
		var out dingtalk.OutgoingMessage
		if !json.Valid(w.Body.Bytes()) || json.Unmarshal(w.Body.Bytes(), &out) != nil {
			t.Fatalf("the answer is not JSON: %q", w.Body.Bytes())
		}
		if want := replyTypes[rh.Type].msgType; out.MsgType != want {
			t.Fatalf("msgtype %q, want %q", out.MsgType, want)
		}

		mention := ""
		id := in.SenderStaffID
		if id == "" {
			id = in.SenderID
		}
		if rh.AtSender && id != "" {
			mention = " @" + id
		}
		nickText, msgText := in.SenderNick, in.TrimmedText()
		var got, want []string
		var urls []string
		switch rh.Type {
		case "text":
			got, want = []string{out.Text.Content}, []string{nickText + " said: " + msgText + mention}
		case "markdown":
			got, want = []string{out.Markdown.Title, out.Markdown.Text}, []string{nickText, "> " + msgText + mention}
		case "link":
			got, want = []string{out.Link.Title, out.Link.Text}, []string{nickText, msgText}
			urls = []string{out.Link.MessageURL}
		case "action_card":
			got, want = []string{out.ActionCard.Title, out.ActionCard.Text, out.ActionCard.Btns[0].Title}, []string{nickText, msgText + mention, msgText}
			urls = []string{out.ActionCard.Btns[0].ActionURL}
		case "feed_card":
			got, want = []string{out.FeedCard.Links[0].Title}, []string{msgText}
			urls = []string{out.FeedCard.Links[0].MessageURL}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("the reply says %q, want %q", got, want)
		}
		for _, raw := range urls {
			u, err := url.Parse(raw)
			if err != nil || u.Host != "example.com" || u.Fragment != "" || len(u.Query()) != 1 || u.Query().Get("q") != msgText {
				t.Fatalf("the URL %q does not carry the text %q as its one query value", raw, msgText)
			}
		}
		if rh.AtSender && id != "" {
			ids := out.At.AtUserIDs
			if in.SenderStaffID == "" {
				ids = out.At.AtDingtalkIDs
			}
			if len(ids) != 1 || ids[0] != id {
				t.Fatalf("mentions %+v, want %q", out.At, id)
			}
		}
	})
}

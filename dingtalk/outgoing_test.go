package dingtalk

import (
	"encoding/json"
	"errors"
	"testing"
)

func mustMarshal(t *testing.T, o *OutgoingMessage) string {
	t.Helper()
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Each shape as the protocol notes ("Replying") show it; empty optional
// fields are left out.
func TestOutgoingMessageJSON(t *testing.T) {
	cases := []struct {
		name string
		msg  *OutgoingMessage
		want string
	}{
		{"text", NewText("hi"), `{"msgtype":"text","text":{"content":"hi"}}`},
		{"markdown", NewMarkdown("Weather", "#### Hangzhou\n> 9°C"),
			`{"msgtype":"markdown","markdown":{"title":"Weather","text":"#### Hangzhou\n\u003e 9°C"}}`},
		{"link", NewLink("T", "body", "https://example.com/m", "https://example.com/p.png"),
			`{"msgtype":"link","link":{"title":"T","text":"body","picUrl":"https://example.com/p.png","messageUrl":"https://example.com/m"}}`},
		{"link without picture", NewLink("T", "body", "https://example.com/m", ""),
			`{"msgtype":"link","link":{"title":"T","text":"body","messageUrl":"https://example.com/m"}}`},
		{"single actionCard", NewSingleActionCard("T", "markdown", "Read", "https://example.com/r"),
			`{"msgtype":"actionCard","actionCard":{"title":"T","text":"markdown","singleTitle":"Read","singleURL":"https://example.com/r"}}`},
		{"multi-button actionCard", NewActionCard("T", "markdown",
			ActionCardButton{Title: "A", ActionURL: "https://example.com/a"},
			ActionCardButton{Title: "B", ActionURL: "https://example.com/b"}),
			`{"msgtype":"actionCard","actionCard":{"title":"T","text":"markdown","btns":[{"title":"A","actionURL":"https://example.com/a"},{"title":"B","actionURL":"https://example.com/b"}]}}`},
		{"horizontal buttons", func() *OutgoingMessage {
			o := NewActionCard("T", "m", ActionCardButton{Title: "A", ActionURL: "https://example.com/a"})
			o.ActionCard.BtnOrientation = "1"
			return o
		}(), `{"msgtype":"actionCard","actionCard":{"title":"T","text":"m","btnOrientation":"1","btns":[{"title":"A","actionURL":"https://example.com/a"}]}}`},
		{"feedCard", NewFeedCard(
			FeedCardLink{Title: "T1", MessageURL: "https://example.com/1", PicURL: "https://example.com/1.png"},
			FeedCardLink{Title: "T2", MessageURL: "https://example.com/2", PicURL: "https://example.com/2.png"}),
			`{"msgtype":"feedCard","feedCard":{"links":[{"title":"T1","messageURL":"https://example.com/1","picURL":"https://example.com/1.png"},{"title":"T2","messageURL":"https://example.com/2","picURL":"https://example.com/2.png"}]}}`},
		{"empty", NewEmpty(), `{"msgtype":"empty"}`},
		{"text at all", func() *OutgoingMessage {
			o := NewText("meeting now")
			if err := o.MentionAll(); err != nil {
				t.Fatal(err)
			}
			return o
		}(), `{"msgtype":"text","text":{"content":"meeting now"},"at":{"isAtAll":true}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := mustMarshal(t, c.msg); got != c.want {
				t.Errorf("JSON:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestMentionSender(t *testing.T) {
	staff := &Message{SenderID: "$:LWCP_v1:$sender", SenderStaffID: "user123"}
	external := &Message{SenderID: "$:LWCP_v1:$sender"}
	cases := []struct {
		name string
		msg  *OutgoingMessage
		in   *Message
		want string
	}{
		{"text by staff id", NewText("hi"), staff,
			`{"msgtype":"text","text":{"content":"hi @user123"},"at":{"atUserIds":["user123"]}}`},
		{"text by DingTalk id without a staff id", NewText("hi"), external,
			`{"msgtype":"text","text":{"content":"hi @$:LWCP_v1:$sender"},"at":{"atDingtalkIds":["$:LWCP_v1:$sender"]}}`},
		{"markdown", NewMarkdown("W", "#### Hangzhou"), staff,
			`{"msgtype":"markdown","markdown":{"title":"W","text":"#### Hangzhou @user123"},"at":{"atUserIds":["user123"]}}`},
		{"actionCard", NewSingleActionCard("T", "body", "Read", "https://example.com"), staff,
			`{"msgtype":"actionCard","actionCard":{"title":"T","text":"body @user123","singleTitle":"Read","singleURL":"https://example.com"},"at":{"atUserIds":["user123"]}}`},
		{"empty text gets no leading space", NewText(""), staff,
			`{"msgtype":"text","text":{"content":"@user123"},"at":{"atUserIds":["user123"]}}`},
		{"no sender id at all leaves the message alone", NewText("hi"), &Message{},
			`{"msgtype":"text","text":{"content":"hi"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.msg.MentionSender(c.in); err != nil {
				t.Fatal(err)
			}
			if got := mustMarshal(t, c.msg); got != c.want {
				t.Errorf("JSON:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestTypesWithoutMentions(t *testing.T) {
	for _, o := range []*OutgoingMessage{
		NewLink("T", "b", "https://example.com", ""),
		NewFeedCard(FeedCardLink{Title: "T", MessageURL: "https://example.com", PicURL: "https://example.com/p"}),
		NewEmpty(),
	} {
		before := mustMarshal(t, o)
		if CanMention(o.MsgType) {
			t.Errorf("CanMention(%q) = true", o.MsgType)
		}
		if err := o.MentionSender(&Message{SenderStaffID: "user123"}); !errors.Is(err, ErrCannotMention) {
			t.Errorf("%s: MentionSender error %v, want ErrCannotMention", o.MsgType, err)
		}
		if err := o.MentionAll(); !errors.Is(err, ErrCannotMention) {
			t.Errorf("%s: MentionAll error %v, want ErrCannotMention", o.MsgType, err)
		}
		if after := mustMarshal(t, o); after != before {
			t.Errorf("%s changed by a refused mention: %s", o.MsgType, after)
		}
	}
	for _, typ := range []string{MsgTypeText, MsgTypeMarkdown, MsgTypeActionCard} {
		if !CanMention(typ) {
			t.Errorf("CanMention(%q) = false", typ)
		}
	}
}

// User text goes into the structs as it is; the encoding keeps it exact.
func TestOutgoingMessageCarriesHostileTextExactly(t *testing.T) {
	hostile := "\"quoted\" back\\slash\nnew line </script> 😀 \u2028 {http.dingtalk.text}"
	o := NewMarkdown(hostile, hostile)
	if err := o.MentionSender(&Message{SenderStaffID: hostile}); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("invalid JSON: %s", data)
	}
	var back OutgoingMessage
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Markdown.Title != hostile || back.Markdown.Text != hostile+" @"+hostile || back.At.AtUserIDs[0] != hostile {
		t.Fatalf("decoded message differs: %+v", back.Markdown)
	}
}

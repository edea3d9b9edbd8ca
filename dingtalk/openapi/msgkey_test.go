package openapi_test

import (
	"errors"
	"maps"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

func TestFromOutgoingMapsEveryType(t *testing.T) {
	btn := func(n string) dingtalk.ActionCardButton {
		return dingtalk.ActionCardButton{Title: n, ActionURL: "https://x/" + n}
	}
	mentioned := dingtalk.NewText("hi")
	if err := mentioned.MentionSender(&dingtalk.Message{SenderStaffID: "user123"}); err != nil {
		t.Fatal(err)
	}
	sideBySide := dingtalk.NewActionCard("T", "body", btn("a"), btn("b"))
	sideBySide.ActionCard.BtnOrientation = "1"
	for name, tc := range map[string]struct {
		in    *dingtalk.OutgoingMessage
		key   string
		param map[string]string
	}{
		"text":     {dingtalk.NewText("hello"), "sampleText", map[string]string{"content": "hello"}},
		"text @":   {mentioned, "sampleText", map[string]string{"content": "hi @user123"}},
		"markdown": {dingtalk.NewMarkdown("T", "# x"), "sampleMarkdown", map[string]string{"title": "T", "text": "# x"}},
		"link": {dingtalk.NewLink("T", "body", "https://m", "https://p"), "sampleLink",
			map[string]string{"title": "T", "text": "body", "messageUrl": "https://m", "picUrl": "https://p"}},
		"single action card": {dingtalk.NewSingleActionCard("T", "body", "Read", "https://r"), "sampleActionCard",
			map[string]string{"title": "T", "text": "body", "singleTitle": "Read", "singleURL": "https://r"}},
		"one button": {dingtalk.NewActionCard("T", "body", btn("a")), "sampleActionCard",
			map[string]string{"title": "T", "text": "body", "singleTitle": "a", "singleURL": "https://x/a"}},
		"three buttons": {dingtalk.NewActionCard("T", "body", btn("a"), btn("b"), btn("c")), "sampleActionCard3",
			map[string]string{"title": "T", "text": "body", "actionTitle1": "a", "actionURL1": "https://x/a",
				"actionTitle2": "b", "actionURL2": "https://x/b", "actionTitle3": "c", "actionURL3": "https://x/c"}},
		"two buttons side by side": {sideBySide, "sampleActionCard6",
			map[string]string{"title": "T", "text": "body", "buttonTitle1": "a", "buttonUrl1": "https://x/a", "buttonTitle2": "b", "buttonUrl2": "https://x/b"}},
		"six buttons": {dingtalk.NewActionCard("T", "body", btn("a"), btn("b"), btn("c"), btn("d"), btn("e"), btn("f")), "sampleMarkdown",
			map[string]string{"title": "T", "text": "body\n\n[a](https://x/a)\n\n[b](https://x/b)\n\n[c](https://x/c)\n\n[d](https://x/d)\n\n[e](https://x/e)\n\n[f](https://x/f)"}},
		"feed card": {dingtalk.NewFeedCard(
			dingtalk.FeedCardLink{Title: "One", MessageURL: "https://1", PicURL: "https://p1"},
			dingtalk.FeedCardLink{Title: "Two", MessageURL: "https://2"}), "sampleMarkdown",
			map[string]string{"title": "One", "text": "![](https://p1)\n[One](https://1)\n\n[Two](https://2)"}},
	} {
		got, err := openapi.FromOutgoing(tc.in)
		if err != nil || got.Key != tc.key || !maps.Equal(got.Param, tc.param) {
			t.Errorf("%s: FromOutgoing = %+v, %v; want %s %v", name, got, err, tc.key, tc.param)
		}
	}
	for _, o := range []*dingtalk.OutgoingMessage{dingtalk.NewEmpty(), {MsgType: "image"}} {
		if _, err := openapi.FromOutgoing(o); !errors.Is(err, openapi.ErrNoEquivalent) {
			t.Errorf("%s: err = %v, want ErrNoEquivalent", o.MsgType, err)
		}
	}
}

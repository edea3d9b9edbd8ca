package openapi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// ErrNoEquivalent is returned for a message the OpenAPI has no template for:
// the empty message (nothing to send) and types this package does not know.
var ErrNoEquivalent = errors.New("the message has no OpenAPI equivalent")

// maxActionCardButtons is the most buttons a sampleActionCardN template has.
const maxActionCardButtons = 5

// FromOutgoing converts a webhook-style message into the OpenAPI's robot
// message templates:
//
//   - text → sampleText {content}
//   - markdown → sampleMarkdown {title, text}
//   - link → sampleLink {title, text, picUrl, messageUrl}
//   - actionCard with one button (singleTitle/singleURL, or one btn) →
//     sampleActionCard {title, text, singleTitle, singleURL}
//   - actionCard with 2 side-by-side buttons (btnOrientation "1") →
//     sampleActionCard6 {title, text, buttonTitle1, buttonUrl1, buttonTitle2, buttonUrl2}
//   - actionCard with 2 to 5 buttons → sampleActionCard2..5
//     {title, text, actionTitle1, actionURL1, ...}
//   - actionCard with more buttons, or none → sampleMarkdown: its text,
//     then each button as a markdown link on its own line
//   - feedCard, which has no template → sampleMarkdown: each entry as a
//     markdown link with its picture, titled by the first entry
//
// @s have no place in the templates: the "@name" in a text stays as
// written but notifies nobody. The empty message and unknown types give
// ErrNoEquivalent.
func FromOutgoing(o *dingtalk.OutgoingMessage) (Msg, error) {
	switch {
	case o.MsgType == dingtalk.MsgTypeText && o.Text != nil:
		return Msg{Key: "sampleText", Param: map[string]string{"content": o.Text.Content}}, nil
	case o.MsgType == dingtalk.MsgTypeMarkdown && o.Markdown != nil:
		return markdownMsg(o.Markdown.Title, o.Markdown.Text), nil
	case o.MsgType == dingtalk.MsgTypeLink && o.Link != nil:
		l := o.Link
		return Msg{Key: "sampleLink", Param: map[string]string{
			"title": l.Title, "text": l.Text, "picUrl": l.PicURL, "messageUrl": l.MessageURL,
		}}, nil
	case o.MsgType == dingtalk.MsgTypeActionCard && o.ActionCard != nil:
		return actionCardMsg(o.ActionCard), nil
	case o.MsgType == dingtalk.MsgTypeFeedCard && o.FeedCard != nil:
		return feedCardMsg(o.FeedCard), nil
	}
	return Msg{}, fmt.Errorf("%w: msgtype %q", ErrNoEquivalent, o.MsgType)
}

func markdownMsg(title, text string) Msg {
	return Msg{Key: "sampleMarkdown", Param: map[string]string{"title": title, "text": text}}
}

func actionCardMsg(c *dingtalk.ActionCard) Msg {
	buttons := c.Btns
	if c.SingleURL != "" || c.SingleTitle != "" {
		buttons = []dingtalk.ActionCardButton{{Title: c.SingleTitle, ActionURL: c.SingleURL}}
	}
	param := map[string]string{"title": c.Title, "text": c.Text}
	switch n := len(buttons); {
	case n == 1:
		param["singleTitle"], param["singleURL"] = buttons[0].Title, buttons[0].ActionURL
		return Msg{Key: "sampleActionCard", Param: param}
	case n == 2 && c.BtnOrientation == "1":
		for i, b := range buttons {
			param["buttonTitle"+strconv.Itoa(i+1)], param["buttonUrl"+strconv.Itoa(i+1)] = b.Title, b.ActionURL
		}
		return Msg{Key: "sampleActionCard6", Param: param}
	case n >= 2 && n <= maxActionCardButtons:
		for i, b := range buttons {
			param["actionTitle"+strconv.Itoa(i+1)], param["actionURL"+strconv.Itoa(i+1)] = b.Title, b.ActionURL
		}
		return Msg{Key: "sampleActionCard" + strconv.Itoa(n), Param: param}
	}
	var text strings.Builder
	text.WriteString(c.Text)
	for _, b := range buttons {
		fmt.Fprintf(&text, "\n\n[%s](%s)", b.Title, b.ActionURL)
	}
	return markdownMsg(c.Title, text.String())
}

func feedCardMsg(f *dingtalk.FeedCard) Msg {
	title := ""
	var text strings.Builder
	for i, l := range f.Links {
		if i == 0 {
			title = l.Title
		} else {
			text.WriteString("\n\n")
		}
		if l.PicURL != "" {
			fmt.Fprintf(&text, "![](%s)\n", l.PicURL)
		}
		fmt.Fprintf(&text, "[%s](%s)", l.Title, l.MessageURL)
	}
	return markdownMsg(title, text.String())
}

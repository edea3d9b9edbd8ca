package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

func init() {
	caddy.RegisterModule(Reply{})
}

// replyType is what a configured reply type sends and which fields it uses.
type replyType struct {
	msgType  string
	required []string
	optional []string
}

// replyTypes are the types a reply can be configured with.
var replyTypes = map[string]replyType{
	"text":        {dingtalk.MsgTypeText, []string{"text"}, nil},
	"markdown":    {dingtalk.MsgTypeMarkdown, []string{"title", "text"}, nil},
	"link":        {dingtalk.MsgTypeLink, []string{"title", "text", "url"}, []string{"pic"}},
	"action_card": {dingtalk.MsgTypeActionCard, []string{"title", "text"}, []string{"url", "button"}},
	"feed_card":   {dingtalk.MsgTypeFeedCard, []string{"link"}, nil},
	"empty":       {dingtalk.MsgTypeEmpty, nil, nil},
}

// replyTypeNames lists the reply types for error messages, in a stable order.
const replyTypeNames = "text, markdown, link, action_card, feed_card or empty"

// defaultSingleTitle labels the one button of an action_card configured
// with a url. A single `button` gives a card a button with another label.
const defaultSingleTitle = "Read more"

// Reply answers a DingTalk callback that the dingtalk handler verified
// earlier in the route with a message built from its configuration: status
// 200, Content-Type application/json, the body a DingTalk message.
//
// Placeholders are expanded in every string, separately, before the message
// is encoded as JSON: values such as `{http.dingtalk.sender_nick}` or
// `{http.dingtalk.text}` are user text and may contain quotes, backslashes
// or newlines; they reach DingTalk exactly as typed, and the answer is
// always valid JSON.
//
// Without a verified callback in the request (no dingtalk handler before it
// in the same route) it fails with status 500.
type Reply struct {
	// The message type: text, markdown, link, action_card, feed_card or
	// empty (DingTalk's "no reply").
	Type string `json:"type"`

	// The title of a markdown message (shown in notifications), of a link
	// or of an action_card. Required for those types.
	Title string `json:"title,omitempty"`

	// The content of a text message, the markdown of a markdown message or
	// of an action_card, or the description of a link. Required for text,
	// markdown, link and action_card.
	Text string `json:"text,omitempty"`

	// Where a link message leads (its messageUrl; required for link), or
	// where the one button of an action_card leads (its singleURL; the
	// button is labelled "Read more"). An action_card needs this or buttons.
	URL string `json:"url,omitempty"`

	// The picture of a link message (its picUrl). Optional.
	Pic string `json:"pic,omitempty"`

	// The buttons of an action_card, each leading to its own URL.
	Buttons []ReplyButton `json:"buttons,omitempty"`

	// The entries of a feed_card. Required for feed_card.
	Links []ReplyLink `json:"links,omitempty"`

	// @-mentions the sender: by staff id (senderStaffId) when the callback
	// has one, else by DingTalk id (senderId), as external users and robots
	// not yet published have no staff id. The id is appended to the text as
	// `@<id>`, without which DingTalk does not render the mention. Only text,
	// markdown and action_card replies can mention.
	AtSender bool `json:"at_sender,omitempty"`

	// @-mentions everyone in the group. Only text, markdown and action_card
	// replies can mention.
	AtAll bool `json:"at_all,omitempty"`

	logger *zap.Logger
}

// ReplyButton is one button of an action_card.
type ReplyButton struct {
	// The button's label.
	Title string `json:"title"`

	// Where the button leads (its actionURL).
	URL string `json:"url"`
}

// ReplyLink is one entry of a feed_card.
type ReplyLink struct {
	// The entry's title.
	Title string `json:"title"`

	// Where the entry leads (its messageURL).
	URL string `json:"url"`

	// The entry's picture (its picURL).
	Pic string `json:"pic"`
}

// CaddyModule returns the Caddy module information.
func (Reply) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.dingtalk_reply",
		New: func() caddy.Module { return new(Reply) },
	}
}

// Provision sets up the logger.
func (rh *Reply) Provision(ctx caddy.Context) error {
	rh.logger = ctx.Logger()
	return nil
}

// Validate checks that the reply has what its type requires, and nothing it
// cannot carry.
func (rh *Reply) Validate() error {
	return rh.check()
}

// check is Validate without the module's name, for Caddyfile errors, which
// Caddy prefixes with the directive.
func (rh *Reply) check() error {
	typ, known := replyTypes[rh.Type]
	if !known {
		return fmt.Errorf("unknown type %q (want %s)", rh.Type, replyTypeNames)
	}
	set := map[string]bool{
		"title": rh.Title != "", "text": rh.Text != "", "url": rh.URL != "", "pic": rh.Pic != "",
		"button": len(rh.Buttons) > 0, "link": len(rh.Links) > 0,
	}
	for _, field := range typ.required {
		if !set[field] {
			return fmt.Errorf("%s reply needs a %s", article(rh.Type), field)
		}
	}
	for _, field := range []string{"title", "text", "url", "pic", "button", "link"} {
		if set[field] && !slices.Contains(typ.required, field) && !slices.Contains(typ.optional, field) {
			return fmt.Errorf("%s reply takes no %s", article(rh.Type), field)
		}
	}
	if rh.Type == "action_card" && set["url"] == set["button"] {
		return errors.New("an action_card needs either a url (one button for the card) or buttons, not both")
	}
	for i, b := range rh.Buttons {
		if b.Title == "" || b.URL == "" {
			return fmt.Errorf("button %d needs a title and a url", i+1)
		}
	}
	for i, l := range rh.Links {
		if l.Title == "" || l.URL == "" || l.Pic == "" {
			return fmt.Errorf("link %d needs a title, a url and a pic", i+1)
		}
	}
	if (rh.AtSender || rh.AtAll) && !dingtalk.CanMention(typ.msgType) {
		return fmt.Errorf("%s reply cannot @ anyone (at_sender, at_all)", article(rh.Type))
	}
	return nil
}

// article puts "a" or "an" before a reply type, for error messages.
func article(replyType string) string {
	if replyType == "empty" || replyType == "action_card" {
		return "an " + replyType
	}
	return "a " + replyType
}

// errNotVerified is why a reply without a verified callback fails.
var errNotVerified = errors.New("dingtalk_reply: no verified DingTalk callback in this request")

// ServeHTTP answers with the configured message. It does not call next.
func (rh *Reply) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	v, ok := VerifiedFrom(r.Context())
	if !ok {
		rh.logger.Error("dingtalk_reply reached without a verified DingTalk callback: "+
			"put the dingtalk handler before it in the same route",
			zap.String("remote_addr", clientAddr(r)),
			zap.String("uri", r.RequestURI))
		return caddyhttp.Error(http.StatusInternalServerError, errNotVerified)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	msg, err := rh.message(repl, v.Message)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	// AppendJSON replaces invalid UTF-8 with U+FFFD, as json.Marshal
	// does: the body is always valid JSON. It is encoded on the stack,
	// when it fits, and copied to the heap at its size: the response
	// writer's interface makes whatever it is given escape.
	// Benchmark: BenchmarkReplyText.
	var room [512]byte
	return writeJSON(w, http.StatusOK, bytes.Clone(msg.AppendJSON(room[:0])))
}

// message builds the reply to in. Each configured string is expanded on its
// own, and the values go into Go structs, never into JSON text.
func (rh *Reply) message(repl *caddy.Replacer, in *dingtalk.Message) (*dingtalk.OutgoingMessage, error) {
	expand := func(s string) string { return repl.ReplaceKnown(s, "") }
	var msg *dingtalk.OutgoingMessage
	switch rh.Type {
	case "text":
		msg = dingtalk.NewText(expand(rh.Text))
	case "markdown":
		msg = dingtalk.NewMarkdown(expand(rh.Title), expand(rh.Text))
	case "link":
		msg = dingtalk.NewLink(expand(rh.Title), expand(rh.Text), expand(rh.URL), expand(rh.Pic))
	case "action_card":
		if rh.URL != "" {
			msg = dingtalk.NewSingleActionCard(expand(rh.Title), expand(rh.Text), defaultSingleTitle, expand(rh.URL))
			break
		}
		buttons := make([]dingtalk.ActionCardButton, len(rh.Buttons))
		for i, b := range rh.Buttons {
			buttons[i] = dingtalk.ActionCardButton{Title: expand(b.Title), ActionURL: expand(b.URL)}
		}
		msg = dingtalk.NewActionCard(expand(rh.Title), expand(rh.Text), buttons...)
	case "feed_card":
		links := make([]dingtalk.FeedCardLink, len(rh.Links))
		for i, l := range rh.Links {
			links[i] = dingtalk.FeedCardLink{Title: expand(l.Title), MessageURL: expand(l.URL), PicURL: expand(l.Pic)}
		}
		msg = dingtalk.NewFeedCard(links...)
	default:
		msg = dingtalk.NewEmpty()
	}
	// Validate refused mentions on types that cannot carry them, so these
	// only fail on a configuration that skipped validation.
	if rh.AtSender {
		if err := msg.MentionSender(in); err != nil {
			return nil, err
		}
	}
	if rh.AtAll {
		if err := msg.MentionAll(); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Reply)(nil)
	_ caddy.Validator             = (*Reply)(nil)
	_ caddyhttp.MiddlewareHandler = (*Reply)(nil)
)

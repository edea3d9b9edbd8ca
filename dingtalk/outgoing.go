package dingtalk

import (
	"errors"
	"fmt"
)

// Message types a robot can send, as written in msgtype.
const (
	MsgTypeText       = "text"
	MsgTypeMarkdown   = "markdown"
	MsgTypeLink       = "link"
	MsgTypeActionCard = "actionCard"
	MsgTypeFeedCard   = "feedCard"
	MsgTypeEmpty      = "empty"
)

// OutgoingMessage is a message a robot sends: in the HTTP answer to a
// callback, to a sessionWebhook, or through the OpenAPI. The payload field
// named after MsgType is set; the others are nil. Build one with the New*
// functions, which is how the JSON stays in DingTalk's shape.
//
// Every string is plain data: encoding/json (and AppendJSON, which writes
// the same bytes) escapes it, so text from users (nicknames, message
// content) can be put in any field as it is.
type OutgoingMessage struct {
	MsgType    string       `json:"msgtype"`
	Text       *TextContent `json:"text,omitempty"`
	Markdown   *Markdown    `json:"markdown,omitempty"`
	Link       *Link        `json:"link,omitempty"`
	ActionCard *ActionCard  `json:"actionCard,omitempty"`
	FeedCard   *FeedCard    `json:"feedCard,omitempty"`
	At         *At          `json:"at,omitempty"`
}

// Markdown is the payload of a markdown message. Title shows in the
// notification and the chat list, Text in the chat.
type Markdown struct {
	Title string `json:"title"`
	Text  string `json:"text"`
}

// Link is the payload of a link message: a card that opens MessageURL.
type Link struct {
	Title      string `json:"title"`
	Text       string `json:"text"`
	PicURL     string `json:"picUrl,omitempty"`
	MessageURL string `json:"messageUrl"`
}

// ActionCard is the payload of an actionCard message: markdown Text with
// either one button for the whole card (SingleTitle, SingleURL) or several
// buttons (Btns).
type ActionCard struct {
	Title       string `json:"title"`
	Text        string `json:"text"`
	SingleTitle string `json:"singleTitle,omitempty"`
	SingleURL   string `json:"singleURL,omitempty"`
	// BtnOrientation is "0" for buttons stacked vertically (DingTalk's
	// default when absent) and "1" for buttons side by side.
	BtnOrientation string             `json:"btnOrientation,omitempty"`
	Btns           []ActionCardButton `json:"btns,omitempty"`
}

// ActionCardButton is one button of a multi-button actionCard.
type ActionCardButton struct {
	Title     string `json:"title"`
	ActionURL string `json:"actionURL"`
}

// FeedCard is the payload of a feedCard message: a list of links.
type FeedCard struct {
	Links []FeedCardLink `json:"links"`
}

// FeedCardLink is one entry of a feedCard. Note DingTalk's spelling of the
// URL fields, which differs from Link's.
type FeedCardLink struct {
	Title      string `json:"title"`
	MessageURL string `json:"messageURL"`
	PicURL     string `json:"picURL"`
}

// At names who a message @s. An @ only renders when the message's text also
// contains "@<id>"; MentionSender takes care of both.
type At struct {
	// AtUserIDs are staff ids (senderStaffId) inside the organisation.
	AtUserIDs []string `json:"atUserIds,omitempty"`
	// AtDingtalkIDs are DingTalk ids (senderId), for users without a staff id.
	AtDingtalkIDs []string `json:"atDingtalkIds,omitempty"`
	IsAtAll       bool     `json:"isAtAll,omitempty"`
}

// NewText returns a text message.
func NewText(content string) *OutgoingMessage {
	return &OutgoingMessage{MsgType: MsgTypeText, Text: &TextContent{Content: content}}
}

// NewMarkdown returns a markdown message.
func NewMarkdown(title, text string) *OutgoingMessage {
	return &OutgoingMessage{MsgType: MsgTypeMarkdown, Markdown: &Markdown{Title: title, Text: text}}
}

// NewLink returns a link message; picURL may be empty.
func NewLink(title, text, messageURL, picURL string) *OutgoingMessage {
	return &OutgoingMessage{MsgType: MsgTypeLink, Link: &Link{Title: title, Text: text, MessageURL: messageURL, PicURL: picURL}}
}

// NewSingleActionCard returns an actionCard whose one button, labelled
// singleTitle, opens singleURL.
func NewSingleActionCard(title, text, singleTitle, singleURL string) *OutgoingMessage {
	return &OutgoingMessage{MsgType: MsgTypeActionCard, ActionCard: &ActionCard{
		Title: title, Text: text, SingleTitle: singleTitle, SingleURL: singleURL,
	}}
}

// NewActionCard returns an actionCard with one button per entry of buttons.
func NewActionCard(title, text string, buttons ...ActionCardButton) *OutgoingMessage {
	return &OutgoingMessage{MsgType: MsgTypeActionCard, ActionCard: &ActionCard{Title: title, Text: text, Btns: buttons}}
}

// NewFeedCard returns a feedCard of links.
func NewFeedCard(links ...FeedCardLink) *OutgoingMessage {
	return &OutgoingMessage{MsgType: MsgTypeFeedCard, FeedCard: &FeedCard{Links: links}}
}

// NewEmpty returns the empty message, which means "no reply".
func NewEmpty() *OutgoingMessage {
	return &OutgoingMessage{MsgType: MsgTypeEmpty}
}

// ErrCannotMention is returned when a message of a type that has no @ (link,
// feedCard, empty) is asked to @ someone.
var ErrCannotMention = errors.New("this message type cannot @ anyone")

// CanMention reports whether messages of msgType can @ users: text, markdown
// and actionCard can; link, feedCard and empty cannot.
func CanMention(msgType string) bool {
	switch msgType {
	case MsgTypeText, MsgTypeMarkdown, MsgTypeActionCard:
		return true
	}
	return false
}

// MentionSender makes o @ the sender of in: by staff id (at.atUserIds) when
// the callback has one, else by DingTalk id (at.atDingtalkIds), which is all
// external users and robots not yet published have. It appends " @<id>" to
// the text, without which DingTalk does not render the @. A callback without
// any sender id leaves o unchanged.
func (o *OutgoingMessage) MentionSender(in *Message) error {
	text := o.mentionText()
	if text == nil {
		return fmt.Errorf("%w: %s", ErrCannotMention, o.MsgType)
	}
	var id string
	switch {
	case in.SenderStaffID != "":
		id = in.SenderStaffID
		o.at().AtUserIDs = append(o.at().AtUserIDs, id)
	case in.SenderID != "":
		id = in.SenderID
		o.at().AtDingtalkIDs = append(o.at().AtDingtalkIDs, id)
	default:
		return nil
	}
	if *text == "" {
		*text = "@" + id
	} else {
		*text = *text + " @" + id // one concatenation: one allocation (BenchmarkReplyText)
	}
	return nil
}

// MentionAll makes o @ everyone in the group.
func (o *OutgoingMessage) MentionAll() error {
	if o.mentionText() == nil {
		return fmt.Errorf("%w: %s", ErrCannotMention, o.MsgType)
	}
	o.at().IsAtAll = true
	return nil
}

// mentionText returns the text an @ must appear in, or nil when o's type
// cannot @ anyone.
func (o *OutgoingMessage) mentionText() *string {
	switch {
	case o.MsgType == MsgTypeText && o.Text != nil:
		return &o.Text.Content
	case o.MsgType == MsgTypeMarkdown && o.Markdown != nil:
		return &o.Markdown.Text
	case o.MsgType == MsgTypeActionCard && o.ActionCard != nil:
		return &o.ActionCard.Text
	}
	return nil
}

func (o *OutgoingMessage) at() *At {
	if o.At == nil {
		o.At = &At{}
	}
	return o.At
}

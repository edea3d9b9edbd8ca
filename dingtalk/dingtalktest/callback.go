// Package dingtalktest builds realistic DingTalk robot callbacks and runs
// fake peers (a recording upstream, a fake DingTalk sessionWebhook, a fake
// OpenAPI, a fake Stream server) for tests, benchmarks and the `caddy
// dingtalk` command.
package dingtalktest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// Callback describes a callback; zero fields get realistic defaults.
type Callback struct {
	// MsgType is text (the default), picture, richText, audio, video or
	// file, each as DingTalk sends it; another one is sent without content.
	MsgType string
	// Text is a text's content, a richText's text part and an audio's
	// recognition; picture, video and file carry none.
	Text string
	// DownloadCode is the media's downloadCode; default: a fresh one.
	DownloadCode   string
	Group          bool
	MsgID          string // default: a fresh random id
	SenderNick     string // default: "Zhang San"
	SenderStaffID  string // default: "user123"; set Anonymous for an external user
	Anonymous      bool   // no senderStaffId, as for external users
	RobotCode      string // default: "dingrobot1"
	SessionWebhook string // default: DingTalk's URL with a random session
	Now            time.Time
}

// NewMsgID returns a fresh msgId shaped like DingTalk's.
func NewMsgID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "msg" + base64.StdEncoding.EncodeToString(b[:])
}

// Message returns the callback as a dingtalk.Message with every field of
// the protocol notes set.
func (c Callback) Message() dingtalk.Message {
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	m := dingtalk.Message{
		MsgType:                   "text",
		MsgID:                     or(c.MsgID, NewMsgID()),
		Text:                      &dingtalk.TextContent{Content: c.Text},
		CreateAt:                  dingtalk.Millis(now.UnixMilli()),
		ConversationType:          "1",
		ConversationID:            "cidSingle123==",
		SenderID:                  "$:LWCP_v1:$sender",
		SenderNick:                or(c.SenderNick, "Zhang San"),
		SenderStaffID:             or(c.SenderStaffID, "user123"),
		SenderCorpID:              "dingcorp1",
		SessionWebhook:            or(c.SessionWebhook, "https://oapi.dingtalk.com"+WebhookPath+"?session="+NewSession()),
		SessionWebhookExpiredTime: dingtalk.Millis(now.Add(90 * time.Minute).UnixMilli()),
		IsAdmin:                   true,
		ChatbotCorpID:             "dingcorp1",
		ChatbotUserID:             "$:LWCP_v1:$bot",
		RobotCode:                 or(c.RobotCode, "dingrobot1"),
	}
	if c.Anonymous {
		m.SenderStaffID = ""
	}
	if c.Group {
		m.ConversationType = "2"
		m.ConversationID = "cidGroup123=="
		m.ConversationTitle = "robot test"
		m.IsInAtList = true
		m.AtUsers = []dingtalk.AtUser{{DingtalkID: m.ChatbotUserID}}
		m.Text.Content = " " + c.Text // the @mention is stripped, its space stays
	}
	if c.MsgType != "" && c.MsgType != dingtalk.MsgTypeText {
		m.MsgType, m.Text, m.Content = c.MsgType, nil, mediaContent(c)
	}
	return m
}

// Body returns the callback's JSON body.
func (c Callback) Body() []byte {
	body, err := json.Marshal(c.Message())
	if err != nil {
		panic(err) // a Message always marshals
	}
	return body
}

// Headers returns the timestamp and sign headers for secret at now.
func Headers(secret string, now time.Time) http.Header {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	h := http.Header{}
	h.Set(dingtalk.HeaderTimestamp, ts)
	h.Set(dingtalk.HeaderSign, dingtalk.Sign(secret, ts))
	return h
}

// NewRequest returns a POST of body to url, signed with secret at now.
func NewRequest(url, secret string, body []byte, now time.Time) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range Headers(secret, now) {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	return req, nil
}

func or(value, fallback string) string {
	if value != "" {
		return value
	}
	return fallback
}

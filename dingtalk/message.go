package dingtalk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Message is the body of a robot callback. Every field comes from the
// unsigned body: it is only as trustworthy as the sign's time window is short.
type Message struct {
	MsgType string `json:"msgtype"`
	MsgID   string `json:"msgId"`

	// Text is set for msgtype "text"; Content holds the other types' payload
	// (picture, richText, audio, video, file, unknownMsgType) as received.
	Text    *TextContent    `json:"text,omitempty"`
	Content json.RawMessage `json:"content,omitempty"`

	CreateAt Millis `json:"createAt"`

	// ConversationType is "1" for a one-to-one chat and "2" for a group.
	ConversationType  string `json:"conversationType"`
	ConversationID    string `json:"conversationId"`
	ConversationTitle string `json:"conversationTitle,omitempty"`

	SenderID       string `json:"senderId"`
	SenderNick     string `json:"senderNick"`
	SenderStaffID  string `json:"senderStaffId,omitempty"`
	SenderCorpID   string `json:"senderCorpId,omitempty"`
	SenderUnionID  string `json:"senderUnionId,omitempty"`
	SenderPlatform string `json:"senderPlatform,omitempty"`

	SessionWebhook            string `json:"sessionWebhook"`
	SessionWebhookExpiredTime Millis `json:"sessionWebhookExpiredTime"`

	IsAdmin       bool     `json:"isAdmin"`
	IsInAtList    bool     `json:"isInAtList"`
	AtUsers       []AtUser `json:"atUsers,omitempty"`
	ChatbotCorpID string   `json:"chatbotCorpId,omitempty"`
	ChatbotUserID string   `json:"chatbotUserId,omitempty"`
	RobotCode     string   `json:"robotCode,omitempty"`
}

// TextContent is the payload of a text message.
type TextContent struct {
	Content string `json:"content"`
}

// AtUser is one user mentioned in a group message.
type AtUser struct {
	DingtalkID string `json:"dingtalkId"`
	StaffID    string `json:"staffId"`
}

// Conversation types as sent in conversationType, and the words this project uses for them.
const (
	ConversationSingle = "single"
	ConversationGroup  = "group"
)

// ErrInvalidMessage wraps every reason ParseMessage rejects a body.
var ErrInvalidMessage = errors.New("invalid callback body")

// ParseMessage decodes a callback body. It requires a JSON object with
// non-empty msgtype and msgId strings; numbers that DingTalk documents as
// strings but sends as numbers (or the reverse) are accepted either way.
// It refuses bodies that another parser could read differently (a
// top-level key twice, or a field's key in other letter case) and bodies
// nested deeper than any DingTalk message.
func ParseMessage(body []byte) (*Message, error) {
	return ParseMessageString(string(body))
}

// ParseMessageString is ParseMessage for a body held in a string: the
// message's strings are parts of it, not copies.
func ParseMessageString(body string) (*Message, error) {
	return new(MessageBuffer).Parse(body)
}

// MessageBuffer is the room a parsed message takes: the message, its text
// and its first mentions. A caller that keeps other things about each
// message can allocate it with them, in one piece.
type MessageBuffer struct{ parts messageParts }

// Parse is ParseMessageString into b, which it overwrites: the message
// returned lives in b.
func (b *MessageBuffer) Parse(body string) (*Message, error) {
	b.parts = messageParts{}
	m := &b.parts.m
	decoded, shapeChecked := decodeMessage(body, &b.parts)
	if !decoded {
		*m = Message{}
		if err := json.Unmarshal([]byte(body), m); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalidMessage, describeJSONError(err))
		}
	}
	if !shapeChecked {
		if err := checkShape(body); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
		}
	}
	if m.MsgType == "" {
		return nil, fmt.Errorf("%w: no msgtype", ErrInvalidMessage)
	}
	if m.MsgID == "" {
		return nil, fmt.Errorf("%w: no msgId", ErrInvalidMessage)
	}
	return m, nil
}

// describeJSONError names the problem without echoing body content, which is
// user text and may be large.
func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("field %q has the wrong type (%s)", typeErr.Field, typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Sprintf("malformed JSON at byte %d", syntaxErr.Offset)
	}
	if errors.Is(err, errBadMillis) {
		return err.Error()
	}
	return "malformed JSON"
}

// TrimmedText returns the text of a text message, trimmed: in groups DingTalk
// strips the @mention and leaves a leading space. A richText gives its text
// parts concatenated (HasMedia tells whether it has pictures too); other
// types give "".
func (m *Message) TrimmedText() string {
	if m.Text == nil {
		if m.MsgType == MsgTypeRichText {
			return m.richTextText()
		}
		return ""
	}
	return strings.TrimSpace(m.Text.Content)
}

// Conversation returns "single", "group", or conversationType as received when it is neither.
func (m *Message) Conversation() string {
	switch m.ConversationType {
	case "1":
		return ConversationSingle
	case "2":
		return ConversationGroup
	}
	return m.ConversationType
}

// WebhookExpired reports whether the sessionWebhook may no longer be used at now.
// A message without an expiry time is treated as expired: nothing says the
// webhook is still valid.
func (m *Message) WebhookExpired(now time.Time) bool {
	return m.SessionWebhookExpiredTime == 0 || !now.Before(time.UnixMilli(int64(m.SessionWebhookExpiredTime)))
}

// Millis is a time in milliseconds since the Unix epoch that DingTalk sends
// as a JSON number or as a decimal string.
type Millis int64

var errBadMillis = errors.New("millisecond time is neither a number nor a decimal string")

// UnmarshalJSON accepts 1613630252678, "1613630252678" and null.
func (ms *Millis) UnmarshalJSON(data []byte) error {
	if bytes.Equal(data, []byte("null")) {
		return nil
	}
	text := string(data)
	if len(data) >= 2 && data[0] == '"' {
		if err := json.Unmarshal(data, &text); err != nil {
			return errBadMillis
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return errBadMillis
	}
	*ms = Millis(n)
	return nil
}

// String gives the decimal form, as placeholders show it.
func (ms Millis) String() string {
	if ms == 0 {
		return ""
	}
	return strconv.FormatInt(int64(ms), 10)
}

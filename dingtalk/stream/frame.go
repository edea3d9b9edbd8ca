package stream

import "encoding/json"

// Frame types.
const (
	TypeSystem   = "SYSTEM"
	TypeEvent    = "EVENT"
	TypeCallback = "CALLBACK"
)

// Topics.
const (
	// TopicRobot carries robot messages: data is the same JSON body an
	// HTTP-mode robot receives, without the timestamp and sign headers.
	TopicRobot = "/v1.0/im/bot/messages/get"
	// TopicCard carries card callbacks (a button pressed on an interactive card).
	TopicCard = "/v1.0/card/instances/callback"
	// TopicAllEvents subscribes to every event the app is allowed to receive.
	TopicAllEvents = "*"
	// TopicPing and TopicDisconnect are SYSTEM frames the Client answers itself.
	TopicPing       = "ping"
	TopicDisconnect = "disconnect"
)

// Header names of a frame.
const (
	HeaderTopic         = "topic"
	HeaderMessageID     = "messageId"
	HeaderContentType   = "contentType"
	HeaderTime          = "time"
	HeaderAppID         = "appId"
	HeaderEventID       = "eventId"
	HeaderEventType     = "eventType"
	HeaderEventCorpID   = "eventCorpId"
	HeaderEventBornTime = "eventBornTime"
)

// ContentTypeJSON is the content type of every frame's and ack's data.
const ContentTypeJSON = "application/json"

// Ack codes.
const (
	CodeOK       = 200
	CodeNotFound = 404 // no handler for the frame's type and topic
	CodeError    = 500
)

// Ack data for events: SUCCESS settles the event, LATER makes DingTalk
// deliver it again.
const (
	EventSuccess = "SUCCESS"
	EventLater   = "LATER"
)

// Frame is one message DingTalk sends over the socket.
type Frame struct {
	SpecVersion string            `json:"specVersion,omitempty"`
	Type        string            `json:"type"`
	Headers     map[string]string `json:"headers"`
	// Data is a JSON document in a string: for a robot message, the
	// callback body, byte for byte.
	Data string `json:"data"`
}

// Topic returns the frame's topic header.
func (f *Frame) Topic() string { return f.Headers[HeaderTopic] }

// MessageID returns the frame's messageId header, which its ack repeats.
func (f *Frame) MessageID() string { return f.Headers[HeaderMessageID] }

// Ack is the answer to a frame, sent on the same socket.
type Ack struct {
	Code    int               `json:"code"`
	Headers map[string]string `json:"headers"`
	Message string            `json:"message"`
	Data    string            `json:"data"`
}

// MessageID returns the messageId of the frame the ack answers.
func (a *Ack) MessageID() string { return a.Headers[HeaderMessageID] }

// NewAck returns an ack with code and data for the frame with messageID.
func NewAck(messageID string, code int, data string) Ack {
	message := "OK"
	if code != CodeOK {
		message = "error"
	}
	return Ack{
		Code:    code,
		Headers: map[string]string{HeaderMessageID: messageID, HeaderContentType: ContentTypeJSON},
		Message: message,
		Data:    data,
	}
}

// CallbackAck acks a callback frame with response, the JSON of the
// callback's answer (nil for none): data is {"response":...}.
func CallbackAck(messageID string, response json.RawMessage) Ack {
	if len(response) == 0 {
		response = json.RawMessage("null")
	}
	data, err := json.Marshal(struct {
		Response json.RawMessage `json:"response"`
	}{response})
	if err != nil { // response is not valid JSON
		return NewAck(messageID, CodeError, `{"response":null}`)
	}
	return NewAck(messageID, CodeOK, string(data))
}

// EventAck acks an event frame with status EventSuccess or EventLater.
func EventAck(messageID, status string) Ack {
	data, _ := json.Marshal(struct {
		Status string `json:"status"`
	}{status})
	return NewAck(messageID, CodeOK, string(data))
}

package event

import (
	"encoding/json"
	"errors"
	"slices"
)

// Handshake event types: DingTalk sends one to a URL being registered
// (check_url for an app's subscription, the check_*_suite_url ones for a
// suite's) and accepts the URL only when it answers the encrypted success.
const (
	TypeCheckURL            = "check_url"
	TypeCheckCreateSuiteURL = "check_create_suite_url"
	TypeCheckUpdateSuiteURL = "check_update_suite_url"
)

// ErrNotEvent is a plaintext that is not a JSON object with an EventType.
var ErrNotEvent = errors.New("event plaintext is not a JSON object with an EventType")

// Event is what a receiver needs to know of a decrypted event to route and
// de-duplicate it. The plaintext itself is passed on as it is.
type Event struct {
	// Type is the EventType, such as user_add_org or bpms_instance_change.
	Type string
	// ID is the event's unique id (eventId), empty when the event has none.
	ID string
	// CorpID is the organisation the event is about, empty when not given.
	CorpID string
}

// Parse reads the plaintext of an event. It must be one JSON object with
// a non-empty string EventType. The id and corp id are read from eventId
// and CorpId in any letter case (DingTalk writes both EventId and eventId,
// CorpId and corpId), as strings or numbers; other values leave them empty.
func Parse(plaintext []byte) (Event, error) {
	var fields struct {
		EventType json.RawMessage
		EventID   json.RawMessage `json:"eventId"`
		CorpID    json.RawMessage `json:"corpId"`
	}
	// Anything but an object (or null, which leaves EventType unset) fails here.
	if err := json.Unmarshal(plaintext, &fields); err != nil {
		return Event{}, ErrNotEvent
	}
	var typ string
	if json.Unmarshal(fields.EventType, &typ) != nil || typ == "" {
		return Event{}, ErrNotEvent
	}
	return Event{Type: typ, ID: scalar(fields.EventID), CorpID: scalar(fields.CorpID)}, nil
}

// scalar is a JSON string's value or a JSON number's text; "" otherwise.
func scalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// IsHandshake reports whether the event is a URL check, which the receiver
// answers itself with the encrypted success.
func (e Event) IsHandshake() bool {
	return slices.Contains([]string{TypeCheckURL, TypeCheckCreateSuiteURL, TypeCheckUpdateSuiteURL}, e.Type)
}

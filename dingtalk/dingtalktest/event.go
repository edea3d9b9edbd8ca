package dingtalktest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

// EventBody returns an event's JSON as DingTalk pushes it: EventType,
// eventId, CorpId and TimeStamp, and any extra fields.
func EventBody(eventType, eventID, corpID string, extra map[string]any) []byte {
	fields := map[string]any{"EventType": eventType, "TimeStamp": "1800000000000"}
	if eventID != "" {
		fields["eventId"] = eventID
	}
	if corpID != "" {
		fields["CorpId"] = corpID
	}
	for k, v := range extra {
		fields[k] = v
	}
	body, err := json.Marshal(fields)
	if err != nil {
		panic(err) // the callers' values are JSON
	}
	return body
}

// NewEventRequest returns a push of plaintext to url as DingTalk sends it
// at now: encrypted and signed with c, the signature, timestamp and nonce
// in the query, {"encrypt": ...} as the body.
func NewEventRequest(url string, c *event.Crypto, plaintext []byte, now time.Time) (*http.Request, error) {
	e := c.Seal(plaintext, strconv.FormatInt(now.UnixMilli(), 10), event.NewNonce())
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(e.Body()))
	if err != nil {
		return nil, err
	}
	req.URL.RawQuery = e.Query().Encode()
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	return req, nil
}

package caddymodule

import (
	"context"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// headerEventType tells the next handler the event's type.
const headerEventType = "X-Dingtalk-Event-Type"

// eventPlaceholderPrefix starts the dingtalk_event handler's placeholders.
const eventPlaceholderPrefix = "http.dingtalk_event."

// eventVar names the request variable under which the dingtalk_event
// handler leaves the verified event for the rest of the route. Only the
// handler puts an eventValue there, so an unverified request never looks
// verified to the matcher.
const eventVar = "dingtalk.event"

// eventValue is what eventVar holds; it shows as the event's type.
type eventValue struct{ v *VerifiedEvent }

func (x eventValue) String() string { return x.v.Event.Type }

// EventFrom returns the event the dingtalk_event handler verified earlier
// in this request's route, if any.
func EventFrom(ctx context.Context) (*VerifiedEvent, bool) {
	x, ok := caddyhttp.GetVar(ctx, eventVar).(eventValue)
	return x.v, ok
}

// prepareForward hands the verified event to the rest of the route: the
// decrypted JSON as the body with its length, X-Dingtalk-* headers
// replaced by the event's type, and the event in a request variable and the
// placeholders.
func (h *EventHandler) prepareForward(r *http.Request, repl *caddy.Replacer, v *VerifiedEvent) {
	restoreBody(r, v.Body, &v.reader)
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	for name := range r.Header {
		if strings.HasPrefix(name, headerPrefix) { // keys are canonical, so the prefix test is exact
			delete(r.Header, name)
		}
	}
	r.Header.Set(headerEventType, v.Event.Type)
	repl.Map(func(key string) (any, bool) {
		switch key {
		case eventPlaceholderPrefix + "type":
			return v.Event.Type, true
		case eventPlaceholderPrefix + "id":
			return v.Event.ID, true
		case eventPlaceholderPrefix + "corp_id":
			return v.Event.CorpID, true
		}
		return nil, false
	})
	caddyhttp.SetVar(r.Context(), eventVar, eventValue{v})
}

// statusRecorder is the rest of the route's answer to an event, of which
// only the status matters: DingTalk gets the encrypted success or an
// error, never what the backend wrote. It does not unwrap to the real
// writer, so that nothing the backend does reaches DingTalk.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header {
	if s.header == nil {
		s.header = make(http.Header)
	}
	return s.header
}

func (s *statusRecorder) WriteHeader(status int) {
	if s.code == 0 && status >= 200 { // 1xx are interim answers
		s.code = status
	}
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(p), nil
}

// Flush lets a streaming backend flush; there is nothing to flush.
func (s *statusRecorder) Flush() {}

// status is the answer's status: 200 when the route wrote nothing, as net/http would answer.
func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

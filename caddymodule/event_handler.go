package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

func init() {
	caddy.RegisterModule(EventHandler{})
}

// EventHandler verifies and decrypts DingTalk's event subscription pushes
// (contacts, approvals, calendars, group changes, cards in HTTP mode) and
// passes only genuine ones on, as plain JSON. It checks, in this order and
// failing closed: the method, the presence of the signature, timestamp and
// nonce query parameters, the timestamp's window, the body's size and its
// JSON shape, the SHA-1 signature, the decryption, the owner key, and the
// event's JSON.
//
// It answers DingTalk's URL checks (check_url and the suites' handshakes)
// itself, with the encrypted "success", without running the rest of the
// route. Every other event goes to the rest of the route with the decrypted
// JSON as its body and X-Dingtalk-Event-Type set; when the route answers
// 2xx, DingTalk gets the encrypted "success" (whatever the route wrote),
// otherwise an error status, so that it delivers the event again. An event
// whose id was answered within the de-duplication TTL gets "success" again
// without reaching the route.
//
// The event is available to the rest of the route as
// `{http.dingtalk_event.*}` placeholders (type, id, corp_id) and to the
// `dingtalk_event` matcher. Rejections set
// `{http.dingtalk_event.reject_reason}`. Decisions are counted in
// `caddy_dingtalk_events_total`; the token, the aes_key and the events'
// content are never logged.
type EventHandler struct {
	// The subscription's token, from the developer console. Write it as
	// `{env.NAME}` or `{file./path}`; it is expanded when the config is
	// loaded and never logged.
	Token string `json:"token"`

	// The subscription's aes_key, 43 characters. Write it as `{env.NAME}`
	// or `{file./path}`; it is expanded when the config is loaded and
	// never logged.
	AESKey string `json:"aes_key"`

	// What every plaintext must end with: the AppKey of an internal app,
	// the suite key of a third-party app, or the corp id. A push for
	// another owner is rejected with 403. Placeholders are expanded.
	OwnerKey string `json:"owner_key"`

	// How old a push's timestamp may be. Default: 1h.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// How far ahead of this server's clock a push's timestamp may be. Default: 5m.
	MaxFuture caddy.Duration `json:"max_future,omitempty"`

	// The largest body accepted, in bytes. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// De-duplication: how long an answered event is remembered, so that
	// DingTalk's redelivery is answered "success" instead of being passed
	// on again. Events are known by their eventId; an event without one by
	// a digest of its JSON, which a redelivery repeats. A duration such as
	// "2h", or "off". Default: 2h.
	Dedupe string `json:"dedupe,omitempty"`

	// How long an event in flight is held without renewal, as in the
	// dingtalk handler: renewed while the rest of the route runs, it lapses
	// when its holder died, so that DingTalk's redelivery is passed on.
	// Default: 20s.
	Lease caddy.Duration `json:"lease,omitempty"`

	// Where answered events are remembered, as in the dingtalk handler.
	// Default: the in-memory store.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=dingtalk.stores inline_key=backend"`

	crypto   *event.Crypto
	window   dingtalk.Window
	claims   *claims // nil without de-duplication
	failOpen bool    // the store's on_error: pass events on when it fails
	logger   *zap.Logger
	now      func() time.Time
}

// CaddyModule returns the Caddy module information.
func (EventHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.dingtalk_event",
		New: func() caddy.Module { return new(EventHandler) },
	}
}

// Provision expands the secrets, sets defaults, loads the store and
// registers the module's metrics.
func (h *EventHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = time.Now
	}
	var dedupeTTL time.Duration
	var err error
	if h.window, dedupeTTL, err = setLimitDefaults(&h.MaxAge, &h.MaxFuture, &h.MaxBody, &h.Lease, h.Dedupe); err != nil {
		return err
	}

	var expanded [3]string
	for i, field := range []struct{ name, value string }{{"token", h.Token}, {"aes_key", h.AESKey}, {"owner_key", h.OwnerKey}} {
		value, err := expandSecret(field.value)
		if err != nil {
			return fmt.Errorf("%s: %v", field.name, err)
		}
		expanded[i] = value
	}
	var crypto *event.Crypto
	crypto, err = event.New(expanded[0], expanded[1], expanded[2])
	if err != nil {
		return err // names lengths, never the values
	}
	h.crypto = crypto

	if err := registerMetrics(ctx); err != nil {
		return err
	}
	for _, outcome := range []string{eventCheckURL, eventAccepted, eventDuplicate, eventAnswered, eventBackendFailed} {
		metrics.events.WithLabelValues(outcome) // shows the series at 0 before the first push
	}

	if dedupeTTL > 0 {
		store, err := loadStore(ctx, h, &h.StoreRaw)
		if err != nil {
			return err
		}
		if fo, ok := store.(FailOpener); ok {
			h.failOpen = fo.FailOpen()
		}
		h.claims = &claims{store: store, ttl: dedupeTTL, lease: time.Duration(h.Lease), now: h.now, logger: h.logger, idKey: "event_id"}
	}
	return nil
}

// Validate checks the configuration for mistakes that provisioning cannot fix.
func (h *EventHandler) Validate() error {
	if h.MaxAge < 0 || h.MaxFuture < 0 || h.Lease < 0 {
		return errors.New("max_age, max_future and lease must not be negative")
	}
	if h.MaxBody < 0 || h.MaxBody > maxMaxBody {
		return errors.New("max_body must be between 0 and 1GiB")
	}
	return nil
}

// eventRejects are the dingtalk_event handler's rejections.
var eventRejects = rejectKind{
	placeholder: eventPlaceholderPrefix + "reject_reason",
	count:       metrics.event,
	message:     "dingtalk event rejected",
}

// ServeHTTP verifies and decrypts the push and answers or passes it on, or rejects it.
func (h *EventHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	now := h.now()
	v, rj := h.verify(r, now)
	if rj != nil {
		return rejectRequest(w, r, repl, h.logger, &eventRejects, rj)
	}
	if v.Event.IsHandshake() {
		h.report(eventCheckURL, "dingtalk event URL check answered", v)
		return h.answerSuccess(w, now)
	}
	h.prepareForward(r, repl, v)
	if h.claims == nil {
		return h.passOn(w, r, v, next)
	}
	var c claim
	held, err := h.claims.claimKey(r.Context(), v.storeKey, v.Event.ID, now, &c)
	if err != nil {
		if !h.failOpen {
			return rejectRequest(w, r, repl, h.logger, &eventRejects, newRejection(http.StatusServiceUnavailable, reasonStoreDown, "", err))
		}
		h.logger.Warn("dingtalk store unavailable; event passed on without de-duplication (on_error open)",
			zap.String("event_type", v.Event.Type), zap.String("event_id", v.Event.ID), zap.Error(err))
		return h.passOn(w, r, v, next)
	}
	if !held {
		h.report(eventDuplicate, "dingtalk event is a duplicate; answered success", v)
		return h.answerSuccess(w, now)
	}
	return c.serveHeld(func() (bool, error) {
		err := h.passOn(w, r, v, next)
		return err == nil, err
	})
}

// passOn runs the rest of the route for v. Its answer goes nowhere but
// into the decision: 2xx is DingTalk's encrypted success, anything else an
// error that makes DingTalk deliver the event again (and returned, so that
// the caller releases the event's id).
func (h *EventHandler) passOn(w http.ResponseWriter, r *http.Request, v *VerifiedEvent, next caddyhttp.Handler) error {
	h.report(eventAccepted, "dingtalk event accepted", v)
	var answer statusRecorder
	err := next.ServeHTTP(&answer, r)
	if status := answer.status(); err == nil && status > 299 {
		if status < http.StatusBadRequest {
			status = http.StatusBadGateway // a 3xx is no answer either, and must not look like one
		}
		err = caddyhttp.Error(status, fmt.Errorf("dingtalk_event: the route answered %d", answer.status()))
	}
	if err != nil {
		h.report(eventBackendFailed, "dingtalk event not answered; DingTalk will deliver it again", v)
		return err
	}
	h.report(eventAnswered, "dingtalk event answered", v)
	return h.answerSuccess(w, h.now()) // the backend's time has passed
}

// answerSuccess writes DingTalk's encrypted success, timestamped now.
func (h *EventHandler) answerSuccess(w http.ResponseWriter, now time.Time) error {
	body, err := json.Marshal(h.crypto.Success(strconv.FormatInt(now.UnixMilli(), 10), event.NewNonce()))
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	return writeJSON(w, http.StatusOK, body)
}

// report counts outcome and logs msg with what identifies v: its type, id
// and corp, never its content.
func (h *EventHandler) report(outcome, msg string, v *VerifiedEvent) {
	metrics.event("", outcome)
	level := zap.InfoLevel
	if outcome == eventBackendFailed {
		level = zap.WarnLevel
	}
	if ce := h.logger.Check(level, msg); ce != nil {
		ce.Write(zap.String("event_type", v.Event.Type), zap.String("event_id", v.Event.ID), zap.String("corp_id", v.Event.CorpID))
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*EventHandler)(nil)
	_ caddy.Validator             = (*EventHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*EventHandler)(nil)
)

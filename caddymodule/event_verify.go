package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

// VerifiedEvent is an event push the dingtalk_event handler verified and
// decrypted: the event and its JSON.
type VerifiedEvent struct {
	Event event.Event
	// Body is the decrypted JSON, as the rest of the route receives it.
	Body string

	storeKey string // names the event in the store
	reader   bodyReader
}

// verify runs the checks in the documented order, at now, and returns the
// decrypted event, or the rejection saying why not.
func (h *EventHandler) verify(r *http.Request, now time.Time) (*VerifiedEvent, *rejection) {
	if r.Method != http.MethodPost {
		return nil, newRejection(http.StatusMethodNotAllowed, reasonMethod, "", errors.New("method is not POST"))
	}

	query, _ := url.ParseQuery(r.URL.RawQuery) // what parses of a bad query; what is missing is refused below
	signature, okSig := singleParam(query, event.ParamMsgSignature, event.ParamSignature)
	timestamp, okTS := singleParam(query, event.ParamTimestamp, event.ParamTimeStamp)
	nonce, okNonce := singleParam(query, event.ParamNonce, "")
	if !okSig || !okTS || !okNonce {
		return nil, newRejection(http.StatusUnauthorized, reasonMissingParams, "", errors.New("signature, timestamp or nonce parameter missing, empty or repeated"))
	}

	if rj := windowRejection(h.window.Check(timestamp, now)); rj != nil {
		return nil, rj
	}

	body, err := readBody(r, h.MaxBody)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return nil, newRejection(http.StatusRequestEntityTooLarge, reasonTooLarge, "", err)
		}
		return nil, newRejection(http.StatusBadRequest, reasonBadBody, "", err)
	}
	var push struct {
		Encrypt *string `json:"encrypt"`
	}
	if err := json.Unmarshal([]byte(body), &push); err != nil || push.Encrypt == nil || *push.Encrypt == "" {
		return nil, newRejection(http.StatusBadRequest, reasonBadBody, "", errors.New(`body is not a JSON object with an "encrypt" string`))
	}
	encrypt := *push.Encrypt

	if !h.crypto.SignatureMatches(signature, timestamp, nonce, encrypt) {
		return nil, newRejection(http.StatusUnauthorized, reasonBadSign, "", errors.New("signature is not the token's"))
	}

	plaintext, err := h.crypto.Decrypt(encrypt)
	switch {
	case errors.Is(err, event.ErrOwnerKey):
		return nil, newRejection(http.StatusForbidden, reasonOwnerKey, "", err)
	case err != nil:
		return nil, newRejection(http.StatusBadRequest, reasonBadCiphertext, "", err)
	}

	ev, err := event.Parse(plaintext)
	if err == nil && !headerSafe(ev.Type) {
		err = errors.New("the EventType cannot be sent as a header")
	}
	if err != nil {
		return nil, newRejection(http.StatusBadRequest, reasonBadPlaintext, "", err)
	}
	v := &VerifiedEvent{Event: ev, Body: string(plaintext)}
	v.storeKey = eventStoreKey(h.crypto.OwnerKey(), ev, plaintext)
	return v, nil
}

// singleParam returns the only value of the query parameter spelled name
// or alias (DingTalk has used both). A parameter that is absent, empty or
// given more than once, in either spelling, is not usable.
func singleParam(query url.Values, name, alias string) (string, bool) {
	values := append(query[name], query[alias]...)
	if len(values) != 1 || values[0] == "" {
		return "", false
	}
	return values[0], true
}

// headerSafe reports whether s can be a header value as it is: no control
// characters, which would make the proxy fail.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// eventStoreKey names an event in the store: by the owner key and the
// event's id, or, for an event without one, a digest of its JSON, which
// DingTalk's redelivery repeats (only the encryption's random prefix differs).
func eventStoreKey(ownerKey string, ev event.Event, plaintext []byte) string {
	id := ev.ID
	if id == "" {
		sum := sha256.Sum256(plaintext)
		id = "sha256:" + hex.EncodeToString(sum[:16])
	}
	return "event:" + ownerKey + ":" + id
}

package caddymodule

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// verify runs the checks in the documented order, at now, and returns the
// verified message, or the rejection saying why not. The body is read only
// after the sign matched, so forgeries cost nothing but a hash.
func (h *Handler) verify(r *http.Request, now time.Time) (*accepted, *rejection) {
	if r.Method != http.MethodPost {
		return nil, newRejection(http.StatusMethodNotAllowed, reasonMethod, "", errors.New("method is not POST"))
	}

	timestamp, okTS := singleHeader(r.Header, timestampKey)
	sign, okSign := singleHeader(r.Header, signKey)
	if !okTS || !okSign {
		return nil, newRejection(http.StatusUnauthorized, reasonMissingHeaders, "", errors.New("timestamp or sign header missing, empty or repeated"))
	}

	if rj := windowRejection(h.window.Check(timestamp, now)); rj != nil {
		return nil, rj
	}

	b, ok := matchBot(h.bots, timestamp, sign)
	if !ok {
		err := errNoBot
		if strings.Contains(sign, "%") {
			err = errPercentEncodedSign
		}
		return nil, newRejection(http.StatusUnauthorized, reasonBadSign, "", err)
	}

	body, err := readBody(r, h.MaxBody)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return nil, newRejection(http.StatusRequestEntityTooLarge, reasonTooLarge, b.name, err)
		}
		return nil, newRejection(http.StatusBadRequest, reasonBadBody, b.name, err)
	}
	a := new(accepted)
	msg, err := a.message.Parse(body)
	if err != nil {
		return nil, newRejection(http.StatusBadRequest, reasonBadBody, b.name, err)
	}

	if b.robotCode != "" && msg.RobotCode != b.robotCode {
		return nil, newRejection(http.StatusForbidden, reasonRobotCode, b.name, errors.New("robotCode in the body is not the bot's"))
	}
	a.timestamp, a.sign = timestamp, sign
	a.Verified = Verified{Bot: b.name, Message: msg, Body: body, signer: b, storeKey: a.keys.keep(appendDedupeKey(a.keys.free(), msg))}
	return a, nil
}

// windowRejection is the rejection of a timestamp that the window's Check
// refused with err, or nil when err is nil.
func windowRejection(err error) *rejection {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dingtalk.ErrExpired):
		return newRejection(http.StatusUnauthorized, reasonExpired, "", err)
	case errors.Is(err, dingtalk.ErrFuture):
		return newRejection(http.StatusUnauthorized, reasonFuture, "", err)
	}
	return newRejection(http.StatusUnauthorized, reasonBadTimestamp, "", err)
}

// Why a sign was refused, made once: a flood of forgeries allocates nothing.
var (
	errNoBot              = errors.New("sign matches no configured bot")
	errPercentEncodedSign = errors.New("sign matches no configured bot: it is percent-encoded (%2B, %2F, %3D); DingTalk sends it as plain base64, so the sender must not URL-encode it")
)

// The canonical forms of the sign's header names, computed once: Header.Get
// with DingTalk's lower-case names would canonicalize them, and allocate,
// on every request. Benchmark: BenchmarkServeHTTPAccepted.
var (
	timestampKey = http.CanonicalHeaderKey(dingtalk.HeaderTimestamp)
	signKey      = http.CanonicalHeaderKey(dingtalk.HeaderSign)
)

// singleHeader returns the only value of the header with the canonical
// name key. A header that is absent, empty or sent more than once is not
// usable: which copy would be the real one?
func singleHeader(h http.Header, key string) (string, bool) {
	values := h[key]
	if len(values) != 1 || values[0] == "" {
		return "", false
	}
	return values[0], true
}

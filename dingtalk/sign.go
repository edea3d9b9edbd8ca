package dingtalk

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"time"
)

// Header names of a signed callback. DingTalk sends them in lower case; read
// them with http.Header.Get, which is case-insensitive.
const (
	HeaderTimestamp = "timestamp"
	HeaderSign      = "sign"
)

// Errors returned by CheckTimestamp. They never contain a header value.
var (
	ErrMalformedTimestamp = errors.New("timestamp is not a decimal millisecond count")
	ErrExpired            = errors.New("timestamp is older than the accepted window")
	ErrFuture             = errors.New("timestamp is further ahead than the accepted window")
)

// maxTimestampDigits bounds the timestamp header: 13 digits reach the year
// 2286, so anything longer is not a millisecond timestamp (and could overflow).
const maxTimestampDigits = 15

// Sign computes DingTalk's callback sign:
// base64std(HMAC-SHA256(key=secret, msg=timestamp+"\n"+secret)).
// The timestamp is used exactly as received; re-formatting it would change the sign.
func Sign(secret, timestamp string) string {
	var sum [sha256.Size]byte
	signInto(sum[:0], secret, timestamp)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// signInto appends the raw (not base64-encoded) HMAC to dst.
func signInto(dst []byte, secret, timestamp string) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'\n'})
	mac.Write([]byte(secret))
	return mac.Sum(dst)
}

// SignMatches reports, in constant time, whether sign is the sign of
// timestamp under secret. Only the exact canonical base64 text matches: a
// URL-encoded or otherwise re-written sign does not.
func SignMatches(secret, timestamp, sign string) bool {
	var sum [sha256.Size]byte
	var want [44]byte // base64 of 32 bytes
	base64.StdEncoding.Encode(want[:], signInto(sum[:0], secret, timestamp))
	return subtle.ConstantTimeCompare(want[:], []byte(sign)) == 1
}

// ParseTimestamp reads a timestamp header: digits only (no sign, no spaces,
// no fraction), milliseconds since the Unix epoch.
func ParseTimestamp(ts string) (time.Time, error) {
	if ts == "" || len(ts) > maxTimestampDigits {
		return time.Time{}, ErrMalformedTimestamp
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return time.Time{}, ErrMalformedTimestamp
		}
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, ErrMalformedTimestamp
	}
	return time.UnixMilli(ms), nil
}

// Window is the range of timestamps accepted around the receiver's clock.
type Window struct {
	// MaxAge is how far in the past a timestamp may be. DingTalk's own rule is one hour.
	MaxAge time.Duration
	// MaxFuture is how far ahead of now a timestamp may be. Genuine callbacks
	// are never ahead by more than clock skew.
	MaxFuture time.Duration
}

// Check parses ts and reports whether it lies within [now-MaxAge, now+MaxFuture].
// A seconds-style timestamp reads as a moment in 1970 and fails as expired.
func (w Window) Check(ts string, now time.Time) error {
	t, err := ParseTimestamp(ts)
	if err != nil {
		return err
	}
	if t.Before(now.Add(-w.MaxAge)) {
		return ErrExpired
	}
	if t.After(now.Add(w.MaxFuture)) {
		return ErrFuture
	}
	return nil
}

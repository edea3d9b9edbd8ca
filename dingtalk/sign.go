package dingtalk

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"sync"
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
// URL-encoded or otherwise re-written sign does not. A server checking many
// callbacks uses a Verifier instead.
func SignMatches(secret, timestamp, sign string) bool {
	var sum [sha256.Size]byte
	return macMatches(signInto(sum[:0], secret, timestamp), sign)
}

// macMatches reports, in constant time, whether sign is the base64 text of mac.
func macMatches(mac []byte, sign string) bool {
	var want, got [44]byte // base64 of 32 bytes
	if len(sign) != len(got) {
		return false // the length of a sign is no secret
	}
	base64.StdEncoding.Encode(want[:], mac)
	copy(got[:], sign)
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// Verifier checks signs made with one secret, as SignMatches does. It keeps
// HMACs keyed with the secret for reuse: a check then hashes two SHA-256
// blocks fewer (the keyed pads', restored instead) and allocates nothing. It
// is safe for concurrent use. Benchmark: BenchmarkVerifierMatches.
type Verifier struct {
	secret string
	states sync.Pool // of *verifierState
}

// verifierState is one keyed HMAC and the buffer its input and output go through.
type verifierState struct {
	mac hash.Hash
	buf []byte
}

// NewVerifier returns a Verifier for secret.
func NewVerifier(secret string) *Verifier {
	v := &Verifier{secret: secret}
	v.states.New = func() any {
		return &verifierState{mac: hmac.New(sha256.New, []byte(secret))}
	}
	return v
}

// Matches reports, in constant time, whether sign is the sign of timestamp
// under the verifier's secret.
func (v *Verifier) Matches(timestamp, sign string) bool {
	s := v.states.Get().(*verifierState)
	defer v.states.Put(s)
	s.mac.Reset()
	s.buf = append(append(append(s.buf[:0], timestamp...), '\n'), v.secret...)
	s.mac.Write(s.buf)
	s.buf = s.mac.Sum(s.buf[:0])
	return macMatches(s.buf, sign)
}

// ParseTimestamp reads a timestamp header: digits only (no sign, no spaces,
// no fraction), milliseconds since the Unix epoch.
func ParseTimestamp(ts string) (time.Time, error) {
	ms, ok := decimal(ts)
	if !ok || len(ts) > maxTimestampDigits {
		return time.Time{}, ErrMalformedTimestamp
	}
	return time.UnixMilli(ms), nil
}

// decimal reads s, 1 to 18 decimal digits and nothing else: too few to
// overflow an int64, so unlike strconv.ParseInt it needs no checks but the
// digits'.
func decimal(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		digit := s[i] - '0'
		if digit > 9 {
			return 0, false
		}
		n = n*10 + int64(digit)
	}
	return n, true
}

// The window a gateway uses unless configured otherwise.
const (
	DefaultMaxAge    = time.Hour // DingTalk's own rule
	DefaultMaxFuture = 5 * time.Minute
)

// Window is the range of timestamps accepted around the receiver's clock.
type Window struct {
	// MaxAge is how far in the past a timestamp may be. DingTalk's own rule is one hour.
	MaxAge time.Duration
	// MaxFuture is how far ahead of now a timestamp may be. Genuine callbacks
	// are never ahead by more than clock skew.
	MaxFuture time.Duration
}

// ErrSecondsTimestamp is ErrExpired for a timestamp of 10 digits: seconds
// since the epoch where DingTalk sends milliseconds, a common mistake of
// hand-written senders.
var ErrSecondsTimestamp = fmt.Errorf("%w: it has 10 digits, like seconds since the epoch; DingTalk's are milliseconds (13 digits)", ErrExpired)

// Check parses ts and reports whether it lies within [now-MaxAge, now+MaxFuture].
// A seconds-style timestamp reads as a moment in 1970 and fails as
// expired, with ErrSecondsTimestamp.
func (w Window) Check(ts string, now time.Time) error {
	t, err := ParseTimestamp(ts)
	if err != nil {
		return err
	}
	if t.Before(now.Add(-w.MaxAge)) {
		if len(ts) == 10 {
			return ErrSecondsTimestamp
		}
		return ErrExpired
	}
	if t.After(now.Add(w.MaxFuture)) {
		return ErrFuture
	}
	return nil
}

package caddymodule

import (
	"context"
	"encoding/hex"
	"time"
)

// Store remembers short-lived keys for the dingtalk handler: msgIds that are
// claimed or done, so that a redelivered callback is not passed on twice, and
// the (timestamp, sign) pairs already used, so that a leaked sign cannot be
// replayed with another body.
// Implementations are Caddy modules in the dingtalk.stores namespace; they
// must be safe for concurrent use and, to de-duplicate across several Caddy
// instances, shared between them.
//
// now is the handler's time: it reads the clock once per callback and judges
// the sign's window, the replay grace and the store's expiries at that one
// time (which tests set). A store that keeps time itself, as Redis expires
// keys on its own clock, may ignore it.
type Store interface {
	// Claim atomically takes key until now+ttl on behalf of token, unless
	// another token holds it. It reports whether token holds key afterwards:
	// it took it now, or held it already.
	Claim(ctx context.Context, key string, token Token, now time.Time, ttl time.Duration) (held bool, err error)

	// Keep extends key's hold to now+ttl if token still holds it.
	Keep(ctx context.Context, key string, token Token, now time.Time, ttl time.Duration) error

	// Release forgets key if token still holds it, so that the next claim succeeds.
	Release(ctx context.Context, key string, token Token) error
}

// Token names the holder of a claim; a Store compares tokens as they are.
// The deduper makes a new one for every callback it claims (unique across
// processes); the replay guard's is the first half of a SHA-256 digest of
// the message's identity, so that the message's redelivery holds its pair
// again, while another message (whose msgId a forger chooses) cannot.
type Token [16]byte

// String gives the token in hex, as the Redis store keeps it.
func (t Token) String() string { return hex.EncodeToString(t[:]) }

// FailOpener is implemented by a Store that can be configured to let
// callbacks through, without de-duplication or replay protection, when it
// returns an error (the Redis store's `on_error open`: Redis unreachable).
// A Store that does not implement it fails closed: the callback is answered
// 503 and DingTalk delivers it again later. The handler applies this policy
// in one place, Handler.storeUnavailable.
type FailOpener interface {
	FailOpen() bool
}

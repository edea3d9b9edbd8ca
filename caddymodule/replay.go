package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// defaultReplayGrace is how long after its timestamp a (timestamp, sign)
// pair may still come with another message: genuine callbacks arrive within
// a second of their timestamp.
const defaultReplayGrace = 10 * time.Second

// replayGuard refuses a (timestamp, sign) pair that was already accepted
// with one message when it comes back with another one, later than grace
// after its timestamp. The sign does not cover the body, so without this
// whoever sees a valid pair (in a log, a proxy, a packet capture) can send
// any body with it until the timestamp leaves the window. Two genuine
// messages to one robot in the same millisecond share a pair; they arrive
// within the grace.
type replayGuard struct {
	store Store
	grace time.Duration
	// ttl is how long a pair is remembered: as long as the window accepts
	// its timestamp, whenever it was first seen, plus the grace.
	ttl time.Duration
}

// check claims the request's (timestamp, sign) pair for v's message. It
// returns the replay rejection, or the store's error, or neither. Only
// verified requests reach it: the headers are single and the timestamp valid.
func (g *replayGuard) check(r *http.Request, v *Verified, now time.Time) (*rejection, error) {
	timestamp, sign := r.Header.Get(timestampKey), r.Header.Get(signKey)
	// The message is identified as de-duplication identifies it: its
	// redelivery is not a replay, and the deduper answers it.
	var buf [128]byte
	pair := appendReplayKey(buf[:0], timestamp, sign)
	key, message := splitString(appendDedupeKey(pair, v.Message), len(pair))
	holder, err := g.store.Claim(r.Context(), key, message, g.ttl)
	if err != nil {
		return nil, err
	}
	if holder == message {
		return nil, nil
	}
	signedAt, err := dingtalk.ParseTimestamp(timestamp)
	if err != nil || now.After(signedAt.Add(g.grace)) {
		return newRejection(http.StatusUnauthorized, reasonReplay, v.Bot,
			errors.New("timestamp and sign were already used by another message")), nil
	}
	return nil, nil
}

// appendReplayKey appends the name of a (timestamp, sign) pair in the
// store to b. The sign is a credential while its timestamp is in the
// window, so the key holds only a hash of it.
func appendReplayKey(b []byte, timestamp, sign string) []byte {
	var signBytes [64]byte // a sign is 44 bytes: hashed from the stack, not from a copy on the heap
	sum := sha256.Sum256(append(signBytes[:0], sign...))
	b = append(append(append(b, "sig:"...), timestamp...), ':')
	return hex.AppendEncode(b, sum[:16])
}

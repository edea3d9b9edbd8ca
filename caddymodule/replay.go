package caddymodule

import (
	"crypto/sha256"
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

// check claims the request's (timestamp, sign) pair for a's message. It
// returns the replay rejection, or the store's error, or neither. Only
// verified requests reach it: the headers are single and the timestamp valid.
func (g *replayGuard) check(r *http.Request, a *accepted, now time.Time) (*rejection, error) {
	timestamp, _ := singleHeader(r.Header, timestampKey)
	// The message is identified as de-duplication identifies it: its
	// redelivery is not a replay, and the deduper answers it.
	key := a.keys.keep(appendReplayKey(a.keys.free(), timestamp, a.signer))
	held, err := g.store.Claim(r.Context(), key, messageToken(&a.Verified), now, g.ttl)
	if err != nil {
		return nil, err
	}
	if held || !g.pastGrace(timestamp, now) { // first used by this message, by it again (a redelivery), or a twin
		return nil, nil
	}
	return replayRejection(a), nil
}

// claim is check's claim, for a durable async job to take in the step
// that records it (JobStore.RecordJob): exclusive once the grace passed.
func (g *replayGuard) claim(r *http.Request, a *accepted, now time.Time) *PairClaim {
	timestamp, _ := singleHeader(r.Header, timestampKey)
	a.pair = PairClaim{
		Key:       a.keys.keep(appendReplayKey(a.keys.free(), timestamp, a.signer)),
		Token:     messageToken(&a.Verified),
		TTL:       g.ttl,
		Exclusive: g.pastGrace(timestamp, now),
	}
	return &a.pair
}

// pastGrace reports whether a pair with timestamp, used by another
// message, is a replay at now: later than grace after its timestamp.
func (g *replayGuard) pastGrace(timestamp string, now time.Time) bool {
	signedAt, err := dingtalk.ParseTimestamp(timestamp)
	return err != nil || now.After(signedAt.Add(g.grace))
}

// replayRejection answers a's pair, used by another message.
func replayRejection(a *accepted) *rejection {
	return newRejection(http.StatusUnauthorized, reasonReplay, a.Bot,
		errors.New("timestamp and sign were already used by another message"))
}

// appendReplayKey appends the name of a verified (timestamp, sign) pair in
// the store to b: the timestamp and the replay ID of the secret that signed it.
// Chained appends into the callback's keyRoom: BenchmarkServeHTTPAccepted.
func appendReplayKey(b []byte, timestamp string, signer *bot) []byte {
	return append(append(append(append(b, "sig:"...), timestamp...), ':'), signer.replayID...)
}

// messageToken is the replay guard's token for v: a digest of the message's
// identity as de-duplication knows it.
func messageToken(v *Verified) Token {
	var buf [128]byte // hashed from the stack: a conversion would copy a long key to the heap
	sum := sha256.Sum256(append(buf[:0], v.storeKey...))
	return Token(sum[:16])
}

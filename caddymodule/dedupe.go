package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// emptyReply is DingTalk's "no reply" message.
var emptyReply = []byte(`{"msgtype":"empty"}`)

// deduper passes each msgId on once within its TTL.
type deduper struct {
	store  Store
	ttl    time.Duration
	logger *zap.Logger
}

func newDeduper(store Store, ttl time.Duration, logger *zap.Logger) *deduper {
	return &deduper{store: store, ttl: ttl, logger: logger}
}

// serveOnce claims the message and passes it on, or answers empty when the
// message was already claimed. When the rest of the route fails (an error, or
// a 5xx answer) the claim is released so that DingTalk's redelivery can try again.
func (d *deduper) serveOnce(w http.ResponseWriter, r *http.Request, v *Verified, next caddyhttp.Handler) error {
	key := dedupeKey(v)
	token := newClaimToken()
	holder, err := d.store.Claim(r.Context(), key, token, d.ttl)
	if err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	if holder != token {
		d.logger.Info("dingtalk callback is a duplicate; answered empty",
			zap.String("bot", v.Bot), zap.String("msg_id", v.Message.MsgID))
		return writeJSON(w, http.StatusOK, emptyReply)
	}

	sw := &statusWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err = next.ServeHTTP(sw, r)
	if err != nil || sw.status >= http.StatusInternalServerError {
		// The request may be gone; the release must still reach the store.
		if relErr := d.store.Release(context.WithoutCancel(r.Context()), key, token); relErr != nil {
			d.logger.Error("releasing a failed message's claim", zap.String("msg_id", v.Message.MsgID), zap.Error(relErr))
		}
	}
	return err
}

// dedupeKey identifies a message: msgIds are unique per robot, and a message
// that mentions two robots reaches each with its robotCode.
func dedupeKey(v *Verified) string {
	return "msg:" + v.Message.RobotCode + ":" + v.Message.MsgID
}

// Claim tokens are unique across processes (a random prefix) and within one
// (a counter), so that only the claimer can release a claim.
var (
	claimTokenPrefix = func() string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "-"
	}()
	claimTokenCounter atomic.Uint64
)

func newClaimToken() string {
	return claimTokenPrefix + strconv.FormatUint(claimTokenCounter.Add(1), 36)
}

// statusWriter remembers the status the rest of the route answered with.
type statusWriter struct {
	*caddyhttp.ResponseWriterWrapper
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

// writeJSON answers with a DingTalk message body.
func writeJSON(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

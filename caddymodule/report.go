package caddymodule

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// reporter counts and logs what became of each verified callback that was
// not rejected: it was accepted or it was a duplicate, one count and one
// INFO line each, whichever way through the handler it took. It also times
// the backend of the synchronous way; the relay times its own.
type reporter struct {
	logger  *zap.Logger
	logText bool
}

// accepted reports a callback that is passed on.
func (rp *reporter) accepted(v *Verified) {
	v.signer.metrics.accepted.Inc()
	rp.log("dingtalk callback accepted", v)
}

// duplicate reports a callback whose msgId was accepted before.
func (rp *reporter) duplicate(v *Verified) {
	v.signer.metrics.duplicate.Inc()
	rp.log("dingtalk callback is a duplicate; answered empty", v)
}

// log writes the INFO line about v. The text is personal: it is logged
// only when log_text is on. The sessionWebhook is a credential: never.
func (rp *reporter) log(msg string, v *Verified) {
	ce := rp.logger.Check(zapcore.InfoLevel, msg)
	if ce == nil {
		return
	}
	m := v.Message
	fields := []zap.Field{
		zap.String("bot", v.Bot),
		zap.String("msg_id", m.MsgID),
		zap.String("msgtype", m.MsgType),
		zap.String("conversation", m.Conversation()),
		zap.String("sender_staff_id", m.SenderStaffID),
	}
	if rp.logText {
		fields = append(fields, zap.String("text", m.TrimmedText()))
	}
	ce.Write(fields...)
}

// passOn reports v as accepted and runs the rest of the route for it in
// sync mode, timing it.
func (rp *reporter) passOn(w http.ResponseWriter, r *http.Request, v *Verified, next caddyhttp.Handler) error {
	rp.accepted(v)
	start := monotonicNanos()
	// Deferred, so that a route that panics is timed too: reverse_proxy
	// does when the upstream breaks off its answer.
	defer func() { v.signer.metrics.backend.Observe(time.Duration(monotonicNanos() - start).Seconds()) }()
	return next.ServeHTTP(w, r)
}

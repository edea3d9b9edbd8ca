package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Reject reasons, as {http.dingtalk.reject_reason} shows them. They are
// stable words: configurations and dashboards match on them.
const (
	reasonMethod         = "method"
	reasonMissingHeaders = "missing_headers"
	reasonBadTimestamp   = "bad_timestamp"
	reasonExpired        = "expired"
	reasonFuture         = "future"
	reasonBadSign        = "bad_sign"
	reasonTooLarge       = "too_large"
	reasonBadBody        = "bad_body"
	reasonRobotCode      = "robot_code"
	reasonReplay         = "replay"
	reasonStoreDown      = "store_unavailable"
)

// Reject reasons of the dingtalk_event handler besides the ones above, as
// {http.dingtalk_event.reject_reason} shows them.
const (
	reasonMissingParams = "missing_params" // signature, timestamp or nonce
	reasonBadCiphertext = "bad_ciphertext"
	reasonOwnerKey      = "owner_key"
	reasonBadPlaintext  = "bad_plaintext"
)

// rejection is why a request was not accepted. Its error never contains a
// header value, a secret or an expected sign.
type rejection struct {
	status int
	reason string
	bot    string // empty until a sign matched
	err    error
}

func newRejection(status int, reason, bot string, err error) *rejection {
	return &rejection{status: status, reason: reason, bot: bot, err: err}
}

func (rj *rejection) Error() string {
	return fmt.Sprintf("dingtalk: rejected (%s): %v", rj.reason, rj.err)
}

func (rj *rejection) Unwrap() error { return rj.err }

// rejectKind is what differs between the rejections of the module's
// handlers: which placeholder shows the reason, what is counted, what the
// WARN line says.
type rejectKind struct {
	placeholder string
	count       func(bot, reason string)
	message     string
}

// callbackRejects are the dingtalk handler's.
var callbackRejects = rejectKind{
	placeholder: placeholderPrefix + "reject_reason",
	count:       metrics.request,
	message:     "dingtalk callback rejected",
}

// reject is the dingtalk handler's one way out for a request that is not
// passed on; see rejectRequest.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, rj *rejection) error {
	return rejectRequest(w, r, repl, h.logger, &callbackRejects, rj)
}

// rejectRequest is the one way out for a request that a handler of this
// module does not pass on: it sets the reason's placeholder, counts the
// reason (with bot "" before a sign matched), logs once at WARN (Caddy
// logs 4xx handler errors only at DEBUG), closes an HTTP/1 connection after
// the answer, and returns a caddyhttp.HandlerError so that handle_errors
// can shape the answer.
func rejectRequest(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, logger *zap.Logger, kind *rejectKind, rj *rejection) error {
	repl.Set(kind.placeholder, rj.reason)
	kind.count(rj.bot, rj.reason)
	if rj.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if r.ProtoMajor == 1 {
		// Otherwise net/http reads the rest of the body before it answers,
		// to keep the connection: a forger trickling a body would hold the
		// connection and delay the answer for as long as it keeps sending.
		// (On HTTP/2 the header would close every stream's connection.)
		w.Header().Set("Connection", "close")
	}
	logger.Warn(kind.message,
		zap.String("reason", rj.reason),
		zap.Int("status", rj.status),
		zap.String("remote_addr", clientAddr(r)),
		zap.String("bot", rj.bot),
		zap.Error(rj.err))
	return caddyhttp.Error(rj.status, rj)
}

// clientAddr is the client's IP as Caddy determined it (honouring
// trusted_proxies), or the connection's remote address.
func clientAddr(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}

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

// reject is the one way out for a request that is not passed on: it sets
// {http.dingtalk.reject_reason}, counts the reason (with bot "" before a
// sign matched), logs once at WARN (Caddy logs 4xx handler errors only at
// DEBUG), closes an HTTP/1 connection after the answer, and returns a
// caddyhttp.HandlerError so that handle_errors can shape the answer.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, rj *rejection) error {
	repl.Set(placeholderPrefix+"reject_reason", rj.reason)
	metrics.request(rj.bot, rj.reason)
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
	h.logger.Warn("dingtalk callback rejected",
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

package caddymodule

import (
	"bytes"
	"context"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// detachRequest makes the copy of an accepted request that the rest of the
// route runs on in the background. Caddy keeps using the original request's
// replacer and vars after the handler returns (access logging), and the
// original context ends with the connection, so the copy gets:
//   - a context that keeps the values but not the cancellation, deadline or
//     idle-timeout state of the client's connection;
//   - its own replacer, set up by Caddy for a request written to rec, with the
//     {http.dingtalk.*} placeholders, and falling back to the values the route
//     had already set on the original (such as {http.regexp.*} captures);
//   - its own vars (a copy of the original's) and its own log fields;
//   - the verified body, restored byte for byte.
func detachRequest(r *http.Request, v *Verified, rec http.ResponseWriter) *http.Request {
	ctx := context.WithoutCancel(r.Context())
	bg := r.Clone(ctx)
	restoreBody(bg, v.Body, new(bodyReader))

	server, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	original, _ := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	vars, _ := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any)

	repl := caddy.NewReplacer()
	bg = caddyhttp.PrepareRequest(bg, repl, rec, server)
	for key, value := range vars {
		caddyhttp.SetVar(bg.Context(), key, value)
	}
	addPlaceholders(repl, v)
	if original != nil {
		repl.Map(original.Get)
	}
	return bg
}

// recordedResponse is the response of a background run: kept in memory, at
// most limit bytes of body, for the relay to turn into a DingTalk message.
type recordedResponse struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	limit    int
	overflow bool
}

func newRecordedResponse(limit int) *recordedResponse {
	return &recordedResponse{header: make(http.Header), limit: limit}
}

func (rr *recordedResponse) Header() http.Header { return rr.header }

func (rr *recordedResponse) WriteHeader(status int) {
	if rr.status == 0 {
		rr.status = status
	}
}

// Write keeps what fits and reports the whole write as done: the handler
// writing must not fail, the relay refuses an overflowing answer instead.
func (rr *recordedResponse) Write(p []byte) (int, error) {
	rr.WriteHeader(http.StatusOK)
	n := len(p)
	if room := rr.limit - rr.body.Len(); n > room {
		rr.overflow = true
		p = p[:max(room, 0)]
	}
	rr.body.Write(p)
	return n, nil
}

// Flush lets streaming handlers (reverse_proxy flushes) run; there is no
// client to flush to.
func (rr *recordedResponse) Flush() {}

// statusCode is the answer's status; a handler that wrote nothing answered 200.
func (rr *recordedResponse) statusCode() int {
	if rr.status == 0 {
		return http.StatusOK
	}
	return rr.status
}

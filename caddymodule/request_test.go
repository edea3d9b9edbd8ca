package caddymodule

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// verifiedRequest returns a request as the dingtalk handler passes it on
// after verifying body for bot: the message in the context and the
// placeholders on the request's replacer.
func verifiedRequest(t testing.TB, bot string, body []byte) (*http.Request, *caddy.Replacer) {
	t.Helper()
	msg, err := dingtalk.ParseMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	r, repl := unverifiedRequest(body)
	r = (&Handler{}).prepareForward(r, repl, &accepted{Verified: Verified{Bot: bot, Message: msg, Body: string(body)}})
	return r, repl
}

// unverifiedRequest returns a request with the replacer Caddy gives every
// request, and no verified message.
func unverifiedRequest(body []byte) (*http.Request, *caddy.Replacer) {
	r := httptest.NewRequest(http.MethodPost, "/robot", bytes.NewReader(body))
	repl := caddy.NewReplacer()
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)), repl
}

package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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
	(&Handler{}).prepareForward(r, repl, &accepted{Verified: Verified{Bot: bot, Message: msg, Body: string(body)}})
	return r, repl
}

// unverifiedRequest returns a request as Caddy gives it to its handlers,
// with no verified message.
func unverifiedRequest(body []byte) (*http.Request, *caddy.Replacer) {
	return caddyRequest(httptest.NewRequest(http.MethodPost, "/robot", bytes.NewReader(body)))
}

// caddyRequest prepares r as Caddy's server does before the first handler:
// a replacer with Caddy's placeholders, and the request's variables.
func caddyRequest(r *http.Request) (*http.Request, *caddy.Replacer) {
	repl := caddy.NewReplacer()
	return caddyhttp.PrepareRequest(r, repl, nil, nil), repl
}

package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// A rejection closes an HTTP/1 connection, so that net/http answers at once
// instead of reading what is left of the body first; on HTTP/2 the header
// would close the connection of every other stream, so it is not set.
func TestRejectionClosesAnHTTP1Connection(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	for _, major := range []int{1, 2} {
		req := signedAt(t, "forged", fixedNow, dingtalktest.Callback{Text: "hi"}.Body())
		req.ProtoMajor = major
		req, _ = caddyRequest(req)
		w := httptest.NewRecorder()
		err := h.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			t.Fatal("a forgery reached the next handler")
			return nil
		}))
		if herr, ok := err.(caddyhttp.HandlerError); !ok || herr.StatusCode != http.StatusUnauthorized {
			t.Fatalf("HTTP/%d: error %v, want a 401 handler error", major, err)
		}
		if got, want := w.Header().Get("Connection"), map[int]string{1: "close", 2: ""}[major]; got != want {
			t.Errorf("HTTP/%d: Connection %q, want %q", major, got, want)
		}
	}
}

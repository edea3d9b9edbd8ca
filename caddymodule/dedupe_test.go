package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// reverse_proxy panics with http.ErrAbortHandler when the upstream breaks
// off its answer after the headers: DingTalk got no usable answer, so its
// redelivery must be passed on again, not answered as a duplicate.
func TestAbortedAnswerReleasesTheMessage(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	body := dingtalktest.Callback{Text: "hi", Now: fixedNow}.Body()
	abort := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		panic(http.ErrAbortHandler)
	})
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Fatalf("the panic was %v, want it passed on to net/http", p)
			}
		}()
		req := signedAt(t, testSecret, fixedNow, body)
		req, _ = caddyRequest(req)
		_ = h.ServeHTTP(httptest.NewRecorder(), req, abort)
	}()

	if got := serve(h, signedAt(t, testSecret, fixedNow, body)); got.reached == nil {
		t.Fatalf("the redelivery got %d %q without reaching the next handler", got.status, got.body)
	}
	if got := serve(h, signedAt(t, testSecret, fixedNow, body)); got.reached != nil || got.body != `{"msgtype":"empty"}` {
		t.Fatalf("a redelivery after the answer was passed on (status %d)", got.status)
	}
}

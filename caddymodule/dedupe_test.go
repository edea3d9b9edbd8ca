package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
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

// The JSON's dedupe is what the Caddyfile's is: a duration, or "off".
func TestDedupeJSON(t *testing.T) {
	body := dingtalktest.Callback{Text: "hi", Now: fixedNow}.Body()
	for _, tc := range []struct {
		dedupe     string
		secondPass bool
	}{{"", false}, {"1h", false}, {"off", true}} {
		var h Handler
		config := `{"bots":[{"name":"default","secret":"` + testSecret + `"}],"dedupe":"` + tc.dedupe + `"}`
		if err := json.Unmarshal([]byte(config), &h); err != nil {
			t.Fatal(err)
		}
		provisionIn(t, newTestConfig(t), &h)
		serve(&h, signedAt(t, testSecret, fixedNow, body))
		if got := serve(&h, signedAt(t, testSecret, fixedNow, body)); (got.reached != nil) != tc.secondPass {
			t.Errorf("dedupe %q: the redelivery reached the next handler: %v, want %v", tc.dedupe, got.reached != nil, tc.secondPass)
		}
	}
	for _, bad := range []string{"soon", "0s", "-1h", "on"} {
		h := Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}, Dedupe: bad}
		err := h.Provision(newTestConfig(t))
		if err == nil || !strings.Contains(err.Error(), `dedupe: "`+bad+`" is neither off nor a positive duration`) {
			t.Errorf("dedupe %q: provisioning returned %v", bad, err)
		}
	}
}

// A message in flight is held by a lease that its holder renews while the
// route runs: a redelivery during a route that outlasts several leases is
// a duplicate; once answered, the message is remembered past the lease.
func TestLeaseIsRenewedWhileTheRouteRuns(t *testing.T) {
	const lease = 150 * time.Millisecond
	h := &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}, Lease: caddy.Duration(lease), now: time.Now}
	if err := h.Provision(newTestConfig(t)); err != nil {
		t.Fatal(err)
	}
	body := dingtalktest.Callback{Text: "hi"}.Body()
	inRoute, finish, done := make(chan struct{}), make(chan struct{}), make(chan error)
	slow := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		close(inRoute)
		<-finish
		w.WriteHeader(http.StatusOK)
		return nil
	})
	go func() {
		req, _ := caddyRequest(signedAt(t, testSecret, time.Now(), body))
		done <- h.ServeHTTP(httptest.NewRecorder(), req, slow)
	}()
	<-inRoute
	for end := time.Now().Add(4 * lease); time.Now().Before(end); time.Sleep(lease / 4) {
		if got := serve(h, signedAt(t, testSecret, time.Now(), body)); got.reached != nil {
			t.Fatal("a redelivery while the route ran, past its first lease, was passed on")
		}
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * lease) // the time under test: the lease would have lapsed by now
	if got := serve(h, signedAt(t, testSecret, time.Now(), body)); got.reached != nil {
		t.Fatal("a redelivery after the answer, past the lease, was passed on")
	}
}

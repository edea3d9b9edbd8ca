package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

// The event subscription of these tests: secrets long enough for the
// suite's leak check to look for them in every log.
const (
	eventTestToken    = "integration-event-token-7Qx2"
	eventTestAESKey   = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
	eventTestOwnerKey = "dingintegrationapp01"
)

// eventGateway starts Caddy with a dingtalk_event route whose secrets come
// from the environment, approvals going to one upstream and everything
// else to another.
func eventGateway(t *testing.T, approvals, others *dingtalktest.Recorder) (*gateway, *event.Crypto) {
	t.Helper()
	t.Setenv("INTEGRATION_EVENT_TOKEN", eventTestToken)
	t.Setenv("INTEGRATION_EVENT_AES_KEY", eventTestAESKey)
	g := startGateway(t, site{FilterSign: true, Body: fmt.Sprintf(`
	route /events {
		dingtalk_event {
			token {env.INTEGRATION_EVENT_TOKEN}
			aes_key {env.INTEGRATION_EVENT_AES_KEY}
			owner_key %s
		}
		@approvals dingtalk_event {
			type bpms_instance_change
		}
		reverse_proxy @approvals %s {
			header_up X-Event-Id {http.dingtalk_event.id}
		}
		reverse_proxy %s
	}`, eventTestOwnerKey, hostPort(approvals.URL), hostPort(others.URL))})
	c, err := event.New(eventTestToken, eventTestAESKey, eventTestOwnerKey)
	if err != nil {
		t.Fatal(err)
	}
	return g, c
}

// push sends plaintext to the gateway as DingTalk would, now.
func (g *gateway) push(c *event.Crypto, plaintext []byte) response {
	g.t.Helper()
	req, err := dingtalktest.NewEventRequest(g.URL+"/events", c, plaintext, time.Now())
	if err != nil {
		g.t.Fatal(err)
	}
	return g.do(req)
}

// answeredSuccess reports whether r is the encrypted success of c.
func answeredSuccess(c *event.Crypto, r response) bool {
	plain, err := c.OpenAnswer([]byte(r.Body))
	return r.Status == http.StatusOK && err == nil && event.IsSuccess(plain)
}

// TestEventsThroughCaddy is the "done when" through a real Caddy:
// DingTalk's URL check passes without reaching a backend, each event
// reaches its backend once as plain JSON, and nothing unverified or
// undecryptable does.
func TestEventsThroughCaddy(t *testing.T) {
	approvals, others := dingtalktest.NewRecorder(), dingtalktest.NewRecorder()
	defer approvals.Close()
	defer others.Close()
	g, c := eventGateway(t, approvals, others)

	if r := g.push(c, []byte(`{"EventType":"check_url"}`)); !answeredSuccess(c, r) {
		t.Fatalf("check_url: %d %s", r.Status, r.Body)
	}
	if approvals.Count()+others.Count() != 0 {
		t.Fatal("the URL check reached a backend")
	}

	const personal = "13800138000-mobile"
	user := dingtalktest.EventBody("user_add_org", "ev-int-1", "dingcorp", map[string]any{"Mobile": personal})
	for delivery := range 3 { // DingTalk's redeliveries, each encrypted anew
		if r := g.push(c, user); !answeredSuccess(c, r) {
			t.Fatalf("delivery %d: %d %s", delivery, r.Status, r.Body)
		}
	}
	approval := dingtalktest.EventBody("bpms_instance_change", "ev-int-2", "dingcorp", nil)
	if r := g.push(c, approval); !answeredSuccess(c, r) {
		t.Fatalf("approval: %d %s", r.Status, r.Body)
	}
	got := others.Requests()
	if len(got) != 1 {
		t.Fatalf("the user event reached its backend %d times, want once", len(got))
	}
	mustEqualBytes(t, "the backend's body", got[0].Body, user)
	if h := got[0].Header; h.Get("X-Dingtalk-Event-Type") != "user_add_org" || h.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("headers %v", h)
	}
	if a := approvals.Requests(); len(a) != 1 || string(a[0].Body) != string(approval) || a[0].Header.Get("X-Event-Id") != "ev-int-2" {
		t.Fatalf("the approvals backend got %d requests (%v)", len(a), a)
	}

	// Forged, for another owner, undecryptable: refused, and no backend contacted.
	forged, _ := dingtalktest.NewEventRequest(g.URL+"/events", c, dingtalktest.EventBody("user_add_org", "ev-forged", "", nil), time.Now())
	forged.URL.RawQuery = strings.Replace(forged.URL.RawQuery, "nonce=", "nonce=x", 1)
	if r := g.do(forged); r.Status != http.StatusUnauthorized {
		t.Errorf("forged signature: %d", r.Status)
	}
	other, _ := event.New(eventTestToken, eventTestAESKey, "dingsomeoneelse")
	if r := g.push(other, dingtalktest.EventBody("user_add_org", "ev-other", "", nil)); r.Status != http.StatusForbidden {
		t.Errorf("another owner key: %d", r.Status)
	}
	if n := approvals.Count() + others.Count(); n != 2 {
		t.Errorf("the backends got %d requests, want the 2 genuine events", n)
	}

	// What the module logged: one line per push, the events' types and ids, never their content.
	var lines []string
	for line := range strings.Lines(g.logs()) {
		var e struct {
			Logger, Msg, Reason string
			EventType           string `json:"event_type"`
		}
		_ = json.Unmarshal([]byte(line), &e)
		if e.Logger == "http.handlers.dingtalk_event" {
			lines = append(lines, e.Msg+" "+e.EventType+e.Reason)
		}
		if strings.Contains(line, personal) {
			t.Errorf("a log line holds the event's content: %s", line)
		}
	}
	want := []string{
		"dingtalk event URL check answered check_url",
		"dingtalk event accepted user_add_org", "dingtalk event answered user_add_org",
		"dingtalk event is a duplicate; answered success user_add_org",
		"dingtalk event is a duplicate; answered success user_add_org",
		"dingtalk event accepted bpms_instance_change", "dingtalk event answered bpms_instance_change",
		"dingtalk event rejected bad_sign", "dingtalk event rejected owner_key",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("the module logged:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestEventBackendFailureIsRedelivered: a failing backend makes DingTalk
// get an error, and its redelivery reaches the backend again.
func TestEventBackendFailureIsRedelivered(t *testing.T) {
	approvals, others := dingtalktest.NewRecorder(), dingtalktest.NewRecorder()
	defer approvals.Close()
	defer others.Close()
	var failing atomic.Bool
	failing.Store(true)
	others.Handler = func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	g, c := eventGateway(t, approvals, others)
	plaintext := dingtalktest.EventBody("calendar_event_change", "ev-int-fail", "", nil)
	if r := g.push(c, plaintext); r.Status != http.StatusServiceUnavailable || answeredSuccess(c, r) {
		t.Fatalf("with the backend failing: %d %s", r.Status, r.Body)
	}
	failing.Store(false)
	if r := g.push(c, plaintext); !answeredSuccess(c, r) {
		t.Fatalf("the redelivery: %d %s", r.Status, r.Body)
	}
	if n := others.Count(); n != 2 {
		t.Errorf("the backend got the event %d times, want twice (failed, then redelivered)", n)
	}
}

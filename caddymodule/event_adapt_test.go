package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

// TestEventCaddyfileErrors checks that mistakes in the dingtalk_event
// directive and matcher fail `caddy adapt` with a message that says what
// is wrong, and never with the secret in it.
func TestEventCaddyfileErrors(t *testing.T) {
	const subscription = "token t\n aes_key k\n owner_key o\n"
	cases := []struct{ name, directives, want string }{
		{"no token", "dingtalk_event {\n aes_key k\n owner_key o\n}", "dingtalk_event needs token"},
		{"no aes_key", "dingtalk_event {\n token t\n owner_key o\n}", "dingtalk_event needs aes_key"},
		{"no owner_key", "dingtalk_event {\n token t\n aes_key k\n}", "dingtalk_event needs owner_key"},
		{"unknown subdirective", "dingtalk_event {\n " + subscription + " secret s\n}", `unrecognized subdirective "secret"`},
		{"repeated", "dingtalk_event {\n " + subscription + " token u\n}", "token is given twice"},
		{"inline argument", "dingtalk_event x {\n " + subscription + "}", "wrong argument count"},
		{"aes_key with a space", "dingtalk_event {\n token t\n aes_key two hidden-words\n owner_key o\n}", "aes_key takes exactly one argument (quote it"},
		{"bad duration", "dingtalk_event {\n " + subscription + " max_age soon\n}", "not a positive duration"},
		{"bad size", "dingtalk_event {\n " + subscription + " max_body lots\n}", `max_body: "lots" is not a size`},
		{"bad dedupe", "dingtalk_event {\n " + subscription + " dedupe maybe\n}", "not a positive duration"},
		{"unknown store", "dingtalk_event {\n " + subscription + " store disk\n}", "dingtalk.stores.disk"},
		{"matcher: unknown condition", "route {\n dingtalk_event {\n " + subscription + " }\n @m dingtalk_event {\n  typ x\n }\n respond @m 200\n}", `unrecognized condition "typ"`},
		{"matcher: type without values", "route {\n dingtalk_event {\n " + subscription + " }\n @m dingtalk_event {\n  type\n }\n respond @m 200\n}", "type takes one or more non-empty values"},
		{"matcher: type twice", "route {\n dingtalk_event {\n " + subscription + " }\n @m dingtalk_event {\n  type a\n  type b\n }\n respond @m 200\n}", "type is given twice"},
		{"matcher: arguments", "route {\n dingtalk_event {\n " + subscription + " }\n @m dingtalk_event type a\n respond @m 200\n}", "takes its conditions in a block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := adapt(t, ":8080 {\n\t"+c.directives+"\n}\n")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "hidden-words") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

// TestEventMatcher matches verified events by type, and never a request
// the handler did not verify, whatever it claims.
func TestEventMatcher(t *testing.T) {
	h := newTestEventHandler(t, &EventHandler{Dedupe: "off"})
	var verified *http.Request
	got := serveEvent(t, h, pushAt(t, []byte(`{"EventType":"bpms_task_change","eventId":"m1"}`), fixedNow), http.StatusOK)
	if verified = got.reached; verified == nil {
		t.Fatalf("not passed on: %d %q", got.status, got.reason)
	}
	forged, _ := unverifiedRequest([]byte(`{"EventType":"bpms_task_change"}`))
	forged.Header.Set("X-Dingtalk-Event-Type", "bpms_task_change")
	for _, c := range []struct {
		types []string
		req   *http.Request
		want  bool
	}{
		{nil, verified, true},
		{[]string{"bpms_task_change"}, verified, true},
		{[]string{"user_add_org", "bpms_task_change"}, verified, true},
		{[]string{"user_add_org"}, verified, false},
		{[]string{"BPMS_TASK_CHANGE"}, verified, false},
		{nil, forged, false},
		{[]string{"bpms_task_change"}, forged, false},
	} {
		m := &MatchDingTalkEvent{Types: c.types}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		if got, err := m.MatchWithError(c.req); got != c.want || err != nil {
			t.Errorf("types %q on the %s request: %v, %v; want %v", c.types, map[bool]string{true: "verified", false: "forged"}[c.req == verified], got, err, c.want)
		}
	}
	if err := (&MatchDingTalkEvent{Types: []string{""}}).Validate(); err == nil {
		t.Error("an empty type validates")
	}
}

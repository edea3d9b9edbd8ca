//go:build unix

package examples

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvents runs the events example as its README does: Caddy answers the
// URL check itself, the backend logs each event once, as plain JSON, and a
// redelivery is answered success without reaching it.
func TestEvents(t *testing.T) {
	needs(t, "python3")
	ex := newExample(t, "events")
	ex.set("DINGTALK_EVENT_TOKEN", "mryue")
	ex.set("DINGTALK_EVENT_AES_KEY", "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7")
	ex.set("DINGTALK_APP_KEY", "ding6ccabc44d2c8d38b")
	eventsLog := filepath.Join(t.TempDir(), "events.log")
	ex.set("EVENTS_LOG", eventsLog)
	ex.start(ex.addr("BACKEND_ADDR"), "python3", "examples/events/backend.py")
	ex.caddy()

	success := "200 OK\ndecrypted answer: success\n"
	ex.expectEvent(success, "--type", "check_url")
	user := bodyFile(t, []byte(`{"UserId":["user123"],"CorpId":"dingcorp"}`))
	ex.expectEvent(success, "--type", "user_add_org", "--json", user, "--event-id", "ev-1")
	ex.expectEvent(success, "--type", "user_add_org", "--json", user, "--event-id", "ev-1") // DingTalk's redelivery
	ex.expectEvent(success, "--type", "bpms_instance_change", "--event-id", "ev-2")

	data, err := os.ReadFile(eventsLog)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var logged struct {
			Type  string         `json:"type"`
			Event map[string]any `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &logged); err != nil {
			t.Fatalf("the backend logged %q: %v", line, err)
		}
		got = append(got, logged.Type+" "+logged.Event["eventId"].(string)+" "+logged.Event["EventType"].(string))
		if logged.Type == "user_add_org" && logged.Event["CorpId"] != "dingcorp" {
			t.Errorf("the backend got %v, not the JSON file's fields", logged.Event)
		}
	}
	if want := []string{"user_add_org ev-1 user_add_org", "bpms_instance_change ev-2 bpms_instance_change"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the backend logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Another subscription's token is refused before anything is decrypted.
	ex.set("DINGTALK_EVENT_TOKEN", "not the token")
	stdout, _, err := ex.event("--type", "check_url")
	if err == nil || stdout != "401 Unauthorized\n(empty body)\n" {
		t.Errorf("with another token: %v\n%s", err, stdout)
	}
}

// event runs `caddy dingtalk event --url <the example's /events>` with the
// subscription's variables, and args.
func (ex *example) event(args ...string) (stdout, stderr string, err error) {
	return ex.command("event", "/events", append([]string{
		"--token-env", "DINGTALK_EVENT_TOKEN", "--aes-key-env", "DINGTALK_EVENT_AES_KEY", "--owner-key", "ding6ccabc44d2c8d38b"}, args...)...)
}

// expectEvent pushes an event with args and checks what `caddy dingtalk event` printed.
func (ex *example) expectEvent(want string, args ...string) {
	ex.t.Helper()
	stdout, stderr, err := ex.event(args...)
	if err != nil || stdout != want {
		ex.t.Errorf("caddy dingtalk event %q: %v\nprinted:\n%s\nwant:\n%s\nstderr:\n%s", args, err, stdout, want, stderr)
	}
}

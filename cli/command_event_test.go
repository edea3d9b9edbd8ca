package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

// The subscription of these tests: the protocol notes' second vector.
const (
	eventToken    = "mryue"
	eventAESKey   = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
	eventOwnerKey = "ding6ccabc44d2c8d38b"
)

// eventGateway plays a dingtalk_event gateway: it opens each push with the
// subscription, records its plaintext, and answers with answer (nil: the
// encrypted success).
func eventGateway(t *testing.T, answer http.HandlerFunc) (url string, pushes *[]map[string]any) {
	t.Helper()
	c, err := event.New(eventToken, eventAESKey, eventOwnerKey)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body event.PushBody
		_ = json.NewDecoder(r.Body).Decode(&body)
		q := r.URL.Query()
		plain, err := c.Open(event.Envelope{Signature: q.Get("msg_signature"), Timestamp: q.Get("timestamp"), Nonce: q.Get("nonce"), Encrypt: body.Encrypt})
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var fields map[string]any
		_ = json.Unmarshal(plain, &fields)
		got = append(got, fields)
		if answer != nil {
			answer(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(c.Success(q.Get("timestamp"), "n"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/events", &got
}

// runEventCmd runs `caddy dingtalk event` with the subscription in the
// environment, and fails the test if the token or key shows up in its output.
func runEventCmd(t *testing.T, opts eventOptions) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("TEST_EVENT_TOKEN", eventToken)
	t.Setenv("TEST_EVENT_AES_KEY", eventAESKey)
	if opts.TokenEnv == "" {
		opts.TokenEnv = "TEST_EVENT_TOKEN"
	}
	if opts.AESKeyEnv == "" {
		opts.AESKeyEnv = "TEST_EVENT_AES_KEY"
	}
	var out, errOut bytes.Buffer
	err = runEvent(context.Background(), opts, &out, &errOut)
	assertNoSecret(t, eventToken, out.String(), errOut.String(), err)
	assertNoSecret(t, eventAESKey, out.String(), errOut.String(), err)
	return out.String(), errOut.String(), err
}

func TestEventCheckURL(t *testing.T) {
	url, pushes := eventGateway(t, nil)
	stdout, _, err := runEventCmd(t, eventOptions{URL: url, OwnerKey: eventOwnerKey, Type: "check_url"})
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if !strings.Contains(stdout, "200 OK") || !strings.Contains(stdout, "decrypted answer: success") {
		t.Errorf("stdout:\n%s", stdout)
	}
	if len(*pushes) != 1 || (*pushes)[0]["EventType"] != "check_url" || (*pushes)[0]["eventId"] != nil {
		t.Errorf("the gateway got %v, want one check_url without an eventId", *pushes)
	}
}

func TestEventSendsTheJSONFileWithTypeAndID(t *testing.T) {
	url, pushes := eventGateway(t, nil)
	file := filepath.Join(t.TempDir(), "user.json")
	if err := os.WriteFile(file, []byte(`{"UserId":["u1"],"CorpId":"dingcorp"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runEventCmd(t, eventOptions{URL: url, OwnerKey: eventOwnerKey, Type: "user_add_org", JSONFile: file}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runEventCmd(t, eventOptions{URL: url, OwnerKey: eventOwnerKey, Type: "user_add_org", EventID: "ev-fixed"}); err != nil {
		t.Fatal(err)
	}
	got := *pushes
	if len(got) != 2 {
		t.Fatalf("%d pushes", len(got))
	}
	if got[0]["EventType"] != "user_add_org" || got[0]["CorpId"] != "dingcorp" || got[0]["eventId"] == nil || got[0]["eventId"] == "" {
		t.Errorf("first push %v: want the file's fields, the type and a fresh eventId", got[0])
	}
	if got[1]["eventId"] != "ev-fixed" {
		t.Errorf("second push %v: want eventId ev-fixed", got[1])
	}
}

func TestEventFailsUnlessTheAnswerIsSuccess(t *testing.T) {
	other, _ := event.New(eventToken, eventAESKey, "dingOTHER")
	for name, c := range map[string]struct {
		answer http.HandlerFunc
		want   string
	}{
		"refused":        {func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }, "see --owner-key"},
		"backend failed": {func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }, "DingTalk would deliver the event again"},
		"plain success":  {func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "success") }, "not an envelope"},
		"encrypted for another owner": {func(w http.ResponseWriter, _ *http.Request) {
			_ = json.NewEncoder(w).Encode(other.Success("1", "n"))
		}, "another owner key"},
	} {
		t.Run(name, func(t *testing.T) {
			url, _ := eventGateway(t, c.answer)
			_, _, err := runEventCmd(t, eventOptions{URL: url, OwnerKey: eventOwnerKey, Type: "user_add_org"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestEventErrors(t *testing.T) {
	url, pushes := eventGateway(t, nil)
	t.Setenv("TEST_EVENT_EMPTY", "")
	t.Setenv("TEST_EVENT_SHORT_KEY", eventAESKey[:40])
	for name, c := range map[string]struct {
		opts eventOptions
		want string
	}{
		"no url":       {eventOptions{OwnerKey: eventOwnerKey, Type: "check_url"}, "--url is required"},
		"no type":      {eventOptions{URL: url, OwnerKey: eventOwnerKey}, "--type is required"},
		"no owner key": {eventOptions{URL: url, Type: "check_url"}, "owner key is empty"},
		"empty token":  {eventOptions{URL: url, OwnerKey: eventOwnerKey, Type: "check_url", TokenEnv: "TEST_EVENT_EMPTY"}, "--token-env: environment variable TEST_EVENT_EMPTY is not set or empty"},
		"short key":    {eventOptions{URL: url, OwnerKey: eventOwnerKey, Type: "check_url", AESKeyEnv: "TEST_EVENT_SHORT_KEY"}, "40 characters instead of 43"},
		"missing json": {eventOptions{URL: url, OwnerKey: eventOwnerKey, Type: "x", JSONFile: "/nonexistent.json"}, "--json"},
		"unreachable":  {eventOptions{URL: "http://127.0.0.1:1/events", OwnerKey: eventOwnerKey, Type: "check_url"}, "cannot reach"},
		"not http(s)":  {eventOptions{URL: "ftp://x/events", OwnerKey: eventOwnerKey, Type: "check_url"}, "not an absolute http(s) URL"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := runEventCmd(t, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if len(*pushes) != 0 {
		t.Errorf("%d pushes were sent by commands that should have stopped first", len(*pushes))
	}
}

package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

// TestEventLogsKeepSecrets runs pushes down every way through the handler
// with logging at DEBUG and checks that no line holds the token, the
// aes_key, the key's bytes in base64, or anything of an event's content;
// and that a bad configuration's errors do not either.
func TestEventLogsKeepSecrets(t *testing.T) {
	const secretInEvent = "s3cr3t-in-the-event"
	h := newTestEventHandler(t, &EventHandler{})
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	h.claims.logger = h.logger
	plaintext := dingtalktest.EventBody("user_add_org", "ev-logs", "dingcorp", map[string]any{"Mobile": secretInEvent})
	c := testEventCrypto(t)

	serveEvent(t, h, pushAt(t, []byte(`{"EventType":"check_url"}`), fixedNow), http.StatusOK)
	serveEvent(t, h, pushAt(t, plaintext, fixedNow), http.StatusInternalServerError) // failed, released
	serveEvent(t, h, pushAt(t, plaintext, fixedNow), http.StatusOK)                  // answered
	serveEvent(t, h, pushAt(t, plaintext, fixedNow), http.StatusOK)                  // duplicate
	bad := pushAt(t, plaintext, fixedNow)
	bad.URL.RawQuery = strings.Replace(bad.URL.RawQuery, "nonce=", "nonce=x", 1)
	serveEvent(t, h, bad, http.StatusOK) // bad_sign
	other, _ := event.New(eventToken, eventAESKey, "dingOTHER")
	req, _ := dingtalktest.NewEventRequest("http://gateway.test/events", other, plaintext, fixedNow)
	serveEvent(t, h, req, http.StatusOK)                                                                    // owner_key
	serveEvent(t, h, pushAt(t, []byte(`{"EventType":1,"x":"`+secretInEvent+`"}`), fixedNow), http.StatusOK) // bad_plaintext
	if logs.Len() < 8 {
		t.Fatalf("only %d lines logged: the paths above did not run", logs.Len())
	}

	forbidden := []string{eventToken, eventAESKey, secretInEvent, c.Encrypt(plaintext)[:20]}
	for _, entry := range logs.All() {
		line := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, s := range forbidden {
			if strings.Contains(line, s) {
				t.Errorf("a log line holds %q: %s", s, line)
			}
		}
	}

	for name, eh := range map[string]*EventHandler{
		"short aes_key":   {Token: eventToken, AESKey: eventAESKey[:40], OwnerKey: eventOwnerKey},
		"aes_key not b64": {Token: eventToken, AESKey: "!" + eventAESKey[1:], OwnerKey: eventOwnerKey},
		"unset token":     {Token: "{env.CADDY_DINGTALK_UNSET_TOKEN}", AESKey: eventAESKey, OwnerKey: eventOwnerKey},
	} {
		err := eh.Provision(newTestConfig(t))
		if err == nil {
			t.Errorf("%s: provisioned", name)
			continue
		}
		for _, s := range []string{eventToken, eventAESKey[:20], eventAESKey[1:20]} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: the error holds %q: %v", name, s, err)
			}
		}
	}
}

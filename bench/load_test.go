package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// Every request the load sends is a correctly signed callback with a msgId
// of its own.
func TestCallbackIsSignedWithAFreshMsgID(t *testing.T) {
	cb, err := newCallback("127.0.0.1:1", "http://127.0.0.1:2/robot/sendBySession?session=x")
	if err != nil {
		t.Fatal(err)
	}
	wire := bytes.Clone(cb.wire)
	seen := map[string]bool{}
	for _, n := range []uint64{1, 2, 999_999_999_999} {
		setCounter(wire[cb.idEnd-idDigits:cb.idEnd], n)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(req.Body)
		ts, sign := req.Header.Get(dingtalk.HeaderTimestamp), req.Header.Get(dingtalk.HeaderSign)
		if !dingtalk.SignMatches(secret, ts, sign) || (dingtalk.Window{MaxAge: time.Hour}).Check(ts, time.Now()) != nil {
			t.Errorf("request %d: sign %q for timestamp %q does not verify", n, sign, ts)
		}
		msg, err := dingtalk.ParseMessage(body)
		if err != nil || req.ContentLength != int64(len(body)) {
			t.Fatalf("request %d: body %q: %v", n, body, err)
		}
		if seen[msg.MsgID] || msg.SessionWebhook != "http://127.0.0.1:2/robot/sendBySession?session=x" {
			t.Errorf("request %d: msgId %q (seen: %v), sessionWebhook %q", n, msg.MsgID, seen[msg.MsgID], msg.SessionWebhook)
		}
		seen[msg.MsgID] = true
	}
}

package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// Every request the load sends is a callback with a msgId of its own,
// signed at the millisecond it is sent in, inside the sign table's span or
// after it.
func TestCallbackIsSignedWithAFreshMsgID(t *testing.T) {
	const webhook = "http://127.0.0.1:2/robot/sendBySession?session=x"
	cb, err := newCallback("127.0.0.1:1", webhook, newSignTable(time.Now(), 1000))
	if err != nil {
		t.Fatal(err)
	}
	wire := bytes.Clone(cb.wire)
	seen := map[string]bool{}
	for n, ms := range map[uint64]int64{1: cb.signs.start, 2: cb.signs.start + 999, 999_999_999_999: cb.signs.start + 5000} {
		setCounter(wire[cb.idEnd-idDigits:cb.idEnd], n)
		cb.stamp(wire, ms)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(req.Body)
		ts, sign := req.Header.Get(dingtalk.HeaderTimestamp), req.Header.Get(dingtalk.HeaderSign)
		if ts != strconv.FormatInt(ms, 10) || !dingtalk.SignMatches(secret, ts, sign) {
			t.Errorf("request %d: sign %q for timestamp %q, want a valid sign for %d", n, sign, ts, ms)
		}
		msg, err := dingtalk.ParseMessage(body)
		if err != nil || req.ContentLength != int64(len(body)) {
			t.Fatalf("request %d: body %q: %v", n, body, err)
		}
		if seen[msg.MsgID] || msg.SessionWebhook != webhook {
			t.Errorf("request %d: msgId %q (seen: %v), sessionWebhook %q", n, msg.MsgID, seen[msg.MsgID], msg.SessionWebhook)
		}
		seen[msg.MsgID] = true
	}
}

// With ownTimes, each callback is signed for a millisecond of its own.
func TestCallbacksWithTimesOfTheirOwn(t *testing.T) {
	cb, err := newCallback("127.0.0.1:1", "", newSignTable(time.Now().Add(-time.Minute), 2))
	if err != nil {
		t.Fatal(err)
	}
	cb.ownTimes = true
	now := time.Now()
	for i := range int64(3) {
		if got := cb.millisecond(now); got != cb.signs.start+i {
			t.Errorf("callback %d signed for %d, want %d", i, got, cb.signs.start+i)
		}
	}
}

package caddymodule

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// How FuzzVerify builds the headers: bits of its `headers` argument.
const (
	fuzzSecondTimestamp = 1 << iota // send the timestamp header twice
	fuzzSecondSign                  // send the sign header twice
	fuzzNoTimestamp                 // leave the timestamp header out
	fuzzNoSign                      // leave the sign header out
)

// FuzzVerify runs requests built from fuzzed parts through the handler with
// a fixed clock and checks the gateway's promise both ways: a request
// reaches the next handler if and only if it is a POST with one timestamp
// and one sign, the timestamp is a millisecond count inside the window, the
// sign is exactly dingtalk.Sign of that timestamp under a configured bot's
// secret, and the body is at most max_body, parses, and carries the first
// such bot's robot code when it has one. signWith 1 or 2 replaces the
// fuzzed sign with the genuine sign of bot 1 or 2, so that the fuzzer also
// explores what happens after the sign matched.
func FuzzVerify(f *testing.F) {
	bots := []Bot{{Name: "old", Secret: "old secret"}, {Name: "coded", Secret: testSecret, RobotCode: "dingrobot1"}}
	const maxBody = 4096
	h := newTestHandler(f, &Handler{Bots: bots, MaxBody: maxBody, Dedupe: "off", ReplayGuard: new(false)})
	h.logger = zap.NewNop() // a WARN with a stack trace per rejection would slow the fuzzer down tenfold

	ts := strconv.FormatInt(fixedNow.UnixMilli(), 10)
	genuine := dingtalktest.Callback{Text: "hi", MsgID: "msg1", Now: fixedNow}.Body()
	sign := dingtalk.Sign(testSecret, ts)
	for _, seed := range []struct {
		method, ts, sign  string
		signWith, headers uint8
		body              []byte
	}{
		{"POST", ts, "", 2, 0, genuine},
		{"POST", ts, "", 1, 0, genuine},
		{"POST", ts, sign, 0, 0, genuine},
		{"POST", ts, url.QueryEscape(sign), 0, 0, genuine},
		{"POST", ts, " " + sign, 0, 0, genuine},
		{"GET", ts, "", 2, 0, nil},
		{"post", ts, "", 2, 0, genuine},
		{"POST", ts, "", 2, fuzzSecondTimestamp, genuine},
		{"POST", ts, "", 2, fuzzSecondSign, genuine},
		{"POST", ts, "", 2, fuzzNoSign, genuine},
		{"POST", strconv.FormatInt(fixedNow.Unix(), 10), "", 2, 0, genuine},
		{"POST", strconv.FormatInt(fixedNow.Add(-time.Hour).UnixMilli(), 10), "", 2, 0, genuine},
		{"POST", strconv.FormatInt(fixedNow.Add(-time.Hour-time.Millisecond).UnixMilli(), 10), "", 2, 0, genuine},
		{"POST", strconv.FormatInt(fixedNow.Add(5*time.Minute+time.Millisecond).UnixMilli(), 10), "", 2, 0, genuine},
		{"POST", "-" + ts, "", 2, 0, genuine},
		{"POST", "0" + ts, "", 2, 0, genuine},   // signed over the raw header: accepted
		{"POST", "0" + ts, sign, 0, 0, genuine}, // signed over the number reformatted: refused
		{"POST", "99999999999999999999", "", 2, 0, genuine},
		{"POST", "１８００００００００００００", "", 2, 0, genuine},
		{"POST", ts, "", 2, 0, []byte(`{"msgtype":"text","msgId":"a","robotCode":"other","ROBOTCODE":"dingrobot1"}`)},
		{"POST", ts, "", 2, 0, []byte(`{"msgtype":"text","msgId":"a","msgId":"b","robotCode":"dingrobot1"}`)},
		{"POST", ts, "", 1, 0, []byte(`{"msgtype":"text","msgId":"a"}`)},
		{"POST", ts, "", 2, 0, []byte(`{"msgtype":"text","msgId":"a"}`)},
		{"POST", ts, "", 2, 0, bytes.Repeat([]byte(" "), maxBody+1)},
		{"POST", ts, "", 2, 0, []byte(`not json`)},
	} {
		f.Add(seed.method, seed.ts, seed.sign, seed.signWith, seed.headers, seed.body)
	}

	f.Fuzz(func(t *testing.T, method, timestamp, sign string, signWith, headers uint8, body []byte) {
		if i := int(signWith % 3); i > 0 {
			sign = dingtalk.Sign(bots[i-1].Secret, timestamp)
		}
		req, err := http.NewRequest(method, "http://gateway.test/robot", bytes.NewReader(body))
		if err != nil {
			return // not a method net/http would let through
		}
		if headers&fuzzNoTimestamp == 0 {
			req.Header.Add(dingtalk.HeaderTimestamp, timestamp)
		}
		if headers&fuzzSecondTimestamp != 0 {
			req.Header.Add(dingtalk.HeaderTimestamp, timestamp)
		}
		if headers&fuzzNoSign == 0 {
			req.Header.Add(dingtalk.HeaderSign, sign)
		}
		if headers&fuzzSecondSign != 0 {
			req.Header.Add(dingtalk.HeaderSign, sign)
		}
		got := serve(h, req)

		// What the gateway promises, read plainly from the request.
		copies := func(leftOut, twice uint8) int {
			n := 1
			if headers&leftOut != 0 {
				n--
			}
			if headers&twice != 0 {
				n++
			}
			return n
		}
		oneEach := copies(fuzzNoTimestamp, fuzzSecondTimestamp) == 1 && copies(fuzzNoSign, fuzzSecondSign) == 1 &&
			timestamp != "" && sign != ""
		ms, parseErr := strconv.ParseUint(timestamp, 10, 63)
		now := uint64(fixedNow.UnixMilli())
		inWindow := parseErr == nil && len(timestamp) <= 15 &&
			ms >= now-uint64(time.Hour/time.Millisecond) && ms <= now+uint64(5*time.Minute/time.Millisecond)
		var signer *Bot
		for i := range bots {
			if sign == dingtalk.Sign(bots[i].Secret, timestamp) {
				signer = &bots[i]
				break
			}
		}
		msg, parseBodyErr := dingtalk.ParseMessage(body)
		bodyOK := len(body) <= maxBody && parseBodyErr == nil && signer != nil &&
			(signer.RobotCode == "" || msg.RobotCode == signer.RobotCode)
		want := method == http.MethodPost && oneEach && inWindow && signer != nil && bodyOK

		if (got.reached != nil) != want {
			t.Fatalf("reached next: %v, want %v (status %d %q; POST %v, one each %v, in window %v, signer %v, body ok %v)",
				got.reached != nil, want, got.status, got.reason, method == http.MethodPost, oneEach, inWindow, signer, bodyOK)
		}
		if !want {
			if got.reason == "" || got.status < 400 || got.status > 499 {
				t.Fatalf("refused with status %d and reason %q", got.status, got.reason)
			}
			return
		}
		if bot := got.reached.Header.Values(headerBot); len(bot) != 1 || bot[0] != signer.Name {
			t.Fatalf("X-Dingtalk-Bot = %q, want %q", bot, signer.Name)
		}
		forwarded, err := io.ReadAll(got.reached.Body)
		if err != nil || !bytes.Equal(forwarded, body) || got.reached.ContentLength != int64(len(body)) {
			t.Fatalf("forwarded %q (length %d), want the body as received", forwarded, got.reached.ContentLength)
		}
		if v, ok := VerifiedFrom(got.reached.Context()); !ok || v.Bot != signer.Name || v.Message.MsgID != msg.MsgID {
			t.Fatalf("verified message %+v", v)
		}
	})
}

package caddymodule

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/event"
)

// The subscription of these tests: the second vector of the protocol notes.
const (
	eventToken    = "mryue"
	eventAESKey   = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
	eventOwnerKey = "ding6ccabc44d2c8d38b"
)

// testEventCrypto is the subscription's crypto, as DingTalk has it.
func testEventCrypto(t testing.TB) *event.Crypto {
	t.Helper()
	c, err := event.New(eventToken, eventAESKey, eventOwnerKey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newTestEventHandler provisions h with the test subscription (where h
// leaves it unset) and a fixed clock.
func newTestEventHandler(t testing.TB, h *EventHandler) *EventHandler {
	t.Helper()
	if h.Token == "" {
		h.Token, h.AESKey, h.OwnerKey = eventToken, eventAESKey, eventOwnerKey
	}
	if h.now == nil {
		h.now = func() time.Time { return fixedNow }
	}
	if err := h.Provision(newTestConfig(t)); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	return h
}

// pushAt is a push of plaintext as DingTalk sends it at at.
func pushAt(t testing.TB, plaintext []byte, at time.Time) *http.Request {
	t.Helper()
	req, err := dingtalktest.NewEventRequest("http://gateway.test/events", testEventCrypto(t), plaintext, at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// eventServed is what became of a push.
type eventServed struct {
	status  int
	reason  string
	answer  []byte        // the answer's body
	reached *http.Request // what the next handler got, nil when not reached
	body    string        // the body the next handler read
	repl    *caddy.Replacer
}

// serveEvent runs req through h with next answering nextStatus.
func serveEvent(t testing.TB, h *EventHandler, req *http.Request, nextStatus int) eventServed {
	t.Helper()
	req, repl := caddyRequest(req)
	out := eventServed{repl: repl}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		out.reached = r
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r.Body); err != nil {
			t.Error(err)
		}
		out.body = buf.String()
		w.WriteHeader(nextStatus)
		_, _ = w.Write([]byte("the backend's own answer"))
		return nil
	})
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req, next)
	out.status, out.answer = rec.Code, rec.Body.Bytes()
	var herr caddyhttp.HandlerError
	if errors.As(err, &herr) {
		out.status = herr.StatusCode
	} else if err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	if reason, ok := repl.Get(eventPlaceholderPrefix + "reject_reason"); ok {
		out.reason = reason.(string)
	}
	return out
}

// assertSuccess checks that the answer is DingTalk's encrypted success,
// signed with the token.
func assertSuccess(t testing.TB, got eventServed) {
	t.Helper()
	if got.status != http.StatusOK {
		t.Fatalf("status %d (%q), want 200", got.status, got.reason)
	}
	plain, err := testEventCrypto(t).OpenAnswer(got.answer)
	if err != nil || !event.IsSuccess(plain) {
		t.Fatalf("answer %s opens to %q, %v; want the encrypted success", got.answer, plain, err)
	}
}

// TestEventCheckURLVectors answers DingTalk's own pushes, the protocol
// notes' two vectors as DingTalk sent them, with the encrypted success,
// without calling the rest of the route.
func TestEventCheckURLVectors(t *testing.T) {
	for _, v := range []struct {
		name, token, aesKey, ownerKey, timestamp, nonce, signature, encrypt string
	}{
		{"check_url", eventToken, eventAESKey, eventOwnerKey, "1608001896814", "WL4PK6yA", "03044561471240d4a14bb09372dfcfd4fd0e40cb",
			"0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"},
		{"check_create_suite_url", "123456", "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij", "suite4xxxxxxxxxxxxxxx", "1445827045067", "nEXhMP4r", "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
			"1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ=="},
	} {
		t.Run(v.name, func(t *testing.T) {
			ms, _ := strconv.ParseInt(v.timestamp, 10, 64)
			h := newTestEventHandler(t, &EventHandler{Token: v.token, AESKey: v.aesKey, OwnerKey: v.ownerKey,
				now: func() time.Time { return time.UnixMilli(ms + 300) }})
			before := written(t, metrics.events.WithLabelValues(eventCheckURL)).GetCounter().GetValue()
			req := httptest.NewRequest(http.MethodPost, "/events?msg_signature="+v.signature+"&timeStamp="+v.timestamp+"&nonce="+v.nonce,
				strings.NewReader(`{"encrypt":"`+v.encrypt+`"}`))
			got := serveEvent(t, h, req, http.StatusOK)
			if got.reached != nil {
				t.Fatal("the URL check reached the rest of the route")
			}
			if got.status != http.StatusOK {
				t.Fatalf("status %d (%q)", got.status, got.reason)
			}
			c, _ := event.New(v.token, v.aesKey, v.ownerKey)
			plain, err := c.OpenAnswer(got.answer)
			if err != nil || !event.IsSuccess(plain) {
				t.Fatalf("answer %s opens to %q, %v", got.answer, plain, err)
			}
			if after := written(t, metrics.events.WithLabelValues(eventCheckURL)).GetCounter().GetValue(); after != before+1 {
				t.Errorf("check_url counted %v times", after-before)
			}
		})
	}
}

// TestEventCheckURLWaitsForNothing is what keeps the URL check inside
// DingTalk's 1.5 s and our 100 ms: the answer depends on no backend and no
// store. Here both would block until the test ends; the check is still
// answered. (How fast the handler answers: BenchmarkEventCheckURL.)
func TestEventCheckURLWaitsForNothing(t *testing.T) {
	h := newTestEventHandler(t, &EventHandler{})
	blocked := make(chan struct{})
	defer close(blocked)
	h.claims.store = blockingStore{blocked}
	req, _ := caddyRequest(pushAt(t, []byte(`{"EventType":"check_url"}`), fixedNow))
	rec := httptest.NewRecorder()
	done := make(chan error, 1)
	go func() {
		done <- h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			<-blocked
			return nil
		}))
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second): // a deadline for a hang, not a speed assertion
		t.Fatal("the URL check waits for the backend or the store")
	}
	assertSuccess(t, eventServed{status: rec.Code, answer: rec.Body.Bytes()})
	// Positive control: an ordinary event does wait for the store.
	go func() {
		req, _ := caddyRequest(pushAt(t, dingtalktest.EventBody("user_add_org", "ev-wait", "", nil), fixedNow))
		done <- h.ServeHTTP(httptest.NewRecorder(), req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	}()
	select {
	case <-done:
		t.Fatal("an event was answered although the store blocks: the first half of this test proves nothing")
	case <-time.After(50 * time.Millisecond): // the control may only make this test pass less often, never flake it
	}
}

// blockingStore blocks every call until its channel closes.
type blockingStore struct{ blocked chan struct{} }

func (s blockingStore) Claim(context.Context, string, Token, time.Time, time.Duration) (bool, error) {
	<-s.blocked
	return false, errors.New("closed")
}
func (s blockingStore) Keep(context.Context, string, Token, time.Time, time.Duration) error {
	<-s.blocked
	return nil
}
func (s blockingStore) Release(context.Context, string, Token) error { <-s.blocked; return nil }

// TestEventPassedOn passes an event on as plain JSON with its type, and
// answers DingTalk the encrypted success whatever the backend wrote.
func TestEventPassedOn(t *testing.T) {
	h := newTestEventHandler(t, &EventHandler{})
	plaintext := dingtalktest.EventBody("user_add_org", "ev-1", "dingcorp", map[string]any{"UserId": []string{"u1"}})
	req := pushAt(t, plaintext, fixedNow)
	req.Header.Set("X-Dingtalk-Event-Type", "forged")
	req.Header.Set("X-Dingtalk-Bot", "forged")
	got := serveEvent(t, h, req, http.StatusAccepted)
	assertSuccess(t, got)
	r := got.reached
	if r == nil {
		t.Fatal("not passed on")
	}
	if got.body != string(plaintext) {
		t.Errorf("next read %q, want the plaintext %q", got.body, plaintext)
	}
	if r.ContentLength != int64(len(plaintext)) || r.Header.Get("Content-Length") != strconv.Itoa(len(plaintext)) {
		t.Errorf("Content-Length %d / %q, want %d", r.ContentLength, r.Header.Get("Content-Length"), len(plaintext))
	}
	if got := r.Header.Values("X-Dingtalk-Event-Type"); len(got) != 1 || got[0] != "user_add_org" {
		t.Errorf("X-Dingtalk-Event-Type = %q", got)
	}
	if r.Header.Get("X-Dingtalk-Bot") != "" {
		t.Error("the client's X-Dingtalk-Bot header reached the backend")
	}
	for name, want := range map[string]string{"type": "user_add_org", "id": "ev-1", "corp_id": "dingcorp"} {
		if value, _ := got.repl.Get(eventPlaceholderPrefix + name); value != want {
			t.Errorf("{%s%s} = %v, want %q", eventPlaceholderPrefix, name, value, want)
		}
	}
	if v, ok := EventFrom(r.Context()); !ok || v.Event.Type != "user_add_org" {
		t.Errorf("EventFrom = %+v, %v", v, ok)
	}
}

// TestEventRejectionReasons sends a push wrong in each way the handler
// checks: each is refused with its status and reason, counted, and does
// not reach the rest of the route.
func TestEventRejectionReasons(t *testing.T) {
	c := testEventCrypto(t)
	h := newTestEventHandler(t, &EventHandler{MaxBody: 1024})
	ts := strconv.FormatInt(fixedNow.UnixMilli(), 10)
	good := dingtalktest.EventBody("user_add_org", "ev-r", "", nil)
	// signed returns a push whose signature is right for whatever encrypt it carries.
	signed := func(encrypt string, query func(q map[string]string)) *http.Request {
		q := map[string]string{"msg_signature": event.Signature(eventToken, ts, "n0nce", encrypt), "timestamp": ts, "nonce": "n0nce"}
		if query != nil {
			query(q)
		}
		var parts []string
		for k, v := range q {
			parts = append(parts, k+"="+v)
		}
		return httptest.NewRequest(http.MethodPost, "/events?"+strings.Join(parts, "&"), strings.NewReader(`{"encrypt":"`+encrypt+`"}`))
	}
	other, _ := event.New(eventToken, eventAESKey, "dingOTHER")
	encrypt := c.Encrypt(good)
	cases := []struct {
		name   string
		req    *http.Request
		status int
		reason string
	}{
		{"GET", httptest.NewRequest(http.MethodGet, "/events", nil), 405, reasonMethod},
		{"no signature", signed(encrypt, func(q map[string]string) { delete(q, "msg_signature") }), 401, reasonMissingParams},
		{"no nonce", signed(encrypt, func(q map[string]string) { delete(q, "nonce") }), 401, reasonMissingParams},
		{"no timestamp", signed(encrypt, func(q map[string]string) { delete(q, "timestamp") }), 401, reasonMissingParams},
		{"both signature spellings", signed(encrypt, func(q map[string]string) { q["signature"] = q["msg_signature"] }), 401, reasonMissingParams},
		{"both timestamp spellings", signed(encrypt, func(q map[string]string) { q["timeStamp"] = ts }), 401, reasonMissingParams},
		{"timestamp in seconds", signed(encrypt, func(q map[string]string) { q["timestamp"] = ts[:10] }), 401, reasonExpired},
		{"timestamp ahead", signed(encrypt, func(q map[string]string) {
			q["timestamp"] = strconv.FormatInt(fixedNow.Add(6*time.Minute).UnixMilli(), 10)
		}), 401, reasonFuture},
		{"timestamp not digits", signed(encrypt, func(q map[string]string) { q["timestamp"] = "x" + ts }), 401, reasonBadTimestamp},
		{"too large", httptest.NewRequest(http.MethodPost, "/events?"+c.Seal(good, ts, "n").Query().Encode(), strings.NewReader(strings.Repeat(" ", 1025))), 413, reasonTooLarge},
		{"body not JSON", httptest.NewRequest(http.MethodPost, "/events?"+c.Seal(good, ts, "n").Query().Encode(), strings.NewReader("encrypt=x")), 400, reasonBadBody},
		{"no encrypt", httptest.NewRequest(http.MethodPost, "/events?"+c.Seal(good, ts, "n").Query().Encode(), strings.NewReader(`{"Encrypt2":"x"}`)), 400, reasonBadBody},
		{"bad signature", signed(encrypt, func(q map[string]string) { q["nonce"] = "other" }), 401, reasonBadSign},
		{"signature with another token", signed(encrypt, func(q map[string]string) {
			q["msg_signature"] = event.Signature("other", ts, "n0nce", encrypt)
		}), 401, reasonBadSign},
		{"bad ciphertext", signed(encrypt[:len(encrypt)-4]+"AAAA", nil), 400, reasonBadCiphertext},
		{"another owner key", signed(other.Encrypt(good), nil), 403, reasonOwnerKey},
		{"plaintext not JSON", signed(c.Encrypt([]byte("success")), nil), 400, reasonBadPlaintext},
		{"plaintext without EventType", signed(c.Encrypt([]byte(`{"eventId":"x"}`)), nil), 400, reasonBadPlaintext},
		{"EventType with a newline", signed(c.Encrypt([]byte(`{"EventType":"a\nX-Injected: 1"}`)), nil), 400, reasonBadPlaintext},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := written(t, metrics.events.WithLabelValues(tc.reason)).GetCounter().GetValue()
			got := serveEvent(t, h, tc.req, http.StatusOK)
			if got.status != tc.status || got.reason != tc.reason || got.reached != nil {
				t.Errorf("got %d %q (reached next: %v), want %d %q", got.status, got.reason, got.reached != nil, tc.status, tc.reason)
			}
			if after := written(t, metrics.events.WithLabelValues(tc.reason)).GetCounter().GetValue(); after != before+1 {
				t.Errorf("%s counted %v times", tc.reason, after-before)
			}
		})
	}
	// The good push passes, so that each case above fails for its own reason.
	if got := serveEvent(t, h, signed(encrypt, nil), http.StatusOK); got.reached == nil {
		t.Fatalf("the well-formed push is refused: %d %q", got.status, got.reason)
	}
}

// TestEventMalformedCiphertexts signs ciphertexts that are wrong in each
// way decryption knows of: each is a 400 bad_ciphertext, none panics or
// reaches the rest of the route.
func TestEventMalformedCiphertexts(t *testing.T) {
	h := newTestEventHandler(t, &EventHandler{})
	c := testEventCrypto(t)
	key, _ := base64.StdEncoding.DecodeString(eventAESKey + "=")
	blk, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(raw []byte) string { // whole AES blocks, encrypted as they are
		buf := bytes.Clone(raw)
		cipher.NewCBCEncrypter(blk, key[:16]).CryptBlocks(buf, buf)
		return base64.StdEncoding.EncodeToString(buf)
	}
	content := append(append(append(make([]byte, 16), 0, 0, 0, 25), `{"EventType":"check_url"}`...), eventOwnerKey...) // 65 bytes
	pad := func(b []byte, n int, value byte) []byte {
		return append(bytes.Clone(b), bytes.Repeat([]byte{value}, n)...)
	}
	lengthBeyond := bytes.Clone(content)
	lengthBeyond[19] = 200
	valid := c.Encrypt([]byte(`{"EventType":"x"}`))
	for name, encrypt := range map[string]string{
		"bad base64":               "%%%%" + valid[4:],
		"16 bytes short of blocks": valid[:len(valid)-24] + "AAAA",
		"one AES block":            seal(make([]byte, 16)),
		"padding bytes differ":     seal(append(pad(content, 30, 7), 31)),
		"padding beyond a block":   seal(pad(content[:64], 32, 33)),
		"length field beyond data": seal(pad(lengthBeyond, 31, 31)),
		"16-byte padding":          seal(pad(content, 15, 15)),
	} {
		t.Run(name, func(t *testing.T) {
			ts := strconv.FormatInt(fixedNow.UnixMilli(), 10)
			req := httptest.NewRequest(http.MethodPost, "/events?"+(event.Envelope{
				Signature: event.Signature(eventToken, ts, "n", encrypt), Timestamp: ts, Nonce: "n", Encrypt: encrypt,
			}).Query().Encode(), strings.NewReader(`{"encrypt":"`+encrypt+`"}`))
			got := serveEvent(t, h, req, http.StatusOK)
			if got.status != http.StatusBadRequest || got.reason != reasonBadCiphertext || got.reached != nil {
				t.Errorf("got %d %q (reached next: %v), want 400 bad_ciphertext", got.status, got.reason, got.reached != nil)
			}
		})
	}
}

// TestEventRedeliveryDeduplicated delivers one event three times, each
// encrypted anew as DingTalk's redelivery is: the backend gets it once,
// DingTalk gets success every time.
func TestEventRedeliveryDeduplicated(t *testing.T) {
	h := newTestEventHandler(t, &EventHandler{})
	for _, plaintext := range [][]byte{
		dingtalktest.EventBody("user_add_org", "ev-dup", "", nil),
		dingtalktest.EventBody("user_leave_org", "", "", map[string]any{"UserId": []string{"u9"}}), // no id: known by its JSON
	} {
		reached := 0
		for delivery := range 3 {
			got := serveEvent(t, h, pushAt(t, plaintext, fixedNow.Add(time.Duration(delivery)*time.Minute)), http.StatusOK)
			assertSuccess(t, got)
			if got.reached != nil {
				reached++
			}
		}
		if reached != 1 {
			t.Errorf("%s reached the backend %d times, want once", plaintext, reached)
		}
	}
	// Another event without an id is another event.
	if got := serveEvent(t, h, pushAt(t, dingtalktest.EventBody("user_leave_org", "", "", map[string]any{"UserId": []string{"u10"}}), fixedNow), http.StatusOK); got.reached == nil {
		t.Error("a different event without an id was taken for a duplicate")
	}
}

// TestEventBackendFailureReleases answers an event with what a failing
// route gives, so that DingTalk delivers it again, and passes the
// redelivery on: the event's id was released.
func TestEventBackendFailureReleases(t *testing.T) {
	for _, tc := range []struct {
		name       string
		nextStatus int
		want       int
	}{
		{"500", http.StatusInternalServerError, http.StatusInternalServerError},
		{"404", http.StatusNotFound, http.StatusNotFound},
		{"302", http.StatusFound, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestEventHandler(t, &EventHandler{})
			plaintext := dingtalktest.EventBody("bpms_task_change", "ev-fail-"+tc.name, "", nil)
			got := serveEvent(t, h, pushAt(t, plaintext, fixedNow), tc.nextStatus)
			if got.reached == nil || got.status != tc.want {
				t.Fatalf("got %d (reached: %v), want %d", got.status, got.reached != nil, tc.want)
			}
			if plain, err := testEventCrypto(t).OpenAnswer(got.answer); err == nil {
				t.Fatalf("a failed event was answered %q", plain)
			}
			again := serveEvent(t, h, pushAt(t, plaintext, fixedNow.Add(time.Minute)), http.StatusOK)
			if again.reached == nil {
				t.Fatal("the redelivery did not reach the backend: the id was not released")
			}
			assertSuccess(t, again)
		})
	}
	t.Run("error and panic", func(t *testing.T) {
		h := newTestEventHandler(t, &EventHandler{})
		plaintext := dingtalktest.EventBody("bpms_task_change", "ev-err", "", nil)
		req, _ := caddyRequest(pushAt(t, plaintext, fixedNow))
		err := h.ServeHTTP(httptest.NewRecorder(), req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusBadGateway, errors.New("upstream down"))
		}))
		var herr caddyhttp.HandlerError
		if !errors.As(err, &herr) || herr.StatusCode != http.StatusBadGateway {
			t.Fatalf("err = %v, want the route's 502", err)
		}
		func() {
			defer func() { _ = recover() }()
			req, _ := caddyRequest(pushAt(t, plaintext, fixedNow))
			_ = h.ServeHTTP(httptest.NewRecorder(), req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
				panic(http.ErrAbortHandler) // what reverse_proxy does when the upstream breaks off
			}))
		}()
		if got := serveEvent(t, h, pushAt(t, plaintext, fixedNow), http.StatusOK); got.reached == nil {
			t.Fatal("after an error and a panic, the redelivery did not reach the backend")
		}
	})
}

// TestEventStoreUnavailable answers 503 when the store fails, so that
// DingTalk delivers again, or passes the event on with on_error open.
func TestEventStoreUnavailable(t *testing.T) {
	h := newTestEventHandler(t, &EventHandler{})
	closed := make(chan struct{})
	close(closed)
	h.claims.store = blockingStore{closed} // every claim fails at once
	plaintext := dingtalktest.EventBody("user_add_org", "ev-store", "", nil)
	if got := serveEvent(t, h, pushAt(t, plaintext, fixedNow), http.StatusOK); got.status != http.StatusServiceUnavailable || got.reason != reasonStoreDown || got.reached != nil {
		t.Fatalf("got %d %q (reached: %v), want 503 store_unavailable", got.status, got.reason, got.reached != nil)
	}
	h.failOpen = true
	got := serveEvent(t, h, pushAt(t, plaintext, fixedNow), http.StatusOK)
	if got.reached == nil {
		t.Fatal("on_error open: not passed on")
	}
	assertSuccess(t, got)
}

// BenchmarkEventCheckURL is the handler's whole answer to DingTalk's URL
// check, which DingTalk wants within 1.5 s and the issue within 100 ms:
// verify, decrypt, encrypt and sign the success.
func BenchmarkEventCheckURL(b *testing.B) {
	h := newTestEventHandler(b, &EventHandler{})
	h.logger = zap.NewNop()
	c := testEventCrypto(b)
	ts := strconv.FormatInt(fixedNow.UnixMilli(), 10)
	e := c.Seal([]byte(`{"EventType":"check_url"}`), ts, "nonce")
	target, body := "/events?"+e.Query().Encode(), e.Body()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { b.Fatal("next reached"); return nil })
	b.ReportAllocs()
	for b.Loop() {
		req, _ := caddyRequest(httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body)))
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, req, next); err != nil || rec.Code != http.StatusOK {
			b.Fatalf("%d %v", rec.Code, err)
		}
	}
}

package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

const testSecret = "this is a secret"

// fixedNow is the handler's clock in these tests.
var fixedNow = time.UnixMilli(1_800_000_000_000)

// newTestHandler provisions h as Caddy would, with a fixed clock.
func newTestHandler(t testing.TB, h *Handler) *Handler {
	t.Helper()
	return provisionIn(t, newTestConfig(t), h)
}

// newTestConfig is the context of one config load.
func newTestConfig(t testing.TB) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// provisionIn provisions h in ctx, with a fixed clock.
func provisionIn(t testing.TB, ctx caddy.Context, h *Handler) *Handler {
	t.Helper()
	h.now = func() time.Time { return fixedNow }
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	return h
}

// serve runs req through h; next records whether it was reached.
type served struct {
	status  int
	reason  string
	reached *http.Request
	body    string
}

func serve(h *Handler, req *http.Request) served {
	req, repl := caddyRequest(req)
	var out served
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		out.reached = r
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req, next)
	out.status, out.body = rec.Code, rec.Body.String()
	if herr, ok := err.(caddyhttp.HandlerError); ok {
		out.status = herr.StatusCode
	}
	if reason, ok := repl.Get("http.dingtalk.reject_reason"); ok {
		out.reason = reason.(string)
	}
	return out
}

func signedAt(t testing.TB, secret string, at time.Time, body []byte) *http.Request {
	t.Helper()
	req, err := dingtalktest.NewRequest("http://gateway.test/robot", secret, body, at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestWindowBoundariesWithInjectedClock(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}, MaxAge: caddy.Duration(time.Hour), MaxFuture: caddy.Duration(time.Minute), Dedupe: "off"})
	cases := []struct {
		offset time.Duration
		status int
		reason string
	}{
		{-time.Hour, http.StatusNoContent, ""},
		{-time.Hour - time.Millisecond, http.StatusUnauthorized, "expired"},
		{time.Minute, http.StatusNoContent, ""},
		{time.Minute + time.Millisecond, http.StatusUnauthorized, "future"},
	}
	for _, c := range cases {
		got := serve(h, signedAt(t, testSecret, fixedNow.Add(c.offset), dingtalktest.Callback{Text: "hi"}.Body()))
		if got.status != c.status || got.reason != c.reason {
			t.Errorf("offset %v: got %d %q, want %d %q", c.offset, got.status, got.reason, c.status, c.reason)
		}
	}
}

func TestSecondsTimestampIsRejected(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	req := signedAt(t, testSecret, fixedNow, dingtalktest.Callback{Text: "hi"}.Body())
	ts := strconv.FormatInt(fixedNow.Unix(), 10)
	req.Header.Set("timestamp", ts)
	req.Header.Set("sign", dingtalk.Sign(testSecret, ts))
	if got := serve(h, req); got.status != http.StatusUnauthorized || got.reason != "expired" || got.reached != nil {
		t.Fatalf("got %d %q (reached next: %v)", got.status, got.reason, got.reached != nil)
	}
}

func TestEveryRejectionReason(t *testing.T) {
	h := newTestHandler(t, &Handler{
		Bots:    []Bot{{Name: "coded", Secret: testSecret, RobotCode: "dingrobot1"}},
		MaxBody: 2048,
	})
	good := dingtalktest.Callback{Text: "hi"}.Body()
	req := func(edit func(*http.Request)) *http.Request {
		r := signedAt(t, testSecret, fixedNow, good)
		if edit != nil {
			edit(r)
		}
		return r
	}
	withBody := func(body string) *http.Request {
		return signedAt(t, testSecret, fixedNow, []byte(body))
	}
	cases := []struct {
		name   string
		req    *http.Request
		status int
		reason string
	}{
		{"method", req(func(r *http.Request) { r.Method = http.MethodPut }), 405, "method"},
		{"missing_headers", req(func(r *http.Request) { r.Header.Del("sign") }), 401, "missing_headers"},
		{"empty header", req(func(r *http.Request) { r.Header.Set("timestamp", "") }), 401, "missing_headers"},
		{"bad_timestamp", req(func(r *http.Request) { r.Header.Set("timestamp", "1.8e12") }), 401, "bad_timestamp"},
		{"expired", signedAt(t, testSecret, fixedNow.Add(-2*time.Hour), good), 401, "expired"},
		{"future", signedAt(t, testSecret, fixedNow.Add(10*time.Minute), good), 401, "future"},
		{"bad_sign", signedAt(t, "wrong secret", fixedNow, good), 401, "bad_sign"},
		{"too_large", withBody(`{"x":"` + strings.Repeat("a", 2048) + `"}`), 413, "too_large"},
		{"bad_body", withBody(`{"msgtype":"text"}`), 400, "bad_body"},
		{"gzip body", req(func(r *http.Request) { r.Header.Set("Content-Encoding", "gzip") }), 400, "bad_body"},
		{"gzip in a second line", req(func(r *http.Request) {
			r.Header.Set("Content-Encoding", "identity")
			r.Header.Add("Content-Encoding", "gzip")
		}), 400, "bad_body"},
		{"robot_code", withBody(string(dingtalktest.Callback{Text: "hi", RobotCode: "someone else"}.Body())), 403, "robot_code"},
	}
	for _, c := range cases {
		got := serve(h, c.req)
		if got.status != c.status || got.reason != c.reason || got.reached != nil {
			t.Errorf("%s: got %d %q (reached next: %v), want %d %q", c.name, got.status, got.reason, got.reached != nil, c.status, c.reason)
		}
	}
}

// Two bots with the same secret (one robot's secret rotated onto another,
// or two robots of one app): the first configured one is the request's bot,
// and only its robot code is checked, never the second's instead.
func TestFirstMatchingBotWins(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{
		{Name: "first", Secret: testSecret, RobotCode: "dingrobot1"},
		{Name: "second", Secret: testSecret, RobotCode: "dingrobot2"},
	}})
	got := serve(h, signedAt(t, testSecret, fixedNow, dingtalktest.Callback{Text: "hi", RobotCode: "dingrobot1"}.Body()))
	if got.reached == nil {
		t.Fatalf("the first bot's callback was rejected: %d %q", got.status, got.reason)
	}
	if v, ok := VerifiedFrom(got.reached.Context()); !ok || v.Bot != "first" || got.reached.Header.Get("X-Dingtalk-Bot") != "first" {
		t.Fatalf("bot = %+v, header %q; want first", v, got.reached.Header.Get("X-Dingtalk-Bot"))
	}
	got = serve(h, signedAt(t, testSecret, fixedNow, dingtalktest.Callback{Text: "hi", RobotCode: "dingrobot2"}.Body()))
	if got.status != http.StatusForbidden || got.reason != "robot_code" || got.reached != nil {
		t.Fatalf("the second bot's code got %d %q (reached next: %v), want 403 robot_code: the first bot matched",
			got.status, got.reason, got.reached != nil)
	}
}

// A bot whose secret does not sign the request is passed over.
func TestTheSigningBotIsChosen(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{
		{Name: "old", Secret: "old secret"},
		{Name: "new", Secret: testSecret},
	}})
	got := serve(h, signedAt(t, testSecret, fixedNow, dingtalktest.Callback{Text: "hi"}.Body()))
	if got.reached == nil {
		t.Fatalf("rejected: %d %q", got.status, got.reason)
	}
	v, ok := VerifiedFrom(got.reached.Context())
	if !ok || v.Bot != "new" || got.reached.Header.Get("X-Dingtalk-Bot") != "new" {
		t.Fatalf("bot = %+v, header %q", v, got.reached.Header.Get("X-Dingtalk-Bot"))
	}
}

func TestPlaceholders(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	body := dingtalktest.Callback{Text: "hello\nworld", Group: true, MsgID: "msg1", SenderNick: "Ann", SenderStaffID: "u1", Now: fixedNow}.Body()
	var repl *caddy.Replacer
	req := signedAt(t, testSecret, fixedNow, body)
	got := serve(h, req)
	if got.reached == nil {
		t.Fatalf("rejected: %q", got.reason)
	}
	repl = got.reached.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	want := map[string]string{
		"bot": "default", "msg_id": "msg1", "msgtype": "text", "text": "hello\nworld",
		"sender_nick": "Ann", "sender_staff_id": "u1", "sender_id": "$:LWCP_v1:$sender", "sender_corp_id": "dingcorp1",
		"conversation_id": "cidGroup123==", "conversation_type": "group", "conversation_title": "robot test",
		"robot_code": "dingrobot1", "chatbot_user_id": "$:LWCP_v1:$bot", "is_admin": "true", "is_in_at_list": "true",
		"create_at": strconv.FormatInt(fixedNow.UnixMilli(), 10), "text.urlencoded": "hello%0Aworld", "has_media": "false",
	}
	for name, value := range want {
		if got := repl.ReplaceAll("{http.dingtalk."+name+"}", "<empty>"); got != value {
			t.Errorf("{http.dingtalk.%s} = %q, want %q", name, got, value)
		}
	}
	if got := repl.ReplaceAll("{http.dingtalk.session_webhook}", ""); !strings.HasPrefix(got, "https://oapi.dingtalk.com/robot/sendBySession?session=") {
		t.Errorf("session_webhook = %q", got)
	}
	if got := repl.ReplaceAll("{http.dingtalk.nope}", "unknown"); got != "unknown" {
		t.Errorf("an unknown name resolved to %q", got)
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for name, h := range map[string]*Handler{
		"unset variable": {Bots: []Bot{{Name: "b", Secret: "hunter2-{env.CADDY_DINGTALK_SURELY_UNSET}"}}},
		"duplicate name": {Bots: []Bot{{Name: "b", Secret: "hunter2-secret"}, {Name: "b", Secret: "hunter2-secret"}}},
	} {
		err := h.Provision(ctx)
		if err == nil {
			t.Errorf("%s: provisioned", name)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error shows the secret: %v", name, err)
		}
	}
	if err := (&Handler{}).Validate(); err == nil {
		t.Error("a handler without bots validated")
	}
}

// A richText's text reaches {http.dingtalk.text}; {http.dingtalk.has_media}
// tells that it carries a picture.
func TestRichTextPlaceholders(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	for _, tc := range []struct {
		msgType, text, media string
	}{{"richText", "see this", "true"}, {"picture", "", "true"}, {"text", "see this", "false"}} {
		cb := dingtalktest.Callback{MsgType: tc.msgType, Now: fixedNow}
		if tc.text != "" {
			cb.Text = tc.text
		}
		got := serve(h, signedAt(t, testSecret, fixedNow, cb.Body()))
		if got.reached == nil {
			t.Fatalf("%s rejected: %q", tc.msgType, got.reason)
		}
		repl := got.reached.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if text, media := repl.ReplaceAll("{http.dingtalk.text}", ""), repl.ReplaceAll("{http.dingtalk.has_media}", ""); text != tc.text || media != tc.media {
			t.Errorf("%s: text %q, has_media %q; want %q, %q", tc.msgType, text, media, tc.text, tc.media)
		}
	}
}

// A sign that was percent-encoded, and a timestamp in seconds, are named as
// such in the rejection that is logged.
func TestRejectionsSayWhatToFix(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	body := dingtalktest.Callback{Text: "hi", Now: fixedNow}.Body()
	for name, tc := range map[string]struct {
		change func(*http.Request)
		want   string
	}{
		"percent-encoded sign": {func(r *http.Request) { r.Header.Set("sign", url.QueryEscape(r.Header.Get("sign"))) }, "it is percent-encoded (%2B, %2F, %3D)"},
		"another sign": {func(r *http.Request) {
			r.Header.Set("sign", dingtalk.Sign("another secret", r.Header.Get("timestamp")))
		}, "sign matches no configured bot"},
		"seconds": {func(r *http.Request) {
			ts := strconv.FormatInt(fixedNow.Unix(), 10)
			r.Header.Set("timestamp", ts)
			r.Header.Set("sign", dingtalk.Sign(testSecret, ts))
		}, "it has 10 digits, like seconds since the epoch; DingTalk's are milliseconds (13 digits)"},
	} {
		req := signedAt(t, testSecret, fixedNow, body)
		tc.change(req)
		_, rj := h.verify(req, fixedNow)
		if rj == nil || rj.status != http.StatusUnauthorized || !strings.Contains(rj.err.Error(), tc.want) {
			t.Errorf("%s: rejection %v, want one saying %q", name, rj, tc.want)
		}
		if name == "another sign" && strings.Contains(rj.err.Error(), "percent") {
			t.Errorf("%s: %v", name, rj.err)
		}
	}
}

// The sign covers the timestamp header exactly as sent: a leading zero
// leaves the moment in the window but changes the sign (the protocol
// notes: sign the raw header string).
func TestSignCoversTheRawTimestamp(t *testing.T) {
	h := newTestHandler(t, &Handler{Bots: []Bot{{Name: "default", Secret: testSecret}}})
	ts := strconv.FormatInt(fixedNow.UnixMilli(), 10)
	for _, c := range []struct {
		signedOver string
		accepted   bool
	}{{"0" + ts, true}, {ts, false}} {
		req := signedAt(t, testSecret, fixedNow, dingtalktest.Callback{Text: "hi"}.Body())
		req.Header.Set("timestamp", "0"+ts)
		req.Header.Set("sign", dingtalk.Sign(testSecret, c.signedOver))
		got := serve(h, req)
		if c.accepted && got.reached == nil {
			t.Errorf("timestamp 0%s signed over %q: got %d %q, want it accepted", ts, c.signedOver, got.status, got.reason)
		}
		if !c.accepted && (got.status != http.StatusUnauthorized || got.reason != reasonBadSign) {
			t.Errorf("timestamp 0%s signed over %q: got %d %q, want 401 %q", ts, c.signedOver, got.status, got.reason, reasonBadSign)
		}
	}
}

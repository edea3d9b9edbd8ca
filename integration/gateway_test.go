package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// proxySite verifies /robot and proxies genuine callbacks to upstream.
func proxySite(upstream *dingtalktest.Recorder, options string) site {
	return site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			%s
		}
		reverse_proxy %s
	}`, testSecret, options, hostPort(upstream.URL))}
}

func TestGenuineCallbackReachesUpstreamUnchanged(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"msgtype":"text","text":{"content":"pong"}}`)
	}
	g := startGateway(t, proxySite(upstream, ""))

	body := callback("ping\nsecond line")
	resp := g.post("/robot", testSecret, body, func(r *http.Request) {
		r.Header.Set("X-Dingtalk-Bot", "spoofed")
		r.Header.Set("X-DingTalk-Admin", "true")
	})

	if resp.Status != http.StatusOK || resp.Body != `{"msgtype":"text","text":{"content":"pong"}}` {
		t.Fatalf("client got %d %q, want the upstream's reply", resp.Status, resp.Body)
	}
	got := upstream.Requests()
	if len(got) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(got))
	}
	mustEqualBytes(t, "forwarded body", got[0].Body, body)
	if bot := got[0].Header.Values("X-Dingtalk-Bot"); len(bot) != 1 || bot[0] != "default" {
		t.Errorf("X-Dingtalk-Bot = %q, want [default]", bot)
	}
	if v := got[0].Header.Get("X-Dingtalk-Admin"); v != "" {
		t.Errorf("client's X-Dingtalk-Admin reached the upstream: %q", v)
	}
	if got[0].Header.Get("Sign") == "" || got[0].Header.Get("Timestamp") == "" {
		t.Errorf("sign and timestamp must be forwarded by default, got %v", got[0].Header)
	}
}

func TestChunkedBodyIsForwardedWithItsLength(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	var contentLength atomic.Int64
	upstream.Handler = func(w http.ResponseWriter, r *http.Request) { contentLength.Store(r.ContentLength) }
	g := startGateway(t, proxySite(upstream, ""))

	body := callback("chunked")
	resp := g.post("/robot", testSecret, body, func(r *http.Request) {
		r.Body = readerOnly{bytes.NewReader(body)} // hides the length: sent chunked
		r.ContentLength = -1
	})
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.Status)
	}
	if got := contentLength.Load(); got != int64(len(body)) {
		t.Errorf("upstream saw Content-Length %d, want %d", got, len(body))
	}
	mustEqualBytes(t, "forwarded body", upstream.Requests()[0].Body, body)
}

type readerOnly struct{ *bytes.Reader }

func (readerOnly) Close() error { return nil }

func TestBadRequestsNeverReachUpstream(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	g := startGateway(t, site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			bot coded %q {
				robot_code dingrobot-expected
			}
			max_body 4KiB
		}
		reverse_proxy %s
	}
	handle_errors {
		respond "{http.dingtalk.reject_reason}"
	}`, testSecret, hostPort(upstream.URL))})

	now := time.Now()
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	good := dingtalktest.Callback{Text: "hi", RobotCode: "dingrobot-expected"}.Body()
	withHeaders := func(timestamp, sign string) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Del("timestamp")
			r.Header.Del("sign")
			if timestamp != "" {
				r.Header.Set("timestamp", timestamp)
			}
			if sign != "" {
				r.Header.Set("sign", sign)
			}
		}
	}
	signedAt := func(ts string) func(*http.Request) { return withHeaders(ts, dingtalk.Sign(testSecret, ts)) }
	seconds := strconv.FormatInt(now.Unix(), 10)

	cases := []struct {
		name   string
		body   []byte
		edit   func(*http.Request)
		status int
		reason string
	}{
		{"GET", nil, func(r *http.Request) { r.Method = http.MethodGet }, 405, "method"},
		{"no headers", good, withHeaders("", ""), 401, "missing_headers"},
		{"no sign", good, withHeaders(ts, ""), 401, "missing_headers"},
		{"no timestamp", good, withHeaders("", dingtalk.Sign(testSecret, ts)), 401, "missing_headers"},
		{"two signs", good, func(r *http.Request) { r.Header.Add("sign", r.Header.Get("sign")) }, 401, "missing_headers"},
		{"timestamp in seconds", good, signedAt(seconds), 401, "expired"},
		{"timestamp not a number", good, signedAt("12ab"), 401, "bad_timestamp"},
		{"negative timestamp", good, signedAt("-" + ts), 401, "bad_timestamp"},
		{"two hours old", good, signedAt(strconv.FormatInt(now.Add(-2*time.Hour).UnixMilli(), 10)), 401, "expired"},
		{"an hour ahead", good, signedAt(strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10)), 401, "future"},
		{"sign of another secret", good, withHeaders(ts, dingtalk.Sign("another secret", ts)), 401, "bad_sign"},
		{"sign of another timestamp", good, withHeaders(ts, dingtalk.Sign(testSecret, ts+"1")), 401, "bad_sign"},
		{"too large", append(good[:len(good)-1:len(good)-1], []byte(`,"pad":"`+strings.Repeat("x", 5000)+`"}`)...), nil, 413, "too_large"},
		{"not JSON", []byte("hello"), nil, 400, "bad_body"},
		{"no msgId", []byte(`{"msgtype":"text","text":{"content":"hi"}}`), nil, 400, "bad_body"},
		{"wrong robot code", dingtalktest.Callback{Text: "hi", RobotCode: "other"}.Body(), nil, 403, "robot_code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			edits := []func(*http.Request){}
			if c.edit != nil {
				edits = append(edits, c.edit)
			}
			resp := g.post("/robot", testSecret, c.body, edits...)
			if resp.Status != c.status || resp.Body != c.reason {
				t.Errorf("got %d %q, want %d %q", resp.Status, resp.Body, c.status, c.reason)
			}
		})
	}
	if n := upstream.Count(); n != 0 {
		t.Fatalf("upstream was reached %d times by bad requests", n)
	}
	// The same gateway does pass a good one: the cases above failed for their own reason.
	if resp := g.post("/robot", testSecret, good); resp.Status != 200 || upstream.Count() != 1 {
		t.Fatalf("a good callback got %d and reached the upstream %d times", resp.Status, upstream.Count())
	}
	if !strings.Contains(g.logs(), `"reason":"bad_sign"`) {
		t.Error("rejections must be logged with their reason")
	}
}

func TestRedeliveredMsgIDIsForwardedOnce(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	g := startGateway(t, proxySite(upstream, ""))

	body := callback("once")
	for i := range 3 {
		resp := g.post("/robot", testSecret, body)
		if resp.Status != http.StatusOK {
			t.Fatalf("delivery %d: status %d", i+1, resp.Status)
		}
		if i > 0 && resp.Body != `{"msgtype":"empty"}` {
			t.Errorf("redelivery %d answered %q, want the empty reply", i, resp.Body)
		}
	}
	if n := upstream.Count(); n != 1 {
		t.Fatalf("upstream saw the message %d times, want once", n)
	}
}

func TestFailedUpstreamReleasesTheMessage(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	var failing atomic.Bool
	failing.Store(true)
	upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
	g := startGateway(t, proxySite(upstream, ""))

	body := callback("retry me")
	if resp := g.post("/robot", testSecret, body); resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("first delivery got %d, want the upstream's 503", resp.Status)
	}
	failing.Store(false)
	if resp := g.post("/robot", testSecret, body); resp.Status != http.StatusOK {
		t.Fatalf("redelivery got %d, want 200", resp.Status)
	}
	if n := upstream.Count(); n != 2 {
		t.Fatalf("upstream saw %d deliveries, want 2 (the failed one must not count as done)", n)
	}
}

func TestSecondBotIsRecognised(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	g := startGateway(t, site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			bot sales "sales secret"
			bot support %q
		}
		reverse_proxy %s
	}`, testSecret, hostPort(upstream.URL))})

	if resp := g.post("/robot", testSecret, callback("hi")); resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
	if resp := g.post("/robot", "sales secret", callback("hi")); resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
	got := upstream.Requests()
	if len(got) != 2 || got[0].Header.Get("X-Dingtalk-Bot") != "support" || got[1].Header.Get("X-Dingtalk-Bot") != "sales" {
		t.Fatalf("bots seen by the upstream: %v", got)
	}
}

func TestForwardSignOffStripsTheCredential(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	g := startGateway(t, proxySite(upstream, "forward_sign off"))

	if resp := g.post("/robot", testSecret, callback("hi")); resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
	h := upstream.Requests()[0].Header
	if h.Get("Sign") != "" || h.Get("Timestamp") != "" {
		t.Fatalf("sign or timestamp reached the upstream: %v", h)
	}
}

func TestSecretFromEnvironment(t *testing.T) {
	t.Setenv("CADDY_DINGTALK_TEST_SECRET", "from the environment")
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	g := startGateway(t, site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret {env.CADDY_DINGTALK_TEST_SECRET}
		}
		reverse_proxy %s
	}`, hostPort(upstream.URL))})

	if resp := g.post("/robot", "from the environment", callback("hi")); resp.Status != 200 {
		t.Fatalf("status %d, want 200", resp.Status)
	}
	if resp := g.post("/robot", "{env.CADDY_DINGTALK_TEST_SECRET}", callback("hi")); resp.Status != 401 {
		t.Fatalf("the placeholder itself was accepted as the secret: status %d", resp.Status)
	}
	if strings.Contains(g.logs(), "from the environment") {
		t.Fatal("the secret appears in Caddy's log")
	}
}

// A multi-line message placed in a request header with header_up: the raw
// placeholder keeps its newline (and Go refuses to send it), the .urlencoded
// twin is the header-safe way.
func TestHeaderSafePlaceholders(t *testing.T) {
	upstream := dingtalktest.NewRecorder()
	defer upstream.Close()
	g := startGateway(t, site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
		}
		reverse_proxy %s {
			header_up X-Text {http.dingtalk.text.urlencoded}
			header_up X-Nick {http.dingtalk.sender_nick.urlencoded}
		}
	}`, testSecret, hostPort(upstream.URL))})

	body := dingtalktest.Callback{Text: "line one\r\nline two 你好", SenderNick: "Ann \"A\"\nB", Group: true}.Body()
	if resp := g.post("/robot", testSecret, body); resp.Status != 200 {
		t.Fatalf("a genuine multi-line callback got %d", resp.Status)
	}
	h := upstream.Requests()[0].Header
	if got, want := h.Get("X-Text"), "line%20one%0D%0Aline%20two%20%E4%BD%A0%E5%A5%BD"; got != want {
		t.Errorf("X-Text = %q, want %q", got, want)
	}
	if got, want := h.Get("X-Nick"), "Ann%20%22A%22%0AB"; got != want {
		t.Errorf("X-Nick = %q, want %q", got, want)
	}
}

// With the log filter that the README and every example ship, a valid sign
// appears in no log output, even when the upstream is down (Caddy's error
// log prints request headers) and access logs are on. Without the filter it
// does: that is why the filter is shipped, and it proves the test can fail.
func TestSignNeverLoggedWithTheShippedFilter(t *testing.T) {
	for _, filtered := range []bool{true, false} {
		t.Run(fmt.Sprintf("filter=%v", filtered), func(t *testing.T) {
			accessLog := t.TempDir() + "/access.log"
			format := "format json"
			if filtered {
				format = "format filter {\n\t\t\twrap json\n\t\t\trequest>headers>Sign delete\n\t\t}"
			}
			g := startGateway(t, site{FilterSign: filtered, ExpectSignInLogs: !filtered, Body: fmt.Sprintf(`
	log {
		output file %s
		%s
	}
	route /robot {
		dingtalk {
			secret %q
		}
		reverse_proxy 127.0.0.1:%s
	}`, accessLog, format, testSecret, freePort(t))})

			req, err := dingtalktest.NewRequest(g.URL+"/robot", testSecret, callback("hi"), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			sign := req.Header.Get("sign")
			if resp := g.do(req); resp.Status != http.StatusBadGateway {
				t.Fatalf("status %d, want 502 from the dead upstream", resp.Status)
			}
			access, err := os.ReadFile(accessLog)
			if err != nil {
				t.Fatal(err)
			}
			logs := g.logs() + string(access)
			if !strings.Contains(logs, `"status":502`) || !strings.Contains(logs, "Timestamp") {
				t.Fatalf("the logs do not show the failed request with its headers:\n%s", logs)
			}
			if leaked := strings.Contains(logs, sign); leaked != !filtered {
				t.Fatalf("sign in the logs: %v, want %v", leaked, !filtered)
			}
		})
	}
}

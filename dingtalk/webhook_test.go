package dingtalk_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// testToken stands for the session credential; no error may contain it.
const testToken = "SeSsIoNtOkEn4242"

// policyTricks are URLs that must never pass the default policy. The fuzz
// test seeds from them too.
var policyTricks = map[string]string{
	"userinfo":              "https://oapi.dingtalk.com@evil.com/robot/sendBySession?session=" + testToken,
	"empty userinfo":        "https://@oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"backslash userinfo":    `https://evil.com\@oapi.dingtalk.com/robot/sendBySession?session=` + testToken,
	"backslash path":        `https://oapi.dingtalk.com\robot?session=` + testToken,
	"other host":            "https://evil.com/robot/sendBySession?session=" + testToken,
	"starts with the host":  "https://oapi.dingtalk.com.evil.com/robot/sendBySession?session=" + testToken,
	"starts with it, .net":  "https://oapi.dingtalk.com.example.net/robot/sendBySession?session=" + testToken,
	"ends with the host":    "https://evil-oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"a subdomain of it":     "https://x.oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"trailing dot":          "https://oapi.dingtalk.com./robot/sendBySession?session=" + testToken,
	"default port":          "https://oapi.dingtalk.com:443/robot/sendBySession?session=" + testToken,
	"other port":            "https://oapi.dingtalk.com:8443/robot/sendBySession?session=" + testToken,
	"empty port":            "https://oapi.dingtalk.com:/robot/sendBySession?session=" + testToken,
	"plain http":            "http://oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"percent-encoded host":  "https://%6fapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"percent-encoded UTF-8": "https://%D0%BEapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"IPv6 zone":             "https://[::1%25eth0]:80/robot/sendBySession?session=" + testToken,
	"IPv6 loopback":         "https://[::1]/robot/sendBySession?session=" + testToken,
	"leading space":         " https://oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"trailing newline":      "https://oapi.dingtalk.com/robot/sendBySession?session=" + testToken + "\n",
	"space in path":         "https://oapi.dingtalk.com/x y?session=" + testToken,
	"tab in host":           "https://oapi.ding\ttalk.com/?session=" + testToken,
	"Cyrillic o":            "https://\u043eapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"Kelvin sign":           "https://oapi.din\u212atalk.com/?session=" + testToken,
	"punycode":              "https://xn--api-5cd.dingtalk.com/robot/sendBySession?session=" + testToken,
	"scheme-relative":       "//oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"opaque":                "https:oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"triple slash":          "https:///oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"double-slash path":     "https://oapi.dingtalk.com//evil.com/robot?session=" + testToken,
	"encoded double slash":  "https://oapi.dingtalk.com/%2F%2Fevil.com/robot?session=" + testToken,
	"fragment":              "https://oapi.dingtalk.com/robot/sendBySession?session=" + testToken + "#x",
	"javascript":            "javascript:alert(1)//?session=" + testToken,
	"bare javascript":       "javascript:",
	"ftp":                   "ftp://oapi.dingtalk.com/?session=" + testToken,
	"no scheme":             "oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
	"empty":                 "",
	"IP address":            "https://203.0.113.7/robot/sendBySession?session=" + testToken,
}

// Both the default policy and one that lists DingTalk's host refuse them.
func TestWebhookPolicyRejects(t *testing.T) {
	for policy, p := range map[string]dingtalk.WebhookPolicy{
		"default": {},
		"listed":  {AllowedHosts: []string{dingtalk.DefaultWebhookHost}},
	} {
		for name, raw := range policyTricks {
			t.Run(policy+"/"+name, func(t *testing.T) {
				u, err := p.Check(raw)
				if !errors.Is(err, dingtalk.ErrWebhookNotAllowed) || u != nil {
					t.Fatalf("Check(%q) = %v, %v; want refused", raw, u, err)
				}
				assertNoToken(t, err)
			})
		}
	}
}

func TestWebhookPolicyAccepts(t *testing.T) {
	var p dingtalk.WebhookPolicy
	for _, raw := range []string{
		"https://oapi.dingtalk.com/robot/sendBySession?session=" + testToken,
		"https://OAPI.DingTalk.com/robot/sendBySession?session=" + testToken, // host names are case-insensitive
		"HTTPS://oapi.dingtalk.com/robot/sendBySession?session=" + testToken, // net/url lower-cases the scheme
		"https://oapi.dingtalk.com",
		"https://oapi.dingtalk.com?session=" + testToken,
	} {
		u, err := p.Check(raw)
		if err != nil {
			t.Errorf("Check(%q): %v", raw, err)
			continue
		}
		if u.Scheme != "https" || u.Host != dingtalk.DefaultWebhookHost {
			t.Errorf("Check(%q) = %s, want scheme https and host %s", raw, u.Redacted(), dingtalk.DefaultWebhookHost)
		}
	}
}

func TestWebhookPolicyLoopback(t *testing.T) {
	p, err := dingtalk.NewWebhookPolicy([]string{"127.0.0.1:8080", "LocalHost:9000", "[::1]:7000", "oapi.dingtalk.com"})
	if err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]bool{
		"http://127.0.0.1:8080/robot?session=x":  true,
		"https://127.0.0.1:8080/robot?session=x": true,
		"http://localhost:9000/":                 true,
		"http://LOCALHOST:9000/":                 true,
		"http://[::1]:7000/":                     true,
		"https://oapi.dingtalk.com/":             true,
		"http://127.0.0.1:8081/":                 false, // another port
		"http://127.0.0.1:08080/":                false, // not the literal port
		"http://127.0.0.1/":                      false, // no port
		"https://127.0.0.1/":                     false,
		"http://127.0.0.2:8080/":                 false,
		"http://localhost:8080/":                 false,
		"http://[::1]:8080/":                     false,
		"http://[::1%25lo]:7000/":                false,
		"http://user@127.0.0.1:8080/":            false,
		"http://oapi.dingtalk.com/":              false,
	} {
		u, err := p.Check(raw)
		if got := err == nil; got != want {
			t.Errorf("Check(%q) = %v, %v; want allowed %v", raw, u, err, want)
		}
	}
}

func TestWebhookPolicyUnvalidatedEntries(t *testing.T) {
	// A policy built without NewWebhookPolicy still never allows a port or
	// plain http on a host that is not loopback.
	p := dingtalk.WebhookPolicy{AllowedHosts: []string{"evil.com:8080", "intranet.example", "https://x.example"}}
	for _, raw := range []string{"http://evil.com:8080/", "https://evil.com:8080/", "http://intranet.example/", "https://x.example/"} {
		if _, err := p.Check(raw); err == nil {
			t.Errorf("Check(%q) allowed", raw)
		}
	}
	if _, err := p.Check("https://intranet.example/"); err != nil {
		t.Errorf("a listed host: %v", err)
	}
}

func TestNewWebhookPolicy(t *testing.T) {
	p, err := dingtalk.NewWebhookPolicy([]string{"OAPI.DingTalk.com", "Localhost:8080", "[::1]:7000", "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"oapi.dingtalk.com", "localhost:8080", "[::1]:7000", "127.0.0.1:1"}
	if strings.Join(p.AllowedHosts, ",") != strings.Join(want, ",") {
		t.Errorf("AllowedHosts = %q, want %q", p.AllowedHosts, want)
	}

	p, err = dingtalk.NewWebhookPolicy(nil)
	if err != nil || len(p.AllowedHosts) != 0 {
		t.Fatalf("NewWebhookPolicy(nil) = %v, %v", p, err)
	}
	if _, err := p.Check("https://oapi.dingtalk.com/"); err != nil {
		t.Errorf("an empty list must allow the default host: %v", err)
	}

	for _, entry := range []string{
		"", "https://oapi.dingtalk.com", "oapi.dingtalk.com/robot", "oapi.dingtalk.com?x", "oapi.dingtalk.com#x",
		"user@oapi.dingtalk.com", "oapi.dingtalk.com:443", "evil.com:8080", "oapi.dingtalk.com.", " oapi.dingtalk.com",
		"\u043eapi.dingtalk.com", "a_b.example", "-a.example", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:08080",
		"127.0.0.1:", "[::1%25lo]:80", "::1", "[::1", `oapi.dingtalk.com\`, "*.dingtalk.com",
	} {
		if _, err := dingtalk.NewWebhookPolicy([]string{"oapi.dingtalk.com", entry}); err == nil {
			t.Errorf("NewWebhookPolicy accepted %q", entry)
		}
	}
}

func TestRedactWebhook(t *testing.T) {
	for raw, want := range map[string]string{
		"https://oapi.dingtalk.com/robot/sendBySession?session=" + testToken: "https://oapi.dingtalk.com/robot/sendBySession?session=REDACTED",
		"https://x.example/p?a=1&b=&" + testToken + "&&c=2":                  "https://x.example/p?a=REDACTED&b=REDACTED&REDACTED&&c=REDACTED",
		"https://u:" + testToken + "@x.example/#" + testToken:                "https://REDACTED@x.example/#REDACTED",
		"https:opaque?session=" + testToken:                                  "https:opaque?session=REDACTED",
		"https://x.example/p":                                                "https://x.example/p",
		"https://x.example/?session=%zz" + testToken:                         "https://x.example/?session=REDACTED",
		"http://[::1%zz]/?session=" + testToken:                              "(unparsable URL)",
		"https://x.example/\x00?session=" + testToken:                        "(unparsable URL)",
		"/relative?" + testToken:                                             "/relative?REDACTED",
	} {
		if got := dingtalk.RedactWebhook(raw); got != want {
			t.Errorf("RedactWebhook(%q) = %q, want %q", raw, got, want)
		}
	}
}

// testBody is a reply as a bot would send it.
var testBody = []byte(`{"msgtype":"text","text":{"content":"hi"}}`)

// newClient returns a client allowed to contact recs, with tiny backoffs.
func newClient(t *testing.T, recs ...*dingtalktest.Recorder) *dingtalk.WebhookClient {
	t.Helper()
	var hosts []string
	for _, rec := range recs {
		hosts = append(hosts, rec.Listener.Addr().String())
	}
	p, err := dingtalk.NewWebhookPolicy(hosts)
	if err != nil {
		t.Fatal(err)
	}
	return &dingtalk.WebhookClient{
		Policy:  p,
		Timeout: 5 * time.Second,
		Backoff: func(int) time.Duration { return time.Millisecond },
	}
}

func newRecorder(t *testing.T, handler http.HandlerFunc) *dingtalktest.Recorder {
	rec := dingtalktest.NewRecorder()
	rec.Handler = handler
	t.Cleanup(rec.Close)
	return rec
}

// webhookURL is a sessionWebhook URL on rec.
func webhookURL(rec *dingtalktest.Recorder) string {
	return rec.URL + "/robot/sendBySession?session=" + testToken
}

func post(c *dingtalk.WebhookClient, rawURL string) (*dingtalk.WebhookResult, error) {
	return c.PostURL(context.Background(), rawURL, time.Now().Add(time.Hour), testBody)
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Errorf("error reveals the session token: %v", err)
	}
}

func assertResult(t *testing.T, res *dingtalk.WebhookResult, want dingtalk.WebhookResult) {
	t.Helper()
	if res == nil || *res != want {
		t.Errorf("result = %+v, want %+v", res, want)
	}
}

func TestWebhookClientDelivers(t *testing.T) {
	rec := newRecorder(t, answer(http.StatusOK, `{"errcode":0,"errmsg":"ok"}`))
	res, err := post(newClient(t, rec), webhookURL(rec))
	if err != nil {
		t.Fatal(err)
	}
	assertResult(t, res, dingtalk.WebhookResult{Attempts: 1, Status: 200, Delivered: true, MaybeDelivered: true})
	got := rec.Requests()
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	r := got[0]
	if r.Method != http.MethodPost || r.Path != "/robot/sendBySession?session="+testToken ||
		r.Header.Get("Content-Type") != "application/json; charset=utf-8" || string(r.Body) != string(testBody) {
		t.Errorf("request = %s %s %q %s", r.Method, r.Path, r.Header.Get("Content-Type"), r.Body)
	}
}

func TestWebhookClientPostsMessage(t *testing.T) {
	rec := newRecorder(t, nil) // the default answer, {"msgtype":"empty"}, has no errcode
	msg := dingtalktest.Callback{Text: "hello", SessionWebhook: webhookURL(rec)}.Message()
	res, err := newClient(t, rec).Post(context.Background(), &msg, testBody)
	if err != nil || !res.Delivered || rec.Count() != 1 {
		t.Fatalf("Post = %+v, %v; %d requests", res, err, rec.Count())
	}
}

func TestWebhookClientAnswers(t *testing.T) {
	for name, tc := range map[string]struct {
		handler http.HandlerFunc
		want    dingtalk.WebhookResult
		errCode int // 0: the error is not a *WebhookError
	}{
		"empty 2xx body": {
			handler: answer(http.StatusOK, ""),
			want:    dingtalk.WebhookResult{Attempts: 1, Status: 200, Delivered: true, MaybeDelivered: true},
		},
		"session expired is not retried": {
			handler: answer(http.StatusOK, `{"errcode":300001,"errmsg":"session expired"}`),
			want:    dingtalk.WebhookResult{Attempts: 1, Status: 200},
			errCode: 300001,
		},
		"other errcode": {
			handler: answer(http.StatusOK, `{"errcode":400013,"errmsg":"bad message"}`),
			want:    dingtalk.WebhookResult{Attempts: 1, Status: 200},
			errCode: 400013,
		},
		"4xx is not retried": {
			handler: answer(http.StatusNotFound, `{"errcode":404,"errmsg":"not found"}`),
			want:    dingtalk.WebhookResult{Attempts: 1, Status: 404},
			errCode: 404,
		},
		"5xx is retried, then given up": {
			handler: answer(http.StatusBadGateway, "<html>bad gateway</html>"),
			want:    dingtalk.WebhookResult{Attempts: 3, Status: 502, MaybeDelivered: true},
		},
		"2xx that is not JSON is not retried": {
			handler: answer(http.StatusOK, "<html>ok</html>"),
			want:    dingtalk.WebhookResult{Attempts: 1, Status: 200, MaybeDelivered: true},
		},
	} {
		t.Run(name, func(t *testing.T) {
			rec := newRecorder(t, tc.handler)
			c := newClient(t, rec)
			c.Retries = 2
			res, err := post(c, webhookURL(rec))
			assertResult(t, res, tc.want)
			if got := rec.Count(); got != tc.want.Attempts {
				t.Errorf("%d requests, want %d", got, tc.want.Attempts)
			}
			if (err == nil) != tc.want.Delivered {
				t.Fatalf("err = %v", err)
			}
			assertNoToken(t, err)
			var answerErr *dingtalk.WebhookError
			if tc.errCode != 0 && (!errors.As(err, &answerErr) || answerErr.ErrCode != tc.errCode || answerErr.Status != tc.want.Status) {
				t.Errorf("err = %v, want a WebhookError with errcode %d", err, tc.errCode)
			}
			if expired := errors.Is(err, dingtalk.ErrWebhookExpired); expired != (tc.errCode == dingtalk.ErrCodeSessionExpired) {
				t.Errorf("errors.Is(%v, ErrWebhookExpired) = %v", err, expired)
			}
		})
	}
}

func TestWebhookClientRetriesThenDelivers(t *testing.T) {
	var calls atomic.Int32
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			answer(http.StatusServiceUnavailable, "")(w, r)
			return
		}
		answer(http.StatusOK, `{"errcode":0,"errmsg":"ok"}`)(w, r)
	})
	var waits []int
	c := newClient(t, rec)
	c.Backoff = func(attempt int) time.Duration {
		waits = append(waits, attempt)
		return time.Millisecond
	}
	res, err := post(c, webhookURL(rec))
	if err != nil {
		t.Fatal(err)
	}
	assertResult(t, res, dingtalk.WebhookResult{Attempts: 3, Status: 200, Delivered: true, MaybeDelivered: true})
	if len(waits) != 2 || waits[0] != 1 || waits[1] != 2 {
		t.Errorf("Backoff called with %v, want [1 2]", waits)
	}
}

func TestWebhookClientRetryCounts(t *testing.T) {
	for retries, attempts := range map[int]int{dingtalk.NoRetries: 1, -7: 1, 0: 4, 1: 2} {
		rec := newRecorder(t, answer(http.StatusInternalServerError, ""))
		c := newClient(t, rec)
		c.Retries = retries
		res, err := post(c, webhookURL(rec))
		if err == nil || res.Attempts != attempts || rec.Count() != attempts {
			t.Errorf("Retries %d: %+v, %v, %d requests; want %d attempts", retries, res, err, rec.Count(), attempts)
		}
	}
}

func TestWebhookClientTimeout(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // the client gave up and closed the connection
		case <-time.After(10 * time.Second):
		}
	})
	c := newClient(t, rec)
	c.Timeout = 50 * time.Millisecond
	c.Retries = 1
	start := time.Now()
	res, err := post(c, webhookURL(rec))
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Post took %v with a 50ms timeout", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
	assertNoToken(t, err)
	// The requests were sent; only the answers are missing.
	assertResult(t, res, dingtalk.WebhookResult{Attempts: 2, MaybeDelivered: true})
}

func TestWebhookClientDoesNotFollowRedirects(t *testing.T) {
	target := newRecorder(t, nil)
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, webhookURL(target), http.StatusFound)
	})
	// Both hosts are allowed: the redirect must not be followed even so.
	c := newClient(t, rec, target)
	c.HTTPClient = &http.Client{} // a caller's client, whose default would follow
	res, err := post(c, webhookURL(rec))
	var answerErr *dingtalk.WebhookError
	if !errors.As(err, &answerErr) || answerErr.Status != http.StatusFound {
		t.Errorf("err = %v, want a WebhookError with status 302", err)
	}
	assertNoToken(t, err)
	assertResult(t, res, dingtalk.WebhookResult{Attempts: 1, Status: 302})
	if n := target.Count(); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
	if c.HTTPClient.CheckRedirect != nil {
		t.Error("Post modified the caller's http.Client")
	}
}

func TestWebhookClientExpired(t *testing.T) {
	rec := newRecorder(t, nil)
	c := newClient(t, rec)
	msg := dingtalktest.Callback{Text: "hello", SessionWebhook: webhookURL(rec)}.Message()
	c.Now = func() time.Time { return time.UnixMilli(int64(msg.SessionWebhookExpiredTime)) }
	res, err := c.Post(context.Background(), &msg, testBody)
	if !errors.Is(err, dingtalk.ErrWebhookExpired) {
		t.Errorf("err = %v, want ErrWebhookExpired", err)
	}
	assertResult(t, res, dingtalk.WebhookResult{})

	c.Now = nil
	for _, expires := range []time.Time{{}, time.Now().Add(-time.Second)} {
		if _, err := c.PostURL(context.Background(), webhookURL(rec), expires, testBody); !errors.Is(err, dingtalk.ErrWebhookExpired) {
			t.Errorf("expires %v: err = %v, want ErrWebhookExpired", expires, err)
		}
	}
	if n := rec.Count(); n != 0 {
		t.Errorf("an expired webhook got %d requests", n)
	}
}

func TestWebhookClientRefusesHosts(t *testing.T) {
	allowed := newRecorder(t, nil)
	other := newRecorder(t, nil)
	for name, c := range map[string]*dingtalk.WebhookClient{
		"listed policy":  newClient(t, allowed),
		"default policy": {},
	} {
		res, err := post(c, webhookURL(other))
		if !errors.Is(err, dingtalk.ErrWebhookNotAllowed) {
			t.Errorf("%s: err = %v, want ErrWebhookNotAllowed", name, err)
		}
		assertNoToken(t, err)
		assertResult(t, res, dingtalk.WebhookResult{})
	}
	if n := other.Count(); n != 0 {
		t.Errorf("a host not allowed got %d requests", n)
	}
}

func TestWebhookClientConnectionRefused(t *testing.T) {
	rec := newRecorder(t, nil)
	c := newClient(t, rec)
	c.Retries = 1
	rawURL := webhookURL(rec)
	rec.Close()
	res, err := post(c, rawURL)
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	assertNoToken(t, err)
	if !strings.Contains(err.Error(), "session=REDACTED") {
		t.Errorf("err = %v, want the redacted URL", err)
	}
	// Nothing was sent, so a de-duplication claim may be released.
	assertResult(t, res, dingtalk.WebhookResult{Attempts: 2})
}

func TestWebhookClientCancelStopsRetries(t *testing.T) {
	rec := newRecorder(t, answer(http.StatusInternalServerError, ""))
	waiting := make(chan struct{})
	c := newClient(t, rec)
	c.Backoff = func(int) time.Duration {
		close(waiting)
		return time.Hour
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-waiting
		cancel()
	}()
	start := time.Now()
	res, err := c.PostURL(ctx, webhookURL(rec), time.Now().Add(time.Hour), testBody)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Post took %v after cancel", elapsed)
	}
	var answerErr *dingtalk.WebhookError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &answerErr) || answerErr.Status != 500 {
		t.Errorf("err = %v, want the 500 and context.Canceled", err)
	}
	assertNoToken(t, err)
	assertResult(t, res, dingtalk.WebhookResult{Attempts: 1, Status: 500, MaybeDelivered: true})
	if n := rec.Count(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestWebhookClientDefaultBackoff(t *testing.T) {
	// The defaults are slow on purpose; one retry shows the wait is applied and bounded.
	rec := newRecorder(t, answer(http.StatusInternalServerError, ""))
	c := newClient(t, rec)
	c.Backoff = nil
	c.Retries = 1
	start := time.Now()
	if _, err := post(c, webhookURL(rec)); err == nil {
		t.Fatal("no error")
	}
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("one retry took %v, want 100ms to 200ms of backoff", elapsed)
	}
}

// A relay posts many replies at once to DingTalk's one host: the client
// must reuse its connections rather than open one per post.
func TestWebhookClientReusesConnections(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		answer(http.StatusOK, `{"errcode":0,"errmsg":"ok"}`)(w, r)
	})
	c := newClient(t, rec)
	const concurrent = 16
	for range 3 {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Go(func() {
				if _, err := post(c, webhookURL(rec)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if len(conns) > concurrent {
		t.Errorf("3 rounds of %d posts at once used %d connections, want at most %d", concurrent, len(conns), concurrent)
	}
}

package openapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

const (
	testAppKey    = "dingappkey1"
	testAppSecret = "SeCrEt-AppSecret-4242"
	testGroup     = "cidGroup123=="
)

// newFake starts a fake OpenAPI that knows the test app.
func newFake(t *testing.T) *dingtalktest.OpenAPI {
	t.Helper()
	fake := dingtalktest.NewOpenAPI(dingtalktest.OpenAPIApp{AppKey: testAppKey, AppSecret: testAppSecret})
	t.Cleanup(fake.Close)
	return fake
}

// newClient returns a client of the test app on fake; edit changes its config.
func newClient(t *testing.T, fake *dingtalktest.OpenAPI, edit func(*openapi.Config)) *openapi.Client {
	t.Helper()
	cfg := openapi.Config{
		AppKey: testAppKey, AppSecret: testAppSecret, BaseURL: fake.URL,
		Budget:  openapi.NewPace(100000, nil), // tests that are not about pacing must not wait for it
		Backoff: func(int) time.Duration { return 10 * time.Millisecond },
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := openapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func text(s string) openapi.Msg {
	return openapi.Msg{Key: "sampleText", Param: map[string]string{"content": s}}
}

func TestGroupAndUserSendsReachDingTalk(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, nil)
	ctx := context.Background()
	if res, err := c.SendToGroup(ctx, testGroup, text("to the group")); err != nil || res.ProcessQueryKey == "" {
		t.Fatalf("SendToGroup = %+v, %v", res, err)
	}
	if _, err := c.SendToUsers(ctx, []string{"user123", "user456"}, text("to two users")); err != nil {
		t.Fatal(err)
	}
	sent := fake.Sent()
	if len(sent) != 2 {
		t.Fatalf("the fake accepted %d messages, want 2", len(sent))
	}
	if g := sent[0]; g.Path != dingtalktest.OpenAPIGroupSendPath || g.ConversationID != testGroup || g.RobotCode != testAppKey ||
		g.MsgKey != "sampleText" || g.Param["content"] != "to the group" {
		t.Errorf("group send = %+v", g)
	}
	if u := sent[1]; u.Path != dingtalktest.OpenAPIBatchSendPath || strings.Join(u.UserIDs, ",") != "user123,user456" || u.Param["content"] != "to two users" {
		t.Errorf("1:1 send = %+v", u)
	}
	for _, call := range fake.Calls(dingtalktest.OpenAPIGroupSendPath) {
		if call.Header.Get(openapi.HeaderAccessToken) == "" {
			t.Error("a send went without the access token header")
		}
	}
}

func TestConcurrentCallersFetchOneToken(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, nil)
	const callers = 50
	concurrently(t, callers, func(int) error {
		_, err := c.SendToGroup(context.Background(), testGroup, text("hi"))
		return err
	})
	if n := fake.TokenFetches(); n != 1 {
		t.Errorf("%d callers fetched %d tokens, want 1", callers, n)
	}
	if n := len(fake.Sent()); n != callers {
		t.Errorf("the fake accepted %d messages, want %d", n, callers)
	}
}

// concurrently runs call(0) to call(n-1) at once and fails on an error.
func concurrently(t *testing.T, n int, call func(i int) error) {
	t.Helper()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs <- call(i)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestTokenIsReusedUntilItNearsExpiry(t *testing.T) {
	fake := newFake(t)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newClient(t, fake, func(cfg *openapi.Config) { cfg.Now = clock })
	send := func() {
		t.Helper()
		if _, err := c.SendToGroup(context.Background(), testGroup, text("hi")); err != nil {
			t.Fatal(err)
		}
	}
	send()
	mu.Lock()
	now = now.Add(110 * time.Minute) // 10 minutes before the 2 h expiry: still good
	mu.Unlock()
	send()
	if n := fake.TokenFetches(); n != 1 {
		t.Fatalf("%d token fetches before the refresh margin, want 1", n)
	}
	mu.Lock()
	now = now.Add(6 * time.Minute) // 4 minutes before expiry: refreshed early
	mu.Unlock()
	send()
	if n := fake.TokenFetches(); n != 2 {
		t.Fatalf("%d token fetches after the refresh margin, want 2", n)
	}
}

func TestUnauthorizedRefreshesTheTokenOnce(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, nil)
	ctx := context.Background()
	if _, err := c.SendToGroup(ctx, testGroup, text("one")); err != nil {
		t.Fatal(err)
	}
	fake.RevokeTokens() // DingTalk no longer takes the cached token
	if _, err := c.SendToGroup(ctx, testGroup, text("two")); err != nil {
		t.Fatalf("after a revoked token: %v", err)
	}
	if n := fake.TokenFetches(); n != 2 {
		t.Errorf("%d token fetches, want 2 (one refresh)", n)
	}

	// A 401 that persists is answered after one refresh, not in a loop.
	fake.Fail(dingtalktest.OpenAPIGroupSendPath, dingtalktest.FailUnauthorized, 5)
	_, err := c.SendToGroup(ctx, testGroup, text("three"))
	if !errors.Is(err, openapi.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if n := fake.TokenFetches(); n != 3 {
		t.Errorf("%d token fetches, want 3 (one more refresh)", n)
	}
	if n := len(fake.Calls(dingtalktest.OpenAPIGroupSendPath)); n != 2+1+2 {
		t.Errorf("%d group send calls, want 5 (1, 1+retry, 1+retry)", n)
	}
}

func TestQPSLimitBacksOffAndSucceedsWithinTheDeadline(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, func(cfg *openapi.Config) { cfg.Backoff = nil }) // the real backoff
	fake.Fail(dingtalktest.OpenAPIGroupSendPath, dingtalktest.FailQPSLimit, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.SendToGroup(ctx, testGroup, text("patient")); err != nil {
		t.Fatalf("SendToGroup after two QPS refusals: %v", err)
	}
	calls := fake.Calls(dingtalktest.OpenAPIGroupSendPath)
	if len(calls) != 3 || len(fake.Sent()) != 1 {
		t.Fatalf("%d calls and %d accepted, want 3 and 1", len(calls), len(fake.Sent()))
	}
	// The default backoff waits at least 125ms, then 250ms.
	for i, min := range []time.Duration{125 * time.Millisecond, 250 * time.Millisecond} {
		if gap := calls[i+1].At.Sub(calls[i].At); gap < min {
			t.Errorf("retry %d came %v after the refusal, want at least %v", i+1, gap, min)
		}
	}
}

func TestQPSLimitGivesUpWhenTheDeadlineLeavesNoTime(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, func(cfg *openapi.Config) {
		cfg.Backoff = func(int) time.Duration { return time.Hour }
	})
	fake.Fail(dingtalktest.OpenAPIGroupSendPath, dingtalktest.FailQPSLimit, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	_, err := c.SendToGroup(ctx, testGroup, text("hurried"))
	if !errors.Is(err, openapi.ErrQPSLimit) {
		t.Fatalf("err = %v, want ErrQPSLimit", err)
	}
	if waited := time.Since(began); waited > 4*time.Second {
		t.Errorf("waited %v for a retry that could not fit in the deadline", waited)
	}
	if n := len(fake.Calls(dingtalktest.OpenAPIGroupSendPath)); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

func TestRefusalsThatARetryCannotFixAreNotRetried(t *testing.T) {
	for name, tc := range map[string]struct {
		failure dingtalktest.Failure
		kind    error
	}{
		"quota":         {dingtalktest.FailQuota, openapi.ErrQuotaExceeded},
		"bad parameter": {dingtalktest.FailBadParameter, openapi.ErrBadParameter},
		"server error":  {dingtalktest.FailServer, nil},
	} {
		t.Run(name, func(t *testing.T) {
			fake := newFake(t)
			c := newClient(t, fake, nil)
			fake.Fail(dingtalktest.OpenAPIGroupSendPath, tc.failure, 1)
			_, err := c.SendToGroup(context.Background(), testGroup, text("once"))
			var apiErr *openapi.Error
			if !errors.As(err, &apiErr) || apiErr.Status != tc.failure.Status || apiErr.Code != tc.failure.Code {
				t.Fatalf("err = %v, want DingTalk's %d %s", err, tc.failure.Status, tc.failure.Code)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.kind)
			}
			for _, other := range []error{openapi.ErrQPSLimit, openapi.ErrQuotaExceeded, openapi.ErrBadParameter, openapi.ErrUnauthorized} {
				if other != tc.kind && errors.Is(err, other) {
					t.Errorf("err = %v is also %v", err, other)
				}
			}
			if n := len(fake.Calls(dingtalktest.OpenAPIGroupSendPath)); n != 1 {
				t.Errorf("%d calls, want 1", n)
			}
		})
	}
}

func TestDownloadURLServesTheMedia(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, nil)
	fake.AddMedia("dlcode1", dingtalktest.Media{ContentType: "image/png", Body: []byte("PNG bytes")})
	u, err := c.DownloadURL(context.Background(), "dlcode1")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "PNG bytes" || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("GET %s = %d %q %q", u, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if _, err := c.DownloadURL(context.Background(), "unknown"); !errors.Is(err, openapi.ErrBadParameter) {
		t.Errorf("unknown code: err = %v, want ErrBadParameter", err)
	}
}

func TestCredentialsStayOutOfErrors(t *testing.T) {
	fake := newFake(t)
	wrong := newClient(t, fake, func(cfg *openapi.Config) { cfg.AppSecret = "WrOnG-SeCrEt-777" })
	_, err := wrong.SendToGroup(context.Background(), testGroup, text("x"))
	if err == nil || strings.Contains(err.Error(), "WrOnG-SeCrEt-777") {
		t.Fatalf("err = %v: want a failure that does not repeat the AppSecret", err)
	}

	c := newClient(t, fake, nil)
	if _, err := c.SendToGroup(context.Background(), testGroup, text("x")); err != nil {
		t.Fatal(err)
	}
	token := fake.Calls(dingtalktest.OpenAPIGroupSendPath)[0].Header.Get(openapi.HeaderAccessToken)
	fake.Fail("", dingtalktest.FailBadParameter, 1)
	_, err = c.SendToGroup(context.Background(), testGroup, text("x"))
	if err == nil || strings.Contains(err.Error(), token) || strings.Contains(err.Error(), testAppSecret) {
		t.Fatalf("err = %v: want a failure without the token or the secret", err)
	}
}

func TestNewRefusesBadConfigs(t *testing.T) {
	for name, cfg := range map[string]openapi.Config{
		"no app key":       {AppSecret: "s"},
		"no secret":        {AppKey: "k"},
		"not http":         {AppKey: "k", AppSecret: "s", BaseURL: "ftp://api.dingtalk.com"},
		"no host":          {AppKey: "k", AppSecret: "s", BaseURL: "https://"},
		"userinfo":         {AppKey: "k", AppSecret: "s", BaseURL: "https://u:p@api.dingtalk.com"},
		"query":            {AppKey: "k", AppSecret: "s", BaseURL: "https://api.dingtalk.com?x=1"},
		"plain http":       {AppKey: "k", AppSecret: "s", BaseURL: "http://api.dingtalk.com"},
		"unparseable port": {AppKey: "k", AppSecret: "s", BaseURL: "https://api.dingtalk.com:x"},
	} {
		if _, err := openapi.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

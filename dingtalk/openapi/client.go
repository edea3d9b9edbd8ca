package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// DefaultBaseURL is DingTalk's OpenAPI.
const DefaultBaseURL = "https://api.dingtalk.com"

// HeaderAccessToken is the header every call but the token's carries the
// access token in.
const HeaderAccessToken = "x-acs-dingtalk-access-token"

const (
	defaultTimeout = 10 * time.Second
	// maxQPSAttempts bounds the attempts of a call DingTalk keeps refusing
	// with its QPS limit when the context has no deadline to bound them.
	maxQPSAttempts = 8
	qpsBackoffBase = 250 * time.Millisecond
	qpsBackoffCap  = 2 * time.Second
	// maxAnswer bounds how much of an answer is read: DingTalk's are small.
	maxAnswer = 1 << 20
)

// Config describes a robot application and how to reach the OpenAPI.
type Config struct {
	// AppKey is the robot application's AppKey (Client ID). Required.
	AppKey string
	// AppSecret is the application's AppSecret (Client Secret), the one that
	// also signs the robot's callbacks. Required.
	AppSecret string
	// RobotCode names the robot in message APIs; empty means AppKey, which
	// is the robot code of an enterprise internal robot.
	RobotCode string
	// BaseURL is the OpenAPI's address; empty means DefaultBaseURL. Tests
	// point it at a fake on loopback.
	BaseURL string
	// Budget paces the calls; nil means NewPace(DefaultRate, nil), for this
	// process alone.
	Budget Budget
	// Tokens shares the access token with other gateways; nil keeps it in
	// this process.
	Tokens TokenStore
	// HTTPClient makes the requests; nil means one with default settings.
	// Redirects are never followed: a redirect could lead anywhere, and the
	// access token would go along.
	HTTPClient *http.Client
	// Timeout bounds each request, reading the answer included; zero means
	// 10s.
	Timeout time.Duration
	// Backoff gives the wait before retry number attempt (1 for the first)
	// of a call refused by the QPS limit. Nil means exponential from 250ms,
	// capped at 2s, with jitter.
	Backoff func(attempt int) time.Duration
	// Now gives the time tokens expire against; nil means time.Now.
	Now func() time.Time
	// OnCall, when set, is told of every request made (the token's
	// included) with its outcome: nil for a 2xx answer, an *Error for
	// DingTalk's refusals, another error for the network; and of every call
	// the budget refused, with a *BudgetError. Metrics count calls with it.
	OnCall func(path string, err error)
}

// Client calls DingTalk's OpenAPI as one robot application. It is safe for
// concurrent use; make one per robot and share it, so that its callers share
// the token and the budget.
type Client struct {
	base      string
	appKey    string
	appSecret string
	robotCode string
	budget    Budget
	hc        *http.Client
	timeout   time.Duration
	backoff   func(int) time.Duration
	now       func() time.Time
	onCall    func(string, error)
	tokens    *tokenCache
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.AppKey == "" || cfg.AppSecret == "" {
		return nil, errors.New("an OpenAPI client needs the robot's AppKey and AppSecret")
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := CheckBaseURL(base)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:      strings.TrimSuffix(u.String(), "/"),
		appKey:    cfg.AppKey,
		appSecret: cfg.AppSecret,
		robotCode: cfg.RobotCode,
		budget:    cfg.Budget,
		timeout:   cfg.Timeout,
		backoff:   cfg.Backoff,
		now:       cfg.Now,
		onCall:    cfg.OnCall,
	}
	if c.robotCode == "" {
		c.robotCode = c.appKey
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.budget == nil {
		c.budget = NewPace(DefaultRate, c.now)
	}
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.backoff == nil {
		c.backoff = qpsBackoff
	}
	if c.onCall == nil {
		c.onCall = func(string, error) {}
	}
	hc := http.Client{}
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	c.tokens = &tokenCache{appKey: c.appKey, fetch: c.fetchToken, shared: cfg.Tokens, now: c.now, timeout: c.timeout}
	return c, nil
}

// CheckBaseURL parses an OpenAPI base URL: https://host[:port][/path], or
// plain http to a loopback address (a fake, a local trial): the access
// token travels in every request.
func CheckBaseURL(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("OpenAPI base URL %q: want https://host[:port][/path]", base)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && dingtalk.IsLoopback(u.Hostname())) {
		return nil, fmt.Errorf("OpenAPI base URL %q: want https (plain http only to a loopback address)", base)
	}
	return u, nil
}

// AppKey returns the robot application's AppKey.
func (c *Client) AppKey() string { return c.appKey }

// RobotCode returns the code that names the robot in message APIs.
func (c *Client) RobotCode() string { return c.robotCode }

// Call makes one OpenAPI call: method on path (e.g. "/v1.0/robot/groupMessages/send")
// with in as its JSON body (none when nil), the answer's JSON decoded into
// out (discarded when nil). It spends one call of the budget per attempt,
// sends the access token, fetches a new token once when DingTalk answers
// 401, and backs off and retries while DingTalk answers that its QPS limit is
// reached, as long as ctx allows. Other failures are returned at once: an
// *Error for DingTalk's answers, a *BudgetError when the budget allows no
// call in time. Network errors are not retried, since a send may have been
// delivered.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("DingTalk OpenAPI %s: encoding the request: %w", path, err)
		}
	}
	stale := ""
	for attempt := 1; ; attempt++ {
		token, err := c.tokens.get(ctx, stale)
		if err != nil {
			return err
		}
		if err := spend(ctx, c.budget, c.now); err != nil {
			if errors.Is(err, ErrBudgetSpent) {
				c.onCall(path, err)
			}
			return fmt.Errorf("DingTalk OpenAPI %s: %w", path, err)
		}
		status, answer, err := c.send(ctx, method, path, token, body)
		if err != nil {
			c.onCall(path, err)
			return err
		}
		if status >= 200 && status <= 299 {
			c.onCall(path, nil)
			return decodeAnswer(path, answer, out)
		}
		apiErr := parseError(path, status, answer)
		c.onCall(path, apiErr)
		switch {
		case status == http.StatusUnauthorized && stale == "":
			stale = token // once: a second 401 is the answer
		case errors.Is(apiErr, ErrQPSLimit) && retriesQPS(ctx):
			if err := c.waitRetry(ctx, attempt); err != nil {
				return fmt.Errorf("%w; stopped retrying: %w", apiErr, err)
			}
		default:
			return apiErr
		}
	}
}

// waitRetry waits before the next attempt of a call refused by the QPS
// limit, or fails when ctx leaves no time for one.
func (c *Client) waitRetry(ctx context.Context, attempt int) error {
	wait := c.backoff(attempt)
	deadline, ok := ctx.Deadline()
	switch {
	case ok && c.now().Add(wait).After(deadline):
		return fmt.Errorf("no time left for attempt %d", attempt+1)
	case !ok && attempt >= maxQPSAttempts:
		return fmt.Errorf("gave up after %d attempts", attempt)
	}
	return dingtalk.Sleep(ctx, wait)
}

// send makes one request under the client's timeout and reads the answer.
// token is empty for the token request itself.
func (c *Client) send(ctx context.Context, method, path, token string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reader)
	if err != nil {
		return 0, nil, fmt.Errorf("DingTalk OpenAPI %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if token != "" {
		req.Header.Set(HeaderAccessToken, token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("DingTalk OpenAPI %s: %w", path, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("DingTalk OpenAPI %s: reading the answer: %w", path, err)
	}
	return resp.StatusCode, answer, nil
}

// decodeAnswer decodes a 2xx answer into out.
func decodeAnswer(path string, answer []byte, out any) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("DingTalk OpenAPI %s: the answer is not the expected JSON: %w", path, err)
	}
	return nil
}

// TokenPath is where access tokens come from.
const TokenPath = "/v1.0/oauth2/accessToken"

// fetchToken asks DingTalk for an access token. The request carries the
// AppSecret; no error repeats it.
func (c *Client) fetchToken(ctx context.Context) (Token, error) {
	body, err := json.Marshal(map[string]string{"appKey": c.appKey, "appSecret": c.appSecret})
	if err != nil {
		return Token{}, err
	}
	status, answer, err := c.send(ctx, http.MethodPost, TokenPath, "", body)
	if err == nil && (status < 200 || status > 299) {
		err = parseError(TokenPath, status, answer)
	}
	c.onCall(TokenPath, err)
	if err != nil {
		return Token{}, err
	}
	var got struct {
		AccessToken string `json:"accessToken"`
		ExpireIn    int64  `json:"expireIn"`
	}
	if err := decodeAnswer(TokenPath, answer, &got); err != nil {
		return Token{}, err
	}
	if got.AccessToken == "" {
		return Token{}, fmt.Errorf("DingTalk OpenAPI %s: the answer has no accessToken", TokenPath)
	}
	life := time.Duration(got.ExpireIn) * time.Second
	if life <= 0 {
		life = defaultTokenLife
	}
	return Token{Value: got.AccessToken, Expires: c.now().Add(life)}, nil
}

// qpsBackoff is the default Backoff: exponential from 250ms, capped at 2s,
// at least half of it so that concurrent retries spread out.
func qpsBackoff(attempt int) time.Duration {
	d := qpsBackoffCap
	if attempt < 4 { // 250ms << 3 reaches the cap
		d = min(qpsBackoffBase<<max(attempt-1, 0), qpsBackoffCap)
	}
	return d/2 + rand.N(d/2+1)
}

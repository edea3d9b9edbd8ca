package dingtalk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// ErrCodeSessionExpired is the errcode DingTalk answers when a sessionWebhook
// has expired.
const ErrCodeSessionExpired = 300001

// NoRetries, as WebhookClient.Retries, makes a single attempt (zero means the default).
const NoRetries = -1

var (
	// ErrWebhookExpired is returned, without contacting anyone, for a webhook
	// past its expiry time. errors.Is also matches a *WebhookError with
	// ErrCodeSessionExpired: both mean "reply another way".
	ErrWebhookExpired = errors.New("sessionWebhook has expired")

	// errBadAnswer is a 2xx answer that is not DingTalk's JSON.
	errBadAnswer = errors.New("sessionWebhook answered with a body that is not a JSON object")
)

const (
	defaultWebhookTimeout = 10 * time.Second
	defaultWebhookRetries = 3
	backoffBase           = 200 * time.Millisecond
	backoffCap            = 5 * time.Second
	// maxWebhookAnswer bounds how much of an answer is read; DingTalk's is
	// tens of bytes, and a longer one fails to parse rather than exhaust memory.
	maxWebhookAnswer = 64 << 10
)

// WebhookError is a definite failure answer from a sessionWebhook: an HTTP
// status outside 2xx, or a 2xx answer with a non-zero errcode.
type WebhookError struct {
	Status  int    // HTTP status
	ErrCode int    // DingTalk's errcode, 0 when the answer had none
	ErrMsg  string // DingTalk's errmsg
}

// Error describes the answer.
func (e *WebhookError) Error() string {
	if e.ErrCode == 0 {
		return fmt.Sprintf("sessionWebhook answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("sessionWebhook answered errcode %d %q (HTTP %d)", e.ErrCode, e.ErrMsg, e.Status)
}

// Is makes errors.Is(err, ErrWebhookExpired) true for DingTalk's "session
// expired" errcode, so that callers treat both ways of learning it alike.
func (e *WebhookError) Is(target error) bool {
	return target == ErrWebhookExpired && e.ErrCode == ErrCodeSessionExpired
}

// WebhookResult tells what a Post did.
type WebhookResult struct {
	// Attempts is how many POSTs were started; 0 when the webhook was expired
	// or refused by the policy.
	Attempts int
	// Status is the HTTP status of the last attempt's answer, 0 without one.
	Status int
	// Delivered reports that DingTalk confirmed the message: a 2xx answer
	// with errcode 0 (or an empty body).
	Delivered bool
	// MaybeDelivered is true when Delivered is, and also when a request was
	// sent but its outcome is unknown: the answer timed out or broke off, was
	// a 5xx, or was a 2xx that is not DingTalk's JSON. When it is false the
	// message was certainly not shown, so a de-duplication claim can be
	// released for a redelivery to try again.
	MaybeDelivered bool
}

// WebhookClient posts replies to sessionWebhook URLs. Its zero value is ready
// to use and it is safe for concurrent use.
type WebhookClient struct {
	// Policy decides which URLs may be contacted; the zero policy allows
	// only DingTalk's host.
	Policy WebhookPolicy
	// Timeout bounds each attempt, reading the answer included; zero means 10s.
	Timeout time.Duration
	// Retries is how many extra attempts follow a network error or a 5xx
	// answer. Zero means 3; NoRetries (any negative value) means none.
	Retries int
	// Backoff gives the wait before retry number attempt (1 for the first
	// retry). Nil means exponential from 200ms, capped at 5s, with jitter.
	Backoff func(attempt int) time.Duration
	// HTTPClient makes the requests; nil means a client on a shared copy of
	// http.DefaultTransport that keeps more idle connections per host (see
	// webhookTransport). Post uses a copy that never follows redirects: a
	// redirect could lead to any host, so a 3xx answer is a failure.
	HTTPClient *http.Client
	// Now gives the time expiry is checked against; nil means time.Now.
	Now func() time.Time
}

// Post sends body, a webhook-style message JSON, to msg's sessionWebhook.
// An expired webhook gives ErrWebhookExpired and a URL the policy refuses an
// error wrapping ErrWebhookNotAllowed, both without contacting anyone.
// Network errors and 5xx answers are retried with backoff until Retries or
// ctx runs out; other failures, errcode 300001 included, are not. The
// result is never nil, also when the error is not.
func (c *WebhookClient) Post(ctx context.Context, msg *Message, body []byte) (*WebhookResult, error) {
	res := &WebhookResult{}
	if msg.WebhookExpired(c.now()) {
		return res, ErrWebhookExpired
	}
	u, err := c.Policy.Check(msg.SessionWebhook)
	if err != nil {
		return res, err
	}
	target, hc := u.String(), c.httpClient()
	for {
		res.Attempts++
		var sent bool
		res.Status, sent, err = c.postOnce(ctx, hc, target, body)
		if err == nil {
			res.Delivered, res.MaybeDelivered = true, true
			return res, nil
		}
		var answer *WebhookError
		refused := errors.As(err, &answer) && answer.Status < http.StatusInternalServerError
		if sent && !refused {
			res.MaybeDelivered = true
		}
		if res.Attempts > 1 {
			err = fmt.Errorf("after %d attempts: %w", res.Attempts, err)
		}
		if refused || errors.Is(err, errBadAnswer) || ctx.Err() != nil || res.Attempts > c.retries() {
			return res, err
		}
		if waitErr := Sleep(ctx, c.backoff(res.Attempts)); waitErr != nil {
			return res, fmt.Errorf("%w; stopped retrying: %w", err, waitErr)
		}
	}
}

// PostURL is Post for a bare sessionWebhook URL and its expiry time, as a
// command-line tool has them. A zero expires counts as expired.
func (c *WebhookClient) PostURL(ctx context.Context, rawURL string, expires time.Time, body []byte) (*WebhookResult, error) {
	msg := Message{SessionWebhook: rawURL, SessionWebhookExpiredTime: Millis(expires.UnixMilli())}
	return c.Post(ctx, &msg, body)
}

// postOnce makes one POST under its own timeout. sent reports that the whole
// request was written, so that the peer may have acted on it.
func (c *WebhookClient) postOnce(ctx context.Context, hc *http.Client, target string, body []byte) (status int, sent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	var written atomic.Bool // set on the transport's goroutine
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				written.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, false, redactURLError(err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, written.Load(), redactURLError(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookAnswer))
	if err != nil {
		return resp.StatusCode, true, fmt.Errorf("reading the sessionWebhook answer: %w", err)
	}
	return resp.StatusCode, true, checkAnswer(resp.StatusCode, answer)
}

// checkAnswer reads DingTalk's {"errcode":N,"errmsg":"..."}. DingTalk always
// answers with that JSON, but an empty 2xx body is taken as success: nothing
// in it says otherwise. A 2xx body that is not a JSON object is a failure, as
// it cannot tell what the peer did; an object without errcode counts as 0.
func checkAnswer(status int, body []byte) error {
	var answer struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	body = bytes.TrimSpace(body)
	parsed := len(body) > 0 && body[0] == '{' && json.Unmarshal(body, &answer) == nil
	switch {
	case status < 200 || status > 299:
		return &WebhookError{Status: status, ErrCode: answer.ErrCode, ErrMsg: answer.ErrMsg}
	case len(body) > 0 && !parsed:
		return fmt.Errorf("%w (HTTP %d)", errBadAnswer, status)
	case answer.ErrCode != 0:
		return &WebhookError{Status: status, ErrCode: answer.ErrCode, ErrMsg: answer.ErrMsg}
	}
	return nil
}

// redactURLError removes the session token from the URL that net/http
// repeats in its errors.
func redactURLError(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		urlErr.URL = RedactWebhook(urlErr.URL)
	}
	return err
}

// Sleep waits for d or until ctx is done, whichever comes first, and
// returns ctx's error in the second case. The clients' backoffs wait with it.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *WebhookClient) httpClient() *http.Client {
	hc := http.Client{Transport: webhookTransport()}
	if c.HTTPClient != nil {
		hc = *c.HTTPClient
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// webhookIdleConns is how many idle connections to one host the default
// transport keeps: as many as the async relay's default workers post at once.
const webhookIdleConns = 64

// webhookTransport is the default transport: http.DefaultTransport's
// settings, but keeping webhookIdleConns idle connections per host instead
// of 2. Replies all go to DingTalk's one host: with 2, most posts of a relay
// replying from many workers at once would open, and TLS-handshake, a
// connection of their own.
var webhookTransport = sync.OnceValue(func() http.RoundTripper {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultTransport // replaced by the program: keep its choice
	}
	t = t.Clone()
	t.MaxIdleConnsPerHost = webhookIdleConns
	return t
})

func (c *WebhookClient) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *WebhookClient) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return defaultWebhookTimeout
}

func (c *WebhookClient) retries() int {
	switch {
	case c.Retries < 0:
		return 0
	case c.Retries == 0:
		return defaultWebhookRetries
	}
	return c.Retries
}

func (c *WebhookClient) backoff(attempt int) time.Duration {
	if c.Backoff != nil {
		return c.Backoff(attempt)
	}
	d := backoffCap
	if attempt < 6 { // 200ms << 5 already exceeds the cap
		d = min(backoffBase<<max(attempt-1, 0), backoffCap)
	}
	// Equal jitter: at least half the delay, so that concurrent retries spread out.
	return d/2 + rand.N(d/2+1)
}

package dingtalk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// DefaultWebhookHost is the host of DingTalk's sessionWebhook URLs, the only
// host a zero WebhookPolicy allows.
const DefaultWebhookHost = "oapi.dingtalk.com"

// ErrCodeSessionExpired is the errcode DingTalk answers when a sessionWebhook
// has expired.
const ErrCodeSessionExpired = 300001

// NoRetries, as WebhookClient.Retries, makes a single attempt (zero means the default).
const NoRetries = -1

// Errors of the sessionWebhook client. They never contain the URL's query,
// whose session parameter is a credential.
var (
	// ErrWebhookExpired is returned, without contacting anyone, for a webhook
	// past its expiry time. errors.Is also matches a *WebhookError with
	// ErrCodeSessionExpired: both mean "reply another way".
	ErrWebhookExpired = errors.New("sessionWebhook has expired")
	// ErrWebhookNotAllowed wraps every reason WebhookPolicy.Check refuses a URL.
	ErrWebhookNotAllowed = errors.New("sessionWebhook URL refused")

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
	// redacted replaces secrets in URLs shown in logs and errors.
	redacted = "REDACTED"
)

// WebhookPolicy decides which sessionWebhook URLs may be contacted. The URL
// comes from the unsigned callback body, so without this check a forged body
// could make the server POST anywhere (SSRF).
type WebhookPolicy struct {
	// AllowedHosts lists the hosts that may be contacted, each a bare host
	// name, or a loopback host with a port ("127.0.0.1:8080", "localhost:8080",
	// "[::1]:8080") for tests and local relays. Empty means DefaultWebhookHost
	// alone; a non-empty list replaces it. NewWebhookPolicy validates entries;
	// Check stays safe with unvalidated ones, as it only ever matches a URL
	// host literally and allows a port only on a loopback host.
	AllowedHosts []string
}

// NewWebhookPolicy returns a policy allowing hosts, after lower-casing them
// and rejecting entries that are not a bare host name or a loopback
// host:port: a scheme, path, userinfo or a port on another host is a mistake
// Check would silently never match.
func NewWebhookPolicy(hosts []string) (WebhookPolicy, error) {
	var p WebhookPolicy
	for _, entry := range hosts {
		host := strings.ToLower(entry)
		// Parsing the entry as a URL's authority applies exactly the rules Check does.
		u, err := parseWebhookURL("https://" + host + "/")
		switch {
		case err != nil || u.Host != host:
			return WebhookPolicy{}, fmt.Errorf("allowed host %q is not a host name or a loopback host:port", entry)
		case u.Port() != "" && !isLoopback(u.Hostname()):
			return WebhookPolicy{}, fmt.Errorf("allowed host %q has a port, which only a loopback host may have", entry)
		}
		p.AllowedHosts = append(p.AllowedHosts, host)
	}
	return p, nil
}

// Check parses raw and returns it when it may be contacted: scheme https,
// no userinfo, no fragment, and a host that equals an allowed host (ASCII,
// case-insensitively) with no explicit port. A loopback host allowed with a
// port is also accepted over plain http, with exactly that port. Errors wrap
// ErrWebhookNotAllowed and never contain the URL's query.
func (p WebhookPolicy) Check(raw string) (*url.URL, error) {
	u, err := parseWebhookURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWebhookNotAllowed, err)
	}
	// Every byte is ASCII by now, so ToLower is the ASCII fold. EqualFold
	// would not do: it folds Unicode, e.g. the Kelvin sign to "k".
	host := strings.ToLower(u.Host)
	hasPort := u.Port() != ""
	switch {
	case !p.allows(host):
		return nil, fmt.Errorf("%w: host %q is not allowed", ErrWebhookNotAllowed, u.Host)
	case hasPort && !isLoopback(u.Hostname()):
		return nil, fmt.Errorf("%w: a port is allowed only on a loopback host, not %q", ErrWebhookNotAllowed, u.Host)
	case u.Scheme == "http" && !hasPort:
		return nil, fmt.Errorf("%w: plain http is allowed only to a loopback host:port, not %q", ErrWebhookNotAllowed, u.Host)
	}
	u.Host = host
	return u, nil
}

// allows reports whether host (lower case) is literally one of the allowed hosts.
func (p WebhookPolicy) allows(host string) bool {
	if len(p.AllowedHosts) == 0 {
		return host == DefaultWebhookHost
	}
	for _, allowed := range p.AllowedHosts {
		if strings.ToLower(allowed) == host {
			return true
		}
	}
	return false
}

// parseWebhookURL parses raw and refuses every shape that different parsers
// could read as different hosts, or that hides a host somewhere unexpected.
// It does not consult a policy.
func parseWebhookURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("empty URL")
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c <= ' ' || c >= 0x7f:
			// Also rules out IDN look-alikes: allowed hosts are ASCII.
			return nil, errors.New("URL contains whitespace, a control or a non-ASCII character")
		case c == '\\':
			// Browsers and some libraries read a backslash as a slash.
			return nil, errors.New("URL contains a backslash")
		case c == '#':
			return nil, errors.New("URL has a fragment")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The *url.Error repeats the whole URL, query included; keep only the reason.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("malformed URL: %v", err)
	}
	switch {
	case u.Scheme == "":
		return nil, errors.New("URL has no scheme")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("scheme %q is not allowed", u.Scheme)
	case u.Opaque != "":
		return nil, errors.New("URL has no // after the scheme")
	case u.User != nil:
		return nil, errors.New("URL has userinfo")
	case u.Host == "":
		return nil, errors.New("URL has no host")
	case strings.HasPrefix(u.Path, "//"):
		// "//host/..." as a path is read as a host by some servers and proxies.
		return nil, errors.New("URL path starts with //")
	}
	return u, checkHostSyntax(u.Host)
}

// checkHostSyntax accepts a DNS name or an IP address, with an optional
// canonical port.
func checkHostSyntax(hostport string) error {
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i > strings.LastIndexByte(hostport, ']') {
		host, port = hostport[:i], hostport[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return fmt.Errorf("host %q has an invalid port", hostport)
		}
	}
	switch {
	case strings.ContainsFunc(host, func(r rune) bool { return r == '%' || r >= utf8.RuneSelf }):
		// net/url decodes %-escapes of non-ASCII bytes in hosts (the URL
		// itself is ASCII by now) and keeps IPv6 zones ("%25eth0" as "%eth0").
		return errors.New("host is percent-encoded or has an IPv6 zone")
	case strings.HasPrefix(host, "["):
		if !strings.HasSuffix(host, "]") || net.ParseIP(host[1:len(host)-1]) == nil {
			return fmt.Errorf("host %q is not a valid IPv6 address", hostport)
		}
	case strings.HasSuffix(host, "."):
		// A trailing dot names the same DNS host but defeats literal matching.
		return fmt.Errorf("host %q ends with a dot", hostport)
	case !isHostName(host):
		return fmt.Errorf("host %q is not a valid host name", hostport)
	}
	return nil
}

// isHostName reports whether name is dot-separated labels of ASCII letters,
// digits and inner hyphens. IPv4 addresses pass too.
func isHostName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// isLoopback reports whether host (without port or brackets) is localhost or
// a loopback IP address.
func isLoopback(host string) bool {
	if strings.ToLower(host) == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RedactWebhook returns raw for logs: every query value (DingTalk's session
// token is one), any userinfo and any fragment replaced by REDACTED. A string
// that does not parse as a URL gives a fixed placeholder.
func RedactWebhook(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = redacted, ""
	}
	// Rewriting the raw query, rather than re-encoding u.Query(), keeps
	// parameters that do not decode, which could hold the token too.
	params := strings.Split(u.RawQuery, "&")
	for i, param := range params {
		if key, _, ok := strings.Cut(param, "="); ok {
			params[i] = key + "=" + redacted
		} else if param != "" {
			params[i] = redacted // a bare parameter is all value as far as we know
		}
	}
	u.RawQuery = strings.Join(params, "&")
	return u.String()
}

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
	// HTTPClient makes the requests; nil means a client on
	// http.DefaultTransport. Post uses a copy that never follows redirects: a
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
		if waitErr := sleep(ctx, c.backoff(res.Attempts)); waitErr != nil {
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

// sleep waits for d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
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
	var hc http.Client
	if c.HTTPClient != nil {
		hc = *c.HTTPClient
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

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

package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// sendOptions are the flags of `caddy dingtalk send`. Zero values stand for
// the documented defaults, so that a flag given explicitly can be told from
// one left alone.
type sendOptions struct {
	URL    string
	Secret secretSource
	// Callback is shaped by --msgtype, --text, --group, --sender-nick,
	// --sender-staff-id, --robot-code, --msg-id and --download-code; its
	// other fields get realistic defaults.
	Callback dingtalktest.Callback
	// Cleared are the flags of fieldFlags given as '': their fields are
	// left out of the built callback (or sent empty).
	Cleared []string
	// Admin (--admin) makes the sender an administrator (isAdmin); most
	// senders are not.
	Admin bool
	// BodyFile (--body) is sent as it is instead of a built callback.
	BodyFile string
	// Timestamp (--timestamp) is signed instead of the time of sending.
	Timestamp string

	PrintRequest bool // --print-body: print the signed request before sending it
	DryRun       bool // --dry-run: print the signed request, send nothing

	WebhookListen string        // --webhook-listen: run a fake sessionWebhook on this address
	Wait          time.Duration // --wait: how long to wait for its posts; 0: defaultSendWait
	Count         int           // --count: how many posts (or ended cards) to wait for; 0: one

	OpenAPIListen string // --openapi-listen: run a fake OpenAPI on this address and print the AI cards made there
	AppKey        string // --app-key: the robot's AppKey the fake OpenAPI knows; "": defaultTrialAppKey

	Timeout time.Duration // --timeout: for the callback request; 0: defaultSendTimeout
}

const (
	defaultSendText    = "hello"
	defaultSendWait    = 30 * time.Second
	defaultSendTimeout = 30 * time.Second

	// maxShownBody bounds what is read of a reply: enough for any message.
	maxShownBody = 10 << 20
)

// sendMsgTypes are the message types --msgtype builds, as DingTalk sends them.
var sendMsgTypes = []string{dingtalk.MsgTypeText, dingtalk.MsgTypePicture, dingtalk.MsgTypeRichText,
	dingtalk.MsgTypeFile, dingtalk.MsgTypeAudio, dingtalk.MsgTypeVideo}

// fieldFlags are the flags that set a field of the built callback; given as
// ”, they leave it out (or empty), as DingTalk leaves senderStaffId out for
// a user outside the organisation.
var fieldFlags = map[string]func(*dingtalk.Message){
	"sender-nick":     func(m *dingtalk.Message) { m.SenderNick = "" },
	"sender-staff-id": func(m *dingtalk.Message) { m.SenderStaffID = "" },
	"robot-code":      func(m *dingtalk.Message) { m.RobotCode = "" },
	"msg-id":          func(m *dingtalk.Message) { m.MsgID = "" },
}

// What printBody found wrong with a body that should be a DingTalk message.
var (
	errEmptyBody = errors.New("empty")
	errNotJSON   = errors.New("not JSON")
)

// runSend posts a signed callback to the gateway and prints its status and
// reply; with a fake sessionWebhook it then prints what the gateway posts
// there. It returns an error, after printing what there was to see, unless
// the gateway answered 2xx with JSON (or, awaiting posts, empty) and the
// awaited posts arrived.
func runSend(ctx context.Context, opts sendOptions, stdout, stderr io.Writer) error {
	if err := opts.check(); err != nil {
		return err
	}
	target, err := parseURLFlag(opts.URL)
	if err != nil {
		return err
	}
	secret, err := opts.Secret.resolve()
	if err != nil {
		return err
	}
	now := time.Now()
	ts := opts.Timestamp
	if ts == "" {
		ts = strconv.FormatInt(now.UnixMilli(), 10)
	} else if err := checkTimestamp(ts, now, stderr); err != nil {
		return err
	}

	var webhook *dingtalktest.Recorder
	if opts.WebhookListen != "" && !opts.DryRun {
		webhook, err = dingtalktest.ListenWebhook(opts.WebhookListen)
		if err != nil {
			return fmt.Errorf("--webhook-listen: %w", err)
		}
		defer webhook.Close()
		fmt.Fprintf(stderr, "fake sessionWebhook listening on %s\n", webhook.URL)
	}

	var api *dingtalktest.OpenAPI
	if opts.OpenAPIListen != "" && !opts.DryRun {
		if api, err = startFakeOpenAPI(opts.OpenAPIListen, opts.AppKey, secret, stderr); err != nil {
			return err
		}
		defer api.Close()
	}

	body, err := opts.body(target, webhook, stderr)
	if err != nil {
		return err
	}
	req, err := dingtalktest.NewRequest(target.String(), secret, body, now)
	if err != nil {
		return err
	}
	req.Header.Set(dingtalk.HeaderTimestamp, ts)
	req.Header.Set(dingtalk.HeaderSign, dingtalk.Sign(secret, ts))
	if opts.PrintRequest || opts.DryRun {
		printRequest(stdout, req, body)
		if opts.DryRun {
			return nil
		}
	}
	if err := postCallback(ctx, req, cmp.Or(opts.Timeout, defaultSendTimeout), webhook != nil, stdout, stderr); err != nil {
		if webhook != nil {
			err = fmt.Errorf("%w; not waiting for sessionWebhook posts", err)
		} else if api != nil {
			err = fmt.Errorf("%w; not waiting for AI cards", err)
		}
		return err
	}
	if api != nil {
		return waitForCards(ctx, api, max(opts.Count, 1), cmp.Or(opts.Wait, defaultSendWait), stdout, stderr)
	}
	if webhook == nil {
		return nil
	}
	return waitForPosts(ctx, webhook, max(opts.Count, 1), cmp.Or(opts.Wait, defaultSendWait), stdout, stderr)
}

// check refuses flag combinations that would be silently ignored.
func (opts sendOptions) check() error {
	cb := opts.Callback
	switch {
	case opts.BodyFile != "" && (cb != (dingtalktest.Callback{}) || len(opts.Cleared) > 0 || opts.Admin):
		return errors.New("--body sends the file as it is: --msgtype, --text, --group, --sender-nick, --sender-staff-id, --robot-code, --msg-id, --download-code and --admin only shape a built callback")
	case cb.MsgType != "" && !slices.Contains(sendMsgTypes, cb.MsgType):
		return fmt.Errorf("--msgtype %q is not one of %s", cb.MsgType, strings.Join(sendMsgTypes, ", "))
	case cb.Text != "" && !carriesText(cb.MsgType):
		return fmt.Errorf("--text: a %s callback carries no text (text, richText and audio do)", cb.MsgType)
	case cb.DownloadCode != "" && !carriesMedia(cb.MsgType):
		return errors.New("--download-code: a text callback carries no media")
	case opts.WebhookListen == "" && opts.OpenAPIListen == "" && (opts.Wait != 0 || opts.Count != 0):
		return errors.New("--wait and --count only apply with --webhook-listen or --openapi-listen")
	case opts.OpenAPIListen == "" && opts.AppKey != "":
		return errors.New("--app-key only applies with --openapi-listen")
	case opts.Wait < 0 || opts.Count < 0 || opts.Timeout < 0:
		return errors.New("--wait, --count and --timeout cannot be negative")
	}
	return nil
}

// carriesText reports whether msgType has a text --text sets: a text's
// content, a richText's text part or an audio's recognition.
func carriesText(msgType string) bool {
	return slices.Contains([]string{"", dingtalk.MsgTypeText, dingtalk.MsgTypeRichText, dingtalk.MsgTypeAudio}, msgType)
}

// carriesMedia reports whether msgType has a downloadCode.
func carriesMedia(msgType string) bool {
	return msgType != "" && msgType != dingtalk.MsgTypeText
}

// body returns what to send: the --body file, or a realistic callback whose
// sessionWebhook points at the fake one when there is one; it says on stderr
// what it sends, and what the gateway will make of a file.
func (opts sendOptions) body(target *url.URL, webhook *dingtalktest.Recorder, stderr io.Writer) ([]byte, error) {
	if opts.BodyFile == "" {
		cb := opts.Callback
		cb.MsgType = cmp.Or(cb.MsgType, dingtalk.MsgTypeText)
		if carriesText(cb.MsgType) {
			cb.Text = cmp.Or(cb.Text, defaultSendText)
		}
		cb.MsgID = cmp.Or(cb.MsgID, dingtalktest.NewMsgID())
		if webhook != nil {
			cb.SessionWebhook = webhook.SessionURL()
		}
		m := cb.Message()
		m.IsAdmin = opts.Admin
		for _, flag := range opts.Cleared {
			fieldFlags[flag](&m)
		}
		chat := "one-to-one"
		if cb.Group {
			chat = "group"
		}
		fmt.Fprintf(stderr, "sending a %s %s callback, msgId %s, to %s\n", chat, cb.MsgType, m.MsgID, target.Redacted())
		return json.Marshal(m)
	}

	body, err := os.ReadFile(opts.BodyFile)
	if err != nil {
		return nil, fmt.Errorf("--body: %w", err)
	}
	fmt.Fprintf(stderr, "sending %s to %s\n", opts.BodyFile, target.Redacted())
	// Sent anyway: how the gateway answers a broken body is worth seeing.
	m, err := dingtalk.ParseMessage(body)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "note: the gateway will refuse %s: %v\n", opts.BodyFile, err)
	case webhook != nil && !strings.HasPrefix(m.SessionWebhook, webhook.URL+"/"):
		fmt.Fprintf(stderr, "note: the sessionWebhook in %s is not on %s: posts to it will not show here\n", opts.BodyFile, webhook.URL)
	}
	return body, nil
}

// printRequest writes the signed request as it goes on the wire, but for
// the headers Go's client adds: what curl or another sender must reproduce.
func printRequest(w io.Writer, req *http.Request, body []byte) {
	fmt.Fprintf(w, "%s %s HTTP/1.1\nHost: %s\n", req.Method, req.URL.RequestURI(), req.URL.Host)
	for _, name := range slices.Sorted(maps.Keys(req.Header)) {
		for _, value := range req.Header[name] {
			fmt.Fprintf(w, "%s: %s\n", name, value)
		}
	}
	fmt.Fprintf(w, "\n%s\n\n", body)
}

// postCallback posts the signed request, prints the status and the reply,
// and says what was wrong with them. An empty answer is fine when posts to
// the fake sessionWebhook are awaited: some backends answer DingTalk empty
// and post their reply themselves.
func postCallback(ctx context.Context, req *http.Request, timeout time.Duration, awaitingPosts bool, stdout, stderr io.Writer) error {
	target := req.URL
	resp, reply, err := exchange(ctx, req, target, timeout)
	if err != nil {
		return err
	}

	fmt.Fprintln(stdout, resp.Status)
	bodyErr := printBody(stdout, reply)
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		// The status says it all; the body, whatever it is, was printed.
		return errors.New("the gateway answered " + resp.Status + statusHint(resp))
	case errors.Is(bodyErr, errEmptyBody) && awaitingPosts:
		fmt.Fprintln(stderr, "note: the answer is empty, as from a backend that posts its reply to the sessionWebhook itself (or from a host or path no route of the gateway answers)")
	case errors.Is(bodyErr, errEmptyBody):
		return fmt.Errorf(`the reply is empty, not JSON: Caddy answers so when no site answers the host of %s, or no route its path: use the dingtalk route's URL with the host of the site's address (a site http://localhost:8080 does not answer http://127.0.0.1:8080); a gateway's "no reply" is {"msgtype":"empty"}`,
			target.Redacted())
	case errors.Is(bodyErr, errNotJSON):
		return fmt.Errorf("the reply is not JSON (Content-Type %q); its raw body is printed above", resp.Header.Get("Content-Type"))
	}
	return nil
}

// exchange sends req to the gateway at target within timeout and reads its
// answer. A redirect is shown, not followed: DingTalk posts to the
// configured address only, so a redirect is a misconfiguration.
func exchange(ctx context.Context, req *http.Request, target *url.URL, timeout time.Duration) (*http.Response, []byte, error) {
	client := &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return nil, nil, reachError(ctx, target, timeout, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxShownBody))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer of %s: %w", target.Redacted(), err)
	}
	return resp, body, nil
}

// reachError explains a request that got no answer.
func reachError(ctx context.Context, target *url.URL, timeout time.Duration, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted before %s answered", target.Redacted())
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		if urlErr.Timeout() {
			return fmt.Errorf("no answer from %s within %s (--timeout)", target.Redacted(), timeout)
		}
		err = urlErr.Err // its message repeats the URL
	}
	return fmt.Errorf("cannot reach %s: %v", target.Redacted(), err)
}

// statusHints name the likely cause of the gateway's rejections and
// failures.
var statusHints = map[int]string{
	http.StatusUnauthorized:          "timestamp or sign refused: is the secret the gateway's, and this machine's clock right? Caddy's log names the reason",
	http.StatusBadRequest:            "body refused: it must be a JSON object with msgtype and msgId",
	http.StatusForbidden:             "the body's robotCode is not the bot's: see --robot-code",
	http.StatusRequestEntityTooLarge: "the body is larger than the gateway's max_body",
	http.StatusBadGateway:            "the callback was genuine, but Caddy could not reach the backend: is it running, on the address reverse_proxy names? Caddy's log has the error",
	http.StatusServiceUnavailable:    "the gateway cannot take it now: the async queue is full, or the store (Redis) is down with on_error closed; Caddy's log names the reason, and DingTalk would deliver it again later",
	http.StatusGatewayTimeout:        "the backend did not answer in time: DingTalk waits only a few seconds; a slow backend belongs behind the async relay",
}

// statusHint returns the hint for resp's status, in parentheses, or "".
func statusHint(resp *http.Response) string {
	if hint, ok := statusHints[resp.StatusCode]; ok {
		return " (" + hint + ")"
	}
	if location := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && location != "" {
		return fmt.Sprintf(" (redirect to %s: use that URL)", location)
	}
	return ""
}

// waitForPosts prints the posts that reach the fake sessionWebhook, until
// count arrived or wait passed.
func waitForPosts(ctx context.Context, webhook *dingtalktest.Recorder, count int, wait time.Duration, stdout, stderr io.Writer) error {
	fmt.Fprintf(stderr, "waiting up to %s for %d sessionWebhook post(s)\n", wait, count)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var problems []string
	seen := 0
wait:
	for {
		for _, post := range webhook.Requests()[seen:] {
			seen++
			fmt.Fprintf(stdout, "sessionWebhook post %d:\n", seen)
			if err := printBody(stdout, post.Body); err != nil {
				problems = append(problems, fmt.Sprintf("sessionWebhook post %d is %v", seen, err))
			}
		}
		if seen >= count {
			break
		}
		select {
		case <-webhook.Notify():
		case <-deadline.C:
			got := "no sessionWebhook post"
			if seen > 0 {
				got = fmt.Sprintf("only %d of %d sessionWebhook posts", seen, count)
			}
			problems = append(problems, fmt.Sprintf("%s arrived within %s (--wait): does the gateway reply asynchronously, and does its webhook policy allow %s?",
				got, wait, strings.TrimPrefix(webhook.URL, "http://")))
			break wait
		case <-ctx.Done():
			problems = append(problems, fmt.Sprintf("interrupted after %d of %d sessionWebhook post(s)", seen, count))
			break wait
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// printBody writes a JSON body indented, an empty one as "(empty body)"
// returning errEmptyBody, and anything else as it is returning errNotJSON.
func printBody(w io.Writer, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		fmt.Fprintln(w, "(empty body)")
		return errEmptyBody
	}
	var out bytes.Buffer
	err := json.Indent(&out, body, "", "  ")
	if err != nil {
		out.Reset()
		out.Write(body)
		err = errNotJSON
	}
	if !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	_, _ = w.Write(out.Bytes())
	return err
}

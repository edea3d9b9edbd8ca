package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
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
	// Callback is shaped by --text, --group, --sender-nick, --sender-staff-id,
	// --robot-code and --msg-id; its other fields get realistic defaults.
	Callback dingtalktest.Callback
	// BodyFile (--body) is sent as it is instead of a built callback.
	BodyFile string

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

// What printBody found wrong with a body that should be a DingTalk message.
var (
	errEmptyBody = errors.New("empty")
	errNotJSON   = errors.New("not JSON")
)

// runSend posts a signed callback to the gateway and prints its status and
// reply; with a fake sessionWebhook it then prints what the gateway posts
// there. It returns an error, after printing what there was to see, unless
// the gateway answered 2xx with JSON and the awaited posts arrived.
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

	var webhook *dingtalktest.Recorder
	if opts.WebhookListen != "" {
		webhook, err = dingtalktest.ListenWebhook(opts.WebhookListen)
		if err != nil {
			return fmt.Errorf("--webhook-listen: %w", err)
		}
		defer webhook.Close()
		fmt.Fprintf(stderr, "fake sessionWebhook listening on %s\n", webhook.URL)
	}

	var api *dingtalktest.OpenAPI
	if opts.OpenAPIListen != "" {
		if api, err = startFakeOpenAPI(opts.OpenAPIListen, opts.AppKey, secret, stderr); err != nil {
			return err
		}
		defer api.Close()
	}

	body, err := opts.body(target, webhook, stderr)
	if err != nil {
		return err
	}
	if err := postCallback(ctx, target, secret, body, cmp.Or(opts.Timeout, defaultSendTimeout), stdout); err != nil {
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
	switch {
	case opts.BodyFile != "" && opts.Callback != (dingtalktest.Callback{}):
		return errors.New("--body sends the file as it is: --text, --group, --sender-nick, --sender-staff-id, --robot-code and --msg-id only shape a built callback")
	case opts.WebhookListen == "" && opts.OpenAPIListen == "" && (opts.Wait != 0 || opts.Count != 0):
		return errors.New("--wait and --count only apply with --webhook-listen or --openapi-listen")
	case opts.OpenAPIListen == "" && opts.AppKey != "":
		return errors.New("--app-key only applies with --openapi-listen")
	case opts.Wait < 0 || opts.Count < 0 || opts.Timeout < 0:
		return errors.New("--wait, --count and --timeout cannot be negative")
	}
	return nil
}

// body returns what to send: the --body file, or a realistic callback whose
// sessionWebhook points at the fake one when there is one; it says on stderr
// what it sends, and what the gateway will make of a file.
func (opts sendOptions) body(target *url.URL, webhook *dingtalktest.Recorder, stderr io.Writer) ([]byte, error) {
	if opts.BodyFile == "" {
		cb := opts.Callback
		cb.Text = cmp.Or(cb.Text, defaultSendText)
		cb.MsgID = cmp.Or(cb.MsgID, dingtalktest.NewMsgID())
		if webhook != nil {
			cb.SessionWebhook = webhook.SessionURL()
		}
		chat := "one-to-one"
		if cb.Group {
			chat = "group"
		}
		fmt.Fprintf(stderr, "sending a %s text callback, msgId %s, to %s\n", chat, cb.MsgID, target.Redacted())
		return cb.Body(), nil
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

// postCallback signs and posts body, prints the status and the reply, and
// says what was wrong with them.
func postCallback(ctx context.Context, target *url.URL, secret string, body []byte, timeout time.Duration, stdout io.Writer) error {
	req, err := dingtalktest.NewRequest(target.String(), secret, body, time.Now())
	if err != nil {
		return err
	}
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
	case errors.Is(bodyErr, errEmptyBody):
		return errors.New(`the reply is empty, not JSON: is --url the dingtalk route? (a gateway's "no reply" is {"msgtype":"empty"})`)
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

// statusHint names the likely cause of the dingtalk handler's rejections.
func statusHint(resp *http.Response) string {
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized:
		return " (timestamp or sign refused: is the secret the gateway's, and this machine's clock right? Caddy's log names the reason)"
	case code == http.StatusBadRequest:
		return " (body refused: it must be a JSON object with msgtype and msgId)"
	case code == http.StatusForbidden:
		return " (the body's robotCode is not the bot's: see --robot-code)"
	case code == http.StatusRequestEntityTooLarge:
		return " (the body is larger than the gateway's max_body)"
	case code >= 300 && code < 400 && resp.Header.Get("Location") != "":
		return fmt.Sprintf(" (redirect to %s: use that URL)", resp.Header.Get("Location"))
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

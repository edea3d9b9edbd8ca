package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// streamOptions are the flags of `caddy dingtalk stream`.
type streamOptions struct {
	Listen        string // --listen: the fake Stream server's address
	ClientID      string // --client-id: the app the fake accepts
	Secret        secretSource
	WebhookListen string // --webhook-listen: the fake sessionWebhook's address
	// Callback is shaped by --text, --group, --sender-nick,
	// --sender-staff-id, --robot-code and --msg-id.
	Callback dingtalktest.Callback
	Wait     time.Duration // --wait: for the connection, then for the posts; 0: defaultSendWait
	Count    int           // --count: how many posts to wait for; 0: one
}

const (
	defaultStreamListen   = "127.0.0.1:9100"
	defaultStreamWebhook  = "127.0.0.1:9999"
	defaultStreamClientID = "dingappkey1"
)

// runStream plays DingTalk for a gateway in Stream mode: a fake Stream
// server and a fake sessionWebhook; once the gateway connects, it pushes one
// robot message, prints the gateway's ack and then what it posts to the
// sessionWebhook. It returns an error unless the ack was 200 and the
// awaited posts arrived.
func runStream(ctx context.Context, opts streamOptions, stdout, stderr io.Writer) error {
	if opts.Wait < 0 || opts.Count < 0 {
		return errors.New("--wait and --count cannot be negative")
	}
	secret, err := opts.Secret.resolve()
	if err != nil {
		return err
	}
	wait := cmp.Or(opts.Wait, defaultSendWait)
	clientID := cmp.Or(opts.ClientID, defaultStreamClientID)

	webhook, err := dingtalktest.ListenWebhook(cmp.Or(opts.WebhookListen, defaultStreamWebhook))
	if err != nil {
		return fmt.Errorf("--webhook-listen: %w", err)
	}
	defer webhook.Close()
	server, err := dingtalktest.ListenStreamServer(cmp.Or(opts.Listen, defaultStreamListen), clientID, secret)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	defer server.Close()
	fmt.Fprintf(stderr, "fake Stream server on %s (api_base) for client_id %s; fake sessionWebhook on %s\n", server.URL, clientID, webhook.URL)
	fmt.Fprintf(stderr, "waiting up to %s for the gateway to connect\n", wait)

	connectCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := server.Wait(connectCtx, func() bool { return server.Connected() > 0 }); err != nil {
		return fmt.Errorf("no gateway connected within %s (--wait): is its api_base %s, and are its client_id and secret these? (%d open request(s) came)", wait, server.URL, len(server.Opens()))
	}

	cb := opts.Callback
	cb.Text = cmp.Or(cb.Text, defaultSendText)
	cb.MsgID = cmp.Or(cb.MsgID, dingtalktest.NewMsgID())
	cb.SessionWebhook = webhook.SessionURL()
	chat := "one-to-one"
	if cb.Group {
		chat = "group"
	}
	id, err := server.SendRobotMessage(connectCtx, cb.Body())
	if err != nil {
		return fmt.Errorf("pushing the message: %w", err)
	}
	fmt.Fprintf(stderr, "pushed a %s text message, msgId %s, in frame %s\n", chat, cb.MsgID, id)
	ack, err := server.WaitAck(connectCtx, id)
	if err != nil {
		return fmt.Errorf("the gateway did not ack frame %s within %s", id, wait)
	}
	fmt.Fprintf(stdout, "ack %d %s\n", ack.Code, ack.Message)
	_ = printBody(stdout, []byte(ack.Data))
	if ack.Code != 200 {
		return fmt.Errorf("the gateway acked with code %d", ack.Code)
	}
	return waitForPosts(ctx, webhook, max(opts.Count, 1), wait, stdout, stderr)
}

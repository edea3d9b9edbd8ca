package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

// gatewayOf runs a Stream client in the place of a gateway: it acks each
// robot message and posts an echo to its sessionWebhook, with the policy
// allowing webhookAddr.
func gatewayOf(t *testing.T, apiBase, clientID, secret, webhookAddr string) {
	t.Helper()
	policy, err := dingtalk.NewWebhookPolicy([]string{webhookAddr})
	if err != nil {
		t.Fatal(err)
	}
	hook := &dingtalk.WebhookClient{Policy: policy}
	c := &stream.Client{
		APIBase: apiBase, ClientID: clientID, ClientSecret: secret,
		Subscriptions: []stream.Subscription{{Type: stream.TypeCallback, Topic: stream.TopicRobot}},
		Backoff:       stream.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Handler: func(ctx context.Context, f *stream.Frame) stream.Ack {
			msg, err := dingtalk.ParseMessage([]byte(f.Data))
			if err == nil {
				_, _ = hook.Post(ctx, msg, []byte(`{"msgtype":"text","text":{"content":"echo `+msg.Text.Content+`"}}`))
			}
			return stream.CallbackAck(f.MessageID(), nil)
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestStreamPushesAMessageToTheGatewayAndPrintsItsAnswer(t *testing.T) {
	listen, webhookAddr := freeAddr(t), freeAddr(t)
	gatewayOf(t, "http://"+listen, "dingappkey1", testSecret, webhookAddr)
	var out, errOut bytes.Buffer
	err := runStream(context.Background(), streamOptions{
		Listen: listen, WebhookListen: webhookAddr, Secret: secretSource{Value: testSecret},
		Callback: testCallbackText("hello stream"), Wait: 20 * time.Second,
	}, &out, &errOut)
	assertNoSecret(t, testSecret, out.String(), errOut.String(), err)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	want := "ack 200 OK\n{\n  \"response\": null\n}\nsessionWebhook post 1:\n{\n  \"msgtype\": \"text\",\n  \"text\": {\n    \"content\": \"echo hello stream\"\n  }\n}\n"
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	if !strings.Contains(errOut.String(), "fake Stream server on http://"+listen) {
		t.Errorf("stderr:\n%s", errOut.String())
	}
}

func TestStreamFailsWhenNoGatewayConnects(t *testing.T) {
	listen, webhookAddr := freeAddr(t), freeAddr(t)
	// A gateway with the wrong secret is refused at every open.
	gatewayOf(t, "http://"+listen, "dingappkey1", "not the secret", webhookAddr)
	var out, errOut bytes.Buffer
	err := runStream(context.Background(), streamOptions{
		Listen: listen, WebhookListen: webhookAddr, Secret: secretSource{Value: testSecret}, Wait: 500 * time.Millisecond,
	}, &out, &errOut)
	assertNoSecret(t, testSecret, out.String(), errOut.String(), err)
	if err == nil || !strings.Contains(err.Error(), "no gateway connected within 500ms") || out.Len() != 0 {
		t.Errorf("error %v, stdout %q", err, out.String())
	}
}

func testCallbackText(text string) (cb dingtalktest.Callback) {
	cb.Text = text
	return cb
}

//go:build unix

package examples

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// TestStream runs the README's three commands: the Python backend, the
// fake Stream server of `caddy dingtalk stream`, and Caddy connecting to it.
func TestStream(t *testing.T) {
	needs(t, "python3")
	ex := newExample(t, "stream")
	ex.set("DINGTALK_APP_SECRET", trialSecret)
	streamAddr, webhookAddr := ex.addr("STREAM_ADDR"), ex.addr("WEBHOOK_HOST")
	ex.set("DINGTALK_STREAM_API", "http://"+streamAddr)
	ex.start(ex.addr("BACKEND_ADDR"), "python3", "examples/python/backend.py")
	fake := ex.start(streamAddr, bin.caddy, "dingtalk", "stream", "--secret", trialSecret,
		"--listen", streamAddr, "--webhook-listen", webhookAddr, "--text", "hello", "--wait", "60s")
	ex.caddy()

	select {
	case <-fake.done:
	case <-time.After(readyWait):
		t.Fatalf("caddy dingtalk stream did not finish:\n%s", fake.output())
	}
	// stdout and stderr share the output: the lines of each come in order.
	ack := "ack 200 OK\n{\n  \"response\": null\n}\n"
	want := `sessionWebhook post 1:
{
  "msgtype": "text",
  "text": {
    "content": "Hi Zhang San, bot default (Python) got: hello @user123"
  },
  "at": {
    "atUserIds": [
      "user123"
    ]
  }
}
`
	if out := fake.output(); !strings.Contains(out, ack) || !strings.Contains(out, want) {
		t.Errorf("caddy dingtalk stream printed:\n%s\nwant:\n%s", out, want)
	}
}

// TestStreamSingle runs two gateways with single_connection on one Redis:
// one connects, the other waits; killed, the holder is replaced within the
// lease.
func TestStreamSingle(t *testing.T) {
	redis := redistest.Start(t)
	fake := dingtalktest.NewStreamServer("dingappkey1", trialSecret)
	defer fake.Close()
	webhook := dingtalktest.NewWebhook()
	defer webhook.Close()
	start := func(name string) (*example, *process) {
		ex := newExample(t, "stream-single")
		ex.set("INSTANCE", name)
		ex.set("DINGTALK_APP_SECRET", trialSecret)
		ex.set("REDIS_ADDR", redis.Addr)
		ex.set("DINGTALK_STREAM_API", fake.URL)
		ex.set("WEBHOOK_HOST", strings.TrimPrefix(webhook.URL, "http://"))
		ex.set("STREAM_LEASE", "2s")
		return ex, ex.caddy()
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyWait)
	defer cancel()
	_, a := start("a")
	if err := fake.WaitConnected(ctx, 1); err != nil {
		t.Fatal("instance a did not connect")
	}
	_, b := start("b")
	waitForOutput(t, b, "dingtalk stream waiting for the single connection's lease")
	if n := fake.Accepted(); n != 1 {
		t.Fatalf("%d connections with single_connection, want 1", n)
	}
	answer := func(text string) string {
		t.Helper()
		before := webhook.Count()
		if _, err := fake.SendRobotMessage(ctx, dingtalktest.Callback{Text: text, SessionWebhook: webhook.SessionURL()}.Body()); err != nil {
			t.Fatal(err)
		}
		if err := waitCount(ctx, webhook, before+1); err != nil {
			t.Fatalf("no answer to %q", text)
		}
		return string(webhook.Requests()[before].Body)
	}
	if got := answer("who?"); !strings.Contains(got, "Instance a answered: who?") {
		t.Errorf("answered %s", got)
	}

	// a dies without a word: b takes over within the lease.
	if err := syscall.Kill(-a.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	if err := fake.Wait(ctx, func() bool { return fake.Accepted() == 2 && fake.Connected() == 1 }); err != nil {
		t.Fatalf("instance b did not take over: %d connections in all, %d now\n%s", fake.Accepted(), fake.Connected(), b.output())
	}
	if got := answer("and now?"); !strings.Contains(got, "Instance b answered: and now?") {
		t.Errorf("answered %s", got)
	}
}

// waitForOutput waits until p printed want.
func waitForOutput(t *testing.T, p *process, want string) {
	t.Helper()
	deadline := time.Now().Add(readyWait)
	for !strings.Contains(p.output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%q was not printed:\n%s", want, p.output())
		}
		select {
		case <-p.done:
			t.Fatalf("exited before printing %q:\n%s", want, p.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitCount waits until rec received n requests.
func waitCount(ctx context.Context, rec *dingtalktest.Recorder, n int) error {
	for rec.Count() < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-rec.Notify():
		}
	}
	return nil
}

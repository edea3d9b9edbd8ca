package streamsdktest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-dingtalk/dingtalk-stream-sdk-go/chatbot"
	"github.com/open-dingtalk/dingtalk-stream-sdk-go/client"
	"github.com/open-dingtalk/dingtalk-stream-sdk-go/logger"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

func TestOfficialSDKReceivesAndAcksARobotMessageFromTheFake(t *testing.T) {
	log := &sdkLog{}
	logger.SetLogger(log)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the SDK's log:\n%s", log.String())
		}
	})
	const clientID, secret = "dingappkey1", "this is a secret"
	server := dingtalktest.NewStreamServer(clientID, secret)
	defer server.Close()

	received := make(chan *chatbot.BotCallbackDataModel, 1)
	cli := client.NewStreamClient(
		client.WithAppCredential(client.NewAppCredentialConfig(clientID, secret)),
		client.WithOpenApiHost(server.URL),
		client.WithAutoReconnect(false),
	)
	cli.RegisterChatBotCallbackRouter(func(_ context.Context, data *chatbot.BotCallbackDataModel) ([]byte, error) {
		received <- data
		return []byte(""), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cli.Start(ctx); err != nil {
		t.Fatalf("the SDK did not connect to the fake: %v", err)
	}
	defer cli.Close()

	opens := server.Opens()
	if len(opens) != 1 || opens[0].ClientID != clientID || opens[0].Ticket == "" {
		t.Fatalf("open requests %+v", opens)
	}
	body := dingtalktest.Callback{Text: "hello from the fake", Group: true}.Body()
	id, err := server.SendRobotMessage(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case data := <-received:
		var sent struct {
			MsgID string `json:"msgId"`
		}
		_ = json.Unmarshal(body, &sent)
		if data.MsgId != sent.MsgID || data.Text.Content != " hello from the fake" || data.SessionWebhook == "" {
			t.Errorf("the SDK parsed %+v", data)
		}
	case <-ctx.Done():
		t.Fatal("the SDK's handler got no message")
	}
	ack, err := server.WaitAck(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Code != stream.CodeOK || ack.MessageID() != id {
		t.Errorf("the SDK acked %+v", ack)
	}

	// The SDK answers DingTalk's ping as the protocol says: its data echoed.
	// It writes each frame's ack from the frame's own goroutine, and its
	// WebSocket library panics on a write that overlaps another: the fake
	// receives an ack before the SDK's write returns, so the ping waits for
	// the line the SDK logs after the write.
	if err := log.waitFor(ctx, id); err != nil {
		t.Fatalf("the SDK never logged its ack of the message: %v", err)
	}
	ping, err := server.Ping(ctx, "sdk-ping")
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := server.WaitAck(ctx, ping); err != nil || ack.Data != `{"opaque":"sdk-ping"}` {
		t.Errorf("ping ack %+v, %v", ack, err)
	}
}

// sdkLog keeps the SDK's log, shown when the test fails: its goroutines
// log after the test returned, when the test's own log is closed.
type sdkLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *sdkLog) logf(level, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.buf, level+": "+format+"\n", args...)
}

// waitFor waits until a line logged after the SDK wrote an ack names the
// frame id.
func (l *sdkLog) waitFor(ctx context.Context, id string) error {
	for {
		for _, entry := range strings.Split(l.String(), "debug: [wire] [websocket] local => remote:")[1:] {
			if strings.Contains(entry, id) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (l *sdkLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *sdkLog) Debugf(format string, args ...any)   { l.logf("debug", format, args...) }
func (l *sdkLog) Infof(format string, args ...any)    { l.logf("info", format, args...) }
func (l *sdkLog) Warningf(format string, args ...any) { l.logf("warning", format, args...) }
func (l *sdkLog) Errorf(format string, args ...any)   { l.logf("error", format, args...) }
func (l *sdkLog) Fatalf(format string, args ...any)   { l.logf("fatal", format, args...) }

package dingtalktest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

func TestStreamServerAdmitsOneSocketPerTicketAndOnlyItsApp(t *testing.T) {
	server := dingtalktest.NewStreamServer("app", "secret")
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subs := []stream.Subscription{{Type: stream.TypeCallback, Topic: stream.TopicRobot}}

	if _, err := stream.Open(ctx, http.DefaultClient, server.URL, stream.OpenRequest{ClientID: "app", ClientSecret: "wrong", Subscriptions: subs}); err == nil {
		t.Error("a wrong secret opened a connection")
	}
	ep, err := stream.Open(ctx, http.DefaultClient, server.URL, stream.OpenRequest{ClientID: "app", ClientSecret: "secret", Subscriptions: subs})
	if err != nil {
		t.Fatal(err)
	}
	target, err := ep.URL()
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := websocket.Dial(ctx, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if _, _, err := websocket.Dial(ctx, target, nil); err == nil {
		t.Error("a ticket admitted a second socket")
	}
	if err := server.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	opens := server.Opens()
	if len(opens) != 2 || opens[0].Ticket != "" || opens[1].Ticket != ep.Ticket {
		t.Errorf("opens %+v", opens)
	}

	// A frame reaches the socket, and the socket's ack is recorded.
	id, err := server.SendRobotMessage(ctx, []byte(`{"msgId":"m1"}`))
	if err != nil {
		t.Fatal(err)
	}
	_, data, err := conn.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f stream.Frame
	if err := json.Unmarshal(data, &f); err != nil || f.Type != "CALLBACK" || f.Topic() != stream.TopicRobot || f.MessageID() != id || f.Data != `{"msgId":"m1"}` || f.SpecVersion != "1.0" {
		t.Fatalf("frame %s (%v)", data, err)
	}
	ack, _ := json.Marshal(stream.CallbackAck(id, nil))
	if err := conn.Write(ctx, websocket.MessageText, ack); err != nil {
		t.Fatal(err)
	}
	got, err := server.WaitAck(ctx, id)
	if err != nil || got.Code != 200 {
		t.Errorf("ack %+v, %v", got, err)
	}
	if !bytes.Contains(ack, []byte(`"data":"{\"response\":null}"`)) {
		t.Errorf("ack JSON %s", ack)
	}

	server.Drop()
	if err := server.WaitConnected(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := conn.Read(ctx); err == nil {
		t.Error("the socket still reads after Drop")
	}
}

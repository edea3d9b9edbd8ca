package integration

import (
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// The positive control of nothingMore: a reply that the relay posts late,
// three quarters into the window, to the webhook whose posts the checks
// count, is caught; and the same window without it passes.
func TestNothingMoreCatchesALateEvent(t *testing.T) {
	rl := startRelayed(t, openGate(), "", plainText("answer"))
	mustEmptyAck(t, rl.post("/robot", testSecret, rl.callbackTo("first")))
	waitFor(t, "the first reply", func() bool { return rl.webhook.Count() == 1 })
	posts := []count{{"webhook posts", 1, rl.webhook.Count}}
	if change := changeWithin(quietWindow, posts); change != "" {
		t.Fatalf("nothing was sent, yet: %s", change)
	}

	sent := make(chan error, 1)
	late := time.AfterFunc(quietWindow*3/4, func() {
		req, err := dingtalktest.NewRequest(rl.URL+"/robot", testSecret, rl.callbackTo("late"), time.Now())
		if err == nil {
			resp, postErr := rl.client.Do(req)
			if err = postErr; err == nil {
				resp.Body.Close()
			}
		}
		sent <- err
	})
	defer late.Stop()
	change := changeWithin(quietWindow, posts)
	if err := <-sent; err != nil {
		t.Fatalf("the late callback: %v", err)
	}
	if change == "" {
		t.Fatal("a reply posted three quarters into the window went unnoticed")
	}
}

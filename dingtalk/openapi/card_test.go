package openapi_test

import (
	"context"
	"errors"
	"testing"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

func TestCardCallsReachDingTalk(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, nil)
	ctx := context.Background()
	if err := c.CreateCard(ctx, openapi.NewCard{OutTrackID: "card1", ConversationID: testGroup,
		Params: map[string]string{"flowStatus": "1"}}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []openapi.CardContent{{OutTrackID: "card1", Content: "he"}, {OutTrackID: "card1", Content: "hello", Finalize: true}} {
		if err := c.StreamCard(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.UpdateCard(ctx, "card1", map[string]string{"flowStatus": "3"}); err != nil {
		t.Fatal(err)
	}
	cards := fake.Cards()
	if len(cards) != 1 || cards[0].Content() != "hello" || cards[0].State() != "3" || len(cards[0].Updates) != 2 ||
		cards[0].Updates[0].GUID == cards[0].Updates[1].GUID || !cards[0].Updates[1].Finalize {
		t.Fatalf("cards %+v", cards)
	}
	if err := c.CreateCard(ctx, openapi.NewCard{OutTrackID: "card2"}); !errors.Is(err, openapi.ErrBadParameter) {
		t.Errorf("a card without a conversation: err %v", err)
	}
}

func TestWithoutQPSRetryReturnsTheLimitAtOnce(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, nil)
	if err := c.CreateCard(context.Background(), openapi.NewCard{OutTrackID: "c", ConversationID: testGroup}); err != nil {
		t.Fatal(err)
	}
	fake.Fail(dingtalktest.OpenAPICardStreamingPath, dingtalktest.FailQPSLimit, 1)
	err := c.StreamCard(openapi.WithoutQPSRetry(context.Background()), openapi.CardContent{OutTrackID: "c", Content: "x"})
	if !errors.Is(err, openapi.ErrQPSLimit) || len(fake.Calls(dingtalktest.OpenAPICardStreamingPath)) != 1 {
		t.Fatalf("err %v after %d calls, want the QPS limit after 1", err, len(fake.Calls(dingtalktest.OpenAPICardStreamingPath)))
	}
	// Without it, the call is retried.
	fake.Fail(dingtalktest.OpenAPICardStreamingPath, dingtalktest.FailQPSLimit, 1)
	if err := c.StreamCard(context.Background(), openapi.CardContent{OutTrackID: "c", Content: "x"}); err != nil {
		t.Fatal(err)
	}
}

package aicard

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

const (
	testAppKey    = "dingcardapp"
	testAppSecret = "CaRd-SeCrEt-99"
	testGroup     = "cidCardGroup=="
)

var group = Target{ConversationID: testGroup}

func newFake(t *testing.T) *dingtalktest.OpenAPI {
	t.Helper()
	fake := dingtalktest.NewOpenAPI(dingtalktest.OpenAPIApp{AppKey: testAppKey, AppSecret: testAppSecret})
	t.Cleanup(fake.Close)
	return fake
}

func newClient(t *testing.T, fake *dingtalktest.OpenAPI) *openapi.Client {
	t.Helper()
	c, err := openapi.New(openapi.Config{
		AppKey: testAppKey, AppSecret: testAppSecret, BaseURL: fake.URL,
		Budget:  openapi.NewPace(100000, nil),
		Backoff: func(int) time.Duration { return 20 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkFinished checks that card shows want, finished, after updates with
// unique guids and exactly one finalize, the last.
func checkFinished(t *testing.T, card dingtalktest.Card, want string) {
	t.Helper()
	if got := card.Content(); got != want {
		t.Errorf("card %s shows %q, want %q", card.OutTrackID, got, want)
	}
	if got := card.Params[openapi.DefaultCardKey]; got != want {
		t.Errorf("card %s has msgContent %q, want %q", card.OutTrackID, got, want)
	}
	if st := strings.Join(card.States, ","); st != "1,2,3" {
		t.Errorf("card %s went through the states %s, want 1,2,3", card.OutTrackID, st)
	}
	guids := map[string]bool{}
	for i, u := range card.Updates {
		if guids[u.GUID] {
			t.Errorf("guid %s is used twice", u.GUID)
		}
		guids[u.GUID] = true
		if u.Finalize != (i == len(card.Updates)-1) || u.Error || !u.IsFull {
			t.Errorf("update %d of %d: finalize %v, error %v, full %v", i+1, len(card.Updates), u.Finalize, u.Error, u.IsFull)
		}
	}
}

func TestStreamFillsOneCardInTheConversation(t *testing.T) {
	fake := newFake(t)
	var created, updates, skipped, firsts atomic.Int32
	cfg := Config{Client: newClient(t, fake), Interval: 5 * time.Millisecond, Hooks: Hooks{
		Created:     func() { created.Add(1) },
		Updated:     func(n int) { updates.Add(1); skipped.Add(int32(n)) },
		FirstUpdate: func(time.Duration) { firsts.Add(1) },
	}}
	words := strings.Fields("the quick brown fox jumps over the lazy dog")
	s := Start(context.Background(), cfg, group)
	for _, w := range words {
		if err := s.Write(context.Background(), w+" "); err != nil {
			t.Fatal(err)
		}
	}
	res := s.Close()
	want := strings.Join(words, " ") + " "
	if res.Cards != 1 || res.Err != nil || res.CreateErr != nil || res.Unsent != "" {
		t.Fatalf("result %+v", res)
	}
	cards := fake.Cards()
	if len(cards) != 1 {
		t.Fatalf("%d cards, want 1", len(cards))
	}
	checkFinished(t, cards[0], want)
	if c := cards[0]; c.OpenSpaceID != "dtv1.card//IM_GROUP."+testGroup || c.TemplateID != openapi.DefaultCardTemplate || c.RobotCode != testAppKey {
		t.Errorf("card %+v", c)
	}
	if created.Load() != 1 || int(updates.Load()) != len(cards[0].Updates) || firsts.Load() != 1 ||
		int(updates.Load()+skipped.Load()) != len(words) {
		t.Errorf("hooks: %d created, %d updates, %d skipped, %d first; %d writes", created.Load(), updates.Load(), skipped.Load(), firsts.Load(), len(words))
	}

	// A 1:1 chat gets its card in the robot's chat with the sender.
	s = Start(context.Background(), cfg, Target{StaffID: "staff42"})
	_ = s.Write(context.Background(), "hi")
	s.Close()
	if c := fake.Cards()[1]; c.OpenSpaceID != "dtv1.card//IM_ROBOT.staff42" {
		t.Errorf("a 1:1 card went to %q", c.OpenSpaceID)
	}
}

// manualClock is a Clock that moves only when the test says so.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []manualWaiter
	waiting chan struct{} // signalled when After is called
}

type manualWaiter struct {
	at time.Time
	ch chan time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Unix(1_700_000_000, 0), waiting: make(chan struct{}, 100)}
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, manualWaiter{c.now.Add(d), ch})
	c.waiting <- struct{}{}
	return ch
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// waitFor waits, with a deadline, until the fake's cards satisfy ok.
func waitFor(t *testing.T, fake *dingtalktest.OpenAPI, what string, ok func([]dingtalktest.Card) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		changed := fake.CardsChanged()
		if ok(fake.Cards()) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func updates(n int) func([]dingtalktest.Card) bool {
	return func(cards []dingtalktest.Card) bool { return len(cards) == 1 && len(cards[0].Updates) >= n }
}

func TestUpdatesKeepTheIntervalAndTheNewestWins(t *testing.T) {
	fake := newFake(t)
	clock := newManualClock()
	const interval = 300 * time.Millisecond
	var skipped atomic.Int32
	s := Start(context.Background(), Config{Client: newClient(t, fake), Interval: interval, Clock: clock,
		Hooks: Hooks{Updated: func(n int) { skipped.Add(int32(n)) }}}, group)
	_ = s.Write(context.Background(), "one")
	waitFor(t, fake, "the first update", updates(1)) // the first text goes out at once
	_ = s.Write(context.Background(), " two")
	_ = s.Write(context.Background(), " three")
	<-clock.waiting // the goroutine waits for the interval
	clock.Advance(interval - time.Millisecond)
	if n := len(fake.Cards()[0].Updates); n != 1 {
		t.Fatalf("%d updates before the interval passed, want 1", n)
	}
	clock.Advance(time.Millisecond) // positive control: now it goes
	waitFor(t, fake, "the second update", updates(2))
	if got := fake.Cards()[0].Updates[1].Content; got != "one two three" {
		t.Errorf("the second update shows %q, want the newest content", got)
	}
	done := make(chan Result)
	go func() { done <- s.Close() }()
	<-clock.waiting // the final update keeps the interval as well
	clock.Advance(interval)
	<-done
	checkFinished(t, fake.Cards()[0], "one two three")
	if skipped.Load() != 1 {
		t.Errorf("%d pieces were folded into later updates, want 1", skipped.Load())
	}
	u := fake.Cards()[0].Updates
	if len(u) != 3 {
		t.Errorf("%d updates, want 3", len(u))
	}
}

func TestOneUpdateInFlight(t *testing.T) {
	fake := newFake(t)
	fake.DelayCardCalls(10 * time.Millisecond)
	s := Start(context.Background(), Config{Client: newClient(t, fake), Interval: time.Millisecond}, group)
	var want strings.Builder
	// A new piece of text as soon as each call reaches DingTalk: a Stream
	// that did not wait for the answer would send the next update at once.
	for i := range 20 {
		piece := strings.Repeat(string(rune('a'+i)), 3)
		want.WriteString(piece)
		_ = s.Write(context.Background(), piece)
		select {
		case <-fake.Notify():
		case <-time.After(5 * time.Second):
			t.Fatal("no call reached the fake")
		}
	}
	s.Close()
	if n := fake.MaxCardCallsInFlight(dingtalktest.OpenAPICardStreamingPath); n != 1 {
		t.Errorf("%d streaming updates were in flight at once, want 1", n)
	}
	checkFinished(t, fake.Cards()[0], want.String())
}

func TestFailEndsTheCardVisibly(t *testing.T) {
	fake := newFake(t)
	s := Start(context.Background(), Config{Client: newClient(t, fake), Interval: time.Millisecond}, group)
	_ = s.Write(context.Background(), "half an ans")
	s.Fail("Sorry, the bot failed.")
	card := fake.Cards()[0]
	last := card.Updates[len(card.Updates)-1]
	if !last.Error || !last.Finalize || last.Content != "half an ans\n\nSorry, the bot failed." {
		t.Errorf("last update %+v, want an error, finalized, with the note", last)
	}
	if card.State() != string(openapi.CardFailed) {
		t.Errorf("state %s, want failed", card.State())
	}
}

func TestContextEndStillFinalizes(t *testing.T) {
	fake := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := Start(ctx, Config{Client: newClient(t, fake), Interval: time.Millisecond}, group)
	_ = s.Write(context.Background(), "partial")
	waitFor(t, fake, "an update", updates(1))
	cancel()
	s.Fail("")
	if card := fake.Cards()[0]; card.State() != string(openapi.CardFailed) || !card.Updates[len(card.Updates)-1].Finalize {
		t.Errorf("after the context ended the card is %+v, want finalized and failed", card)
	}
}

func TestRefusedCardHandsBackTheWholeText(t *testing.T) {
	fake := newFake(t)
	fake.Fail(dingtalktest.OpenAPICardCreatePath, dingtalktest.FailNoPermission, 1)
	s := Start(context.Background(), Config{Client: newClient(t, fake), MaxUnsent: 20}, group)
	_ = s.Write(context.Background(), "all of ")
	_ = s.Write(context.Background(), "the text")
	res := s.Close()
	if !errors.Is(res.CreateErr, openapi.ErrUnauthorized) || res.Unsent != "all of the text" || res.Truncated || res.Cards != 0 {
		t.Errorf("result %+v", res)
	}
	if len(fake.Cards()) != 0 || len(fake.Calls(dingtalktest.OpenAPICardStreamingPath)) != 0 {
		t.Error("a refused card was updated")
	}

	// The text kept is bounded.
	fake.Fail(dingtalktest.OpenAPICardCreatePath, dingtalktest.FailNoPermission, 1)
	s = Start(context.Background(), Config{Client: newClient(t, fake), MaxUnsent: 10}, group)
	_ = s.Write(context.Background(), "0123456")
	_ = s.Write(context.Background(), "789abc")
	if res := s.Close(); res.Unsent != "0123456789" || !res.Truncated {
		t.Errorf("result %+v, want 10 bytes and truncated", res)
	}
}

func TestQPSLimitSlowsTheUpdatesDown(t *testing.T) {
	fake := newFake(t)
	fake.LimitCardRate(3)
	var slowed atomic.Int32
	events := make(chan struct{}, 100)
	s := Start(context.Background(), Config{Client: newClient(t, fake), Interval: 5 * time.Millisecond, Hooks: Hooks{
		Slowed:  func() { slowed.Add(1); events <- struct{}{} },
		Updated: func(int) { events <- struct{}{} },
	}}, group)
	var want strings.Builder
	for i := range 6 {
		piece := strings.Repeat("x", i+1) + " "
		want.WriteString(piece)
		_ = s.Write(context.Background(), piece)
		select {
		case <-events:
		case <-time.After(5 * time.Second):
			t.Fatal("no update and no slowdown")
		}
	}
	res := s.Close()
	if res.Err != nil || slowed.Load() == 0 {
		t.Errorf("err %v, %d slowdowns; want none and some", res.Err, slowed.Load())
	}
	checkFinished(t, fake.Cards()[0], want.String())
}

func TestContentOverMaxCharsContinues(t *testing.T) {
	var text strings.Builder
	for i := range 12 {
		text.WriteString(strings.Repeat(string(rune('a'+i)), 29) + "\n") // 30-byte lines
	}
	text.WriteString("末尾的文字") // and characters of 3 bytes at the end
	for _, overflow := range []Overflow{OverflowNewCard, OverflowMessages} {
		fake := newFake(t)
		s := Start(context.Background(), Config{Client: newClient(t, fake), Interval: time.Millisecond, MaxChars: 100, Overflow: overflow}, group)
		for _, piece := range strings.SplitAfter(text.String(), "a") {
			_ = s.Write(context.Background(), piece)
		}
		res := s.Close()
		var shown strings.Builder
		for _, c := range fake.Cards() {
			checkFinished(t, c, c.Content())
			if len(c.Content()) > 100 {
				t.Errorf("a card holds %d bytes, over max_chars", len(c.Content()))
			}
			shown.WriteString(c.Content())
		}
		if got := shown.String() + res.Unsent; got != text.String() {
			t.Errorf("overflow %d: the cards and the rest give %q, want %q", overflow, got, text.String())
		}
		if cards := len(fake.Cards()); overflow == OverflowNewCard && (cards != 5 || res.Unsent != "") || overflow == OverflowMessages && cards != 1 {
			t.Errorf("overflow %d: %d cards, unsent %q", overflow, cards, res.Unsent)
		}
	}
}

func TestAFullBacklogBlocksTheWriter(t *testing.T) {
	fake := newFake(t)
	fake.DelayCardCalls(300 * time.Millisecond) // the card is slow to be created
	ctx, cancel := context.WithCancel(context.Background())
	s := Start(ctx, Config{Client: newClient(t, fake), Interval: time.Millisecond}, group)
	var written atomic.Int64
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		chunk := strings.Repeat("y", 32<<10)
		for range (10 << 20) / len(chunk) { // 10 MB
			if s.Write(context.Background(), chunk) != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}()
	waitFor(t, fake, "the card", func(c []dingtalktest.Card) bool { return len(c) == 1 })
	if n := written.Load(); n > DefaultMaxChars+defaultBacklog+32<<10 {
		t.Errorf("the writer got %d bytes in while the card was being created", n)
	}
	cancel()
	<-writerDone
	s.Fail("")
}

func TestTheFinalUpdateIsTriedAgainAfterAServerError(t *testing.T) {
	fake := newFake(t)
	s := Start(context.Background(), Config{Client: newClient(t, fake)}, group)
	_ = s.Write(context.Background(), "the ")
	waitFor(t, fake, "the first update", updates(1))
	// The final update and the final state each fail once; the next
	// update is due only after the 300ms interval, after Close.
	fake.Fail(dingtalktest.OpenAPICardStreamingPath, dingtalktest.FailServer, 1)
	fake.Fail(dingtalktest.OpenAPICardInstancesPath, dingtalktest.FailServer, 1)
	_ = s.Write(context.Background(), "end")
	if res := s.Close(); res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	checkFinished(t, fake.Cards()[0], "the end")
}

package stream_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/stream"
)

const (
	clientID = "dingappkey1"
	secret   = "this is a secret"
)

// fakeClock is a stream.Clock whose Sleep returns at once and records the
// wait, so back-off is seen without waiting.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept chan time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0), slept: make(chan time.Duration, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.Advance(d)
	c.slept <- d
	return ctx.Err()
}

// running is a Client running against a fake server until the test ends.
type running struct {
	server *dingtalktest.StreamServer
	client *stream.Client
	clock  *fakeClock
	states chan stream.State
	done   chan error
	cancel context.CancelFunc
}

func start(t *testing.T, handler stream.Handler) *running {
	t.Helper()
	r := prepare(t, handler)
	r.run(t)
	return r
}

// prepare makes a client and its server without running the client.
func prepare(t *testing.T, handler stream.Handler) *running {
	t.Helper()
	r := &running{
		server: dingtalktest.NewStreamServer(clientID, secret),
		clock:  newFakeClock(),
		states: make(chan stream.State, 100),
		done:   make(chan error, 1),
	}
	t.Cleanup(r.server.Close)
	r.client = &stream.Client{
		APIBase:       r.server.URL,
		ClientID:      clientID,
		ClientSecret:  secret,
		Subscriptions: []stream.Subscription{{Type: stream.TypeCallback, Topic: stream.TopicRobot}},
		UserAgent:     "caddy-dingtalk-test",
		Handler:       handler,
		OnState:       func(s stream.State) { r.states <- s },
		Backoff:       stream.Backoff{Rand: func() float64 { return 1 }},
		Clock:         r.clock,
	}
	return r
}

// run runs the client until the test ends.
func (r *running) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.client.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
}

// state waits for the client's next state change.
func (r *running) state(t *testing.T) stream.State {
	t.Helper()
	select {
	case s := <-r.states:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the client reported no state change within 10s")
		return stream.State{}
	}
}

func (r *running) connected(t *testing.T) {
	t.Helper()
	if s := r.state(t); !s.Connected {
		t.Fatalf("state %+v, want connected", s)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientOpensWithCredentialsAndAcksFrames(t *testing.T) {
	var got []*stream.Frame
	var mu sync.Mutex
	r := start(t, func(_ context.Context, f *stream.Frame) stream.Ack {
		mu.Lock()
		got = append(got, f)
		mu.Unlock()
		return stream.CallbackAck(f.MessageID(), nil)
	})
	r.connected(t)
	opens := r.server.Opens()
	if len(opens) != 1 || opens[0].ClientID != clientID || opens[0].UserAgent != "caddy-dingtalk-test" ||
		len(opens[0].Subscriptions) != 1 || opens[0].Subscriptions[0] != (stream.Subscription{Type: "CALLBACK", Topic: stream.TopicRobot}) {
		t.Fatalf("open requests %+v", opens)
	}

	ctx := testContext(t)
	body := dingtalktest.Callback{Text: "hi"}.Body()
	id, err := r.server.SendRobotMessage(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := r.server.WaitAck(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Code != 200 || ack.Message != "OK" || ack.Data != `{"response":null}` ||
		ack.Headers["messageId"] != id || ack.Headers["contentType"] != "application/json" {
		t.Errorf("ack %+v", ack)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Data != string(body) || got[0].Topic() != stream.TopicRobot || got[0].Type != "CALLBACK" {
		t.Errorf("handler got %+v", got)
	}
}

func TestClientAcksOtherFramesWhileOneIsBusy(t *testing.T) {
	release := make(chan struct{})
	r := start(t, func(_ context.Context, f *stream.Frame) stream.Ack {
		if f.Data == `{"slow":true}` {
			<-release
		}
		return stream.CallbackAck(f.MessageID(), json.RawMessage(`{"ok":true}`))
	})
	defer close(release)
	r.connected(t)
	ctx := testContext(t)
	slow, err := r.server.SendCard(ctx, []byte(`{"slow":true}`))
	if err != nil {
		t.Fatal(err)
	}
	fast, err := r.server.SendCard(ctx, []byte(`{"slow":false}`))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := r.server.WaitAck(ctx, fast)
	if err != nil {
		t.Fatalf("the second frame was not acked while the first was busy: %v", err)
	}
	if ack.Data != `{"response":{"ok":true}}` {
		t.Errorf("ack data %s", ack.Data)
	}
	for _, a := range r.server.Acks() {
		if a.MessageID() == slow {
			t.Errorf("the busy frame was acked before its handler returned")
		}
	}
}

func TestClientEchoesPing(t *testing.T) {
	r := start(t, nil)
	r.connected(t)
	ctx := testContext(t)
	id, err := r.server.Ping(ctx, "opaque-123")
	if err != nil {
		t.Fatal(err)
	}
	ack, err := r.server.WaitAck(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Code != 200 || ack.Data != `{"opaque":"opaque-123"}` {
		t.Errorf("ping ack %+v", ack)
	}
}

func TestClientWithoutHandlerAcksNotFound(t *testing.T) {
	r := start(t, nil)
	r.connected(t)
	ctx := testContext(t)
	id, err := r.server.SendCard(ctx, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := r.server.WaitAck(ctx, id); err != nil || ack.Code != 404 {
		t.Errorf("ack %+v, %v; want 404", ack, err)
	}
}

func TestClientReconnectsAtOnceWithANewTicketAfterDisconnect(t *testing.T) {
	r := start(t, nil)
	r.connected(t)
	ctx := testContext(t)
	if err := r.server.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	first := r.server.Tickets()
	id, err := r.server.Disconnect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := r.server.WaitAck(ctx, id); err != nil || ack.Code != 200 {
		t.Fatalf("disconnect ack %+v, %v", ack, err)
	}
	if s := r.state(t); s.Connected || s.Err != nil || s.Retry != 0 {
		t.Errorf("state after disconnect %+v, want down without error, retried at once", s)
	}
	r.connected(t)
	if err := r.server.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	second := r.server.Tickets()
	if len(first) != 1 || len(second) != 1 || first[0] == second[0] || len(r.server.Opens()) != 2 {
		t.Errorf("tickets %v then %v, opens %d: want a new open and ticket", first, second, len(r.server.Opens()))
	}
	select {
	case d := <-r.clock.slept:
		t.Errorf("waited %v before reconnecting after a disconnect", d)
	default:
	}
}

func TestClientBackoffGrowsAndResetsAfterAHealthyConnection(t *testing.T) {
	r := prepare(t, nil)
	r.server.RefuseOpens(7)
	r.run(t)
	// Seven refused opens: the waits double from 1s and stop at 60s.
	for _, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60} {
		s := r.state(t)
		if s.Connected || s.Err == nil || s.Retry != want*time.Second {
			t.Fatalf("state %+v, want a failure retried after %v", s, want*time.Second)
		}
		if slept := <-r.clock.slept; slept != want*time.Second {
			t.Fatalf("slept %v, want %v", slept, want*time.Second)
		}
	}
	r.connected(t)

	// A socket dropped soon after it came up is no reason to start over.
	r.server.Drop()
	if s := r.state(t); s.Retry != time.Minute || s.Failures != 8 {
		t.Fatalf("state after an early drop %+v, want the wait kept at 60s", s)
	}
	<-r.clock.slept
	r.connected(t)

	// One that stayed up for the reset period is.
	r.clock.Advance(stream.DefaultBackoffReset)
	r.server.Drop()
	if s := r.state(t); s.Retry != time.Second || s.Failures != 1 {
		t.Fatalf("state after a drop of a healthy connection %+v, want the wait back at 1s", s)
	}
	<-r.clock.slept
	r.connected(t)
	if n := len(r.server.Opens()); n != 10 {
		t.Errorf("%d open requests, want 10", n)
	}
}

func TestClientClosesTheSocketWhenStopped(t *testing.T) {
	r := start(t, nil)
	r.connected(t)
	r.cancel()
	select {
	case err := <-r.done:
		if err != context.Canceled {
			t.Errorf("Run returned %v", err)
		}
		r.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if err := r.server.WaitConnected(testContext(t), 0); err != nil {
		t.Errorf("the server still has %d sockets", r.server.Connected())
	}
}

func TestClientErrorsNeverContainTheSecret(t *testing.T) {
	server := dingtalktest.NewStreamServer(clientID, "another secret")
	defer server.Close()
	c := &stream.Client{APIBase: server.URL, ClientID: clientID, ClientSecret: secret,
		Subscriptions: []stream.Subscription{{Type: stream.TypeCallback, Topic: stream.TopicRobot}}}
	states := make(chan stream.State, 10)
	c.OnState = func(s stream.State) { states <- s }
	c.Clock = newFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	s := <-states
	cancel()
	<-done
	if s.Err == nil || !strings.Contains(s.Err.Error(), "401") || strings.Contains(s.Err.Error(), secret) {
		t.Errorf("error %v", s.Err)
	}
}

func TestClientPingsOnItsOwnAndReconnectsWhenPingsGoUnanswered(t *testing.T) {
	r := prepare(t, nil)
	// Long enough that a busy machine answers each ping in time, short
	// enough for a quick test (the default is a minute).
	r.client.KeepAlive = 250 * time.Millisecond
	r.run(t)
	r.connected(t)
	ctx := testContext(t)
	if err := r.server.Wait(ctx, func() bool { return r.server.Pings() >= 3 }); err != nil {
		t.Fatalf("the server got %d pings from the client; want 3", r.server.Pings())
	}
	// Answered pings keep the socket.
	if n, c := r.server.Accepted(), r.server.Connected(); n != 1 || c != 1 {
		t.Fatalf("%d sockets in all, %d now, while pings were answered; want 1 and 1", n, c)
	}
	first := r.server.Tickets()

	// A ping left unanswered means a dead socket: closed, and another opened.
	r.server.MutePings(true)
	if s := r.state(t); s.Connected || s.Err == nil {
		t.Fatalf("state %+v, want down with an error", s)
	}
	r.server.MutePings(false)
	r.connected(t)
	if err := r.server.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if second := r.server.Tickets(); len(first) != 1 || len(second) != 1 || first[0] == second[0] || r.server.Accepted() != 2 {
		t.Errorf("tickets %v then %v, %d sockets in all: want a new socket with a new ticket", first, second, r.server.Accepted())
	}
}

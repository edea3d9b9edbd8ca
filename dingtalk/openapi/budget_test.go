package openapi_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

func TestPaceSpacesCalls(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := openapi.NewPace(20, func() time.Time { return now })
	ctx := context.Background()
	if wait, _ := p.Take(ctx); wait != 0 {
		t.Fatalf("first Take waits %v, want 0", wait)
	}
	interval := openapi.Interval(20) // 52.5ms
	if wait, _ := p.Take(ctx); wait != interval {
		t.Fatalf("second Take at once waits %v, want %v", wait, interval)
	}
	now = now.Add(30 * time.Millisecond)
	if wait, _ := p.Take(ctx); wait != interval-30*time.Millisecond {
		t.Fatalf("Take 30ms later waits %v, want %v", wait, interval-30*time.Millisecond)
	}
	now = now.Add(interval - 30*time.Millisecond)
	if wait, _ := p.Take(ctx); wait != 0 {
		t.Fatalf("Take %v later waits %v, want 0", interval, wait)
	}
	// An idle budget saves nothing up: after a long pause, still one call.
	now = now.Add(time.Minute)
	_, _ = p.Take(ctx)
	if wait, _ := p.Take(ctx); wait != interval {
		t.Fatalf("second Take after a pause waits %v, want %v", wait, interval)
	}
}

func TestCallsWaitForTheBudget(t *testing.T) {
	fake := newFake(t)
	const rate = 10
	c := newClient(t, fake, func(cfg *openapi.Config) { cfg.Budget = openapi.NewPace(rate, nil) })
	const sends = 4
	for range sends {
		if _, err := c.SendToGroup(context.Background(), testGroup, text("paced")); err != nil {
			t.Fatal(err)
		}
	}
	calls := fake.Calls(dingtalktest.OpenAPIGroupSendPath)
	// Spaced 105ms apart when they leave; allow for the loopback's jitter.
	if span := calls[sends-1].At.Sub(calls[0].At); span < (sends-1)*95*time.Millisecond {
		t.Errorf("%d calls at %d/s took %v, want at least %v", sends, rate, span, (sends-1)*openapi.Interval(rate))
	}
}

func TestSpentBudgetFailsWithoutCallingDingTalk(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake, func(cfg *openapi.Config) { cfg.Budget = openapi.NewPace(1, nil) })
	ctx := openapi.WithBudgetWait(context.Background(), 10*time.Millisecond)
	if _, err := c.SendToGroup(ctx, testGroup, text("first")); err != nil {
		t.Fatal(err)
	}
	_, err := c.SendToGroup(ctx, testGroup, text("second"))
	var budgetErr *openapi.BudgetError
	if !errors.Is(err, openapi.ErrBudgetSpent) || !errors.As(err, &budgetErr) || budgetErr.Wait <= 500*time.Millisecond {
		t.Fatalf("err = %v, want a BudgetError of about a second", err)
	}
	if n := len(fake.Calls(dingtalktest.OpenAPIGroupSendPath)); n != 1 {
		t.Errorf("%d calls reached DingTalk, want 1", n)
	}

	// The context's deadline bounds the wait the same way.
	deadlined, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.SendToGroup(deadlined, testGroup, text("third")); !errors.Is(err, openapi.ErrBudgetSpent) {
		t.Fatalf("err = %v, want ErrBudgetSpent", err)
	}
}

// memoryTokens is a TokenStore shared by clients in one test, standing in
// for the Redis store.
type memoryTokens struct {
	mu     sync.Mutex
	tokens map[string]openapi.Token
	locked map[string]bool
}

func (m *memoryTokens) LoadToken(_ context.Context, appKey string) (openapi.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens[appKey], nil
}

func (m *memoryTokens) SaveToken(_ context.Context, appKey string, t openapi.Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[appKey] = t
	return nil
}

func (m *memoryTokens) LockToken(_ context.Context, appKey string, _ time.Duration) (func(), bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locked[appKey] {
		return nil, false, nil
	}
	m.locked[appKey] = true
	return func() { m.mu.Lock(); defer m.mu.Unlock(); delete(m.locked, appKey) }, true, nil
}

func TestClientsSharingATokenStoreFetchOneToken(t *testing.T) {
	fake := newFake(t)
	shared := &memoryTokens{tokens: map[string]openapi.Token{}, locked: map[string]bool{}}
	clients := []*openapi.Client{
		newClient(t, fake, func(cfg *openapi.Config) { cfg.Tokens = shared }),
		newClient(t, fake, func(cfg *openapi.Config) { cfg.Tokens = shared }),
	}
	sendAll := func() {
		t.Helper()
		concurrently(t, 50, func(i int) error {
			_, err := clients[i%2].SendToGroup(context.Background(), testGroup, text("shared"))
			return err
		})
	}
	sendAll()
	if n := fake.TokenFetches(); n != 1 {
		t.Errorf("two clients fetched %d tokens, want 1", n)
	}
	// Both meet a 401 with the shared token: one of them replaces it for both.
	fake.RevokeTokens()
	sendAll()
	if n := fake.TokenFetches(); n != 2 {
		t.Errorf("after a 401 the two clients fetched %d tokens in all, want 2", n)
	}
}

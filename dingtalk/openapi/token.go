package openapi

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
)

// Token is an OpenAPI access token and the time it expires.
type Token struct {
	Value   string
	Expires time.Time
}

const (
	// refreshMargin is how long before its expiry a token is replaced, so
	// that no call carries a token that expires on its way. DingTalk's last
	// 7200 s; replacing them after 6900 s costs one fetch every ~2 h.
	refreshMargin = 5 * time.Minute
	// defaultTokenLife is assumed when DingTalk's answer has no expireIn.
	defaultTokenLife = 2 * time.Hour
	// sharedTokenPoll is how often a gateway waiting for another one's fetch
	// looks for the result. Fetches happen every ~2 h, so the polling is rare.
	sharedTokenPoll = 50 * time.Millisecond
)

// usable reports whether t can be sent at now: it is not within
// refreshMargin of its expiry.
func (t Token) usable(now time.Time) bool {
	return t.Value != "" && now.Before(t.Expires.Add(-refreshMargin))
}

// TokenStore shares access tokens among the gateways that call as the same
// robot application, so that they fetch one token between them rather than
// one each. The Redis store implements it. The tokens it holds are
// credentials: an implementation never logs them.
type TokenStore interface {
	// LoadToken returns the token stored for appKey, or a zero Token.
	LoadToken(ctx context.Context, appKey string) (Token, error)
	// SaveToken stores t for appKey until t expires.
	SaveToken(ctx context.Context, appKey string, t Token) error
	// LockToken tries to become, for at most ttl, the one holder that
	// fetches appKey's token. ok is false when another holds the lock;
	// unlock, set when ok is true, gives it up.
	LockToken(ctx context.Context, appKey string, ttl time.Duration) (unlock func(), ok bool, err error)
}

// tokenCache hands out the access token of one robot application, fetching
// it when there is none or it is about to expire: one fetch at a time however
// many callers wait for it, and, with a TokenStore, one for all gateways.
type tokenCache struct {
	appKey  string
	fetch   func(context.Context) (Token, error) // asks DingTalk
	shared  TokenStore                           // nil: this process only
	now     func() time.Time
	timeout time.Duration // bounds a fetch, waiting for another gateway's included

	mu       sync.Mutex
	cur      Token
	inflight *tokenFetch // the fetch under way, nil when none
}

// tokenFetch is a fetch that callers wait for.
type tokenFetch struct {
	done chan struct{} // closed when tok and err are set
	tok  Token
	err  error
}

// get returns a usable token. stale, when not empty, is a token DingTalk
// just refused (HTTP 401): it is dropped and a new one fetched, unless a
// fetch already replaced it.
func (tc *tokenCache) get(ctx context.Context, stale string) (string, error) {
	tc.mu.Lock()
	if stale != "" && tc.cur.Value == stale {
		tc.cur = Token{}
	}
	if tc.cur.usable(tc.now()) {
		tok := tc.cur.Value
		tc.mu.Unlock()
		return tok, nil
	}
	f := tc.inflight
	if f == nil {
		f = &tokenFetch{done: make(chan struct{})}
		tc.inflight = f
		// The fetch outlives the caller that started it: the others wait
		// for it too, each under its own context.
		go tc.run(context.WithoutCancel(ctx), f, stale)
	}
	tc.mu.Unlock()
	select {
	case <-f.done:
		return f.tok.Value, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the OpenAPI access token: %w", ctx.Err())
	}
}

// run makes fetch f and publishes its result.
func (tc *tokenCache) run(ctx context.Context, f *tokenFetch, stale string) {
	ctx, cancel := context.WithTimeout(ctx, tc.timeout)
	defer cancel()
	f.tok, f.err = tc.obtain(ctx, stale)
	tc.mu.Lock()
	if f.err == nil {
		tc.cur = f.tok
	}
	tc.inflight = nil
	tc.mu.Unlock()
	close(f.done)
}

// obtain gets a token other than stale: from DingTalk, or through the
// TokenStore from whichever gateway fetches it. When the store fails, the
// gateway fetches on its own: a shared store's outage must not stop replies.
func (tc *tokenCache) obtain(ctx context.Context, stale string) (Token, error) {
	if tc.shared == nil {
		return tc.fetch(ctx)
	}
	for {
		t, err := tc.shared.LoadToken(ctx, tc.appKey)
		if err != nil {
			return tc.fetch(ctx)
		}
		if t.usable(tc.now()) && t.Value != stale {
			return t, nil
		}
		unlock, ok, err := tc.shared.LockToken(ctx, tc.appKey, tc.timeout)
		if err != nil {
			return tc.fetch(ctx)
		}
		if ok {
			return tc.fetchLocked(ctx, stale, unlock)
		}
		if err := dingtalk.Sleep(ctx, sharedTokenPoll); err != nil {
			return Token{}, fmt.Errorf("waiting for another gateway's OpenAPI access token: %w", err)
		}
	}
}

// fetchLocked fetches and shares a token while holding the store's lock.
func (tc *tokenCache) fetchLocked(ctx context.Context, stale string, unlock func()) (Token, error) {
	defer unlock()
	// Another gateway may have saved a token between the look and the lock.
	if t, err := tc.shared.LoadToken(ctx, tc.appKey); err == nil && t.usable(tc.now()) && t.Value != stale {
		return t, nil
	}
	t, err := tc.fetch(ctx)
	if err != nil {
		return t, err
	}
	// A failed save costs the other gateways a fetch each, nothing more.
	_ = tc.shared.SaveToken(ctx, tc.appKey, t)
	return t, nil
}

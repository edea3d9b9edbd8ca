package caddymodule

import (
	"context"
	"time"
)

// Store remembers short-lived keys for the dingtalk handler: msgIds that are
// claimed or done, so that a redelivered callback is not passed on twice.
// Implementations are Caddy modules in the dingtalk.stores namespace; they
// must be safe for concurrent use and, to de-duplicate across several Caddy
// instances, shared between them.
type Store interface {
	// Claim atomically takes key for ttl on behalf of token, unless it is
	// already held. It returns the token that holds key afterwards: token
	// itself when the claim succeeded, the earlier holder's otherwise.
	Claim(ctx context.Context, key, token string, ttl time.Duration) (holder string, err error)

	// Keep extends key's ttl if token still holds it.
	Keep(ctx context.Context, key, token string, ttl time.Duration) error

	// Release forgets key if token still holds it, so that the next claim succeeds.
	Release(ctx context.Context, key, token string) error
}

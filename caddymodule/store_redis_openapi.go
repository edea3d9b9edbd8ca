package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

// The Redis store shares each robot's OpenAPI access token and call budget
// between the gateways that use it (OpenAPIStore), under these keys after
// the key prefix, each followed by the robot's AppKey. The token is a
// credential for two hours: whoever can read the Redis can use it, as they
// could read the claims; it is never logged.
const (
	redisTokenKey     = "openapi:token:"
	redisTokenLockKey = "openapi:token-lock:"
	redisBudgetKey    = "openapi:budget:"
)

// LoadToken implements openapi.TokenStore. The token is kept as
// "<expiry in unix ms>:<token>".
func (s *RedisStore) LoadToken(ctx context.Context, appKey string) (openapi.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	value, err := s.client.Get(ctx, s.KeyPrefix+redisTokenKey+appKey).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return openapi.Token{}, nil
	case err != nil:
		return openapi.Token{}, fmt.Errorf("redis store: loading the OpenAPI token: %w", err)
	}
	millis, token, ok := strings.Cut(value, ":")
	expires, err := strconv.ParseInt(millis, 10, 64)
	if !ok || err != nil {
		return openapi.Token{}, nil // not ours to read: fetch a new one, which replaces it
	}
	return openapi.Token{Value: token, Expires: time.UnixMilli(expires)}, nil
}

// SaveToken implements openapi.TokenStore; Redis drops the token when it expires.
func (s *RedisStore) SaveToken(ctx context.Context, appKey string, t openapi.Token) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	value := strconv.FormatInt(t.Expires.UnixMilli(), 10) + ":" + t.Value
	if err := s.client.Set(ctx, s.KeyPrefix+redisTokenKey+appKey, value, time.Until(t.Expires)).Err(); err != nil {
		return fmt.Errorf("redis store: saving the OpenAPI token: %w", err)
	}
	return nil
}

// LockToken implements openapi.TokenStore with `SET lock holder NX PX ttl`;
// unlocking deletes the lock only while this holder still has it.
func (s *RedisStore) LockToken(ctx context.Context, appKey string, ttl time.Duration) (func(), bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var b [16]byte
	_, _ = rand.Read(b[:])
	holder, key := hex.EncodeToString(b[:]), s.KeyPrefix+redisTokenLockKey+appKey
	ok, err := s.client.SetNX(ctx, key, holder, ttl).Result()
	if err != nil {
		return nil, false, fmt.Errorf("redis store: locking the OpenAPI token: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	unlock := func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		_ = releaseScript.Run(ctx, s.client, []string{key}, holder).Err() // else it expires after ttl
	}
	return unlock, true, nil
}

// OpenAPIBudget implements OpenAPIStore.
func (s *RedisStore) OpenAPIBudget(appKey string, perSecond int) openapi.Budget {
	return &redisBudget{
		store: s, key: s.KeyPrefix + redisBudgetKey + appKey, interval: openapi.Interval(perSecond),
		fallback: openapi.NewPace(perSecond, nil),
	}
}

// ShareKey implements OpenAPIStore: the Redis server and database, and the
// key prefix.
func (s *RedisStore) ShareKey() string { return s.poolKey + "/" + s.KeyPrefix }

// redisBudget is openapi.Pace kept in Redis, on Redis's clock, so that all
// gateways share it: calls spaced at least interval apart in all. While
// Redis fails, the gateway paces its own calls with fallback: replies keep
// going out, each gateway within the rate.
type redisBudget struct {
	store    *RedisStore
	key      string
	interval time.Duration
	fallback *openapi.Pace
}

// paceScript holds, in KEYS[1], when the next call is allowed (microseconds
// on Redis's clock). It spends a call and returns 0 when that time has come;
// otherwise it returns the microseconds left to wait. The key lives a second
// past its time: an idle budget saves nothing up.
var paceScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next = tonumber(redis.call("GET", KEYS[1]) or "0")
if next > now then
	return next - now
end
redis.call("SET", KEYS[1], string.format("%.0f", now + tonumber(ARGV[1])), "PX", math.floor(tonumber(ARGV[1]) / 1000) + 1000)
return 0`)

// Take implements openapi.Budget.
func (b *redisBudget) Take(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, b.store.timeout)
	defer cancel()
	wait, err := paceScript.Run(ctx, b.store.client, []string{b.key}, b.interval.Microseconds()).Int64()
	if err != nil {
		return b.fallback.Take(ctx)
	}
	return time.Duration(wait) * time.Microsecond, nil
}

// Interface guards
var _ OpenAPIStore = (*RedisStore)(nil)

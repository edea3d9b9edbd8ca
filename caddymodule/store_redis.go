package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(RedisStore{})
}

// Defaults of the Redis store.
const (
	defaultRedisKeyPrefix = "caddy-dingtalk:"
	defaultRedisTimeout   = 200 * time.Millisecond
)

// What the Redis store does when Redis cannot be reached.
const (
	redisOnErrorOpen   = "open"
	redisOnErrorClosed = "closed"
)

// redisClients holds one client (and so one connection pool) per distinct
// connection configuration, shared by every configuration of this process,
// so that a config reload does not reconnect.
var redisClients = caddy.NewUsagePool()

// RedisStore keeps claims in Redis, so that several Caddy instances behind
// one robot de-duplicate callbacks and guard against replays together. It
// needs Redis 7.0 or later (or a compatible server such as Valkey).
//
// Every operation is one command: a claim is `SET key token NX PX ttl
// GET`; keeping and releasing a claim are small Lua scripts (run with
// EVALSHA) that act only when the key still holds the claimer's token. The
// commands of concurrent callbacks share round trips (redisOps).
type RedisStore struct {
	// The Redis server's host:port. Either address or url is required.
	// `{env.*}` and `{file.*}` placeholders are expanded when the config is loaded.
	Address string `json:"address,omitempty"`

	// The Redis server as a URL instead of an address:
	// `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS.
	// `{env.*}` and `{file.*}` placeholders are expanded when the config is
	// loaded. Password and db, when set, take precedence over the URL's.
	URL string `json:"url,omitempty"`

	// The password for Redis's AUTH. Write it as `{env.NAME}` or
	// `{file./path}` to keep it out of the config; placeholders are expanded
	// when the config is loaded. It is never logged.
	Password string `json:"password,omitempty"`

	// The Redis database number. Default: 0, or the URL's.
	DB int `json:"db,omitempty"`

	// Put before every key this store writes, so that several applications
	// can share one Redis. Default: `caddy-dingtalk:`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// How long one operation may take, connecting included, before it
	// counts as failed. Default: 200ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// What the dingtalk handler does with a callback when Redis cannot be
	// reached or answers with an error: `closed` (the default) answers 503,
	// so that DingTalk delivers the callback again later; `open` passes the
	// callback on without de-duplication or replay protection, and logs a
	// warning for each such callback.
	OnError string `json:"on_error,omitempty"`

	client  *redis.Client
	ops     redisOps // the client's auto-pipeliner: the claims' and the jobs' commands go through it
	poolKey string
	timeout time.Duration
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "dingtalk.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision expands placeholders, sets defaults and attaches to the shared
// client for this connection configuration. It does not need Redis to be
// up: connections are made when first used.
func (s *RedisStore) Provision(ctx caddy.Context) error {
	if s.KeyPrefix == "" {
		s.KeyPrefix = defaultRedisKeyPrefix
	}
	if s.Timeout == 0 {
		s.Timeout = caddy.Duration(defaultRedisTimeout)
	}
	if s.OnError == "" {
		s.OnError = redisOnErrorClosed
	}
	if s.OnError != redisOnErrorOpen && s.OnError != redisOnErrorClosed {
		return fmt.Errorf("redis store: on_error must be open or closed, not %q", s.OnError)
	}
	if s.Timeout < 0 || s.DB < 0 {
		return fmt.Errorf("redis store: timeout and db must not be negative")
	}
	s.timeout = time.Duration(s.Timeout)

	opts, err := s.options()
	if err != nil {
		return err
	}
	useCaddyLogForRedis.Do(func() { redis.SetLogger(redisLog{}) })
	s.poolKey = redisPoolKey(opts)
	client, _, err := redisClients.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		return redisClient{redis.NewClient(opts)}, nil
	})
	if err != nil {
		return err
	}
	s.client = client.(redisClient).Client
	if s.ops, err = s.client.AutoPipeline(); err != nil {
		return err
	}

	// Not fatal: Redis may come up after Caddy. But a wrong address or
	// password is better seen at load than at the first callback.
	pingCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.client.Ping(pingCtx).Err(); err != nil {
		ctx.Logger().Warn("redis is not reachable yet", zap.String("address", opts.Addr), zap.String("on_error", s.OnError), zap.Error(err))
	}
	return nil
}

// options builds the client's options from the expanded configuration.
// Errors name the setting, never its value: the address or URL may hold the
// password.
func (s *RedisStore) options() (*redis.Options, error) {
	if (s.Address == "") == (s.URL == "") {
		return nil, fmt.Errorf("redis store: exactly one of address and url is required")
	}
	expand := func(name, value string) (string, error) {
		expanded, err := expandSecret(value)
		if err != nil {
			return "", fmt.Errorf("redis store: %s: %v", name, err)
		}
		return expanded, nil
	}

	opts := &redis.Options{Addr: s.Address}
	if s.URL != "" {
		url, err := expand("url", s.URL)
		if err != nil {
			return nil, err
		}
		if opts, err = redis.ParseURL(url); err != nil {
			return nil, fmt.Errorf("redis store: url is not a valid redis:// or rediss:// URL")
		}
	} else {
		var err error
		if opts.Addr, err = expand("address", s.Address); err != nil {
			return nil, err
		}
	}
	if s.Password != "" {
		password, err := expand("password", s.Password)
		if err != nil {
			return nil, err
		}
		opts.Password = password
	}
	if s.DB != 0 {
		opts.DB = s.DB
	}

	// Every wait is bounded by the operation's timeout: the context's
	// deadline is honoured on the socket, and no default of several
	// seconds outlasts it.
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = s.timeout
	opts.ReadTimeout = s.timeout
	opts.WriteTimeout = s.timeout
	opts.PoolTimeout = s.timeout
	// One dial per attempt (the command itself is still retried): a Redis
	// that is down fails a callback at once and with its cause, not after
	// the whole timeout with "context deadline exceeded".
	opts.DialerRetries = 1
	return opts, nil
}

// redisPoolKey identifies a connection configuration. It is a hash, so that
// the password is not kept as a map key.
func redisPoolKey(o *redis.Options) string {
	sum := sha256.New()
	for _, part := range []string{o.Network, o.Addr, o.Username, o.Password, strconv.Itoa(o.DB),
		strconv.FormatBool(o.TLSConfig != nil), o.ReadTimeout.String()} {
		sum.Write([]byte(part))
		sum.Write([]byte{0})
	}
	return "redis/" + hex.EncodeToString(sum.Sum(nil))
}

// Cleanup drops this configuration's reference to the shared client; the
// last one closes it.
func (s *RedisStore) Cleanup() error {
	if s.poolKey == "" {
		return nil
	}
	_, err := redisClients.Delete(s.poolKey)
	return err
}

// retain implements retainer: the client stays open until release.
func (s *RedisStore) retain() (release func()) { return retainPooled(redisClients, s.poolKey) }

// FailOpen implements FailOpener: it reports whether on_error is open.
func (s *RedisStore) FailOpen() bool { return s.OnError == redisOnErrorOpen }

// Claim implements Store with `SET key token NX PX ttl GET`: it sets key
// only if absent and answers the value that was there, atomically and in
// one round trip. Redis expires keys on its own clock: now is not used.
func (s *RedisStore) Claim(ctx context.Context, key string, token Token, _ time.Time, ttl time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	value := token.String()
	// Built here rather than with Do, which the auto-pipeliner sends on a
	// connection of its own.
	set := redis.NewStringCmd(ctx, "SET", s.KeyPrefix+key, value, "NX", "PX", redisMillis(ttl), "GET")
	_ = s.ops.Process(ctx, set)
	holder, err := set.Result()
	switch {
	case errors.Is(err, redis.Nil): // nothing was there: the claim is ours
		return true, nil
	case err != nil:
		return false, fmt.Errorf("redis store: claim: %w", err)
	}
	return holder == value, nil
}

// keepScript extends a claim's ttl, only if the claimer still holds it.
var keepScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// releaseScript deletes a claim, only if the claimer still holds it.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// Keep implements Store; Redis expires keys on its own clock.
func (s *RedisStore) Keep(ctx context.Context, key string, token Token, _ time.Time, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := keepScript.Run(ctx, s.ops, []string{s.KeyPrefix + key}, token.String(), redisMillis(ttl)).Err(); err != nil {
		return fmt.Errorf("redis store: keep: %w", err)
	}
	return nil
}

// Release implements Store.
func (s *RedisStore) Release(ctx context.Context, key string, token Token) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := releaseScript.Run(ctx, s.ops, []string{s.KeyPrefix + key}, token.String()).Err(); err != nil {
		return fmt.Errorf("redis store: release: %w", err)
	}
	return nil
}

// redisMillis converts a ttl for PX and PEXPIRE, which refuse 0.
func redisMillis(ttl time.Duration) int64 {
	return max(1, ttl.Milliseconds())
}

// redisLog sends go-redis's own messages (each failed dial while Redis is
// down, for one) to Caddy's log at DEBUG rather than to stderr: the store's
// errors, with their cause, are logged with the callback they affect.
// go-redis has one logger per process, so it is set only once a Redis store
// is used.
type redisLog struct{}

var useCaddyLogForRedis sync.Once

func (redisLog) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("dingtalk.redis").Debug(fmt.Sprintf(format, v...))
}

// redisClient lets the usage pool close the client when the last
// configuration using it is cleaned up.
type redisClient struct{ *redis.Client }

// Destruct implements caddy.Destructor.
func (c redisClient) Destruct() error { return c.Close() }

// Interface guards
var (
	_ Store              = (*RedisStore)(nil)
	_ FailOpener         = (*RedisStore)(nil)
	_ retainer           = (*RedisStore)(nil)
	_ caddy.Provisioner  = (*RedisStore)(nil)
	_ caddy.CleanerUpper = (*RedisStore)(nil)
	_ caddy.Destructor   = redisClient{}
)

// redisOps is what the claims and the jobs send their commands through: the
// client's auto-pipeliner (its blocking face, shared by every configuration
// on the client, closed with it). The commands of the callbacks in flight at
// once leave in one write and their answers come back in one read, rather
// than two system calls each per command and per callback on both sides:
// with it J/E (async, jobs in Redis, against the memory store) went from
// 0.48 to 0.68 in go run ./bench -configs EJ, Caddy's CPU per ack from 0.32
// to 0.25 ms and redis-server's from 0.09 to 0.06 (BENCHMARKS.md). A lone
// command is sent at once, as without it. go-redis calls the auto-pipeliner
// experimental; go.mod pins the version it was measured with.
type redisOps interface {
	redis.Scripter
	Process(ctx context.Context, cmd redis.Cmder) error
}

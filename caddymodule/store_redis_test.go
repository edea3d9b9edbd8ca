package caddymodule

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// testTimeout is the store's per-operation timeout in these tests: generous,
// so that a loaded machine does not turn a slow answer into a failure.
const testTimeout = caddy.Duration(5 * time.Second)

// provisionRedis provisions s as Caddy would and cleans it up when the test ends.
func provisionRedis(t *testing.T, s *RedisStore) *RedisStore {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("provisioning the redis store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return s
}

// inspect returns a plain client to look at what the store wrote.
func inspect(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisStoreClaimKeepRelease(t *testing.T) {
	srv := redistest.Start(t)
	s := provisionRedis(t, &RedisStore{Address: srv.Addr, KeyPrefix: "test:", Timeout: testTimeout})
	raw := inspect(t, srv.Addr)
	ctx := context.Background()

	mustClaim := func(key, token string, ttl time.Duration, want bool) {
		t.Helper()
		held, err := s.Claim(ctx, key, tok(token), time.Now(), ttl)
		if err != nil || held != want {
			t.Fatalf("Claim(%s, %s) = %v, %v; want %v", key, token, held, err, want)
		}
	}
	pttl := func(key string) time.Duration {
		t.Helper()
		d, err := raw.PTTL(ctx, "test:"+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	mustClaim("k", "a", time.Minute, true)
	mustClaim("k", "a", time.Minute, true) // the holder again
	mustClaim("k", "b", time.Minute, false)
	if v, err := raw.Get(ctx, "test:k").Result(); err != nil || v != tok("a").String() {
		t.Fatalf("Redis holds %q, %v under the prefixed key, want the token %s", v, err, tok("a"))
	}
	if d := pttl("k"); d <= 0 || d > time.Minute {
		t.Fatalf("the claim's PTTL is %v, want at most the ttl of 1m", d)
	}

	// Only the claimer can extend or release its claim.
	if err := s.Keep(ctx, "k", tok("b"), time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := pttl("k"); d > time.Minute {
		t.Fatalf("Keep by another token extended the claim to %v", d)
	}
	if err := s.Keep(ctx, "k", tok("a"), time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := pttl("k"); d <= time.Minute {
		t.Fatalf("Keep by the claimer left the PTTL at %v, want about 1h", d)
	}
	if err := s.Release(ctx, "k", tok("b")); err != nil {
		t.Fatal(err)
	}
	mustClaim("k", "c", time.Minute, false)
	if err := s.Release(ctx, "k", tok("a")); err != nil {
		t.Fatal(err)
	}
	mustClaim("k", "c", time.Minute, true)

	// Keeping or releasing a key that is not there is not an error.
	if err := s.Keep(ctx, "absent", tok("a"), time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "absent", tok("a")); err != nil {
		t.Fatal(err)
	}
	if n, err := raw.Exists(ctx, "test:absent").Result(); err != nil || n != 0 {
		t.Fatalf("Keep of an absent key created it: %d, %v", n, err)
	}

	// A claim expires by itself.
	mustClaim("short", "a", 50*time.Millisecond, true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		held, err := s.Claim(ctx, "short", tok("b"), time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a claim with a 50ms ttl was still held after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two stores with different settings use two clients, as two Caddy
// instances would; Redis alone makes their claims exclusive.
func TestRedisStoreClaimIsAtomicAcrossClients(t *testing.T) {
	srv := redistest.Start(t)
	one := provisionRedis(t, &RedisStore{Address: srv.Addr, Timeout: testTimeout})
	two := provisionRedis(t, &RedisStore{Address: srv.Addr, Timeout: testTimeout + caddy.Duration(time.Second)})
	if one.client == two.client {
		t.Fatal("stores with different timeouts share a client")
	}

	const claimers = 40
	held := make([]bool, claimers)
	errs := make([]error, claimers)
	var wg sync.WaitGroup
	for i := range claimers {
		store := one
		if i%2 == 1 {
			store = two
		}
		wg.Go(func() {
			held[i], errs[i] = store.Claim(context.Background(), "race", newClaimToken(), time.Now(), time.Minute)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	winners := 0
	for _, h := range held {
		if h {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d of %d claimers of one key got it, want exactly 1", winners, claimers)
	}
}

func TestRedisStoreSharesOneClientAcrossReloads(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	old := &RedisStore{Address: srv.Addr, Timeout: testTimeout}
	if err := old.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	// A reload provisions the new config before cleaning up the old one.
	reloaded := &RedisStore{Address: srv.Addr, Timeout: testTimeout, KeyPrefix: "other:", OnError: "open"}
	if err := reloaded.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if old.client != reloaded.client {
		t.Fatal("the same connection settings got a second client")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := reloaded.Claim(context.Background(), "k", tok("a"), time.Now(), time.Minute); err != nil {
		t.Fatalf("the client was closed while a config still used it: %v", err)
	}
	if err := reloaded.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := reloaded.Claim(context.Background(), "k", tok("a"), time.Now(), time.Minute); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("after the last cleanup the claim got %v, want the closed client's error", err)
	}
}

func TestRedisStorePasswordIsExpandedAndNeverShown(t *testing.T) {
	const password = "correct-horse-battery-staple"
	srv := redistest.Start(t, "--requirepass", password)
	t.Setenv("CADDY_DINGTALK_TEST_REDIS_PASSWORD", password)
	t.Setenv("CADDY_DINGTALK_TEST_REDIS_URL", "redis://:"+password+"@"+srv.Addr+"/3")
	ctx := context.Background()

	fromEnv := provisionRedis(t, &RedisStore{Address: srv.Addr, Password: "{env.CADDY_DINGTALK_TEST_REDIS_PASSWORD}", Timeout: testTimeout})
	if _, err := fromEnv.Claim(ctx, "k", tok("a"), time.Now(), time.Minute); err != nil {
		t.Fatalf("password from the environment: %v", err)
	}
	fromURL := provisionRedis(t, &RedisStore{URL: "{env.CADDY_DINGTALK_TEST_REDIS_URL}", Timeout: testTimeout})
	if _, err := fromURL.Claim(ctx, "k", tok("a"), time.Now(), time.Minute); err != nil {
		t.Fatalf("password and db from the url: %v", err)
	}
	db3 := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: password, DB: 3})
	defer db3.Close()
	if n, err := db3.Exists(ctx, "caddy-dingtalk:k").Result(); err != nil || n != 1 {
		t.Fatalf("the url's db was not used: %d, %v", n, err)
	}

	const wrong = "not the password"
	s := provisionRedis(t, &RedisStore{Address: srv.Addr, Password: wrong, Timeout: testTimeout})
	_, err := s.Claim(ctx, "k", tok("a"), time.Now(), time.Minute)
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), wrong) {
		t.Fatalf("the error shows the password: %v", err)
	}

	for name, bad := range map[string]*RedisStore{
		"unset variable": {Address: srv.Addr, Password: "{env.CADDY_DINGTALK_TEST_UNSET}"},
		"invalid url":    {URL: "redis://:" + password + "@" + srv.Addr + ":notaport"},
		"bad scheme":     {URL: "http://:" + password + "@" + srv.Addr},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := bad.Provision(ctx)
		cancel()
		if err == nil {
			t.Errorf("%s: provisioned", name)
			bad.Cleanup()
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}

// An unreachable Redis is an error from every operation, not a hang, and the
// store recovers by itself once Redis is back on the same address.
func TestRedisStoreRecoversWhenRedisIsBack(t *testing.T) {
	srv := redistest.Start(t)
	s := provisionRedis(t, &RedisStore{Address: srv.Addr, Timeout: testTimeout})
	ctx := context.Background()
	if _, err := s.Claim(ctx, "before", tok("a"), time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	if _, err := s.Claim(ctx, "down", tok("a"), time.Now(), time.Minute); err == nil {
		t.Fatal("a claim succeeded while Redis was down")
	}
	if err := s.Keep(ctx, "down", tok("a"), time.Now(), time.Minute); err == nil {
		t.Fatal("keep succeeded while Redis was down")
	}
	if err := s.Release(ctx, "down", tok("a")); err == nil {
		t.Fatal("release succeeded while Redis was down")
	}

	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		held, err := s.Claim(ctx, "after", tok("a"), time.Now(), time.Minute)
		if err == nil && held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within 15s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The restarted server is empty (no persistence), and the scripts,
	// which it no longer knows by their SHA, are sent again.
	if err := s.Keep(ctx, "after", tok("a"), time.Now(), time.Hour); err != nil {
		t.Fatalf("keep after the restart: %v", err)
	}
	if err := s.Release(ctx, "after", tok("a")); err != nil {
		t.Fatalf("release after the restart: %v", err)
	}
}

// A password written with a space must not reach the log through the
// Caddyfile error, and neither must a URL that holds one.
func TestRedisStoreCaddyfileErrorsHideSecrets(t *testing.T) {
	for _, sub := range []string{"address a:6379\n password hunter2 secret", "url redis://:hunter2@a:6379 secret"} {
		var s RedisStore
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser("redis {\n " + sub + "\n}"))
		if err == nil || !strings.Contains(err.Error(), "takes exactly one argument") ||
			strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error %v, want the argument count without the words", sub, err)
		}
	}
}

// Keep and release act only for the holder, also when claims expire and
// change hands while they run: a check of the token and the change it
// guards done as two steps would, now and then, extend or delete the claim
// of whoever took the key in between. Short holders claim for a
// millisecond and keep or release about when it expires; long holders
// claim for a minute and check, through their own client, that nobody
// else's keep or release touched their claim.
func TestRedisStoreKeepAndReleaseAreAtomicUnderContention(t *testing.T) {
	srv := redistest.Start(t)
	raw := inspect(t, srv.Addr)
	var stores []*RedisStore
	for i := range 4 { // a client each, as for Caddy instances sharing Redis
		stores = append(stores, provisionRedis(t, &RedisStore{Address: srv.Addr, KeyPrefix: "test:", Timeout: testTimeout + caddy.Duration(i)*caddy.Duration(time.Second)}))
	}
	ctx := context.Background()
	stop := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	var violations, longHolds atomic.Int64
	var first sync.Once
	for i, s := range stores {
		for w := range 2 {
			long := w == 0 && i%2 == 0
			wg.Go(func() {
				for time.Now().Before(stop) {
					token := newClaimToken()
					if !long {
						held, err := s.Claim(ctx, "contended", token, time.Now(), time.Millisecond)
						if err != nil || !held {
							continue
						}
						time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
						if rand.IntN(2) == 0 {
							err = s.Keep(ctx, "contended", token, time.Now(), time.Millisecond)
						} else {
							err = s.Release(ctx, "contended", token)
						}
						if err != nil {
							t.Error(err)
							return
						}
						continue
					}
					held, err := s.Claim(ctx, "contended", token, time.Now(), time.Minute)
					if err != nil || !held {
						continue
					}
					longHolds.Add(1)
					time.Sleep(3 * time.Millisecond) // the short holders' keeps and releases run on
					v, err := raw.Get(ctx, "test:contended").Result()
					ttl, _ := raw.PTTL(ctx, "test:contended").Result()
					if err != nil || v != token.String() || ttl < 50*time.Second {
						violations.Add(1)
						first.Do(func() {
							t.Errorf("a claim for 1m held %q (%v), PTTL %v: another token's keep or release changed it", v, err, ttl)
						})
					}
					if err := s.Release(ctx, "contended", token); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if violations.Load() > 0 {
		t.Errorf("%d of %d long claims were changed by another token", violations.Load(), longHolds.Load())
	}
	if longHolds.Load() < 20 {
		t.Errorf("only %d long claims were made: the contention did not happen", longHolds.Load())
	}
}

func TestRedisStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	testStoreConformance(t, storeHarness{
		open: func(t *testing.T) Store {
			raw := inspect(t, srv.Addr)
			if err := raw.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			return provisionRedis(t, &RedisStore{Address: srv.Addr, Timeout: testTimeout})
		},
		// A new process connects anew: the same data, another client.
		reopen: func(t *testing.T, _ Store) Store {
			return provisionRedis(t, &RedisStore{Address: srv.Addr, Timeout: testTimeout})
		},
	})
}

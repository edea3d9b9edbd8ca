package integration

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// A (timestamp, sign) pair seen once, e.g. in a log, reused with another
// body: accepted within the grace after its timestamp (two genuine messages
// in one millisecond share a sign), refused after it.
func TestReplayGuardAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	upstream := pongUpstream(t)
	one, two := twoInstances(t, srv.Addr, "", "", upstream)

	// Within the grace: the same sign with another msgId is accepted.
	now := time.Now()
	if resp := one.do(one.signedAt(now, callback("first"))); resp.Body != pong {
		t.Fatalf("first message: %d %q", resp.Status, resp.Body)
	}
	if resp := two.do(two.signedAt(now, callback("same millisecond"))); resp.Body != pong {
		t.Fatalf("another message with the same sign within the grace: %d %q, want it accepted", resp.Status, resp.Body)
	}

	// After the grace: refused, on the other instance too.
	leakedAt := time.Now().Add(-30 * time.Second)
	original := callback("genuine")
	if resp := one.do(one.signedAt(leakedAt, original)); resp.Body != pong {
		t.Fatalf("a message signed 30s ago: %d %q, want it accepted", resp.Status, resp.Body)
	}
	req := two.signedAt(leakedAt, callback("forged body"))
	sign := req.Header.Get("sign")
	if resp := two.do(req); resp.Status != http.StatusUnauthorized || resp.Body != "replay" {
		t.Fatalf("a reused sign with another msgId after the grace: %d %q, want 401 replay", resp.Status, resp.Body)
	}
	// The same message again is a redelivery, not a replay: de-duplication answers it.
	if resp := two.do(two.signedAt(leakedAt, original)); resp.Status != http.StatusOK || resp.Body != `{"msgtype":"empty"}` {
		t.Fatalf("the redelivery with the same sign: %d %q, want the empty reply", resp.Status, resp.Body)
	}
	if n := upstream.Count(); n != 3 {
		t.Fatalf("the upstream saw %d callbacks, want 3", n)
	}
	logs := one.logs()
	if !strings.Contains(logs, `"reason":"replay"`) || strings.Contains(logs, sign) {
		t.Fatal("the replay must be logged with its reason, and without the sign")
	}

	// Redis holds nothing of the sign: the pair's key names the secret instead.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil || !slices.ContainsFunc(keys, func(k string) bool { return strings.Contains(k, "sig:") }) {
		t.Fatalf("Redis holds keys %q (%v), want the replay guard's among them", keys, err)
	}
	for _, key := range keys {
		value, err := rdb.Get(ctx, key).Result()
		if err != nil || strings.Contains(key, sign) || strings.Contains(value, sign) {
			t.Fatalf("Redis key %q holds %q (%v): the sign must not be in Redis", key, value, err)
		}
	}
}

func TestReplayGuardWithTheMemoryStore(t *testing.T) {
	cases := []struct {
		options   string
		status    int // the answer to the reused sign after 30s
		forwarded int // callbacks that reach the upstream, of 4
	}{
		// With de-duplication off the guard still has its store.
		{"dedupe off", http.StatusUnauthorized, 3},
		{"replay_grace 1m", http.StatusOK, 4},
		{"replay_guard off", http.StatusOK, 4},
	}
	for _, c := range cases {
		t.Run(c.options, func(t *testing.T) {
			upstream := pongUpstream(t)
			g := startGateway(t, site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			%s
		}
		reverse_proxy %s
	}
	handle_errors {
		respond "{http.dingtalk.reject_reason}"
	}`, testSecret, c.options, hostPort(upstream.URL))})

			now := time.Now()
			for _, text := range []string{"first", "same millisecond"} {
				if resp := g.do(g.signedAt(now, callback(text))); resp.Body != pong {
					t.Fatalf("%s, within the grace: %d %q, want it accepted", text, resp.Status, resp.Body)
				}
			}
			leakedAt := now.Add(-30 * time.Second)
			if resp := g.do(g.signedAt(leakedAt, callback("genuine"))); resp.Body != pong {
				t.Fatalf("a message signed 30s ago: %d %q, want it accepted", resp.Status, resp.Body)
			}
			resp := g.do(g.signedAt(leakedAt, callback("forged body")))
			if resp.Status != c.status {
				t.Fatalf("a reused sign with another msgId after 30s: %d %q, want %d", resp.Status, resp.Body, c.status)
			}
			if n := upstream.Count(); n != c.forwarded {
				t.Fatalf("the upstream saw %d callbacks, want %d", n, c.forwarded)
			}
		})
	}
}

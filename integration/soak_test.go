package integration

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk"
	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// Soak settings: a steady stream of callbacks, not a flood; the test
// measures staying power, the benchmarks measure speed.
const (
	defaultSoakDuration = 15 * time.Second
	soakSenders         = 4
	soakRate            = 100 // callbacks per second, all senders together
	soakRecent          = 32  // redeliveries pick one of the last genuine messages
	soakMaxEntries      = 1000
	soakHeapSlack       = 8 << 20
)

// TestSoak sends genuine, redelivered and forged callbacks at a steady rate
// through Caddy with the async relay and a fake DingTalk webhook, for
// SOAK_DURATION (default 15s; for a real soak: SOAK_DURATION=5m go test
// ./integration -run TestSoak -v). At the end every genuine message was
// answered exactly once, no forged one reached the backend, and the heap
// after the warm-up stayed flat.
func TestSoak(t *testing.T) {
	duration := defaultSoakDuration
	if env := os.Getenv("SOAK_DURATION"); env != "" {
		d, err := time.ParseDuration(env)
		if err != nil || d <= 0 {
			t.Fatalf("SOAK_DURATION=%q is not a positive duration", env)
		}
		duration = d
	}
	maxMessages := int(duration.Seconds()*soakRate) + soakRate // bounds the loops and the counters

	// The backend and the webhook count per message instead of recording
	// every request (as dingtalktest.Recorder does): a soak must not grow
	// the heap by design.
	backend := newSoakCounter(maxMessages, func(w http.ResponseWriter, body []byte) string {
		m, err := dingtalk.ParseMessage(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return ""
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "re:"+m.MsgID)
		return m.MsgID
	})
	defer backend.Close()
	webhook := newSoakCounter(maxMessages, func(w http.ResponseWriter, body []byte) string {
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
		return answeredMsgID(body)
	})
	defer webhook.Close()

	g := startGateway(t, observed(site{Body: fmt.Sprintf(`
	route /robot {
		dingtalk {
			secret %q
			store memory {
				max_entries %d
			}
			async {
				webhook_hosts %s
			}
		}
		reverse_proxy %s
	}`, testSecret, soakMaxEntries, hostPort(webhook.URL), hostPort(backend.URL))}))
	before, _ := scrape(t, g.URL+"/metrics")
	// The suite's recording transport (leaks_test.go) remembers every sign
	// sent, for its check of the logs: the soak's thousands would grow the
	// heap it measures. Its gateway filters the sign out of its log anyway.
	g.client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: soakSenders}}
	defer g.client.CloseIdleConnections()
	sessionURL := webhook.URL + dingtalktest.WebhookPath + "?session=soak"

	var (
		sent      [3]atomic.Int64 // genuine, redelivered, forged
		problems  problemLog
		next      atomic.Int64 // the next genuine message's index
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		forgeries = []string{"another secret's sign", "expired", "another timestamp's sign"}
	)
	for s := range soakSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(s), uint64(time.Now().UnixNano())))
			var recent []int
			tick := time.NewTicker(time.Second * soakSenders / soakRate)
			defer tick.Stop()
			for n := 0; n < maxMessages/soakSenders; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				switch roll := rng.IntN(10); {
				case roll < 2 && len(recent) > 0: // DingTalk redelivers a message
					i := recent[rng.IntN(len(recent))]
					resp, err := g.deliver(testSecret, soakCallback(i, sessionURL), time.Now())
					sent[1].Add(1)
					if err != nil || resp.Status != 200 || resp.Body != `{"msgtype":"empty"}` {
						problems.add("redelivery of %d: %d %q %v", i, resp.Status, resp.Body, err)
					}
				case roll < 4: // a forgery
					kind := forgeries[rng.IntN(len(forgeries))]
					body := dingtalktest.Callback{Text: kind, MsgID: "forged-" + strconv.Itoa(rng.Int()), SessionWebhook: sessionURL}.Body()
					resp, err := forge(g, kind, body)
					sent[2].Add(1)
					if err != nil || resp.Status != http.StatusUnauthorized {
						problems.add("forgery (%s): %d %v", kind, resp.Status, err)
					}
				default: // a new genuine message
					i := int(next.Add(1)) - 1
					if i >= maxMessages {
						return
					}
					resp, err := g.deliver(testSecret, soakCallback(i, sessionURL), time.Now())
					sent[0].Add(1)
					if err != nil || resp.Status != 200 || resp.Body != `{"msgtype":"empty"}` {
						problems.add("message %d: %d %q %v", i, resp.Status, resp.Body, err)
					}
					if recent = append(recent, i); len(recent) > soakRecent {
						recent = recent[1:]
					}
				}
			}
		}()
	}

	// Sample the live heap while the load runs; the first samples are the warm-up.
	warmUp := max(duration*3/10, 3*time.Second)
	interval := max(duration/15, time.Second)
	var heap []uint64
	start := time.Now()
	for time.Since(start) < duration {
		time.Sleep(interval)
		if time.Since(start) >= warmUp {
			heap = append(heap, liveHeap())
		}
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	genuine := int(next.Load())
	if genuine > maxMessages {
		genuine = maxMessages
	}
	waitFor(t, "every genuine message to be answered", func() bool { return webhook.total() >= genuine })
	nothingMore(t, count{"answers to genuine messages", genuine, webhook.total},
		count{"answers to forged or unknown callbacks", 0, func() int { return int(webhook.others.Load()) }})
	startResourceCheck(t, g, backend, webhook).verify(t) // the load is over: nothing it started may remain

	for _, p := range problems.list() {
		t.Error(p)
	}
	for i := range genuine {
		if n := backend.count(i); n != 1 {
			t.Errorf("message %d reached the backend %d times, want once", i, n)
		}
		if n := webhook.count(i); n != 1 {
			t.Errorf("message %d was answered %d times, want once", i, n)
		}
	}
	if n := backend.others.Load(); n != 0 {
		t.Errorf("%d forged or unknown callbacks reached the backend", n)
	}
	if n := webhook.others.Load(); n != 0 {
		t.Errorf("%d answers to forged or unknown callbacks were posted", n)
	}
	// The counters agree: each genuine message accepted, its job succeeded
	// and its answer confirmed once; each forgery refused before a sign matched.
	after, _ := scrape(t, g.URL+"/metrics")
	counted := func(series string) int64 { return int64(after[series] - before[series]) }
	for series, want := range map[string]int64{
		`caddy_dingtalk_requests_total{bot="default",outcome="accepted"}`:    int64(genuine),
		`caddy_dingtalk_async_jobs_total{bot="default",outcome="succeeded"}`: int64(genuine),
		`caddy_dingtalk_webhook_posts_total{bot="default",result="ok"}`:      int64(genuine),
	} {
		if got := counted(series); got != want {
			t.Errorf("%s went up by %d, want %d", series, got, want)
		}
	}
	if got := counted(`caddy_dingtalk_requests_total{bot="",outcome="bad_sign"}`) +
		counted(`caddy_dingtalk_requests_total{bot="",outcome="expired"}`); got != sent[2].Load() {
		t.Errorf("%d forgeries counted as bad_sign or expired, %d sent", got, sent[2].Load())
	}

	// The heap after the warm-up: flat, within slack for what is in flight.
	if len(heap) >= 2 {
		first, peak := heap[0], heap[0]
		for _, h := range heap {
			peak = max(peak, h)
		}
		if limit := first + first/2 + soakHeapSlack; peak > limit {
			t.Errorf("the live heap grew from %d KiB to %d KiB after the warm-up (limit %d KiB): %v KiB",
				first>>10, peak>>10, limit>>10, kib(heap))
		}
	}
	t.Logf("%v: %d genuine, %d redelivered, %d forged callbacks (%.0f/s); live heap after warm-up %v KiB",
		elapsed.Round(time.Second), sent[0].Load(), sent[1].Load(), sent[2].Load(),
		float64(sent[0].Load()+sent[1].Load()+sent[2].Load())/elapsed.Seconds(), kib(heap))
}

// soakCallback is genuine message i: the same body each time it is sent.
func soakCallback(i int, sessionURL string) []byte {
	return dingtalktest.Callback{Text: "soak", MsgID: "soak-" + strconv.Itoa(i), SessionWebhook: sessionURL}.Body()
}

// forge sends body with headers that must not pass.
func forge(g *gateway, kind string, body []byte) (response, error) {
	switch kind {
	case "another secret's sign":
		return g.deliver("another secret", body, time.Now())
	case "expired":
		return g.deliver(testSecret, body, time.Now().Add(-2*time.Hour))
	}
	req, err := dingtalktest.NewRequest(g.URL+"/robot", testSecret, body, time.Now())
	if err != nil {
		return response{}, err
	}
	req.Header.Set(dingtalk.HeaderSign, dingtalk.Sign(testSecret, "1"+req.Header.Get(dingtalk.HeaderTimestamp)))
	resp, err := g.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return response{Status: resp.StatusCode}, err
}

// soakCounter is an HTTP server that counts, per genuine message index,
// the requests answer attributes to "soak-<index>"; others counts the rest.
type soakCounter struct {
	*httptest.Server
	counts []atomic.Int32
	others atomic.Int64
	sum    atomic.Int64
}

func newSoakCounter(size int, answer func(w http.ResponseWriter, body []byte) string) *soakCounter {
	c := &soakCounter{counts: make([]atomic.Int32, size)}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := answer(w, body)
		i, err := strconv.Atoi(strings.TrimPrefix(id, "soak-"))
		if !strings.HasPrefix(id, "soak-") || err != nil || i < 0 || i >= len(c.counts) {
			c.others.Add(1)
			return
		}
		c.counts[i].Add(1)
		c.sum.Add(1)
	}))
	return c
}

func (c *soakCounter) count(i int) int { return int(c.counts[i].Load()) }
func (c *soakCounter) total() int      { return int(c.sum.Load()) }

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func kib(samples []uint64) []uint64 {
	out := make([]uint64, len(samples))
	for i, s := range samples {
		out[i] = s >> 10
	}
	return out
}

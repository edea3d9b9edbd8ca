package caddymodule

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time source for the table.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestMemoryClaimKeepRelease(t *testing.T) {
	c := &clock{now: fixedNow}
	tab := newMemoryTable(100, c.Now)

	if got := tab.claim("k", "a", time.Minute); got != "a" {
		t.Fatalf("first claim held by %q", got)
	}
	if got := tab.claim("k", "b", time.Minute); got != "a" {
		t.Fatalf("second claim took the key from its holder: %q", got)
	}
	tab.release("k", "b") // not the holder: no effect
	if got := tab.claim("k", "b", time.Minute); got != "a" {
		t.Fatal("a release by another token freed the key")
	}
	tab.keep("k", "a", time.Hour)
	c.Advance(30 * time.Minute)
	if got := tab.claim("k", "b", time.Minute); got != "a" {
		t.Fatal("keep did not extend the TTL")
	}
	c.Advance(31 * time.Minute)
	if got := tab.claim("k", "b", time.Minute); got != "b" {
		t.Fatalf("an expired key is still held by %q", got)
	}
	tab.release("k", "b")
	if got := tab.claim("k", "c", time.Minute); got != "c" {
		t.Fatal("release by the holder did not free the key")
	}
}

func TestMemoryTableStaysWithinItsCap(t *testing.T) {
	const maxEntries = 1000
	tab := newMemoryTable(maxEntries, time.Now)
	for i := range 50 * maxEntries {
		key := "msg" + strconv.Itoa(i)
		tab.claim(key, "t", time.Hour)
		if i%3 == 0 {
			tab.release(key, "t")
		}
	}
	perShard := (maxEntries + memoryShards - 1) / memoryShards
	if n := tab.len(); n > perShard*memoryShards {
		t.Fatalf("%d entries kept, cap is %d", n, perShard*memoryShards)
	}
	for i := range tab.shards {
		if s := &tab.shards[i]; len(s.order)-s.head > 2*s.cap+1 {
			t.Fatalf("shard %d keeps %d order records for a cap of %d", i, len(s.order)-s.head, s.cap)
		}
	}
	// The newest message is remembered, the oldest was evicted first.
	if got := tab.claim("msg"+strconv.Itoa(50*maxEntries-1), "other", time.Hour); got != "t" {
		t.Error("the newest entry was evicted")
	}
	if got := tab.claim("msg1", "other", time.Hour); got != "other" {
		t.Error("the oldest entry was kept past the cap")
	}
}

func BenchmarkMemoryClaim(b *testing.B) {
	tab := newMemoryTable(100_000, time.Now)
	b.ReportAllocs()
	defer reportCPU(b, nil)()
	i := 0
	for b.Loop() {
		i++
		tab.claim("msg"+strconv.Itoa(i), "t", time.Hour)
	}
}

func BenchmarkMemoryClaimParallel(b *testing.B) {
	tab := newMemoryTable(100_000, time.Now)
	b.ReportAllocs()
	defer reportCPU(b, nil)()
	var n sync.Mutex
	worker := 0
	b.RunParallel(func(pb *testing.PB) {
		n.Lock()
		worker++
		prefix := "w" + strconv.Itoa(worker) + "-"
		n.Unlock()
		i := 0
		for pb.Next() {
			i++
			tab.claim(prefix+strconv.Itoa(i), "t", time.Hour)
		}
	})
}

// memoryDuplicates is a table holding n keys, and the keys: looking one up
// again is what a redelivered callback costs.
func memoryDuplicates(n int) (*memoryTable, []string) {
	tab := newMemoryTable(2*n, time.Now) // room for shards filling unevenly
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "msg" + strconv.Itoa(i)
		tab.claim(keys[i], "first", time.Hour)
	}
	return tab, keys
}

func BenchmarkMemoryDuplicate(b *testing.B) {
	tab, keys := memoryDuplicates(50_000)
	b.ReportAllocs()
	defer reportCPU(b, nil)()
	i := 0
	for b.Loop() {
		i++
		if tab.claim(keys[i%len(keys)], "again", time.Hour) != "first" {
			b.Fatal("a duplicate was claimed")
		}
	}
}

func BenchmarkMemoryDuplicateParallel(b *testing.B) {
	tab, keys := memoryDuplicates(50_000)
	b.ReportAllocs()
	defer reportCPU(b, nil)()
	var start atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(start.Add(7919)) // each worker walks the keys from its own place
		for pb.Next() {
			i++
			if tab.claim(keys[i%len(keys)], "again", time.Hour) != "first" {
				b.Error("a duplicate was claimed")
				return
			}
		}
	})
}

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
func (c *clock) Nanos() int64   { return c.Now().UnixNano() }

// tok makes a token of a short name, for tests.
func tok(name string) Token {
	var t Token
	copy(t[:], name)
	return t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestMemoryClaimKeepRelease(t *testing.T) {
	c := &clock{now: fixedNow}
	tab := newMemoryTable(100, c.Nanos)

	if !tab.claim("k", tok("a"), time.Minute) {
		t.Fatal("the first claim failed")
	}
	if !tab.claim("k", tok("a"), time.Minute) {
		t.Fatal("the holder's own claim again failed")
	}
	if tab.claim("k", tok("b"), time.Minute) {
		t.Fatal("a second token took the key from its holder")
	}
	tab.release("k", tok("b")) // not the holder: no effect
	if tab.claim("k", tok("b"), time.Minute) {
		t.Fatal("a release by another token freed the key")
	}
	tab.keep("k", tok("b"), time.Hour) // not the holder: no effect
	tab.keep("k", tok("a"), time.Hour)
	c.Advance(30 * time.Minute)
	if tab.claim("k", tok("b"), time.Minute) {
		t.Fatal("keep did not extend the TTL")
	}
	c.Advance(31 * time.Minute)
	if !tab.claim("k", tok("b"), time.Minute) {
		t.Fatal("an expired key is still held")
	}
	if tab.claim("k", tok("a"), time.Minute) {
		t.Fatal("the expired holder still holds the key")
	}
	tab.release("k", tok("b"))
	if !tab.claim("k", tok("c"), time.Minute) {
		t.Fatal("release by the holder did not free the key")
	}
	if tab.claim("other", tok("c"), time.Minute) != true || tab.claim("other", tok("a"), time.Minute) {
		t.Fatal("keys are not independent")
	}
}

func TestMemoryTableStaysWithinItsCap(t *testing.T) {
	const maxEntries, claims = 1000, 50_000
	tab := newMemoryTable(maxEntries, monotonicNanos)
	key := func(i int) string { return "msg" + strconv.Itoa(i) }
	released := func(i int) bool { return i%3 == 0 }
	for i := range claims {
		tab.claim(key(i), tok("t"), time.Hour)
		if released(i) {
			tab.release(key(i), tok("t"))
		}
	}
	capacity := memoryShards * memoryGenerations * tab.shards[0].genSize
	if capacity < maxEntries || capacity >= maxEntries+memoryShards*memoryGenerations {
		t.Fatalf("the table holds %d keys for max_entries %d", capacity, maxEntries)
	}
	if n := tab.len(); n > capacity {
		t.Fatalf("%d entries kept, capacity is %d", n, capacity)
	}
	// Newest first: each shard remembers the newest seven eighths of its
	// share, and no released key.
	now := monotonicNanos()
	newer := make(map[*memoryShard]int)
	for i := claims - 1; i >= 0; i-- {
		s, h := tab.locate(key(i))
		switch {
		case released(i):
			if s.find(h, now) != nil {
				t.Fatalf("released key %d is remembered", i)
			}
		case newer[s] < (memoryGenerations-1)*s.genSize:
			newer[s]++
			if s.find(h, now) == nil {
				t.Fatalf("key %d, among the newest %d of its shard, was forgotten", i, newer[s])
			}
		}
	}
	if !tab.claim(key(1), tok("other"), time.Hour) {
		t.Error("the oldest entry was kept past the cap")
	}
}

func BenchmarkMemoryClaim(b *testing.B) {
	tab := newMemoryTable(100_000, monotonicNanos)
	b.ReportAllocs()
	defer reportCPU(b, nil)()
	i := 0
	for b.Loop() {
		i++
		tab.claim("msg"+strconv.Itoa(i), tok("t"), time.Hour)
	}
}

func BenchmarkMemoryClaimParallel(b *testing.B) {
	tab := newMemoryTable(100_000, monotonicNanos)
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
			tab.claim(prefix+strconv.Itoa(i), tok("t"), time.Hour)
		}
	})
}

// memoryDuplicates is a table holding n keys, and the keys: looking one up
// again is what a redelivered callback costs.
func memoryDuplicates(n int) (*memoryTable, []string) {
	tab := newMemoryTable(2*n, monotonicNanos) // room for shards filling unevenly
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "msg" + strconv.Itoa(i)
		tab.claim(keys[i], tok("first"), time.Hour)
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
		if tab.claim(keys[i%len(keys)], tok("again"), time.Hour) {
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
			if tab.claim(keys[i%len(keys)], tok("again"), time.Hour) {
				b.Error("a duplicate was claimed")
				return
			}
		}
	})
}

// An absent key, the common case (every new message), must rarely get past
// the generations' filters into their maps, which are seldom in the cache:
// about a quarter of a percent per generation in a full table.
func TestFiltersRarelyAnswerMaybe(t *testing.T) {
	tab := newMemoryTable(100_000, monotonicNanos)
	for i := range 200_000 {
		tab.claim("msg:present:"+strconv.Itoa(i), tok("t"), time.Hour)
	}
	probes, maybes := 0, 0
	for i := range 50_000 {
		s, h := tab.locate("msg:absent:" + strconv.Itoa(i))
		block, bits := s.filterBits(h)
		for g := range memoryGenerations {
			probes++
			if block[g]&bits == bits {
				maybes++
			}
		}
	}
	if rate := float64(maybes) / float64(probes); rate > 0.005 {
		t.Errorf("%.2f%% of the filters' answers for absent keys are maybe, want under 0.5%%", 100*rate)
	}
}

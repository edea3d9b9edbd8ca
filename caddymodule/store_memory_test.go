package caddymodule

import (
	"context"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tok makes a token of a short name, for tests.
func tok(name string) Token {
	var t Token
	copy(t[:], name)
	return t
}

func TestMemoryClaimKeepRelease(t *testing.T) {
	testClaimKeepRelease(t, &MemoryStore{table: newMemoryTable(100)})
}

// testClaimKeepRelease checks a store that judges expiry at the time it is
// given, as the memory and file stores do.
func testClaimKeepRelease(t *testing.T, s Store) {
	ctx := context.Background()
	now := fixedNow // the handler's time, which the store judges expiry at
	claim := func(key, token string) bool {
		t.Helper()
		held, err := s.Claim(ctx, key, tok(token), now, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	if !claim("k", "a") {
		t.Fatal("the first claim failed")
	}
	if !claim("k", "a") {
		t.Fatal("the holder's own claim again failed")
	}
	if claim("k", "b") {
		t.Fatal("a second token took the key from its holder")
	}
	_ = s.Release(ctx, "k", tok("b")) // not the holder: no effect
	if claim("k", "b") {
		t.Fatal("a release by another token freed the key")
	}
	_ = s.Keep(ctx, "k", tok("b"), now, time.Hour) // not the holder: no effect
	_ = s.Keep(ctx, "k", tok("a"), now, time.Hour)
	now = now.Add(30 * time.Minute)
	if claim("k", "b") {
		t.Fatal("keep did not extend the TTL")
	}
	now = now.Add(31 * time.Minute)
	if !claim("k", "b") {
		t.Fatal("an expired key is still held")
	}
	if claim("k", "a") {
		t.Fatal("the expired holder still holds the key")
	}
	_ = s.Release(ctx, "k", tok("b"))
	if !claim("k", "c") {
		t.Fatal("release by the holder did not free the key")
	}
	if !claim("other", "c") || claim("other", "a") {
		t.Fatal("keys are not independent")
	}
	now = now.Add(time.Hour)
	_ = s.Keep(ctx, "k", tok("c"), now, time.Minute) // past its expiry: c no longer holds it
	if !claim("k", "d") {
		t.Fatal("keep extended an expired claim")
	}
}

func TestMemoryTableStaysWithinItsCap(t *testing.T) {
	const maxEntries, claims = 1000, 50_000
	tab := newMemoryTable(maxEntries)
	key := func(i int) string { return "msg" + strconv.Itoa(i) }
	released := func(i int) bool { return i%3 == 0 }
	for i := range claims {
		tab.claim(key(i), tok("t"), 0, time.Hour)
		if released(i) {
			tab.release(key(i), tok("t"))
		}
	}
	capacity := memoryShards * memoryGenerations * int(tab.genSize)
	if capacity < maxEntries || capacity >= maxEntries+memoryShards*memoryGenerations {
		t.Fatalf("the table holds %d keys for max_entries %d", capacity, maxEntries)
	}
	if n := tab.len(); n > capacity {
		t.Fatalf("%d entries kept, capacity is %d", n, capacity)
	}
	// Newest first: each shard remembers the newest seven eighths of its
	// share, and no released key.
	const now = 0 // every claim above was made at 0
	newer := make(map[*memoryShard]int)
	for i := claims - 1; i >= 0; i-- {
		s, h := tab.locate(key(i))
		switch {
		case released(i):
			if gen, _ := s.find(h, now); gen != nil {
				t.Fatalf("released key %d is remembered", i)
			}
		case newer[s] < (memoryGenerations-1)*int(tab.genSize):
			newer[s]++
			if gen, _ := s.find(h, now); gen == nil {
				t.Fatalf("key %d, among the newest %d of its shard, was forgotten", i, newer[s])
			}
		}
	}
	if !tab.claim(key(1), tok("other"), 0, time.Hour) {
		t.Error("the oldest entry was kept past the cap")
	}
}

func BenchmarkMemoryClaim(b *testing.B) {
	tab := newMemoryTable(100_000)
	b.ReportAllocs()
	defer reportCPU(b, nil)()
	i := 0
	for b.Loop() {
		i++
		tab.claim("msg"+strconv.Itoa(i), tok("t"), 0, time.Hour)
	}
}

func BenchmarkMemoryClaimParallel(b *testing.B) {
	tab := newMemoryTable(100_000)
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
			tab.claim(prefix+strconv.Itoa(i), tok("t"), 0, time.Hour)
		}
	})
}

// BenchmarkSharedLine and its Parallel twin measure not the store but the
// floor under BenchmarkMemoryClaimParallel on this machine: an atomic add
// to one of 64 cache lines that the key's hash chooses, which is what
// taking one of the store's 64 shard locks costs, with the same keys, and
// nothing else. When two cores do no better per operation than one here,
// no insert that takes a shard lock can (BENCHMARKS.md, the targets).
func BenchmarkSharedLine(b *testing.B) {
	lines, seed := new([memoryShards]sharedLine), maphash.MakeSeed()
	defer reportCPU(b, nil)()
	i := 0
	for b.Loop() {
		i++
		lines[maphash.String(seed, "msg"+strconv.Itoa(i))%memoryShards].n.Add(1)
	}
}

func BenchmarkSharedLineParallel(b *testing.B) {
	lines, seed := new([memoryShards]sharedLine), maphash.MakeSeed()
	defer reportCPU(b, nil)()
	var worker atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		prefix := "w" + strconv.Itoa(int(worker.Add(1))) + "-"
		i := 0
		for pb.Next() {
			i++
			lines[maphash.String(seed, prefix+strconv.Itoa(i))%memoryShards].n.Add(1)
		}
	})
}

// sharedLine is a counter alone in its cache line, as a shard's lock is.
type sharedLine struct {
	n atomic.Uint64
	_ [56]byte
}

// memoryDuplicates is a table holding n keys, and the keys: looking one up
// again is what a redelivered callback costs.
func memoryDuplicates(n int) (*memoryTable, []string) {
	tab := newMemoryTable(2 * n) // room for shards filling unevenly
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "msg" + strconv.Itoa(i)
		tab.claim(keys[i], tok("first"), 0, time.Hour)
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
		if tab.claim(keys[i%len(keys)], tok("again"), 0, time.Hour) {
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
			if tab.claim(keys[i%len(keys)], tok("again"), 0, time.Hour) {
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
	tab := newMemoryTable(100_000)
	for i := range 200_000 {
		tab.claim("msg:present:"+strconv.Itoa(i), tok("t"), 0, time.Hour)
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

// The table answers every claim, keep and release as a plain map with
// expiry does, through runs of neighbouring slots, releases from their
// middle, expiries and keys taken over, as long as it forgets nothing: a
// few thousand keys fill no shard past its second generation.
func TestMemoryTableAgreesWithAMap(t *testing.T) {
	type held struct {
		holder  Token
		expires int64
	}
	tab := newMemoryTable(100_000)
	model := make(map[string]held)
	rng := rand.New(rand.NewPCG(1, 2))
	holders := []Token{tok("a"), tok("b"), tok("c")}
	var now int64
	for op := range 300_000 {
		key := "k" + strconv.Itoa(rng.IntN(9000))
		holder := holders[rng.IntN(len(holders))]
		ttl := time.Duration(1 + rng.IntN(1000))
		m, ok := model[key]
		live := ok && m.expires > now
		switch rng.IntN(3) {
		case 0:
			want := !live || m.holder == holder
			if got := tab.claim(key, holder, now, ttl); got != want {
				t.Fatalf("op %d: claim(%s, %x) = %v, want %v", op, key, holder[:1], got, want)
			}
			if !live {
				model[key] = held{holder, now + int64(ttl)}
			}
		case 1:
			tab.keep(key, holder, now, ttl)
			if live && m.holder == holder {
				model[key] = held{holder, now + int64(ttl)}
			}
		case 2:
			tab.release(key, holder)
			if ok && m.holder == holder {
				delete(model, key)
			}
		}
		now += int64(rng.IntN(3))
	}
	for key, m := range model {
		s, h := tab.locate(key)
		if gen, i := s.find(h, now); (gen != nil) != (m.expires > now) || gen != nil && gen[i].holder != m.holder {
			t.Fatalf("%s: the table and the map disagree at the end", key)
		}
	}
}

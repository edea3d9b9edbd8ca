package caddymodule

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
}

// defaultMaxEntries bounds the in-memory store when max_entries is not set:
// at DingTalk's rate limits a robot sees far fewer messages in a 2h TTL.
const defaultMaxEntries = 100_000

// memoryShards spreads keys over independent locks so that parallel requests
// rarely wait on each other.
const memoryShards = 64

// memoryStores holds one memoryTable per entry cap, shared by every
// configuration of this process, so that de-duplication survives reloads.
var memoryStores = caddy.NewUsagePool()

// MemoryStore keeps claims in this process's memory. It is the default
// store. Its memory is shared by every dingtalk handler with the same
// max_entries and survives config reloads; it is not shared with other Caddy
// instances (use the Redis store for that).
type MemoryStore struct {
	// The most keys remembered at once. When full, the oldest eighth is
	// forgotten: the newest seven eighths are always remembered. The
	// memory for them, about 45 bytes each, is taken when the config is
	// loaded. Default: 100000.
	MaxEntries int `json:"max_entries,omitempty"`

	table   *memoryTable
	poolKey string
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "dingtalk.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision attaches to the process-wide table for this entry cap.
func (s *MemoryStore) Provision(caddy.Context) error {
	if s.MaxEntries == 0 {
		s.MaxEntries = defaultMaxEntries
	}
	if s.MaxEntries < 0 {
		return fmt.Errorf("memory store max_entries must not be negative")
	}
	s.poolKey = fmt.Sprintf("memory/%d", s.MaxEntries)
	table, _, err := memoryStores.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		return newMemoryTable(s.MaxEntries), nil
	})
	if err != nil {
		return err
	}
	s.table = table.(*memoryTable)
	return nil
}

// Cleanup drops this configuration's reference to the shared table.
func (s *MemoryStore) Cleanup() error {
	_, err := memoryStores.Delete(s.poolKey)
	return err
}

// Claim implements Store.
func (s *MemoryStore) Claim(_ context.Context, key string, token Token, now time.Time, ttl time.Duration) (bool, error) {
	return s.table.claim(key, token, sinceClockStart(now), ttl), nil
}

// Keep implements Store.
func (s *MemoryStore) Keep(_ context.Context, key string, token Token, now time.Time, ttl time.Duration) error {
	s.table.keep(key, token, sinceClockStart(now), ttl)
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key string, token Token) error {
	s.table.release(key, token)
	return nil
}

// settle keeps token's claim on key until now+ttl when ttl is positive,
// and releases it otherwise; an empty key is no claim.
func (t *memoryTable) settle(key string, token Token, now time.Time, ttl time.Duration) {
	switch {
	case key == "":
	case ttl > 0:
		t.keep(key, token, sinceClockStart(now), ttl)
	default:
		t.release(key, token)
	}
}

// memoryGenerations is how many generations a shard keeps its keys in.
const memoryGenerations = 8

// memoryTable is a bounded map of keys with expiry, in shards.
//
// Each shard remembers its share of max_entries keys in eight generations of
// an eighth each: new keys go into the newest, and when it is full the
// oldest is forgotten at once and becomes the newest. So each shard always
// remembers its newest seven eighths, never more than its share (rounded
// up, so that the shards' generations are equal), and nothing is deleted
// one by one.
//
// Most keys looked up are absent: every new message's. A Bloom filter per
// generation tells them without touching the slots, and the filters are
// interleaved so that one cache line holds a key's bits in all eight.
//
// A generation is an open-addressed array of slots, not a Go map: a claim
// then writes three cache lines (the shard's lock with its counts, the
// filter's, the slot's), where a map adds its header, its table's and a
// control word's. Each is one more line to fetch from memory, or from the
// other core's cache when requests run in parallel, and those fetches were
// most of a claim's time.
//
// The table holds no pointers, so the garbage collector never walks it,
// however many keys it remembers: a key is remembered by a 64-bit hash with
// the table's random seed, next to its holder's token. Two keys whose hashes
// collide (about one in 10^14 for a full table of 100000) look like one key
// held by another token: the newer message is taken for a duplicate and
// answered empty, never passed on twice.
//
// Benchmarks: BenchmarkMemoryClaim, BenchmarkMemoryDuplicate and their
// Parallel twins (BENCHMARKS.md, "Go benchmarks").
type memoryTable struct {
	shards  [memoryShards]memoryShard // first: each shard's lock line starts a cache line
	seed    maphash.Seed
	genSize uint32 // how many keys a generation holds
	jobs    *memoryJobs
}

// memoryShard keeps what a claim writes besides its slot and filter block
// in the cache line of its lock.
type memoryShard struct {
	mu     sync.Mutex
	newest uint32        // the generation new keys go into
	fill   uint32        // how many keys it holds
	slots  []memorySlot  // the generations one after another, each a power of two of slots
	filter []filterBlock // a power of two of them
	_      [64]byte      // keeps a shard's lock off its neighbours' cache lines
}

// memorySlot is one remembered key: two to a cache line.
type memorySlot struct {
	hash    uint64 // the key's hash, never 0: 0 marks an empty slot
	expires int64  // nanoseconds since the process started (sinceClockStart)
	holder  Token
}

// filterBlock is one cache line of a shard's filters: for the keys that hash
// to it, 64 bits of each generation's filter, four bits per key.
type filterBlock [memoryGenerations]uint64

func newMemoryTable(maxEntries int) *memoryTable {
	perShard := (maxEntries + memoryShards - 1) / memoryShards
	genSize := max(1, (perShard+memoryGenerations-1)/memoryGenerations)
	t := &memoryTable{seed: maphash.MakeSeed(), genSize: uint32(genSize), jobs: &memoryJobs{jobs: make(map[string]*memoryJob)}}
	slots := 2
	for slots*7 < genSize*8 {
		slots *= 2 // a full generation fills at most seven eighths of its slots, as a Go map would
	}
	blocks := 1
	for blocks*64 < 16*genSize {
		blocks *= 2 // 16 bits of filter per key, in a power of two of blocks
	}
	for i := range t.shards {
		t.shards[i] = memoryShard{
			slots:  make([]memorySlot, memoryGenerations*slots),
			filter: make([]filterBlock, blocks),
		}
	}
	return t
}

// Destruct implements caddy.Destructor; the table holds no outside resources.
func (*memoryTable) Destruct() error { return nil }

// locate returns the shard of key and key's hash.
func (t *memoryTable) locate(key string) (*memoryShard, uint64) {
	h := maphash.String(t.seed, key)
	if h == 0 {
		h = 1 // 0 marks an empty slot
	}
	return &t.shards[h%memoryShards], h
}

// claim, keep and release are the Store's methods; now is in nanoseconds
// since the process started.
func (t *memoryTable) claim(key string, holder Token, now int64, ttl time.Duration) bool {
	held, _ := t.take(key, holder, now, ttl)
	return held
}

// take is claim, and also reports whether it took key now rather than held
// it already: what changed, for the file store to write down.
func (t *memoryTable) take(key string, holder Token, now int64, ttl time.Duration) (held, took bool) {
	s, h := t.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen, i := s.find(h, now); gen != nil {
		return gen[i].holder == holder, false
	}
	s.insert(t, h, holder, now+int64(ttl))
	return true, true
}

// put makes holder hold key until expires, whoever held it: the file store
// replays what it wrote down with it.
func (t *memoryTable) put(key string, holder Token, expires int64) {
	s, h := t.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen, i := s.find(h, math.MinInt64); gen != nil {
		gen[i].holder, gen[i].expires = holder, expires
		return
	}
	s.insert(t, h, holder, expires)
}

// insert remembers the key with hash h, which s does not hold, in the
// newest generation.
func (s *memoryShard) insert(t *memoryTable, h uint64, holder Token, expires int64) {
	if s.fill >= t.genSize {
		s.rotate()
	}
	block, bits := s.filterBits(h)
	block[s.newest] |= bits
	gen := s.generation(s.newest)
	i := slotFor(gen, h)
	if gen[i].hash == 0 {
		s.fill++
	}
	gen[i] = memorySlot{hash: h, expires: expires, holder: holder}
}

// keep reports whether holder held key, and so had it extended.
func (t *memoryTable) keep(key string, holder Token, now int64, ttl time.Duration) bool {
	s, h := t.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen, i := s.find(h, now); gen != nil && gen[i].holder == holder {
		gen[i].expires = now + int64(ttl)
		return true
	}
	return false
}

// release reports whether holder held key, and so had it forgotten.
func (t *memoryTable) release(key string, holder Token) bool {
	s, h := t.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	// An expired entry is not held, and forgetting it changes nothing: no
	// need to know the time.
	gen, i := s.find(h, math.MinInt64)
	if gen == nil || gen[i].holder != holder {
		return false
	}
	removeSlot(gen, i)
	if &gen[0] == &s.generation(s.newest)[0] { // only the newest generation counts its keys
		s.fill--
	}
	return true
}

// find returns the generation that holds the key with hash h unexpired at
// now and the key's slot there, or nil. It looks from the newest generation
// to the oldest.
func (s *memoryShard) find(h uint64, now int64) ([]memorySlot, int) {
	block, bits := s.filterBits(h)
	for age := range uint32(memoryGenerations) {
		g := (s.newest + memoryGenerations - age) % memoryGenerations
		if block[g]&bits != bits {
			continue // not in this generation
		}
		gen := s.generation(g)
		if i := slotFor(gen, h); gen[i].hash == h && gen[i].expires > now {
			return gen, i
		}
	}
	return nil, 0
}

// generation returns the slots of generation g.
func (s *memoryShard) generation(g uint32) []memorySlot {
	n := uint32(len(s.slots) / memoryGenerations)
	return s.slots[g*n : (g+1)*n]
}

// slotShift picks the bits of a key's hash that choose its home slot: above
// those of its shard and its filter block in all but the largest tables.
const slotShift = 20

// slotFor returns the index in gen of the slot that holds the key with hash
// h, or else of the empty slot where it goes: the first of either from its
// home slot on. A generation always has an empty slot.
func slotFor(gen []memorySlot, h uint64) int {
	mask := len(gen) - 1
	for i := int(h>>slotShift) & mask; ; i = (i + 1) & mask {
		if gen[i].hash == h || gen[i].hash == 0 {
			return i
		}
	}
}

// removeSlot empties slot i of gen, moving the keys after it in its run back
// where they would otherwise no longer be found from their home slots.
func removeSlot(gen []memorySlot, i int) {
	mask := len(gen) - 1
	for j := (i + 1) & mask; gen[j].hash != 0; j = (j + 1) & mask {
		home := int(gen[j].hash>>slotShift) & mask
		if (j-home)&mask >= (j-i)&mask { // home is not after i: the key may move to i
			gen[i] = gen[j]
			i = j
		}
	}
	gen[i] = memorySlot{}
}

// filterBits returns the filter block of the key hash h and its four bits
// there, from bits of the hash that the shard's index (its lowest) and the
// block's do not use. Four bits, not two, make a generation's filter
// answer "maybe" four times less often for an absent key (a quarter of a
// percent, against one, in a full table), and each such answer costs a
// look at slots that are rarely in the cache.
func (s *memoryShard) filterBits(h uint64) (*filterBlock, uint64) {
	block := &s.filter[(h>>6)&uint64(len(s.filter)-1)]
	return block, 1<<((h>>35)&63) | 1<<((h>>41)&63) | 1<<((h>>47)&63) | 1<<((h>>53)&63)
}

// rotate forgets the oldest generation and makes its slots the newest one.
func (s *memoryShard) rotate() {
	s.newest = (s.newest + 1) % memoryGenerations
	s.fill = 0
	clear(s.generation(s.newest))
	for i := range s.filter {
		s.filter[i][s.newest] = 0
	}
}

// len counts live and not yet forgotten entries, for tests.
func (t *memoryTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, slot := range s.slots {
			if slot.hash != 0 {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Interface guards
var (
	_ Store              = (*MemoryStore)(nil)
	_ caddy.Provisioner  = (*MemoryStore)(nil)
	_ caddy.CleanerUpper = (*MemoryStore)(nil)

	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store memory {
//	    max_entries <n>
//	}
func (s *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "max_entries":
			if s.MaxEntries != 0 {
				return d.Err("max_entries is given twice")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("max_entries: %q is not a positive number", d.Val())
			}
			s.MaxEntries = n
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized memory store subdirective %q", d.Val())
		}
	}
	return nil
}

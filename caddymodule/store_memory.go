package caddymodule

import (
	"context"
	"fmt"
	"hash/maphash"
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
	// forgotten: the newest seven eighths are always remembered. Default:
	// 100000.
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
		return fmt.Errorf("dingtalk: memory store max_entries must not be negative")
	}
	s.poolKey = fmt.Sprintf("memory/%d", s.MaxEntries)
	table, _, err := memoryStores.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		return newMemoryTable(s.MaxEntries, monotonicNanos), nil
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
func (s *MemoryStore) Claim(_ context.Context, key string, token Token, ttl time.Duration) (bool, error) {
	return s.table.claim(key, token, ttl), nil
}

// Keep implements Store.
func (s *MemoryStore) Keep(_ context.Context, key string, token Token, ttl time.Duration) error {
	s.table.keep(key, token, ttl)
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key string, token Token) error {
	s.table.release(key, token)
	return nil
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
// The table holds no pointers, so the garbage collector never walks it,
// however many keys it remembers: a key is remembered by a 64-bit hash with
// the table's random seed, next to its holder's token. Two keys whose hashes
// collide (about one in 10^14 for a full table of 100000) look like one key
// held by another token: the newer message is taken for a duplicate and
// answered empty, never passed on twice.
type memoryTable struct {
	seed   maphash.Seed
	shards [memoryShards]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	gens    [memoryGenerations]generation
	newest  int          // the index in gens of the generation new keys go into
	genSize int          // how many keys a generation holds
	now     func() int64 // nanoseconds
	_       [64]byte     // keeps a shard's lock off its neighbours' cache lines
}

type memoryEntry struct {
	holder  Token
	expires int64 // on the table's clock
}

func newMemoryTable(maxEntries int, now func() int64) *memoryTable {
	t := &memoryTable{seed: maphash.MakeSeed()}
	perShard := (maxEntries + memoryShards - 1) / memoryShards
	genSize := max(1, (perShard+memoryGenerations-1)/memoryGenerations)
	for i := range t.shards {
		t.shards[i] = memoryShard{genSize: genSize, now: now}
		t.shards[i].gens[0] = newGeneration(genSize)
	}
	return t
}

// Destruct implements caddy.Destructor; the table holds no outside resources.
func (*memoryTable) Destruct() error { return nil }

// locate returns the shard of key and key's hash.
func (t *memoryTable) locate(key string) (*memoryShard, uint64) {
	h := maphash.String(t.seed, key)
	return &t.shards[h%memoryShards], h
}

func (t *memoryTable) claim(key string, holder Token, ttl time.Duration) bool {
	s, h := t.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if gen := s.find(h, now); gen != nil {
		return gen.entries[h].holder == holder
	}
	if len(s.gens[s.newest].entries) >= s.genSize {
		s.rotate()
	}
	s.gens[s.newest].add(h, memoryEntry{holder: holder, expires: now + int64(ttl)})
	return true
}

func (t *memoryTable) keep(key string, holder Token, ttl time.Duration) {
	s, h := t.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if gen := s.find(h, now); gen != nil && gen.entries[h].holder == holder {
		gen.entries[h] = memoryEntry{holder: holder, expires: now + int64(ttl)}
	}
}

func (t *memoryTable) release(key string, holder Token) {
	s, h := t.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen := s.find(h, s.now()); gen != nil && gen.entries[h].holder == holder {
		delete(gen.entries, h)
	}
}

// find returns the generation that holds the key with hash h unexpired at
// now, or nil. It looks from the newest generation to the oldest.
func (s *memoryShard) find(h uint64, now int64) *generation {
	for age := range memoryGenerations {
		gen := &s.gens[(s.newest+memoryGenerations-age)%memoryGenerations]
		if gen.mayHold(h) {
			if e, ok := gen.entries[h]; ok && e.expires > now {
				return gen
			}
		}
	}
	return nil
}

// rotate forgets the oldest generation and makes its memory the newest one.
func (s *memoryShard) rotate() {
	s.newest = (s.newest + 1) % memoryGenerations
	if gen := &s.gens[s.newest]; gen.entries == nil {
		*gen = newGeneration(s.genSize)
	} else {
		clear(gen.entries)
		clear(gen.filter)
	}
}

// generation is a set of keys with their entries, and a Bloom filter of the
// keys ever added. The filter tells most absent keys, the common case,
// without touching the map: at 512 bytes per generation for the default
// max_entries (256 KiB in all) the filters stay in the CPU's cache, where
// the maps do not.
type generation struct {
	entries map[uint64]memoryEntry // by the key's hash
	filter  []uint64               // two bits per key, 16 bits per key of room
}

func newGeneration(size int) generation {
	words := 1
	for words*64 < 16*size {
		words *= 2 // a power of two, so that a bit's index is a mask of the hash
	}
	return generation{entries: make(map[uint64]memoryEntry, size), filter: make([]uint64, words)}
}

// filterBits returns the filter's two bits for the key hash h: from the
// hash's upper bits, as its lowest ones choose the shard.
func (g *generation) filterBits(h uint64) (a, b uint64) {
	mask := uint64(len(g.filter)*64 - 1)
	return (h >> 6) & mask, (h >> 35) & mask
}

// mayHold reports false when the generation does not hold the key hash h.
func (g *generation) mayHold(h uint64) bool {
	if g.filter == nil {
		return false // a generation the shard has not used yet
	}
	a, b := g.filterBits(h)
	return g.filter[a/64]&(1<<(a%64)) != 0 && g.filter[b/64]&(1<<(b%64)) != 0
}

func (g *generation) add(h uint64, e memoryEntry) {
	a, b := g.filterBits(h)
	g.filter[a/64] |= 1 << (a % 64)
	g.filter[b/64] |= 1 << (b % 64)
	g.entries[h] = e
}

// len counts live and not yet forgotten entries, for tests.
func (t *memoryTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, gen := range s.gens {
			n += len(gen.entries)
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

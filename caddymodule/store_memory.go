package caddymodule

import (
	"context"
	"crypto/sha256"
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
	// The most keys remembered at once. When full, the older half is
	// forgotten: the newest half are always remembered. Default: 100000.
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
		return newMemoryTable(s.MaxEntries, time.Now), nil
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
func (s *MemoryStore) Claim(_ context.Context, key, token string, ttl time.Duration) (bool, error) {
	return s.table.claim(key, token, ttl), nil
}

// Keep implements Store.
func (s *MemoryStore) Keep(_ context.Context, key, token string, ttl time.Duration) error {
	s.table.keep(key, token, ttl)
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key, token string) error {
	s.table.release(key, token)
	return nil
}

// memoryTable is a bounded map of keys with expiry, in shards.
//
// Each shard remembers keys in two generations: new keys go into the
// current one, and when it is full (half the shard's share of max_entries)
// the previous generation is forgotten at once and the current one takes its
// place. So the newest half of max_entries keys are always remembered, at
// most max_entries are, and nothing is ever deleted one by one: an absent
// key, the common case, costs two probes of maps that only grow.
//
// The table holds no pointers, so the garbage collector never walks it,
// however many keys it remembers: a key is remembered by a 64-bit hash with
// the table's random seed, its holder by a digest of the token. Two keys
// whose hashes collide (about one in 10^14 for a full table of 100000) look
// like one key held by another token: the newer message is taken for a
// duplicate and answered empty, never passed on twice. The holder's digest
// is SHA-256, as good as comparing the tokens themselves: a token can be a
// message's identity, which the replay guard compares and a sender chooses.
type memoryTable struct {
	seed   maphash.Seed
	shards [memoryShards]memoryShard
}

type memoryShard struct {
	mu       sync.Mutex
	current  map[uint64]memoryEntry // by the key's hash
	previous map[uint64]memoryEntry
	half     int // how many keys a generation holds
	now      func() time.Time
}

type memoryEntry struct {
	holder  holderDigest
	expires int64 // unix nanoseconds
}

// holderDigest identifies a token: the first half of its SHA-256.
type holderDigest [16]byte

func digestToken(token string) holderDigest {
	var buf [128]byte // tokens are short: hashed from the stack, not from a copy on the heap
	sum := sha256.Sum256(append(buf[:0], token...))
	return holderDigest(sum[:16])
}

func newMemoryTable(maxEntries int, now func() time.Time) *memoryTable {
	t := &memoryTable{seed: maphash.MakeSeed()}
	half := max(1, maxEntries/memoryShards/2)
	for i := range t.shards {
		t.shards[i] = memoryShard{half: half, now: now, current: make(map[uint64]memoryEntry, half)}
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

func (t *memoryTable) claim(key, token string, ttl time.Duration) bool {
	s, h := t.locate(key)
	holder := digestToken(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UnixNano()
	if gen := s.find(h, now); gen != nil {
		return gen[h].holder == holder
	}
	if len(s.current) >= s.half {
		s.previous, s.current = s.current, make(map[uint64]memoryEntry, s.half)
	}
	s.current[h] = memoryEntry{holder: holder, expires: now + int64(ttl)}
	return true
}

func (t *memoryTable) keep(key, token string, ttl time.Duration) {
	s, h := t.locate(key)
	holder := digestToken(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UnixNano()
	if gen := s.find(h, now); gen != nil && gen[h].holder == holder {
		gen[h] = memoryEntry{holder: holder, expires: now + int64(ttl)}
	}
}

func (t *memoryTable) release(key, token string) {
	s, h := t.locate(key)
	holder := digestToken(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen := s.find(h, s.now().UnixNano()); gen != nil && gen[h].holder == holder {
		delete(gen, h)
	}
}

// find returns the generation that holds the key with hash h unexpired at
// now, or nil.
func (s *memoryShard) find(h uint64, now int64) map[uint64]memoryEntry {
	for _, gen := range [2]map[uint64]memoryEntry{s.current, s.previous} {
		if e, ok := gen[h]; ok && e.expires > now {
			return gen
		}
	}
	return nil
}

// len counts live and not yet forgotten entries, for tests.
func (t *memoryTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.current) + len(s.previous)
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

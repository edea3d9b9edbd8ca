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
	// The most keys remembered at once; when full, the oldest is forgotten
	// first. Default: 100000.
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
func (s *MemoryStore) Claim(_ context.Context, key, token string, ttl time.Duration) (string, error) {
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
type memoryTable struct {
	seed   maphash.Seed
	shards [memoryShards]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
	order   []orderedKey // insertion order, oldest first; may hold stale keys
	head    int          // index of the oldest live element of order
	cap     int
	now     func() time.Time
	nextSeq uint64
}

type memoryEntry struct {
	token   string
	expires int64 // unix nanoseconds
	seq     uint64
}

// orderedKey remembers when key was inserted; seq tells a stale record (the
// key was released and claimed again since) from the current one.
type orderedKey struct {
	key string
	seq uint64
}

func newMemoryTable(maxEntries int, now func() time.Time) *memoryTable {
	t := &memoryTable{seed: maphash.MakeSeed()}
	perShard := max(1, (maxEntries+memoryShards-1)/memoryShards)
	for i := range t.shards {
		t.shards[i].entries = make(map[string]memoryEntry)
		t.shards[i].cap = perShard
		t.shards[i].now = now
	}
	return t
}

// Destruct implements caddy.Destructor; the table holds no outside resources.
func (*memoryTable) Destruct() error { return nil }

func (t *memoryTable) shard(key string) *memoryShard {
	return &t.shards[maphash.String(t.seed, key)%memoryShards]
}

func (t *memoryTable) claim(key, token string, ttl time.Duration) string {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UnixNano()
	if e, ok := s.entries[key]; ok && e.expires > now {
		return e.token
	}
	s.evict(now)
	s.nextSeq++
	s.entries[key] = memoryEntry{token: token, expires: now + int64(ttl), seq: s.nextSeq}
	s.order = append(s.order, orderedKey{key: key, seq: s.nextSeq})
	return token
}

func (t *memoryTable) keep(key, token string, ttl time.Duration) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok && e.token == token {
		e.expires = s.now().UnixNano() + int64(ttl)
		s.entries[key] = e
	}
}

func (t *memoryTable) release(key, token string) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok && e.token == token {
		delete(s.entries, key)
	}
}

// evict makes room for one more entry: it drops expired entries from the
// old end, then the oldest live ones while the shard is full, and keeps the
// order slice from growing with records of released keys.
func (s *memoryShard) evict(now int64) {
	for s.head < len(s.order) {
		ok := s.order[s.head]
		e, live := s.entries[ok.key]
		current := live && e.seq == ok.seq
		if current && e.expires > now && len(s.entries) < s.cap {
			break
		}
		if current {
			delete(s.entries, ok.key)
		}
		s.order[s.head] = orderedKey{}
		s.head++
	}
	if s.head > len(s.order)/2 || len(s.order)-s.head > 2*s.cap {
		s.compact()
	}
}

// compact drops consumed and stale records from order.
func (s *memoryShard) compact() {
	kept := s.order[:0]
	for _, ok := range s.order[s.head:] {
		if e, live := s.entries[ok.key]; live && e.seq == ok.seq {
			kept = append(kept, ok)
		}
	}
	clear(s.order[len(kept):])
	s.order = kept
	s.head = 0
}

// len counts live and not yet evicted entries, for tests and metrics.
func (t *memoryTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.entries)
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

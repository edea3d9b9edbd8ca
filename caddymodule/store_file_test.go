package caddymodule

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// provisionFile provisions a file store at path as Caddy would; the test
// cleans it up when it ends unless it did so itself.
func provisionFile(t testing.TB, path string) *FileStore {
	t.Helper()
	return provisionFileStore(t, &FileStore{Path: path})
}

// provisionFileStore is provisionFile for a store configured beyond its path.
func provisionFileStore(t testing.TB, s *FileStore) *FileStore {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("provisioning the file store: %v", err)
	}
	t.Cleanup(func() { _ = s.Cleanup() })
	return s
}

// cleanup drops s's hold on its database, as a config's Cleanup does, once.
func cleanup(t *testing.T, s *FileStore) {
	t.Helper()
	if err := s.Cleanup(); err != nil {
		t.Fatal(err)
	}
	s.poolKey = ""
}

func TestFileStoreClaimKeepRelease(t *testing.T) {
	testClaimKeepRelease(t, provisionFile(t, filepath.Join(t.TempDir(), "store.db")))
}

// What a claim held, and what was answered, is there after a restart; what
// was released is not.
func TestFileStoreSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "store.db") // the folder is made too
	ctx := context.Background()
	s := provisionFile(t, path)
	for _, key := range []string{"answered", "released"} {
		if held, err := s.Claim(ctx, key, tok("a"), fixedNow, time.Hour); err != nil || !held {
			t.Fatalf("claim %s: %v, %v", key, held, err)
		}
	}
	if err := s.Release(ctx, "released", tok("a")); err != nil {
		t.Fatal(err)
	}
	if held, err := s.Claim(ctx, "kept", tok("a"), fixedNow, time.Minute); err != nil || !held {
		t.Fatalf("claim kept: %v, %v", held, err)
	}
	if err := s.Keep(ctx, "kept", tok("a"), fixedNow, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	cleanup(t, s) // the last configuration: the file is closed

	if _, err := s.Claim(ctx, "k", tok("a"), fixedNow, time.Hour); !errors.Is(err, errFileStoreClosed) {
		t.Fatalf("a claim on the closed store got %v, want %v", err, errFileStoreClosed)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v, %v; want it readable by its owner only", info, err)
	}

	again := provisionFile(t, path)
	if held, err := again.Claim(ctx, "answered", tok("b"), fixedNow.Add(time.Minute), time.Hour); err != nil || held {
		t.Fatalf("after the restart another token took the answered key: %v, %v", held, err)
	}
	if held, err := again.Claim(ctx, "answered", tok("a"), fixedNow.Add(time.Minute), time.Hour); err != nil || !held {
		t.Fatalf("after the restart the holder lost its key: %v, %v", held, err)
	}
	if held, err := again.Claim(ctx, "released", tok("b"), fixedNow.Add(time.Minute), time.Hour); err != nil || !held {
		t.Fatalf("after the restart the released key is held: %v, %v", held, err)
	}
	if held, err := again.Claim(ctx, "kept", tok("b"), fixedNow.Add(2*time.Hour), time.Hour); err != nil || held {
		t.Fatalf("after the restart the kept key lapsed with its first ttl: %v, %v", held, err)
	}
	if held, err := again.Claim(ctx, "answered", tok("b"), fixedNow.Add(2*time.Hour), time.Hour); err != nil || !held {
		t.Fatalf("after the restart the key did not expire in its time: %v, %v", held, err)
	}
}

// max_entries bounds what the file store remembers, as it bounds the
// memory store: past it the oldest keys are forgotten, also after a
// restart, and the newest are kept.
func TestFileStoreMaxEntries(t *testing.T) {
	const maxEntries, claims = 100, 2000
	path := filepath.Join(t.TempDir(), "store.db")
	ctx := context.Background()
	key := func(i int) string { return "msg" + strconv.Itoa(i) }
	claimed := func(s *FileStore, i int) bool {
		t.Helper()
		held, err := s.Claim(ctx, key(i), tok("b"), fixedNow, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	s := provisionFileStore(t, &FileStore{Path: path, MaxEntries: maxEntries})
	for i := range claims {
		if held, err := s.Claim(ctx, key(i), tok("a"), fixedNow, time.Hour); err != nil || !held {
			t.Fatalf("claim %d: %v, %v", i, held, err)
		}
	}
	committed(t, s.db)
	capacity := memoryShards * memoryGenerations * int(s.db.table.genSize)
	if n := s.db.table.len(); n > capacity || capacity >= 2*maxEntries+memoryShards*memoryGenerations {
		t.Fatalf("%d keys remembered in a table for %d, for max_entries %d", n, capacity, maxEntries)
	}
	if claimed(s, claims-1) {
		t.Fatal("the newest key was forgotten")
	}
	cleanup(t, s)

	again := provisionFileStore(t, &FileStore{Path: path, MaxEntries: maxEntries})
	if n := again.db.table.len(); n > capacity {
		t.Fatalf("after a restart %d keys remembered, for a table of %d", n, capacity)
	}
	if claimed(again, claims-1) {
		t.Fatal("after a restart the newest key was forgotten")
	}
	if !claimed(again, 0) {
		t.Fatal("the oldest key was remembered past max_entries")
	}
}

// A reload provisions the new configuration before it cleans up the old
// one: both must use the one open database, since a second open of the
// file waits for the lock the first holds.
func TestFileStoreSharesOneDatabaseAcrossReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	old := provisionFile(t, path)
	reloaded := provisionFile(t, path)
	if old.db != reloaded.db {
		t.Fatal("the same file was opened twice")
	}
	if !reloaded.db.db.NoSync {
		t.Fatal("the file syncs every commit without fsync")
	}
	// A reload that turns fsync on uses the same open file, now synced.
	synced := &FileStore{Path: path, Fsync: true}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := synced.Provision(ctx); err != nil {
		t.Fatalf("a reload turning fsync on: %v", err)
	}
	if synced.db != old.db || synced.db.db.NoSync {
		t.Fatal("the reload turning fsync on did not turn it on in the open file")
	}
	cleanup(t, synced)
	cleanup(t, old)
	if _, err := reloaded.Claim(context.Background(), "k", tok("a"), fixedNow, time.Minute); err != nil {
		t.Fatalf("the database was closed while a config still used it: %v", err)
	}

	// What the pool avoids: bbolt's lock refuses a second open, also
	// within one process.
	if _, err := openFileDB(path, false, defaultMaxEntries, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("a second open of a file in use got %v, want the lock's error", err)
	}
}

// Claims made at the same time from many goroutines are committed together,
// and still exactly one of them takes a key.
func TestFileStoreClaimIsAtomicUnderConcurrency(t *testing.T) {
	s := provisionFile(t, filepath.Join(t.TempDir(), "store.db"))
	const keys, claimers = 20, 16
	var wins [keys]int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for c := range claimers {
		wg.Go(func() {
			for k := range keys {
				held, err := s.Claim(context.Background(), "k"+strconv.Itoa(k), tok("c"+strconv.Itoa(c)), fixedNow, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if held {
					mu.Lock()
					wins[k]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for k, n := range wins {
		if n != 1 {
			t.Errorf("key %d was taken by %d claimers, want 1", k, n)
		}
	}
}

// The sweeper deletes the log's head once it stopped mattering, in passes
// of at most their limit of records, and never a record behind one that
// still matters.
func TestFileStoreSweepsTheLogInBoundedPasses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := provisionFile(t, path)
	ctx := context.Background()
	now := time.Now()
	claim := func(key, token string, ttl time.Duration) {
		t.Helper()
		if held, err := s.Claim(ctx, key, tok(token), now, ttl); err != nil || !held {
			t.Fatalf("claim %s: %v, %v", key, held, err)
		}
	}
	claim("a", "t", time.Millisecond)
	claim("b", "t", time.Millisecond)
	claim("c", "t", time.Millisecond)
	if err := s.Release(ctx, "b", tok("t")); err != nil {
		t.Fatal(err)
	}
	claim("d", "t", time.Hour)
	claim("e", "t", time.Millisecond) // behind d: kept until d stops mattering
	committed(t, s.db)                // claims and releases are written behind
	records := func() int {
		t.Helper()
		n := 0
		if err := s.db.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(logBucket).Stats().KeyN; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := records(); n != 6 {
		t.Fatalf("the log holds %d records, want 6: four claims, a release and a claim", n)
	}

	later := now.Add(time.Second)
	var passes []int
	for more := true; more; {
		deleted, m, err := s.db.sweep(later, 2)
		if err != nil {
			t.Fatal(err)
		}
		passes, more = append(passes, deleted), m
	}
	if len(passes) != 2 || passes[0] != 2 || passes[1] != 2 || records() != 2 {
		t.Fatalf("passes of 2 deleted %v, leaving %d records; want [2 2], leaving d and e", passes, records())
	}
	if deleted, more, err := s.db.sweep(later, 2); err != nil || deleted != 0 || more {
		t.Fatalf("a sweep of a live head deleted %d (more %v, %v), want none", deleted, more, err)
	}

	// The table filled from what is left agrees with the one that made it.
	cleanup(t, s)
	again := provisionFile(t, path)
	for key, want := range map[string]bool{"a": true, "b": true, "c": true, "d": false, "e": true} {
		if held, err := again.Claim(ctx, key, tok("other"), later, time.Hour); err != nil || held != want {
			t.Errorf("after the sweep and a restart, claiming %s by another token: %v, %v; want %v", key, held, err, want)
		}
	}
}

// A file that is not a database (a power loss without fsync can leave one)
// is set aside with an ERROR line, and the store starts empty.
func TestFileStoreSetsADamagedFileAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store.db")
	garbage := []byte(strings.Repeat("not a bbolt database ", 1000))
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.ErrorLevel)
	db, err := openFileDB(path, false, defaultMaxEntries, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Destruct()
	aside, _ := filepath.Glob(path + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("set aside: %v, want one file", aside)
	}
	if kept, err := os.ReadFile(aside[0]); err != nil || string(kept) != string(garbage) {
		t.Fatalf("the damaged file was not kept as it was: %v", err)
	}
	if entries := logs.FilterMessageSnippet("set it aside").All(); len(entries) != 1 {
		t.Fatalf("logged %v, want one ERROR line", logs.All())
	}
	s := &FileStore{db: db}
	if held, err := s.Claim(context.Background(), "k", tok("a"), fixedNow, time.Hour); err != nil || !held {
		t.Fatalf("the fresh store: %v, %v", held, err)
	}
}

// BenchmarkFileStoreWriteParallel commits records from 16 goroutines, as
// the harness's 16 connections do, each waiting for its commit (as Keep
// does): /append adds them to the log, which shares commits and pages;
// /by-key stores one record per key instead, as a plain bbolt store would,
// so that each changes a page of its own.
func BenchmarkFileStoreWriteParallel(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		name := "nosync"
		if fsync {
			name = "fsync"
		}
		b.Run(name+"/append", func(b *testing.B) {
			db := openBenchFile(b, fsync)
			benchmarkClaims(b, func(key string) error {
				return db.log(logClaim, key, tok("t"), fixedNow, true)
			}, nil)
		})
		b.Run(name+"/by-key", func(b *testing.B) {
			db := openBenchFile(b, fsync)
			value := make([]byte, 8+len(Token{}))
			benchmarkClaims(b, func(key string) error {
				return db.update(func(tx *bolt.Tx) error {
					bucket, err := tx.CreateBucketIfNotExists([]byte("by-key"))
					if err != nil {
						return err
					}
					return bucket.Put([]byte(key), value)
				})
			}, nil)
		})
	}
}

// BenchmarkFileStoreClaimParallel is the store's Claim from 16 goroutines:
// written behind, the claims do not wait for their commits. The loop ends
// with a commit that waits for all of them, so that their cost is counted.
func BenchmarkFileStoreClaimParallel(b *testing.B) {
	db := openBenchFile(b, false)
	s := &FileStore{db: db}
	benchmarkClaims(b, func(key string) error {
		_, err := s.Claim(context.Background(), key, tok("t"), fixedNow, time.Hour)
		return err
	}, func() { committed(b, db) })
}

// committed returns once every write handed to db's writer is committed:
// a write that waits is committed after every one before it.
func committed(t testing.TB, db *fileDB) {
	t.Helper()
	if err := db.update(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func openBenchFile(b *testing.B, fsync bool) *fileDB {
	db, err := openFileDB(filepath.Join(b.TempDir(), "store.db"), fsync, defaultMaxEntries, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Destruct() })
	return db
}

// benchmarkClaims claims new keys from 16 goroutines, as the bench
// harness's 16 connections do, then calls settle, if given, before the
// CPU time is read.
func benchmarkClaims(b *testing.B, claim func(key string) error, settle func()) {
	b.ReportAllocs()
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	defer reportCPU(b, nil)()
	var mu sync.Mutex
	worker := 0
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		worker++
		prefix := "w" + strconv.Itoa(worker) + "-"
		mu.Unlock()
		i := 0
		for pb.Next() {
			i++
			if err := claim(prefix + strconv.Itoa(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if settle != nil {
		settle()
	}
}

func TestFileStoreConformance(t *testing.T) {
	testStoreConformance(t, storeHarness{
		open: func(t *testing.T) Store { return provisionFile(t, filepath.Join(t.TempDir(), "store.db")) },
		// A new process opens the file anew, after the last one closed it.
		reopen: func(t *testing.T, s Store) Store {
			fs := s.(*FileStore)
			path := fs.db.db.Path()
			cleanup(t, fs)
			return provisionFile(t, path)
		},
	})
}

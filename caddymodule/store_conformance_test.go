package caddymodule

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"testing"
	"time"
)

// storeHarness lets one conformance suite run against every Store: each
// store's tests call testStoreConformance with its own.
type storeHarness struct {
	// open returns a new, empty store, cleaned up when the test ends.
	open func(t *testing.T) Store
	// reopen returns a store over the same data as s, as a new process
	// would see it after s's process died; nil when the store's memory
	// ends with its process.
	reopen func(t *testing.T, s Store) Store
}

// Leases in the suite: short enough to lapse quickly, long enough that a
// busy machine renews them in time.
const (
	conformanceLease = 300 * time.Millisecond
	conformanceWait  = 10 * time.Second // the deadline for a lease to lapse
)

// testStoreConformance checks the semantics every Store shares: claims are
// leases that lapse on their own unless kept, a kept claim is the
// de-duplication record, and, for a JobStore, the job lifecycle.
func testStoreConformance(t *testing.T, h storeHarness) {
	t.Run("leases", func(t *testing.T) { testLeases(t, h) })
	if _, ok := h.open(t).(JobStore); !ok {
		return
	}
	t.Run("jobs", func(t *testing.T) { testJobs(t, h) })
	t.Run("jobs taken once", func(t *testing.T) { testJobsTakenOnce(t, h) })
	t.Run("jobs hold their claims", func(t *testing.T) { testJobClaims(t, h) })
	if h.reopen != nil {
		t.Run("restart", func(t *testing.T) { testStoreRestart(t, h) })
	}
}

// eventually polls cond until it holds, failing the test at the deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(conformanceWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s did not happen", conformanceWait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLeases(t *testing.T, h storeHarness) {
	s := h.open(t)
	ctx := context.Background()
	claim := func(key, token string, ttl time.Duration) bool {
		t.Helper()
		held, err := s.Claim(ctx, key, tok(token), time.Now(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	keep := func(key, token string, ttl time.Duration) {
		t.Helper()
		if err := s.Keep(ctx, key, tok(token), time.Now(), ttl); err != nil {
			t.Fatal(err)
		}
	}

	// A lease lapses on its own: a holder that died blocks nobody for long.
	if !claim("lapses", "a", conformanceLease) || claim("lapses", "b", conformanceLease) {
		t.Fatal("a lease was not exclusive")
	}
	eventually(t, "the unkept lease lapsing", func() bool { return claim("lapses", "b", time.Hour) })

	// A renewed lease holds past its first term; a lapsed holder's renewal
	// does not take the key back from the new one.
	if !claim("renewed", "a", conformanceLease) {
		t.Fatal("claim failed")
	}
	for end := time.Now().Add(3 * conformanceLease); time.Now().Before(end); time.Sleep(conformanceLease / 6) {
		keep("renewed", "a", conformanceLease)
		if claim("renewed", "b", conformanceLease) {
			t.Fatal("another token took a lease its holder renews")
		}
	}
	eventually(t, "the lease lapsing once no longer renewed", func() bool { return claim("renewed", "b", time.Hour) })
	keep("renewed", "a", time.Hour)
	if claim("renewed", "a", time.Hour) {
		t.Fatal("the lapsed holder's renewal took the key back")
	}

	// Kept for the de-duplication TTL, the claim outlives its lease: the
	// message was answered, its redelivery is a duplicate.
	if !claim("answered", "a", conformanceLease) {
		t.Fatal("claim failed")
	}
	keep("answered", "a", time.Hour)
	time.Sleep(2 * conformanceLease) // a window: the lease above lapsed in the same time
	if claim("answered", "b", conformanceLease) {
		t.Fatal("the de-duplication record lapsed with the lease")
	}

	// Released by its holder only.
	if !claim("failed", "a", time.Hour) {
		t.Fatal("claim failed")
	}
	if err := s.Release(ctx, "failed", tok("b")); err != nil {
		t.Fatal(err)
	}
	if claim("failed", "b", time.Hour) {
		t.Fatal("another token released the claim")
	}
	if err := s.Release(ctx, "failed", tok("a")); err != nil {
		t.Fatal(err)
	}
	if !claim("failed", "b", time.Hour) {
		t.Fatal("the holder's release did not free the key")
	}
}

// jobPayload is a payload with every byte value, so that a store that
// mangles binary data fails.
func jobPayload(name string) []byte {
	p := []byte(name + ":")
	for b := range 256 {
		p = append(p, byte(b))
	}
	return p
}

func testJobs(t *testing.T, h storeHarness) {
	s := h.open(t).(JobStore)
	ctx := context.Background()
	take := func(token string, n int) []StoredJob {
		t.Helper()
		jobs, err := s.TakeJobs(ctx, tok(token), time.Now(), conformanceLease, n)
		if err != nil {
			t.Fatal(err)
		}
		return jobs
	}
	keep := func(token string) bool {
		t.Helper()
		held, err := s.KeepJob(ctx, "j1", "", tok(token), time.Now(), conformanceLease)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}

	if _, err := s.RecordJob(ctx, "", StoredJob{ID: "j1", Payload: jobPayload("j1")}, tok("a"), time.Now(), conformanceLease, time.Hour); err != nil {
		t.Fatal(err)
	}
	if !keep("a") {
		t.Fatal("the recorder does not hold its job")
	}
	if keep("b") {
		t.Fatal("another token holds the recorder's job")
	}
	if got := take("b", 10); len(got) != 0 {
		t.Fatalf("a held job was taken: %+v", got)
	}

	// The holder stops renewing (it died): another takes the job over.
	var taken []StoredJob
	eventually(t, "the job's lease lapsing", func() bool { taken = take("b", 10); return len(taken) > 0 })
	if len(taken) != 1 || taken[0].ID != "j1" || taken[0].Attempts != 2 || !bytes.Equal(taken[0].Payload, jobPayload("j1")) {
		t.Fatalf("taken over: %+v, want j1 with its payload and 2 attempts", taken)
	}
	if keep("a") {
		t.Fatal("the lapsed holder still renews the job")
	}
	if err := s.FinishJob(ctx, "j1", "", tok("a"), time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if !keep("b") {
		t.Fatal("the lapsed holder finished the new holder's job")
	}

	// Handed back, it is taken at once, with one more attempt.
	if err := s.HandBackJob(ctx, "j1", tok("a")); err != nil {
		t.Fatal(err)
	}
	if got := take("c", 10); len(got) != 0 {
		t.Fatal("a hand-back by a former holder freed the job")
	}
	if err := s.HandBackJob(ctx, "j1", tok("b")); err != nil {
		t.Fatal(err)
	}
	if keep("b") {
		t.Fatal("the holder still renews a job it handed back")
	}
	if got := take("c", 10); len(got) != 1 || got[0].Attempts != 3 {
		t.Fatalf("after the hand-back, taken: %+v, want j1 with 3 attempts", got)
	}

	// Finished by its holder, it is gone for good.
	if err := s.FinishJob(ctx, "j1", "", tok("c"), time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if keep("c") {
		t.Fatal("a finished job is still held")
	}
	if _, err := s.RecordJob(ctx, "", StoredJob{ID: "control", Payload: []byte("x")}, tok("a"), time.Now(), conformanceLease, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The control job lapses in the time the finished one would have.
	var control []StoredJob
	eventually(t, "the control job's lease lapsing", func() bool { control = take("d", 10); return len(control) > 0 })
	if len(control) != 1 || control[0].ID != "control" {
		t.Fatalf("after the control's lease lapsed, taken: %+v, want the control only (j1 was finished)", control)
	}
	if err := s.FinishJob(ctx, "control", "", tok("d"), time.Now(), 0); err != nil {
		t.Fatal(err)
	}

	// A record is forgotten after retain, finished or not; n bounds a take.
	for i := range 3 {
		retain := time.Hour
		if i == 0 {
			retain = conformanceLease
		}
		id := "r" + strconv.Itoa(i)
		if _, err := s.RecordJob(ctx, "", StoredJob{ID: id, Payload: []byte(id)}, tok("a"), time.Now(), time.Millisecond, retain); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * conformanceLease) // r0's retention passes
	if got := take("e", 1); len(got) != 1 || got[0].ID == "r0" {
		t.Fatalf("TakeJobs(n=1) took %+v, want one job that is not r0 (r0 is past its retention)", got)
	}
	if got := take("e", 10); len(got) != 1 || got[0].ID == "r0" {
		t.Fatalf("then took %+v, want the last job, not r0", got)
	}
}

// testJobsTakenOnce takes lapsed jobs from several goroutines: every job
// goes to exactly one of them.
func testJobsTakenOnce(t *testing.T, h storeHarness) {
	s := h.open(t).(JobStore)
	ctx := context.Background()
	const jobs, takers = 40, 4
	for i := range jobs {
		id := "once" + strconv.Itoa(i)
		if _, err := s.RecordJob(ctx, "", StoredJob{ID: id, Payload: []byte(id)}, tok("dead"), time.Now(), time.Millisecond, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond) // the recorder's leases lapse
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := range takers {
		wg.Go(func() {
			for range jobs {
				got, err := s.TakeJobs(ctx, tok("taker"+strconv.Itoa(i)), time.Now(), time.Hour, 3)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, j := range got {
					seen[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != jobs {
		t.Fatalf("%d of %d jobs were taken", len(seen), jobs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %s was taken %d times", id, n)
		}
	}
}

// testJobClaims checks that a job's message claim is taken, renewed and
// settled with the job, in the same steps: they never lapse apart.
func testJobClaims(t *testing.T, h storeHarness) {
	s := h.open(t)
	js := s.(JobStore)
	ctx := context.Background()
	claim := func(key, token string) bool {
		t.Helper()
		held, err := s.Claim(ctx, key, tok(token), time.Now(), conformanceLease)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	record := func(id, key, token string) bool {
		t.Helper()
		held, err := js.RecordJob(ctx, key, StoredJob{ID: id, Payload: []byte(id)}, tok(token), time.Now(), conformanceLease, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	take := func(token string) []string {
		t.Helper()
		jobs, err := js.TakeJobs(ctx, tok(token), time.Now(), time.Hour, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range jobs {
			ids = append(ids, j.ID)
		}
		return ids
	}
	finish := func(id, key, token string, ttl time.Duration) {
		t.Helper()
		if err := js.FinishJob(ctx, id, key, tok(token), time.Now(), ttl); err != nil {
			t.Fatal(err)
		}
	}

	// Recorded with its claim; a second job of the message is not recorded.
	if !record("job", "msg", "a") {
		t.Fatal("recording the job did not claim its free message")
	}
	if claim("msg", "b") {
		t.Fatal("the message was not claimed with its job")
	}
	if record("duplicate", "msg", "b") {
		t.Fatal("a job of a message another token holds was recorded")
	}

	// Renewed together: past several leases, neither the claim nor the
	// job is free.
	for end := time.Now().Add(3 * conformanceLease); time.Now().Before(end); time.Sleep(conformanceLease / 6) {
		held, err := js.KeepJob(ctx, "job", "msg", tok("a"), time.Now(), conformanceLease)
		if err != nil || !held {
			t.Fatalf("the holder's renewal: %v, %v", held, err)
		}
		if claim("msg", "b") {
			t.Fatal("the claim lapsed while the job's holder renewed the job")
		}
		if got := take("b"); len(got) != 0 {
			t.Fatalf("a renewed job was taken: %v", got)
		}
	}

	// Lapsed together: whoever takes the job finds its message free, and
	// the duplicate was never stored.
	var taken []string
	eventually(t, "the job's lease lapsing", func() bool { taken = take("c"); return len(taken) > 0 })
	if len(taken) != 1 || taken[0] != "job" {
		t.Fatalf("taken: %v, want the job alone", taken)
	}
	eventually(t, "the new holder claiming the message", func() bool { return claim("msg", "c") })
	if held, err := js.KeepJob(ctx, "job", "msg", tok("a"), time.Now(), time.Hour); err != nil || held {
		t.Fatalf("the lapsed holder's renewal: %v, %v", held, err)
	}

	// Settled together: answered, the claim is kept past its lease (the
	// de-duplication record); failed, it is released at once.
	if !record("answered", "answered-msg", "d") || !record("failed", "failed-msg", "d") || !record("control", "control-msg", "d") {
		t.Fatal("recording the jobs did not claim their messages")
	}
	finish("answered", "answered-msg", "d", time.Hour)
	finish("failed", "failed-msg", "d", 0)
	if !claim("failed-msg", "e") {
		t.Fatal("a failed job's message was not released")
	}
	eventually(t, "the control's claim lapsing", func() bool { return claim("control-msg", "e") })
	if claim("answered-msg", "e") {
		t.Fatal("an answered job's message was not kept past its lease")
	}
	if got := take("e"); len(got) != 1 || got[0] != "control" {
		t.Fatalf("after the control's lease lapsed, taken: %v, want the control alone (the others were finished)", got)
	}
}

// testStoreRestart checks what a store that outlives its process keeps.
func testStoreRestart(t *testing.T, h storeHarness) {
	s := h.open(t)
	ctx := context.Background()
	if held, err := s.Claim(ctx, "answered", tok("a"), time.Now(), conformanceLease); err != nil || !held {
		t.Fatalf("claim: %v, %v", held, err)
	}
	if err := s.Keep(ctx, "answered", tok("a"), time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.(JobStore).RecordJob(ctx, "", StoredJob{ID: "survivor", Payload: jobPayload("survivor")}, tok("a"), time.Now(), conformanceLease, time.Hour); err != nil {
		t.Fatal(err)
	}

	after := h.reopen(t, s)
	if held, err := after.Claim(ctx, "answered", tok("b"), time.Now(), conformanceLease); err != nil || held {
		t.Fatalf("after the restart, a redelivery of an answered message was claimed: %v, %v", held, err)
	}
	var taken []StoredJob
	eventually(t, "the dead holder's job being taken after the restart", func() bool {
		var err error
		taken, err = after.(JobStore).TakeJobs(ctx, tok("b"), time.Now(), time.Hour, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(taken) > 0
	})
	if len(taken) != 1 || taken[0].ID != "survivor" || taken[0].Attempts != 2 || !bytes.Equal(taken[0].Payload, jobPayload("survivor")) {
		t.Fatalf("after the restart, taken: %+v, want the survivor with its payload and 2 attempts", taken)
	}
}

func TestMemoryStoreConformance(t *testing.T) {
	testStoreConformance(t, storeHarness{
		open: func(*testing.T) Store { return &MemoryStore{table: newMemoryTable(1000)} },
	})
}

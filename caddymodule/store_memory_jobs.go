package caddymodule

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// memoryJobs keeps the async jobs of one process. They do not outlive it:
// the memory store records them so that the relay has one way to run a job
// whatever the store, and so that a job whose holder stopped renewing it is
// run again, as with a shared store.
type memoryJobs struct {
	mu   sync.Mutex
	jobs map[string]*memoryJob
}

type memoryJob struct {
	job     StoredJob
	holder  Token
	lease   int64 // when the lease lapses, on monotonicNanos' scale
	expires int64 // when the record is forgotten
}

// RecordJob implements JobStore.
func (s *MemoryStore) RecordJob(_ context.Context, key string, job StoredJob, token Token, now time.Time, lease, retain time.Duration) (bool, error) {
	at := sinceClockStart(now)
	if key != "" && !s.table.claim(key, token, at, lease) {
		return false, nil
	}
	job.Attempts = 1
	j := s.table.jobs
	j.mu.Lock()
	defer j.mu.Unlock()
	j.jobs[job.ID] = &memoryJob{job: job, holder: token, lease: at + int64(lease), expires: at + int64(retain)}
	return true, nil
}

// KeepJob implements JobStore.
func (s *MemoryStore) KeepJob(_ context.Context, id, key string, token Token, now time.Time, lease time.Duration) (bool, error) {
	at := sinceClockStart(now)
	j := s.table.jobs
	j.mu.Lock()
	defer j.mu.Unlock()
	mj := j.jobs[id]
	if mj == nil || mj.holder != token || mj.lease <= at {
		return false, nil
	}
	mj.lease = at + int64(lease)
	if key != "" {
		s.table.keep(key, token, at, lease) // under the jobs' lock: with the job, as one step
	}
	return true, nil
}

// TakeJobs implements JobStore. It looks at every job: the relay calls it
// a few times a minute, and a process holds only the jobs it runs.
func (s *MemoryStore) TakeJobs(_ context.Context, token Token, now time.Time, lease time.Duration, n int) ([]StoredJob, error) {
	at := sinceClockStart(now)
	j := s.table.jobs
	j.mu.Lock()
	defer j.mu.Unlock()
	var lapsed []*memoryJob
	for id, mj := range j.jobs {
		switch {
		case mj.expires <= at:
			delete(j.jobs, id)
		case mj.lease <= at:
			lapsed = append(lapsed, mj)
		}
	}
	slices.SortFunc(lapsed, func(a, b *memoryJob) int { return cmp.Compare(a.lease, b.lease) })
	taken := make([]StoredJob, 0, min(n, len(lapsed)))
	for _, mj := range lapsed[:min(n, len(lapsed))] {
		mj.holder, mj.lease = token, at+int64(lease)
		mj.job.Attempts++
		taken = append(taken, mj.job)
	}
	return taken, nil
}

// FinishJob implements JobStore.
func (s *MemoryStore) FinishJob(_ context.Context, id, key string, token Token, now time.Time, ttl time.Duration) error {
	j := s.table.jobs
	j.mu.Lock()
	defer j.mu.Unlock()
	if mj := j.jobs[id]; mj != nil && mj.holder == token {
		delete(j.jobs, id)
	}
	s.table.settle(key, token, now, ttl)
	return nil
}

// HandBackJob implements JobStore.
func (s *MemoryStore) HandBackJob(_ context.Context, id string, token Token) error {
	j := s.table.jobs
	j.mu.Lock()
	defer j.mu.Unlock()
	if mj := j.jobs[id]; mj != nil && mj.holder == token {
		mj.lease = minLease
	}
	return nil
}

// minLease is a lease that lapsed before any time a caller passes.
const minLease = -1 << 63

// JobsOutliveProcess implements JobStore: memory is gone with the process.
func (*MemoryStore) JobsOutliveProcess() bool { return false }

// Interface guard
var _ JobStore = (*MemoryStore)(nil)

package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// JobStore is implemented by a Store that records the async relay's jobs,
// so that a job accepted (and acked to DingTalk) by one holder is finished
// by another when its holder stops or dies.
//
// A job is held the way a claim is: by one Token, under a lease that its
// holder renews while the job runs and that lapses on its own when the
// holder dies. The relay uses one token for a job and for its message's
// claim (key, in the Store's key space; empty when the message is not
// de-duplicated), and the store takes, renews and settles the two in one
// step: they never lapse apart, so a job taken over finds its message free,
// and a holder whose job was taken over holds its message no longer. With
// a shared store each such step is one round trip (BENCHMARKS.md, J).
//
// Every method is atomic with respect to the others, also across the
// processes that share the store. now is the caller's time; a store that
// keeps time itself (Redis) judges leases on its own clock instead, and
// says so. A lease that lapsed is not held by anyone: KeepJob fails for its
// old holder, TakeJobs may give the job to a new one.
//
// The relay calls, for each job:
//
//	RecordJob       before DingTalk is acked; on error the store's on_error applies
//	KeepJob         every lease/3 while the job runs
//	FinishJob       when the job is settled: answered, failed for good, or dropped
//	HandBackJob     when the holder stops before the job is settled (drain)
//
// and, every lease/4 in every process, TakeJobs, to run the jobs whose
// holder is gone. The store runs conformance suite testJobStore
// (store_conformance_test.go).
type JobStore interface {
	// RecordJob claims key for token until now+lease, as Store.Claim
	// does, and when token holds it, stores job, held by token until
	// now+lease, with Attempts 1. It reports whether token holds key: when
	// another token does (the message is a duplicate), nothing is stored.
	// With an empty key the job is stored and held is true. job.ID is new
	// (the relay makes it from a fresh token). The record is forgotten at
	// now+retain even when nobody finishes it, so that a store never fills
	// up with jobs that cannot run any more (their message's
	// sessionWebhook has expired by then).
	RecordJob(ctx context.Context, key string, job StoredJob, token Token, now time.Time, lease, retain time.Duration) (held bool, err error)

	// KeepJob extends token's lease on the job, and its claim on key (when
	// key is not empty), to now+lease. It reports false, and changes
	// nothing, when token no longer holds the job: its lease lapsed (and
	// another holder may have taken it), or it was finished or handed back.
	KeepJob(ctx context.Context, id, key string, token Token, now time.Time, lease time.Duration) (held bool, err error)

	// TakeJobs takes at most n jobs whose lease lapsed by now, oldest lapse
	// first: each is then held by token until now+lease, and its Attempts
	// is one higher than before (the number of holders that started it).
	// Two concurrent callers never take the same job. The jobs' messages
	// are not claimed: their claims lapsed with the jobs' leases, and the
	// new holder claims them again.
	TakeJobs(ctx context.Context, token Token, now time.Time, lease time.Duration, n int) ([]StoredJob, error)

	// FinishJob forgets the job if token holds it, or held it last (its
	// lease lapsed, but nobody took the job since); otherwise the job
	// belongs to another holder now and stays. In the same step it settles
	// token's claim on key (when key is not empty), as Store.Keep and
	// Store.Release do: kept until now+ttl when ttl is positive (the
	// message was answered: the de-duplication record), released otherwise.
	FinishJob(ctx context.Context, id, key string, token Token, now time.Time, ttl time.Duration) error

	// HandBackJob ends token's lease on the job at once, if token holds it
	// (or held it last, as for FinishJob), so that the next TakeJobs (of any
	// process) takes it.
	HandBackJob(ctx context.Context, id string, token Token) error

	// JobsOutliveProcess reports whether a job recorded by this process can
	// be taken by another process, or by this one after a restart. When it
	// is false (the memory store), a job that cannot finish before the
	// process stops is answered with the fallback text instead.
	JobsOutliveProcess() bool
}

// StoredJob is one async job as a JobStore keeps it.
type StoredJob struct {
	// ID names the job in the store; unique.
	ID string
	// Attempts counts the holders that started the job: 1 for the one that
	// recorded it, one more for every TakeJobs. Set by the store.
	Attempts int
	// Payload is what the relay needs to run the job again (the request
	// as it arrived, without any secret); opaque to the store.
	Payload []byte
}

// retainer is implemented by a Store whose Cleanup closes what it uses (a
// connection pool, a file). Caddy cleans a configuration's modules up in no
// set order, and the async relay settles its jobs in the dingtalk handler's
// Cleanup, when Caddy exits: retain keeps the store usable until release
// is called, after the jobs are settled.
type retainer interface {
	retain() (release func())
}

// retainPooled is retain for a store whose resource is key in pool: one
// more reference to it, dropped by release.
func retainPooled(pool *caddy.UsagePool, key string) (release func()) {
	notLoaded := func() (caddy.Destructor, error) { return nil, errors.New("not loaded") }
	if _, _, err := pool.LoadOrNew(key, notLoaded); err != nil {
		return func() {} // not there: nothing to keep open
	}
	return func() { _, _ = pool.Delete(key) }
}

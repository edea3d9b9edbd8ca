package caddymodule

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The file store keeps each job in the jobs bucket, under its id, as one
// record: its holder's token, when the lease lapses and when the record is
// forgotten (Unix nanoseconds, big-endian), its attempts, its payload. The
// relay's job ids grow within a process (newClaimToken), so new records
// are appended to the bucket's last page.
//
// Every method is one write transaction, which also writes down the change
// to the job's message's claim, except that TakeJobs first looks
// in a read transaction, which holds up nobody, and writes only when a
// lease lapsed or a record is past its retention.
var jobsBucket = []byte("jobs")

// fileJob is a job's record.
type fileJob struct {
	holder   Token
	lease    int64 // when the lease lapses
	expires  int64 // when the record is forgotten
	attempts uint32
	payload  []byte
}

const fileJobHeader = len(Token{}) + 8 + 8 + 4

func (j *fileJob) encode() []byte {
	v := make([]byte, fileJobHeader+len(j.payload))
	copy(v, j.holder[:])
	binary.BigEndian.PutUint64(v[16:], uint64(j.lease))
	binary.BigEndian.PutUint64(v[24:], uint64(j.expires))
	binary.BigEndian.PutUint32(v[32:], j.attempts)
	copy(v[fileJobHeader:], j.payload)
	return v
}

// readFileJob decodes a record; its payload is the record's own bytes,
// valid only during the transaction that read it.
func readFileJob(v []byte) (fileJob, bool) {
	if len(v) < fileJobHeader {
		return fileJob{}, false
	}
	return fileJob{
		holder:   Token(v[:16]),
		lease:    int64(binary.BigEndian.Uint64(v[16:])),
		expires:  int64(binary.BigEndian.Uint64(v[24:])),
		attempts: binary.BigEndian.Uint32(v[32:]),
		payload:  v[fileJobHeader:],
	}, true
}

// RecordJob implements JobStore. The claim is taken in the table, and
// written down in the transaction that stores the job.
func (s *FileStore) RecordJob(_ context.Context, key string, job StoredJob, token Token, now time.Time, lease, retain time.Duration) (bool, error) {
	var claim []byte
	if key != "" {
		held, took := s.db.table.take(key, token, sinceClockStart(now), lease)
		if !held {
			return false, nil
		}
		if took {
			claim = newLogRecord(logClaim, key, token, now.Add(lease))
		}
	}
	record := (&fileJob{holder: token, lease: now.Add(lease).UnixNano(), expires: now.Add(retain).UnixNano(),
		attempts: 1, payload: job.Payload}).encode()
	err := s.db.update(func(tx *bolt.Tx) error {
		if claim != nil {
			if err := appendLog(tx, claim); err != nil {
				return err
			}
		}
		return tx.Bucket(jobsBucket).Put([]byte(job.ID), record)
	})
	if err != nil {
		if claim != nil {
			s.db.table.release(key, token) // taken for the job, which is not stored
		}
		return false, fmt.Errorf("file store: record job: %w", err)
	}
	return true, nil
}

// KeepJob implements JobStore: the job's lease and the claim are renewed
// in one transaction.
func (s *FileStore) KeepJob(_ context.Context, id, key string, token Token, now time.Time, lease time.Duration) (bool, error) {
	var held bool
	err := s.db.update(func(tx *bolt.Tx) error {
		jobs := tx.Bucket(jobsBucket)
		j, ok := readFileJob(jobs.Get([]byte(id)))
		held = ok && j.holder == token && j.lease > now.UnixNano()
		if !held {
			return nil
		}
		j.lease = now.Add(lease).UnixNano()
		if err := jobs.Put([]byte(id), j.encode()); err != nil {
			return err
		}
		if key != "" && s.db.table.keep(key, token, sinceClockStart(now), lease) {
			return appendLog(tx, newLogRecord(logClaim, key, token, now.Add(lease)))
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("file store: keep job: %w", err)
	}
	return held, nil
}

// TakeJobs implements JobStore.
func (s *FileStore) TakeJobs(_ context.Context, token Token, now time.Time, lease time.Duration, n int) ([]StoredJob, error) {
	at := now.UnixNano()
	due := false
	if err := s.db.db.View(func(tx *bolt.Tx) error {
		due = jobsDue(tx.Bucket(jobsBucket), at)
		return nil
	}); err != nil || !due {
		return nil, err
	}
	var taken []StoredJob
	err := s.db.update(func(tx *bolt.Tx) error {
		taken = nil // when the transaction runs again
		jobs := tx.Bucket(jobsBucket)
		type lapsed struct {
			id  []byte
			job fileJob
		}
		var found []lapsed
		var expired [][]byte
		if err := jobs.ForEach(func(id, v []byte) error {
			j, ok := readFileJob(v)
			switch {
			case !ok || j.expires <= at:
				expired = append(expired, id)
			case j.lease <= at:
				found = append(found, lapsed{id, j})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, id := range expired {
			if err := jobs.Delete(id); err != nil {
				return err
			}
		}
		slices.SortFunc(found, func(a, b lapsed) int { return cmp.Compare(a.job.lease, b.job.lease) })
		for _, l := range found[:min(n, len(found))] {
			j := l.job
			j.holder, j.lease, j.attempts = token, now.Add(lease).UnixNano(), j.attempts+1
			j.payload = bytes.Clone(j.payload) // out of the transaction's pages
			taken = append(taken, StoredJob{ID: string(l.id), Attempts: int(j.attempts), Payload: j.payload})
			if err := jobs.Put(bytes.Clone(l.id), j.encode()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("file store: take jobs: %w", err)
	}
	return taken, nil
}

// jobsDue reports whether a job's lease lapsed or a record is past its
// retention at at.
func jobsDue(jobs *bolt.Bucket, at int64) bool {
	c := jobs.Cursor()
	for _, v := c.First(); v != nil; _, v = c.Next() {
		if j, ok := readFileJob(v); !ok || j.lease <= at || j.expires <= at {
			return true
		}
	}
	return false
}

// FinishJob implements JobStore: the job is removed and the claim settled
// in one transaction.
func (s *FileStore) FinishJob(_ context.Context, id, key string, token Token, now time.Time, ttl time.Duration) error {
	var claim []byte
	switch {
	case key == "":
	case ttl > 0:
		if s.db.table.keep(key, token, sinceClockStart(now), ttl) {
			claim = newLogRecord(logClaim, key, token, now.Add(ttl))
		}
	default:
		if s.db.table.release(key, token) {
			claim = newLogRecord(logRelease, key, token, now)
		}
	}
	err := s.db.update(func(tx *bolt.Tx) error {
		if claim != nil {
			if err := appendLog(tx, claim); err != nil {
				return err
			}
		}
		jobs := tx.Bucket(jobsBucket)
		if j, ok := readFileJob(jobs.Get([]byte(id))); ok && j.holder == token {
			return jobs.Delete([]byte(id))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("file store: finish job: %w", err)
	}
	return nil
}

// HandBackJob implements JobStore.
func (s *FileStore) HandBackJob(_ context.Context, id string, token Token) error {
	err := s.db.update(func(tx *bolt.Tx) error {
		jobs := tx.Bucket(jobsBucket)
		j, ok := readFileJob(jobs.Get([]byte(id)))
		if !ok || j.holder != token {
			return nil
		}
		j.lease = math.MinInt64 // lapsed before any time: the next TakeJobs takes it
		return jobs.Put([]byte(id), j.encode())
	})
	if err != nil {
		return fmt.Errorf("file store: hand back job: %w", err)
	}
	return nil
}

// JobsOutliveProcess implements JobStore: the file outlives the process.
func (*FileStore) JobsOutliveProcess() bool { return true }

// Interface guard
var _ JobStore = (*FileStore)(nil)
